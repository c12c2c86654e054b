"""Measure the zoo's card numbers (clean on 10,000 test images; PGD-20 and PGD-50 x 5 restarts on the
first N_ATTACK, default 1,000; AutoAttack standard on the first N_AUTOATTACK, default 1,000) and write
them into the cards.

Run: [N_AUTOATTACK=250] [N_ATTACK=1000] [ZOO_OUT=results/zoo-eval] [WRITE_CARDS=1] \
         python scripts/evaluate_zoo.py [NAME ...]   (default: every shipped model)

Besides the cards, each model's metrics go to ZOO_OUT/NAME/summary.json (AutoAttack's resumable state
lives in ZOO_OUT too). WRITE_CARDS=0 leaves the cards in src/robustmix/zoo/ untouched (the small mode
of scripts/reproduce_results.sh uses it).
"""

import json
import logging
import os
import sys
from pathlib import Path

import torch

from robustmix.models import list_models
from robustmix.training import evaluate_zoo_model

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
n_attack = int(os.environ.get("N_ATTACK", "1000"))
n_autoattack = int(os.environ.get("N_AUTOATTACK", "1000"))
out_root = Path(os.environ.get("ZOO_OUT", "results/zoo-eval"))
write_cards = os.environ.get("WRITE_CARDS", "1") != "0"
for name in sys.argv[1:] or list_models(pretrained=True):
    metrics = evaluate_zoo_model(name, n_attack=n_attack, n_autoattack=n_autoattack, write=write_cards,
                                 state_dir=out_root)
    folder = out_root / name
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "summary.json.tmp"
    tmp.write_text(json.dumps({"model": name, "n_attack": n_attack, "n_autoattack": n_autoattack,
                               "wrote_card": write_cards, "metrics": metrics}, indent=1) + "\n")
    tmp.replace(folder / "summary.json")
    print(name, {k: round(v["accuracy"], 4) for k, v in metrics.items()}, flush=True)
