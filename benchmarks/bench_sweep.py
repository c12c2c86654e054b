"""The alpha-sweep engine (robustmix.experiments.run_sweep) against the naive per-alpha loop (naive_sweep).

g = fmnist-std-cnn, h = fmnist-at-linf-cnn, k = 11 alphas (0, 0.1, ..., 1), PGD-10 l_inf eps 0.1
(STD, ROB and MIX attacks), the first --n test images in one batch.  Engine and naive loop run
interleaved round by round with ten forwards and ten forward+backwards of g and of h (which price
the passes); the speed-up naive / engine is the median of per-round ratios (IQR), beside its floor:
the ratio of the two runs' passes, counted with hooks on g and h and priced at those unit costs.

Per alpha the naive loop attacks g, h and the mixture and classifies clean, STD, ROB and MIX
inputs with the mixture; the engine attacks g and h once, classifies every alpha from one pass
of each model per input set, and only the MIX attack (through both models) runs per alpha, so it
cannot be shared: with a PGD step about 3 forwards, k = 11 and 10 steps that bounds the speed-up
near 1.9x.
Run: python benchmarks/bench_sweep.py [--threads 1] [--n 20] [--rounds 3]
"""

import argparse

from harness import floor, interleave, setup, unit_costs, unit_variants, work
from robustmix import ThreatModel
from robustmix.data import load_dataset
from robustmix.experiments import Records, SweepConfig, naive_sweep, run_sweep
from robustmix.models import load


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(setup(args.threads) + f", channels_last, {args.n} images")
    x, y = load_dataset("fashion-mnist", "test")
    x, y = x[:args.n], y[:args.n]
    g, h = load("fmnist-std-cnn"), load("fmnist-at-linf-cnn")
    cfg = SweepConfig(alphas=[round(0.1 * i, 1) for i in range(11)], threat=ThreatModel("inf", 0.1), steps=args.steps,
                      batch_size=args.n)
    results = {}

    def engine():
        results["engine"] = run_sweep(g, h, x, y, cfg, records=Records(progress=False))

    def naive():
        results["naive"] = naive_sweep(g, h, x, y, cfg)

    variants = {"engine": engine, "naive": naive, **unit_variants({"g": g, "h": h}, x, repeat=10)}
    r = interleave(variants, rounds=args.rounds, warmup=1, count={"g": g, "h": h}, progress=True)
    costs = unit_costs(r, ["g", "h"], rows=len(x) * 10)
    p = r.passes
    same = results["engine"].accuracy == results["naive"].accuracy
    speedup, fl = r.ratio("naive", "engine"), floor(p["naive"], p["engine"], costs)
    print(f"\n{args.rounds} interleaved rounds; ratio = median of per-round ratios (IQR); floor from counted passes\n")
    print("| k | steps | images | engine (s) | naive loop (s) | speed-up naive / engine | floor | "
          "engine time / its counted work | identical results |")
    print("|---|---|---|---|---|---|---|---|---|")
    efficiency = r.per_round(lambda t: t["engine"] / work(p["engine"], costs))
    print(f"| {len(cfg.alphas)} | {cfg.steps} | {len(x)} | {r.median('engine'):.1f} | {r.median('naive'):.1f} | "
          f"{speedup} | {fl:.2f} | {efficiency} | {same} |")
    print(f"\ncounted, engine: {p['engine'].describe()}\ncounted, naive loop: {p['naive'].describe()}")
    print("unit costs per image (ms): " + ", ".join(f"{n} {k} {c * 1e3:.3f}" for (n, k), c in costs.items()))


if __name__ == "__main__":
    main()
