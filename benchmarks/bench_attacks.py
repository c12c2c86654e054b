"""Attack and sweep speed, side by side on the same models in one process.

  * PGD step time / one forward+backward of the attacked model (the physical floor), goal <= 1.05
  * the early-stop option (stop attacking misclassified points) on an accuracy-only run
  * our PGD iteration versus pyautoattack's APGD-CE iteration on the same model and batch
  * the sweep engine's total time versus the naive loop over alphas
Run: python benchmarks/bench_attacks.py [--threads 2] [--n 200]
"""

import argparse
import time

import torch
import torch.nn.functional as F

from common import setup, timeit
from robustmix import MixedClassifier
from robustmix.attacks import PGD
from robustmix.data import load_dataset
from robustmix.experiments import SweepConfig, naive_sweep, run_sweep
from robustmix.models import load


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--std", default="fmnist-std-cnn")
    ap.add_argument("--rob", default="fmnist-at-linf-cnn")
    args = ap.parse_args()
    print(setup(args.threads))
    x, y = load_dataset("fashion-mnist", "test")
    x, y = x[:args.n], y[:args.n]
    g, h = load(args.std), load(args.rob)
    mixed = MixedClassifier(g, h, 0.6)
    rows = []
    for name, model in (("h", h), ("mixture", mixed)):
        def fwd_bwd():
            xa = x.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(F.cross_entropy(model(xa), y, reduction="none").sum(), xa)
            return grad

        t_floor = timeit(fwd_bwd, 10)
        steps = 10
        t_pgd = timeit(lambda: PGD(model, 0.1, "inf", steps=steps)(x, y), 4) / steps
        t_early = timeit(lambda: PGD(model, 0.1, "inf", steps=steps, early_stop=True)(x, y), 4) / steps
        rows.append((name, t_floor * 1e3, t_pgd * 1e3, t_pgd / t_floor, t_early / t_floor))
    print("\n| target | fwd+bwd (ms) | PGD step (ms) | PGD step / fwd+bwd | early-stop step / fwd+bwd |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.1f} | {r[2]:.1f} | {r[3]:.3f} | {r[4]:.3f} |")

    from pyautoattack.autopgd_base import APGDAttack

    iters = 20
    apgd = APGDAttack(mixed, n_restarts=1, n_iter=iters, eps=0.1, norm="Linf", loss="ce", device=x.device,
                      verbose=False, seed=0)
    t_apgd = timeit(lambda: apgd.perturb(x, y), 3, 1) / iters
    t_ours = timeit(lambda: PGD(mixed, 0.1, "inf", steps=iters)(x, y), 3, 1) / iters
    print(f"\nper-iteration on the mixture, n={args.n}: robustmix PGD {t_ours * 1e3:.1f} ms, "
          f"pyautoattack APGD-CE {t_apgd * 1e3:.1f} ms, ratio ours/APGD = {t_ours / t_apgd:.3f}")

    cfg = SweepConfig(alphas=[round(0.1 * i, 1) for i in range(11)], eps=0.1, steps=10, batch_size=args.n)
    n_sweep = min(args.n, 100)
    t0 = time.perf_counter()
    fast = run_sweep(g, h, x[:n_sweep], y[:n_sweep], cfg, progress=False)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = naive_sweep(g, h, x[:n_sweep], y[:n_sweep], cfg)
    t_slow = time.perf_counter() - t0
    same = fast["accuracy"] == slow["accuracy"]
    print(f"\nsweep, 11 alphas, PGD-10, n={n_sweep}: engine {t_fast:.1f} s, naive loop {t_slow:.1f} s, "
          f"speed-up {t_slow / t_fast:.2f}x, identical results: {same}")


if __name__ == "__main__":
    main()
