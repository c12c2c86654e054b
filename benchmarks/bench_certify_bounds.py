"""Sound Theorem 2 certificates on the zoo: bounds, sequential sampling, sampling throughput.

h = fmnist-noise-0.50-cnn smoothed at sigma 0.5, g = fmnist-std-cnn, the first --n test images.
Prints:
  * mean sound radius at alpha = 1 of certify_mixture (default estimator) versus Cohen et al.'s
    CERTIFY (SmoothedClassifier.cohen_certify) with the same samples and delta;
  * at alpha = 0.8 and 1: every estimator (Clopper-Pearson on votes, empirical Bernstein and betting
    on soft scores) versus the old union-bound modes (Hoeffding on soft scores, Clopper-Pearson on
    every class), all from the same selection and estimation samples;
  * sequential sampling versus a fixed budget: forward passes and certified accuracy at radius 0.5;
  * noise samples per second of robustmix's batched sampler versus a Cohen-style per-image loop,
    and the pure forward-pass rate of the same batches.
Run: python benchmarks/bench_certify_bounds.py [--n 100] [--samples 2000] [--seq-samples 10000]
     [--device cpu] [--threads 1] [--data-root DIR]
"""

import argparse
import time

import numpy as np
import torch

from common import setup
from robustmix import Smoothing
from robustmix.certify import Sequential, SmoothedClassifier, certify_mixture, smoothing_radius_from_bounds
from robustmix.certify.mixture import ESTIMATION_STREAM, SELECTION_STREAM, Estimator, _lower, top_bound_radius
from robustmix.certify.smoothing import NoiseSamples, SmoothingEstimate, smoothing_pass
from robustmix.data import load_dataset
from robustmix.models import load

SIGMA = 0.5


def cohen_style_counts(base, x, sigma, num, batch):
    """Per-image loop as in Cohen et al.'s core.py: noise with randn_like on the device, classify, count."""
    out = []
    with torch.no_grad():
        for xi in x:
            counts = torch.zeros(10, dtype=torch.long, device=x.device)
            remaining = num
            while remaining > 0:
                b = min(batch, remaining)
                batch_x = xi.repeat(b, 1, 1, 1)
                counts += torch.bincount(base(batch_x + torch.randn_like(batch_x) * sigma).argmax(1), minlength=10)
                remaining -= b
            out.append(counts.cpu())
    return torch.stack(out)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def compare_bounds(g, h, x, y, args):
    n, N, idx = len(x), args.samples, list(range(len(x)))
    a = torch.tensor([0.8, 1.0], dtype=torch.float64)
    t0 = time.perf_counter()
    cohen_pred, cohen_r = SmoothedClassifier(h, SIGMA, batch_size=args.batch).cohen_certify(x, n0=100, n=N,
                                                                                            delta=args.delta)
    t_cohen = time.perf_counter() - t0
    t0 = time.perf_counter()
    cert = certify_mixture(g, h, x, alphas=a, smoothing=Smoothing(sigma=SIGMA, num_samples=N, delta=args.delta,
                                                                  batch_size=args.batch))
    t_ours = time.perf_counter() - t0
    ok = (cert.prediction[1] == cohen_pred) & (cert.radius[1] - cohen_r).abs().le(1e-12)
    print(f"\n## alpha = 1: certify_mixture (default {cert.estimator}) versus Cohen CERTIFY "
          f"({n} images, n0 = 100, n = {N}, delta = {args.delta})\n")
    print(f"Cohen CERTIFY mean radius {cohen_r.mean():.4f} ({t_cohen:.1f} s); certify_mixture {cert.radius[1].mean():.4f} "
          f"({t_ours:.1f} s); ratio {cert.radius[1].mean() / cohen_r.mean():.4f}; identical on {int(ok.sum())}/{n}")

    # one selection and one estimation pass shared by every estimator below
    prob_sel, votes_sel, _ = smoothing_pass(h, x, SIGMA, NoiseSamples(seed=0, indices=idx, stream=SELECTION_STREAM,
                                                                      start=0, stop=100), batch_size=args.batch)
    soft_top = prob_sel.argmax(1)
    prob_sum, votes, scores = smoothing_pass(h, x, SIGMA, NoiseSamples(seed=0, indices=idx, stream=ESTIMATION_STREAM,
                                                                       start=0, stop=N),
                                             batch_size=args.batch, track=soft_top)
    hard_top = votes_sel.argmax(1)
    rows = {}
    for est in Estimator:
        top = hard_top if est.smoothing == "hard" else soft_top
        p = _lower(est, votes.gather(1, top[:, None])[:, 0].numpy(), scores.numpy(), N, args.delta)
        rows[f"{est.value} ({est.smoothing}, one bound)"] = (top_bound_radius(p, top, 10, SIGMA, a), top)
    old = SmoothingEstimate(prob_sum / N, votes, N)
    for mode in ("soft", "hard"):
        lo, hi = old.bounds(args.delta, mode)
        pred = old.point(mode).argmax(1)
        r = smoothing_radius_from_bounds(lo.gather(1, pred[:, None])[:, 0], hi, pred, SIGMA, a)
        rows[f"old {'Hoeffding' if mode == 'soft' else 'Clopper-Pearson'} ({mode}, union over 2c)"] = (r, pred)
    ref = rows["clopper-pearson (hard, one bound)"][0]
    print(f"\n## every estimator on the same samples ({n} images, n = {N}, delta = {args.delta})\n")
    print("| bound | mean radius a=0.8 | vs CP | mean radius a=1 | vs CP | cert. acc. r=0.5, a=1 | cert. acc. r=0.25, a=0.8 |")
    print("|---|---|---|---|---|---|---|")
    for name, (r, pred) in rows.items():
        correct = pred == y
        acc1 = ((r[1] >= 0.5) & correct).double().mean()
        acc08 = ((r[0] >= 0.25) & correct).double().mean()
        print(f"| {name} | {r[0].mean():.4f} | {r[0].mean() / ref[0].mean():.3f} | {r[1].mean():.4f} | "
              f"{r[1].mean() / ref[1].mean():.3f} | {acc1:.3f} | {acc08:.3f} |")
    p_soft = (prob_sum / N).gather(1, soft_top[:, None])[:, 0]
    p_hard = (votes / N).gather(1, hard_top[:, None])[:, 0]
    print(f"\nmean top-class estimate: hard vote frequency {p_hard.mean():.4f}, soft mean score {p_soft.mean():.4f}; "
          f"mean sample std of the soft score {scores.std(1).mean():.4f}")


