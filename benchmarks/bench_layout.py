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
for name in list_models(pretrained=True):
    row = []
    for kind in ("fwd", "bwd"):
        rates = []
        for cl in (False, True):
            model = load(name, channels_last=cl)
            if kind == "fwd":
                def step():
                    with torch.no_grad():
                        model(x)
            else:
                def step():
                    xg = x.clone().requires_grad_(True)
                    model(xg).sum().backward()
            rates.append(args.batch / timeit(step, repeats=6, warmup=1))
        row += [f"{rates[0]:,.0f}", f"{rates[1]:,.0f}", f"{rates[1] / rates[0]:.2f}"]
    print(f"| {name} | " + " | ".join(row) + " |", flush=True)
