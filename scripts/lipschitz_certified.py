"""Certified l2 accuracy of the shipped fmnist-lipschitz h and of its mixtures with fmnist-std-cnn.

Writes results/lipschitz-certified/summary.json and its report (report.html, figures/lipschitz_certified.png):
Theorem 1 (probability Lipschitz bound) against the logit-ball certificate
(robustmix.certify.logit_ball_radius with pairwise logit bounds) on the first
N test images.  Run: python scripts/lipschitz_certified.py [--n 1000] [--h fmnist-lipschitz] [--out DIR]
(--h: another Lipschitz network, a zoo name or a .safetensors checkpoint with its .json card)
"""

import argparse
import json
import logging
import math
import sys
from pathlib import Path

import torch

from robustmix.certify import (certified_accuracy, lipschitz_radius, logit_ball_radius, pairwise_logit_lipschitz,
                               probability_lipschitz)
from robustmix.data import load_dataset
from robustmix.mixing.functional import mix_log_probs
from robustmix.models import card, load
from robustmix.reports import write_report
from robustmix.results import LipschitzCertifiedSummary

ALPHAS = [0.6, 0.7, 0.8, 0.9, 1.0]
REPORT_RADII = [0.1, 0.25, 0.5, 0.75, 1.0]
TEMPERATURE = 10.0  # the lipschitz recipe's loss temperature


def main(n: int, out: Path, h_name: str = "fmnist-lipschitz") -> dict:
    x, y = load_dataset("fashion-mnist", "test", allow_download=False)
    x, y = x[:n], y[:n]
    h, g = load(h_name).double(), load("fmnist-std-cnn")
    with torch.no_grad():
        zh, zg = h(x.double()), g(x).double()
    lip = card(h_name).lipschitz_l2
    pairs = pairwise_logit_lipschitz(h, (1, 28, 28))
    alphas = torch.tensor(ALPHAS, dtype=torch.float64)
    radii = {
        "Theorem 1": lipschitz_radius(zh.softmax(1), probability_lipschitz(h, 2, (1, 28, 28)), alphas, labels=y),
        "logit ball (vector bound)": logit_ball_radius(zh, lip, alphas, labels=y),
        "logit ball (pairwise bounds)": logit_ball_radius(zh, pairs, alphas, labels=y),
        # the mixture may use h at a temperature: T * z is T * L-Lipschitz (JSON only, not drawn)
        f"logit ball, h at temperature {TEMPERATURE:g}": logit_ball_radius(TEMPERATURE * zh, TEMPERATURE * pairs,
                                                                            alphas, labels=y),
    }
    top2 = zh.topk(2, 1)
    margin_r = (top2.values[:, 0] - top2.values[:, 1]) / (math.sqrt(2) * lip)
    h_correct = zh.argmax(1) == y
    clean = [(mix_log_probs(zg, zh, a).argmax(1) == y).double().mean().item() for a in ALPHAS]
    clean_tempered = [(mix_log_probs(zg, TEMPERATURE * zh, a).argmax(1) == y).double().mean().item() for a in ALPHAS]
    grid = torch.linspace(0, 1.5, 151, dtype=torch.float64)
    summary = {"n": n, "split": f"test[:{n}]", "h": h_name, "g": "fmnist-std-cnn",
               "lipschitz_l2": lip, "pairwise_lipschitz_max": float(pairs.max()), "alphas": ALPHAS,
               "clean_accuracy": dict(zip(map(str, ALPHAS), clean)),
               "clean_accuracy_h_at_temperature": dict(zip(map(str, ALPHAS), clean_tempered)),
               "h_plain_margin": {str(r): float((h_correct & (margin_r >= r)).double().mean()) for r in REPORT_RADII},
               "certified": {}, "curves": {}}
    for method, r in radii.items():
        acc = certified_accuracy(r, h_correct.expand_as(r), REPORT_RADII)
        summary["certified"][method] = {str(a): dict(zip(map(str, REPORT_RADII), acc[i].tolist()))
                                        for i, a in enumerate(ALPHAS)}
        if method in ("Theorem 1", "logit ball (pairwise bounds)"):
            curve = certified_accuracy(r, h_correct.expand_as(r), grid)
            summary["curves"][method] = {str(a): {"grid": grid.tolist(), "certified": curve[i].tolist(),
                                                  "clean": clean[i]} for i, a in enumerate(ALPHAS)}
    out.mkdir(parents=True, exist_ok=True)
    typed = LipschitzCertifiedSummary(**summary, command=" ".join(["python3", *sys.argv]))
    typed.save(out / "summary.json")
    write_report(typed, out)   # report.html / report.md with the certified curves (figures/)
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--out", type=Path, default=Path("results/lipschitz-certified"))
    p.add_argument("--h", default="fmnist-lipschitz", help="the Lipschitz network (zoo name or checkpoint)")
    args = p.parse_args()
    s = main(args.n, args.out, args.h)
    print(json.dumps({k: v for k, v in s.items() if k != "curves"}))