def compare_sequential(g, h, x, y, args):
    N, a = args.seq_samples, [1.0]
    smoothing = Smoothing(sigma=SIGMA, num_samples=N, delta=args.delta, batch_size=args.batch)
    fixed = certify_mixture(g, h, x, alphas=a, smoothing=smoothing)
    passes_fixed = len(x) * (100 + N)
    print(f"\n## sequential sampling versus a fixed {N:,} ({len(x)} images, alpha = 1, delta = {args.delta})\n")
    print("| run | forward passes | per image | ratio | cert. acc. r=0.5 | cert. acc. r=1.0 | mean radius |")
    print("|---|---|---|---|---|---|---|")

    def row(name, cert, passes):
        correct = cert.prediction[0] == y
        r = cert.radius[0]
        print(f"| {name} | {passes:,} | {passes / len(x):,.0f} | {passes_fixed / passes:.2f}x | "
              f"{((r >= 0.5) & correct).double().mean():.3f} | {((r >= 1.0) & correct).double().mean():.3f} | "
              f"{r.mean():.4f} |")

    row(f"fixed {N:,}", fixed, passes_fixed)
    for tol in args.tolerances:
        t0 = time.perf_counter()
        seq = certify_mixture(g, h, x, alphas=a, smoothing=smoothing, sequential=Sequential(tolerance=tol))
        row(f"sequential, tolerance {tol} ({time.perf_counter() - t0:.1f} s)", seq,
            int(len(x) * 100 + seq.samples_used.sum()))


def throughput(h, x, args):
    device, num = x.device, args.throughput_samples
    total = len(x) * num
    cohen_style_counts(h, x[:2], SIGMA, args.batch, args.batch)
    sync(device)
    t0 = time.perf_counter()
    cohen_style_counts(h, x, SIGMA, num, args.batch)
    sync(device)
    t_ref = time.perf_counter() - t0
    idx = list(range(len(x)))
    smoothing_pass(h, x[:2], SIGMA, NoiseSamples(seed=0, indices=idx[:2], stream=0, start=0, stop=args.batch),
                   batch_size=args.batch)
    t0 = time.perf_counter()
    smoothing_pass(h, x, SIGMA, NoiseSamples(seed=0, indices=idx, stream=0, start=0, stop=num), batch_size=args.batch)
    sync(device)
    t_ours = time.perf_counter() - t0
    batch = x[:1].repeat(args.batch, 1, 1, 1) + SIGMA * torch.randn((args.batch, *x.shape[1:]), device=device)
    with torch.no_grad():
        h(batch)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(total // args.batch):
            h(batch)
        sync(device)
    t_fwd = time.perf_counter() - t0
    print(f"\n## sampling throughput ({len(x)} images x {num:,} samples, batch {args.batch}, {device})\n")
    print("| implementation | noise samples/s | relative to Cohen-style |\n|---|---|---|")
    print(f"| Cohen-style per-image loop (randn_like on the device) | {total / t_ref:,.0f} | 1.00 |")
    print(f"| robustmix smoothing_pass (seeded per input and chunk, inputs batched) | {total / t_ours:,.0f} | "
          f"{t_ref / t_ours:.2f} |")
    print(f"| forward passes alone (same batch size, no noise, no statistics) | {total / t_fwd:,.0f} | "
          f"{t_ref / t_fwd:.2f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--seq-samples", type=int, default=10_000)
    ap.add_argument("--seq-n", type=int, default=None, help="images for the sequential comparison (default --n)")
    ap.add_argument("--tolerances", type=float, nargs="*", default=[0.1, 0.25, 0.5])
    ap.add_argument("--throughput-samples", type=int, default=1000)
    ap.add_argument("--delta", type=float, default=0.001)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--skip", nargs="*", default=[], choices=["bounds", "sequential", "throughput"])
    args = ap.parse_args()
    print(setup(args.threads))
    device = torch.device(args.device)
    x, y = load_dataset("fashion-mnist", "test", root=args.data_root, allow_download=False)
    x, y = x[:args.n].to(device), y[:args.n]
    h, g = load("fmnist-noise-0.50-cnn").to(device), load("fmnist-std-cnn").to(device)
    if "bounds" not in args.skip:
        compare_bounds(g, h, x, y, args)
    if "sequential" not in args.skip:
        m = args.seq_n or args.n
        compare_sequential(g, h, x[:m], y[:m], args)
    if "throughput" not in args.skip:
        throughput(h, x[:min(len(x), 20)], args)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
