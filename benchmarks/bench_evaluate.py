"""Cost of the worst-case ensemble relative to AutoAttack standard alone, on the zoo's alpha = 0.7 mixture.

    python benchmarks/bench_evaluate.py [-n 20] [--threads 1]

Both run on the same N Fashion-MNIST test images (the first N), l_inf eps 0.1,
batch size N.  Prints the two times, their ratio and both robust accuracies
(the issue's budget: ratio <= 2).
"""

import argparse
import time

from common import setup
from robustmix import MixedClassifier, ThreatModel
from robustmix.attacks import AutoAttackSuite, Ensemble, evaluate, run_autoattack
from robustmix.data import load_dataset
from robustmix.models import load


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="number of test images")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eps", type=float, default=0.1)
    args = parser.parse_args()
    print(setup(args.threads))
    model = MixedClassifier(load("fmnist-std-cnn"), load("fmnist-at-linf-cnn"), 0.7).eval()
    x, y = load_dataset("fashion-mnist", "test")
    x, y = x[:args.n], y[:args.n]

    t0 = time.perf_counter()
    threat = ThreatModel("inf", args.eps)
    aa = run_autoattack(model, x, y, threat, suite=AutoAttackSuite(seed=0), batch_size=args.n)
    t_aa = time.perf_counter() - t0

    t0 = time.perf_counter()
    res = evaluate(model, x, y, threat=threat, ensemble=Ensemble(seed=0, batch_size=args.n))
    t_ens = time.perf_counter() - t0

    print(f"n = {args.n}, eps = {args.eps} (l_inf), alpha = 0.7")
    print(f"AutoAttack standard: {t_aa:7.1f} s, robust accuracy {aa.robust_accuracy:.3f}")
    lo, hi = res.accuracy_ci
    print(f"ensemble:            {t_ens:7.1f} s, robust accuracy {res.accuracy:.3f} (95% CI {lo:.3f}-{hi:.3f})")
    print(f"ratio ensemble / AutoAttack: {t_ens / t_aa:.2f}")
    for stat in res.per_attack:
        print(f"  {stat.name:18s} ran on {stat.ran_on:4d}, broke {stat.broke:4d}, {stat.seconds:6.1f} s")


if __name__ == "__main__":
    main()
