"""Training throughput (images/s) per recipe on this CPU, for thread counts and memory formats.

Run: python benchmarks/bench_training.py [--batches 15]
"""

import argparse
import time

import torch

from robustmix.data import load_dataset
from robustmix.models import create_model
from robustmix.training import RECIPES, TrainConfig, train


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    x, y = load_dataset("fashion-mnist", "train")
    n = args.batches * args.batch_size
    x, y = x[:n], y[:n]
    print(f"torch {torch.__version__}; {n} images per measurement (one epoch of the recipe)\n")
    print("| recipe | threads | channels_last | images/s |\n|---|---|---|---|")
    for recipe in RECIPES:
        for threads in (1, 2):
            for cl in (False, True):
                torch.set_num_threads(threads)
                torch.manual_seed(0)
                model = create_model("lipschitz-cnn" if recipe == "lipschitz" else "cnn-small")
                cfg = TrainConfig(recipe, epochs=1, batch_size=args.batch_size, channels_last=cl,
                                  optimizer="adam" if recipe == "lipschitz" else "sgd",
                                  lr=1e-3 if recipe == "lipschitz" else 0.05)
                t0 = time.perf_counter()
                train(model, x, y, cfg, progress=False)
                print(f"| {recipe} | {threads} | {cl} | {n / (time.perf_counter() - t0):.0f} |", flush=True)


if __name__ == "__main__":
    main()
