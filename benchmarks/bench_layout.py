"""Forward and forward+backward throughput of every zoo model as `robustmix.models.load` returns it
(channels_last) versus the default NCHW layout. Run: python bench_layout.py [--threads 1 --batch 500]"""

import argparse

import torch

from common import setup, timeit
from robustmix.models import list_models, load

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--batch", type=int, default=500)
args = parser.parse_args()
print(setup(args.threads) + f", batch {args.batch}")
print("| model | NCHW fwd img/s | channels_last fwd img/s | ratio | NCHW fwd+bwd | channels_last fwd+bwd | ratio |")
print("|---|---|---|---|---|---|---|")
x = torch.rand(args.batch, 1, 28, 28)


def images_per_s(model, backward: bool) -> float:
    def step():
        if backward:
            model(x.clone().requires_grad_(True)).sum().backward()
        else:
            with torch.no_grad():
                model(x)
    return args.batch / timeit(step, repeats=6, warmup=1)


for name in list_models(pretrained=True):
    row = []
    for backward in (False, True):
        nchw, nhwc = (images_per_s(load(name, channels_last=cl), backward) for cl in (False, True))
        row += [f"{nchw:,.0f}", f"{nhwc:,.0f}", f"{nhwc / nchw:.2f}"]
    print(f"| {name} | " + " | ".join(row) + " |", flush=True)
