"""Measure the zoo's card numbers (clean on 10,000 test images; PGD-20 and PGD-50 x 5 restarts on the
first 1,000; AutoAttack standard on the first N_AUTOATTACK, default 1,000) and write them into the cards.

Run: [N_AUTOATTACK=250] python scripts/evaluate_zoo.py [NAME ...]   (default: every shipped model)
"""

import logging
import sys

import torch

from robustmix.models import list_models
from robustmix.training import evaluate_zoo_model

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "2")))
for name in sys.argv[1:] or list_models(pretrained=True):
    metrics = evaluate_zoo_model(name, n_autoattack=int(__import__("os").environ.get("N_AUTOATTACK", "1000")),
                                 state_dir="results/zoo-eval")
    print(name, {k: round(v["accuracy"], 4) for k, v in metrics.items()}, flush=True)
