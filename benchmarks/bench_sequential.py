"""Sequential sampling versus a fixed budget, on recorded base predictions (record_smoothing_votes.py).

Replays certify_mixture's estimation stage (robustmix.certify.mixture.estimate_top_bound, the code
certify_mixture runs) on the recorded predictions, so every stopping rule sees the same samples, and
prints forward passes (n0 selection samples included) and certified accuracy against a fixed budget
at alpha = 1.  --verify K also runs certify_mixture itself on the first K images (sequential, first
rule given) and checks that the replay gives the same radii and sample counts.
Run: python benchmarks/bench_sequential.py --votes DIR [--rules confidence-sequence doubling-looks]
     [--tolerances 0.1] [--radii-sets none 0.25,0.5,0.75,1.0] [--n0s 100] [--first-looks N] [--growths 1.25]
     [--futilities 0.05] [--optimism 1.0] [--verify 40]
"""

import argparse
import itertools
import pathlib

import numpy as np
import torch

from harness import setup
from robustmix import Smoothing
from robustmix.certify import Inputs, Sequential, certify_mixture
from robustmix.certify import mixture
from robustmix.data import load_dataset
from robustmix.models import load

RADII = (0.25, 0.5, 0.75, 1.0)


def load_votes(folder):
    parts = [np.load(p) for p in sorted(pathlib.Path(folder).glob("votes-*.npz"))]
    if not parts:
        raise SystemExit(f"no votes-*.npz in {folder}: run record_smoothing_votes.py first")
    cat = {k: np.concatenate([p[k] for p in parts]) for k in ("index", "label", "selection", "estimation")}
    return cat, float(parts[0]["sigma"]), str(parts[0]["model"])


def replay(data, sigma, *, num_samples, delta, sequential, tolerance=0.1, radii=None, rule=None, n0=None, **constants):
    sel, est = data["selection"][:, :n0], data["estimation"][:, :num_samples]
    c = 10
    top = torch.from_numpy(np.stack([np.bincount(s, minlength=c) for s in sel]).argmax(1))
    hits = np.cumsum(est == top.numpy()[:, None], 1)

    def draw(active, start, stop):
        before = hits[active, start - 1] if start > 0 else 0
        return hits[active, stop - 1] - before, None

    smoothing = Smoothing(sigma=sigma, num_samples=num_samples, delta=delta)
    plan = mixture.Sequential(rule=rule, tolerance=tolerance, radii=radii, **constants) if sequential else None
    p_lower, used = mixture.estimate_top_bound(draw, top, mixture.Estimator.CLOPPER_PEARSON, smoothing=smoothing,
                                               alphas=torch.tensor([1.0], dtype=torch.float64), c=c,
                                               sequential=plan)
    radius = mixture.top_bound_radius(p_lower, top, c, sigma, torch.tensor([1.0], dtype=torch.float64))[0]
    return top, radius, used


def parse_radii(spec):
    return None if spec == "none" else [float(r) for r in spec.split(",")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--votes", required=True)
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--delta", type=float, default=0.001)
    ap.add_argument("--rules", nargs="+", default=list(mixture.SEQUENTIAL_RULES), choices=mixture.SEQUENTIAL_RULES)
    ap.add_argument("--tolerances", type=float, nargs="+", default=[0.1])
    ap.add_argument("--radii-sets", nargs="+", default=["none"],
                    help="comma-separated reported radii steering the stopping rule, or none")
    ap.add_argument("--n0s", type=int, nargs="+", default=[100], help="selection samples (a prefix of those recorded)")
    ap.add_argument("--first-looks", type=int, nargs="+", default=[None])
    ap.add_argument("--growths", type=float, nargs="+", default=[mixture.CS_GROWTH], help="confidence-sequence rule")
    ap.add_argument("--futilities", type=float, nargs="+", default=[mixture.CS_FUTILITY],
                    help="confidence-sequence rule")
    ap.add_argument("--optimism", type=float, nargs="+", default=[mixture.OPTIMISM], help="doubling-looks rule")
    ap.add_argument("--verify", type=int, default=0, help="run certify_mixture (the first rule given, with its "
                    "default constants) on this many images and compare")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args()
    print(setup(args.threads))
    data, sigma, model = load_votes(args.votes)
    n, labels = len(data["index"]), torch.from_numpy(data["label"].astype(np.int64))
    split = str(np.load(sorted(pathlib.Path(args.votes).glob("votes-*.npz"))[0]).get("split", "test"))
    print(f"\n{model} at sigma {sigma}, {n} {split} images ({data['index'].min()}-{data['index'].max()}), "
          f"delta = {args.delta}, alpha = 1; forward passes include the selection samples\n")
    head = " | ".join(f"cert. @ {r}" for r in RADII)
    print(f"| run | passes / image | saved | {head} | mean radius |")
    print("|---" * (4 + len(RADII)) + "|")
    fixed_passes = 100 + args.samples

    def row(name, n0, top, radius, used):
        correct = top == labels
        cells = " | ".join(f"{100 * float(((radius >= r) & correct).double().mean()):.1f}%" for r in RADII)
        per = n0 + used.mean()
        print(f"| {name} | {per:,.0f} | {fixed_passes / per:.2f}x | {cells} | {radius.mean():.3f} |", flush=True)

    row(f"fixed {args.samples:,}, n0 100", 100,
        *replay(data, sigma, num_samples=args.samples, delta=args.delta, sequential=False, n0=100))
    runs = []
    for rule in args.rules:
        if rule == "confidence-sequence":
            grids = [dict(growth=g, futility=f) for g in args.growths for f in args.futilities]
        else:
            grids = [dict(optimism=o) for o in args.optimism]
        for n0, first, tol, spec, consts in itertools.product(args.n0s, args.first_looks, args.tolerances,
                                                              args.radii_sets, grids):
            runs.append((rule, n0, tol, spec, dict(first_look=first, **consts)))
    for rule, n0, tol, spec, consts in runs:
        res = replay(data, sigma, num_samples=args.samples, delta=args.delta, sequential=True, tolerance=tol,
                     radii=parse_radii(spec), rule=rule, n0=n0, **consts)
        shown = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in consts.items() if v is not None)
        row(f"{rule}: n0 {n0}, tolerance {tol}, radii {spec}{', ' + shown if shown else ''}", n0, *res)
    if args.verify:
        rule, n0, tol, spec, _ = runs[0]
        grid = parse_radii(spec)
        k = min(args.verify, n)
        top, radius, used = replay({key: v[:k] for key, v in data.items()}, sigma, num_samples=args.samples,
                                   delta=args.delta, sequential=True, tolerance=tol, radii=grid, rule=rule, n0=n0)
        x, _ = load_dataset("fashion-mnist", split, root=args.data_root, allow_download=False)
        idx = data["index"][:k].tolist()
        cert = certify_mixture(None, load(model), x[idx], alphas=[1.0],
                               smoothing=Smoothing(sigma=sigma, num_samples=args.samples, n0=n0, delta=args.delta),
                               inputs=Inputs(indices=idx),
                               sequential=Sequential(rule=rule, tolerance=tol, radii=grid))
        same = torch.equal(cert.radius[0], radius) and torch.equal(cert.samples_used, torch.from_numpy(used))
        print(f"\ncertify_mixture ({rule}, default constants) on the first {k} images: radii and sample counts "
              f"{'identical to' if same else 'DIFFERENT from'} the replay")


if __name__ == "__main__":
    main()
