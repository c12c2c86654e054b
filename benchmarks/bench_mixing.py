"""Overhead of the mixed classifier over its base models (CPU).

Reports, for a small CNN (28x28) and a ResNet-18-sized model (32x32):
  * time(MixedClassifier forward) / (time(g) + time(h))       goal <= 1.05
  * time(k=11 alpha sweep forward) / time(single-alpha forward) goal <= 1.10
Run: python benchmarks/bench_mixing.py [--threads 2] [--repeats 30]
"""

import argparse

import torch

from common import setup, timeit  # noqa: F401  (shared helpers)

from robustmix import MixedClassifier
from robustmix.models import create_model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for arch, shape, batch in (("cnn-small", (1, 28, 28), 256), ("preact-resnet18", (3, 32, 32), 32)):
        g, h = create_model(arch).eval(), create_model(arch).eval()
        g = g.to(memory_format=torch.channels_last)
        h = h.to(memory_format=torch.channels_last)
        x = torch.rand(batch, *shape).contiguous(memory_format=torch.channels_last)
        mixed = MixedClassifier(g, h, 0.5)
        sweep = MixedClassifier(g, h, torch.linspace(0, 1, 11))
        with torch.inference_mode():
            t_g = timeit(lambda: g(x), args.repeats)
            t_h = timeit(lambda: h(x), args.repeats)
            t_mix = timeit(lambda: mixed(x), args.repeats)
            t_sweep = timeit(lambda: sweep(x), args.repeats)
        rows.append((arch, batch, t_g * 1e3, t_h * 1e3, t_mix * 1e3, t_mix / (t_g + t_h), t_sweep / t_mix))
    print(f"torch {torch.__version__}, {args.threads} threads, channels_last, inference_mode")
    print("| model | batch | g (ms) | h (ms) | mixed (ms) | mixed / (g + h) | k=11 sweep / single |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.3f} | {r[6]:.3f} |")


if __name__ == "__main__":
    main()
