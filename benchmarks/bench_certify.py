"""Certification cost, with sampling and the radius computation timed apart (base model fmnist-noise-0.50-cnn).

Variants, interleaved round by round (sigma 0.5, the first --n test images, --samples noise
samples each, batches of --batch):
  * a per-image loop in the style of Cohen et al.'s reference (draw noise, classify, count votes);
  * robustmix SmoothedClassifier.sample (soft scores and votes, noise seeded per input and chunk,
    several inputs per forward pass);
  * one forward pass of the base model on a batch of noisy inputs, which prices a forward row;
  * Theorem 2 radii from the sampled bounds for 1 alpha and for 101 alphas (--radius-reps calls each).
Sampling is reported against the Cohen-style loop and against its counted forward passes (floors
from passes counted with hooks); the radius time is reported by itself, and the extra time of a
whole 101-alpha certificate over a 1-alpha one as (radii 101 - radii 1) / (sampling + radii 1) per
round, with its floor from the counted passes (zero: the same sampling serves every alpha and
the radii make no pass).
Run: python benchmarks/bench_certify.py [--threads 1] [--n 10] [--samples 1000] [--rounds 5]
"""

import argparse

import torch

from harness import floor, interleave, setup, work
from robustmix.certify import (SmoothedClassifier, certify_mixture, certify_selection, clopper_pearson_lower,
                               smoothing_radius_from_bounds)
from robustmix import Smoothing
from robustmix.data import load_dataset
from robustmix.models import load

SIGMA = 0.5


def reference_counts(base, x, sigma, num, batch):
    """Per-image loop as in Cohen et al.'s core.py: draw noise, classify, count."""
    out = []
    with torch.no_grad():
        for xi in x:
            counts = torch.zeros(10, dtype=torch.long)
            remaining = num
            while remaining > 0:
                b = min(batch, remaining)
                noisy = xi.repeat(b, 1, 1, 1) + torch.randn(b, *xi.shape) * sigma
                counts += torch.bincount(base(noisy).argmax(1), minlength=10)
                remaining -= b
            out.append(counts)
    return torch.stack(out)


def reference_certify(base, x, sigma, n0, num, batch, delta=0.001):
    """Cohen et al.'s CERTIFY as a plain per-image loop: n0 votes pick the class, num votes bound it."""
    top = reference_counts(base, x, sigma, n0, batch).argmax(1)
    counts = reference_counts(base, x, sigma, num, batch)
    return clopper_pearson_lower(counts.gather(1, top[:, None])[:, 0].numpy(), num, delta)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--radius-reps", type=int, default=50)
    args = ap.parse_args()
    print(setup(args.threads) + f", channels_last, {args.n} images x {args.samples} samples, batch {args.batch}")
    x, _ = load_dataset("fashion-mnist", "test")
    x = x[:args.n]
    base = load("fmnist-noise-0.50-cnn")
    smoother = SmoothedClassifier(base, SIGMA, num_samples=args.samples, batch_size=args.batch)
    est = smoother.sample(x)
    lo, hi = est.bounds(0.001)
    pred = est.mean.argmax(1)
    top = lo.gather(1, pred[:, None])[:, 0]
    grid = torch.linspace(0, 1, 101, dtype=torch.float64)
    noisy = (x[:1].repeat(args.batch, 1, 1, 1) + SIGMA * torch.randn(args.batch, *x.shape[1:])).clamp(0, 1)

    def forward():
        with torch.no_grad():
            base(noisy)

    def radii(alpha):
        def run():
            for _ in range(args.radius_reps):
                smoothing_radius_from_bounds(top, hi, pred, SIGMA, alpha)
        return run

    std = load("fmnist-std-cnn")
    n0 = 100
    thresholds = [0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0]
    smoothing = Smoothing(sigma=SIGMA, num_samples=args.samples, n0=n0, batch_size=args.batch)
    certify = {
        "cohen certify": lambda: reference_certify(base, x, SIGMA, n0, args.samples, args.batch),
        "certify_mixture": lambda: certify_mixture(None, base, x, alphas=[1.0], smoothing=smoothing),
        "certify_selection": lambda: certify_selection(std, base, x, thresholds=thresholds, smoothing=smoothing)}
    variants = {**certify, "cohen": lambda: reference_counts(base, x, SIGMA, args.samples, args.batch),
                "robustmix": lambda: smoother.sample(x), "fwd": forward,
                "radius 1": radii(0.8), "radius 101": radii(grid)}
    r = interleave(variants, rounds=args.rounds, warmup=1, count={"base": base}, progress=True)
    p = r.passes
    costs = {("base", "fwd"): r.median("fwd") / args.batch}
    total = args.n * args.samples

    print(f"\n{args.rounds} interleaved rounds; ratio = median of per-round ratios (IQR); floor from counted passes\n")
    print("| sampling | noise samples/s | time / Cohen-style | floor | time / its counted forward passes | counted |")
    print("|---|---|---|---|---|---|")
    for name, label in (("cohen", "per-image loop in the style of Cohen et al. (hard votes)"),
                        ("robustmix", "robustmix SmoothedClassifier.sample (soft + hard, seeded per input)")):
        over = r.per_round(lambda t: t[name] / (work(p[name], {("base", "fwd"): t["fwd"] / args.batch})))
        print(f"| {label} | {total / r.median(name):,.0f} | {r.ratio(name, 'cohen')} | "
              f"{floor(p[name], p['cohen'], costs):.2f} | {over} | {p[name].describe()} |")

    print(f"\n| certification ({n0} + {args.samples} samples per image) | s / certified image | "
          "time / Cohen-style CERTIFY loop (IQR) |")
    print("|---|---|---|")
    for name, label in (("cohen certify", "Cohen-style CERTIFY, per-image loop"),
                        ("certify_mixture", "robustmix certify_mixture (fixed budget, Theorem 2 radii)"),
                        ("certify_selection", f"robustmix certify_selection (ACES, {len(thresholds)} entropy "
                                              "thresholds, g included)")):
        print(f"| {label} | {r.median(name) / args.n:.4f} | {r.ratio(name, 'cohen certify')} |")

    reps = args.radius_reps
    per = {k: r.per_round(lambda t, k=k: t[k] / reps / args.n) for k in ("radius 1", "radius 101")}
    sample_per_image = r.per_round(lambda t: t["robustmix"] / args.n)
    extra = r.per_round(lambda t: (t["radius 101"] - t["radius 1"]) / reps / (t["robustmix"] + t["radius 1"] / reps))
    extra_floor = floor(p["robustmix"] + p["radius 101"], p["robustmix"] + p["radius 1"], costs) - 1
    print(f"\n| per image ({args.samples} samples) | sampling (ms) | radii, 1 alpha (us) | radii, 101 alphas (us) "
          "| radii 101 / 1 | extra time of a 101-alpha certificate over a 1-alpha one | floor |")
    print("|---|---|---|---|---|---|---|")
    print(f"| fmnist-noise-0.50-cnn | {sample_per_image.median * 1e3:.2f} | {per['radius 1'].median * 1e6:.1f} | "
          f"{per['radius 101'].median * 1e6:.1f} | {r.ratio('radius 101', 'radius 1')} | "
          f"{extra.median:+.4%} ({extra.q1:+.4%} to {extra.q3:+.4%}) | {extra_floor:+.4%} |")

if __name__ == "__main__":
    main()
