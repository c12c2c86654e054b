"""Overhead of the mixed classifier over its base models (forward, CPU).

Variants, interleaved round by round: g alone, h alone, the mixture at one alpha, the
mixture at k = 11 alphas.  Reported as medians of per-round ratios with their IQR:
  * mixture / (g + h)             goal <= 1.05; floor from counted passes (1 g + 1 h forward)
  * k=11 mixture / 1-alpha mixture goal <= 1.10; floor from counted passes
Models: the zoo pair fmnist-std-cnn / fmnist-at-linf-cnn as `load` returns them (channels_last),
and two randomly initialised preact-resnet18 (no zoo model of that size; the overhead does not
depend on the weights).
Run: python benchmarks/bench_mixing.py [--threads 1] [--rounds 11]
"""

import argparse

import torch

from harness import Passes, floor, interleave, setup
from robustmix import MixedClassifier
from robustmix.data import load_dataset
from robustmix.models import create_model, load


def pairs(batch_cnn, batch_resnet):
    x, _ = load_dataset("fashion-mnist", "test")
    yield "fmnist-std-cnn + fmnist-at-linf-cnn (zoo)", load("fmnist-std-cnn"), load("fmnist-at-linf-cnn"), x[:batch_cnn]
    torch.manual_seed(0)
    g, h = (create_model("preact-resnet18").eval().to(memory_format=torch.channels_last) for _ in range(2))
    yield "preact-resnet18 pair (random init)", g, h, torch.rand(batch_resnet, 3, 32, 32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--batch-cnn", type=int, default=256)
    ap.add_argument("--batch-resnet", type=int, default=32)
    args = ap.parse_args()
    print(setup(args.threads) + ", channels_last, no_grad")
    rows = []
    for label, g, h, x in pairs(args.batch_cnn, args.batch_resnet):
        mixed = MixedClassifier(g, h, 0.5)
        sweep = MixedClassifier(g, h, torch.linspace(0, 1, 11))

        def forward(model):
            def run():
                with torch.no_grad():
                    model(x)
            return run

        variants = {"g": forward(g), "h": forward(h), "mix": forward(mixed), "sweep": forward(sweep)}
        r = interleave(variants, rounds=args.rounds, warmup=2, count={"g": g, "h": h})
        costs = {("g", "fwd"): r.median("g") / len(x), ("h", "fwd"): r.median("h") / len(x)}
        p = r.passes
        rows.append((label, len(x), r.median("g") * 1e3, r.median("h") * 1e3, r.median("mix") * 1e3,
                     r.ratio("mix", ["g", "h"]), floor(p["mix"], p["g"] + p["h"], costs),
                     r.ratio("sweep", "mix"), floor(p["sweep"], p["mix"], costs), p["mix"].describe()))
    print(f"\n{args.rounds} interleaved rounds; ratio = median of per-round ratios (IQR)\n")
    print("| models | batch | g (ms) | h (ms) | mixture (ms) | mixture / (g + h) | floor | k=11 / 1 alpha | floor |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.1f} | {r[3]:.1f} | {r[4]:.1f} | {r[5].format(3)} | {r[6]:.3f} | "
              f"{r[7].format(3)} | {r[8]:.3f} |")
    print("\ncounted per mixture call: " + " / ".join(r[9] for r in rows))


if __name__ == "__main__":
    main()
