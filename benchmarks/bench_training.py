"""Training throughput per recipe against the passes each recipe makes.

Every recipe trains its own model (cnn-small, the zoo's architecture; lipschitz-cnn for the
Lipschitz recipe, as the zoo trains it) for one epoch of --batches batches of --batch-size
Fashion-MNIST training images, channels_last as `TrainConfig` defaults.  The recipes and, per
architecture, one forward, one forward + input gradient and one forward + parameter gradient on a
training batch (which price the passes) run interleaved round by round.  Reported: images/s, the
time relative to the standard recipe as the median of per-round ratios (IQR) beside its floor (the
ratio of passes counted with hooks, priced at those unit costs), and the time over the recipe's own
counted work (what the optimizer, data handling and the attack's arithmetic add).
Run: python benchmarks/bench_training.py [--threads 1] [--batches 3] [--rounds 5]
"""

import argparse

import torch

from harness import count_passes, interleave, setup, unit_costs, unit_variants, work
from robustmix.data import load_dataset
from robustmix.models import create_model
from robustmix.training import RECIPES, TrainConfig, train


def arch(recipe: str) -> str:
    return "lipschitz-cnn" if recipe == "lipschitz" else "cnn-small"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    x, y = load_dataset("fashion-mnist", "train")
    n = args.batches * args.batch_size
    x, y = x[:n], y[:n]
    print(setup(args.threads) + f", {n} images per measurement (one epoch of the recipe), batch {args.batch_size}, "
          "channels_last")
    torch.manual_seed(0)
    variants, models, passes = {}, {}, {}
    for recipe in RECIPES:
        model = create_model(arch(recipe))
        cfg = TrainConfig(recipe, epochs=1, batch_size=args.batch_size, channels_last=True,
                          optimizer="adam" if recipe == "lipschitz" else "sgd",
                          lr=1e-3 if recipe == "lipschitz" else 0.05)
        variants[recipe] = (lambda m, c: lambda: train(m, x, y, c, progress=False))(model, cfg)
        models[recipe] = model
    for name in {arch(r) for r in RECIPES}:
        unit = create_model(name).train().to(memory_format=torch.channels_last)
        variants.update(unit_variants({name: unit}, x[:args.batch_size].contiguous(
            memory_format=torch.channels_last), params=True))
    for name, fn in variants.items():  # warm-up; each recipe's call is also its counted one
        if name in models:
            passes[name] = count_passes(fn, {arch(name): models[name]})
        else:
            fn()
    r = interleave(variants, rounds=args.rounds, warmup=0, progress=True)
    costs = unit_costs(r, sorted({arch(rc) for rc in RECIPES}), rows=args.batch_size)

    print(f"\n{args.rounds} interleaved rounds; ratio = median of per-round ratios (IQR); floor from counted passes\n")
    print("| recipe | model | images/s | time / standard | floor | time / its counted work "
          "| counted passes per image |")
    print("|---|---|---|---|---|---|---|")
    for recipe in RECIPES:
        p = passes[recipe]
        per_image = ", ".join(f"{rows / n:g} {kind}" for kind, rows in
                              [("fwd", sum(p.forward.values()))] +
                              [(f"bwd({k})", v) for (_, k), v in sorted(p.backward.items())])
        print(f"| {recipe} | {arch(recipe)} | {n / r.median(recipe):,.0f} | {r.ratio(recipe, 'standard')} | "
              f"{work(p, costs) / work(passes['standard'], costs):.2f} | "
              f"{r.per_round(lambda t: t[recipe] / work(p, costs))} | {per_image} |")
    print("\nunit costs per image (ms): " + ", ".join(f"{a} {k} {c * 1e3:.3f}" for (a, k), c in costs.items()))


if __name__ == "__main__":
    main()
