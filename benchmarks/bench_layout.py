"""Forward and forward+backward throughput of every zoo model as `robustmix.models.load` returns it
(channels_last) versus the NCHW layout (`load(name, channels_last=False)`).

Per model, the four variants (NCHW / channels_last x forward / forward+input-gradient) run
interleaved round by round on the first --batch test images; the speed-up NCHW time /
channels_last time is the median of per-round ratios (IQR).  Its floor is the ratio of the passes
counted with hooks on the two models (the same work, 1.00): the whole speed-up is the layout's.
Run: python benchmarks/bench_layout.py [--threads 1] [--batch 256] [--rounds 7]
"""

import argparse

from harness import Passes, interleave, setup, unit_variants
from robustmix.data import load_dataset
from robustmix.models import list_models, load


def rows(p: Passes) -> int:
    return sum(p.forward.values()) + sum(p.backward.values())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    print(setup(args.threads) + f", batch {args.batch}, {args.rounds} interleaved rounds per model; "
          "ratio = median of per-round ratios (IQR)\n")
    x, _ = load_dataset("fashion-mnist", "test")
    x = x[:args.batch]
    print("| model | NCHW fwd img/s | channels_last fwd img/s | speed-up | floor | NCHW fwd+bwd img/s "
          "| channels_last fwd+bwd img/s | speed-up | floor |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in list_models(pretrained=True):
        models = {"nchw": load(name, channels_last=False), "cl": load(name)}
        r = interleave(unit_variants(models, x), rounds=args.rounds, warmup=1, count=models)
        cells = []
        for kind in ("fwd", "fwd+bwd"):
            a, b = f"nchw {kind}", f"cl {kind}"
            fl = rows(r.passes[a]) / rows(r.passes[b])
            cells += [f"{len(x) / r.median(a):,.0f}", f"{len(x) / r.median(b):,.0f}", str(r.ratio(a, b)), f"{fl:.2f}"]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
