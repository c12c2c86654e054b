"""Certification throughput, side by side on the same base model in one process.

  * noise samples per second: robustmix SmoothedClassifier versus a straightforward per-image loop in
    the style of Cohen et al.'s reference implementation (same base model, same batch size)
  * the cost of certifying a whole alpha grid versus a single alpha (sampling is shared)
Run: python benchmarks/bench_certify.py [--threads 2] [--n 20] [--samples 2000]
"""

import argparse
import time

import torch

from common import setup
from robustmix.certify import SmoothedClassifier, smoothing_radius_from_bounds
from robustmix.data import load_dataset
from robustmix.models import load


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()
    print(setup(args.threads))
    x, y = load_dataset("fashion-mnist", "test")
    x = x[:args.n]
    base = load("fmnist-noise-0.50-cnn")
    smoother = SmoothedClassifier(base, 0.5, num_samples=args.samples, batch_size=args.batch)
    total = args.n * args.samples
    reference_counts(base, x[:2], 0.5, args.batch, args.batch)  # warm-up
    t0 = time.perf_counter()
    reference_counts(base, x, 0.5, args.samples, args.batch)
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    est = smoother.sample(x)
    t_ours = time.perf_counter() - t0
    print(f"\n| implementation | noise samples/s | relative |\n|---|---|---|\n"
          f"| Cohen-style per-image loop | {total / t_ref:,.0f} | 1.00 |\n"
          f"| robustmix SmoothedClassifier (soft + hard, seeded per input) | {total / t_ours:,.0f} | "
          f"{t_ref / t_ours:.2f} |")
    lo, hi = est.bounds(0.001)
    pred = est.mean.argmax(1)
    top = lo.gather(1, pred[:, None])[:, 0]
    grid = torch.linspace(0, 1, 101, dtype=torch.float64)
    t0 = time.perf_counter()
    for _ in range(100):
        smoothing_radius_from_bounds(top, hi, pred, 0.5, 0.8)
    t_one = (time.perf_counter() - t0) / 100
    t0 = time.perf_counter()
    for _ in range(100):
        smoothing_radius_from_bounds(top, hi, pred, 0.5, grid)
    t_grid = (time.perf_counter() - t0) / 100
    print(f"\nwhole certification (sampling + radii): 1 alpha {t_ours + t_one:.3f} s, 101 alphas "
          f"{t_ours + t_grid:.3f} s, ratio {(t_ours + t_grid) / (t_ours + t_one):.4f}")


if __name__ == "__main__":
    main()
