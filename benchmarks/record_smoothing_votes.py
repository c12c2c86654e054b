"""Record every base prediction under noise, so that stopping rules can be compared on the same samples.

For --n Fashion-MNIST images of --split (test or val) from --start on, classifies the n0 selection samples and the
--samples estimation samples that ``certify_mixture`` draws (same seeds, streams and chunks,
one whole noise chunk per forward pass, as ``smoothing_pass`` does with batch_size 1000) and
stores the predicted class of every sample (uint8) in --out/votes-BLOCK.npz, one file per block
of 20 images (a rerun skips finished blocks).  ``bench_sequential.py`` reads them.
Run: python benchmarks/record_smoothing_votes.py --out DIR [--split test] [--start 0] [--n 500] [--samples 10000]
     [--threads 2]
"""

import argparse
import pathlib

import numpy as np
import torch

from harness import setup
from robustmix.certify.mixture import ESTIMATION_STREAM, SELECTION_STREAM
from robustmix.certify.smoothing import chunk_rows, noise_chunk
from robustmix.data import load_dataset
from robustmix.models import load

BLOCK = 20


@torch.no_grad()
def predictions(h, x, index, stream, num, sigma, seed=0):
    m = chunk_rows(x.shape)
    out = []
    for chunk in range(-(-num // m)):
        noisy = noise_chunk(x.shape, seed=seed, index=index, stream=stream, chunk=chunk, dtype=x.dtype)
        noisy.mul_(sigma).add_(x)
        out.append(h(noisy).argmax(1))
    return torch.cat(out)[:num].numpy().astype(np.uint8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--split", default="test", choices=("test", "val"))
    ap.add_argument("--start", type=int, default=0, help="first image (index within the split)")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--n0", type=int, default=100)
    ap.add_argument("--sigma", type=float, default=0.5)
    ap.add_argument("--model", default="fmnist-noise-0.50-cnn")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args()
    print(setup(args.threads))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x, y = load_dataset("fashion-mnist", args.split, root=args.data_root, allow_download=False)
    h = load(args.model)
    for start in range(args.start, args.start + args.n, BLOCK):
        path = out / f"votes-{start:05d}.npz"
        if path.exists():
            continue
        idx = range(start, min(start + BLOCK, args.start + args.n))
        sel = np.stack([predictions(h, x[i], i, SELECTION_STREAM, args.n0, args.sigma) for i in idx])
        est = np.stack([predictions(h, x[i], i, ESTIMATION_STREAM, args.samples, args.sigma) for i in idx])
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, index=np.array(list(idx)), label=y[list(idx)].numpy(), selection=sel, estimation=est,
                 sigma=args.sigma, model=args.model, split=args.split)
        tmp.rename(path)
        print(f"images {start}-{idx[-1]} done", flush=True)


if __name__ == "__main__":
    main()
