"""Choose the confidence-sequence rule's constants on validation images (recorded votes), never on test images.

For every combination of n0 (selection samples), first look, growth of the looks, futility level and
tolerance, replays certify_mixture's estimation stage (bench_sequential.replay) on the validation
votes and keeps the combinations whose certified accuracy stays within --slack points of the fixed
10,000-sample budget at every reported radius; prints them by forward passes per image, cheapest
first, for each set of reported radii.  The cheapest admissible one is the rule's default; report it
on test images with bench_sequential.py.
Run: python benchmarks/tune_sequential.py --votes VAL_VOTES [--slack 0.5] [--top 8]
"""

import argparse
import itertools

import numpy as np
import torch

from bench_sequential import RADII, load_votes, parse_radii, replay
from harness import setup

# n0 stays at certify_mixture's default (100), so that the defaults reproduce what is reported; smaller n0 saved
# under 5% on a first look at the validation votes
GRID = {"n0": [100], "first_look": [8, 16, 32], "growth": [1.05, 1.1, 1.25], "futility": [0.1, 0.2, 0.4],
        "tolerance": [0.1, float("inf")]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--votes", required=True)
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--delta", type=float, default=0.001)
    ap.add_argument("--slack", type=float, default=0.5, help="points of certified accuracy a rule may lose")
    ap.add_argument("--radii-sets", nargs="+", default=["0.25,0.5,0.75,1.0", "0.5"])
    ap.add_argument("--top", type=int, default=8)
    args = ap.parse_args()
    print(setup(1))
    data, sigma, model = load_votes(args.votes)
    labels = torch.from_numpy(data["label"].astype(np.int64))
    n = len(labels)
    print(f"\n{model} at sigma {sigma}, {n} validation images; admissible: within {args.slack} points of the fixed "
          f"budget at every reported radius\n")

    def accuracy(top, radius, radii):
        return np.array([100 * float(((radius >= r) & (top == labels)).double().mean()) for r in radii])

    fixed = accuracy(*replay(data, sigma, num_samples=args.samples, delta=args.delta, sequential=False, n0=100)[:2],
                     RADII)
    print("fixed 10,000 + n0 100:", " / ".join(f"{v:.1f}" for v in fixed), "% at", RADII)
    for spec in args.radii_sets:
        radii = parse_radii(spec)
        want = np.array([fixed[RADII.index(r)] for r in radii])
        rows = []
        for n0, first, growth, fut, tol in itertools.product(*GRID.values()):
            if tol == float("inf") and radii is None:
                continue
            top, radius, used = replay(data, sigma, num_samples=args.samples, delta=args.delta, sequential=True,
                                       tolerance=tol, radii=radii, rule="confidence-sequence", n0=n0,
                                       first_look=first, growth=growth, futility=fut)
            acc = accuracy(top, radius, radii)
            passes = n0 + float(used.mean())
            rows.append((passes, (acc - want).min(), n0, first, growth, fut, tol, acc))
        ok = sorted(r for r in rows if r[1] >= -args.slack)
        print(f"\nreported radii {spec}: {len(ok)} of {len(rows)} combinations admissible\n")
        if not ok:    # show the least lossy ones, cheapest first among equals
            ok = sorted(rows, key=lambda r: (-round(r[1], 6), r[0]))
            print("(none admissible: the least lossy combinations follow)\n")
        print("| passes / image | saved vs 10,100 | worst loss (points) | n0 | first look | growth | futility | "
              "tolerance | certified (%) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for passes, loss, n0, first, growth, fut, tol, acc in ok[:args.top]:
            print(f"| {passes:,.0f} | {10_100 / passes:.2f}x | {-loss:+.1f} | {n0} | {first} | {growth} | {fut} | "
                  f"{tol} | {' / '.join(f'{v:.1f}' for v in acc)} |")


if __name__ == "__main__":
    main()
