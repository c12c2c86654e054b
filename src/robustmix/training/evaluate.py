"""Measure a zoo model's card numbers with the library's own evaluation code.

Clean accuracy on the full test set; PGD-20 and PGD-50 with restarts (aimed at
the model) and AutoAttack (standard version) on a fixed test subset (the first
``n_attack`` images).  Per-example AutoAttack outcomes are kept so a later run
on a part of the subset can be checked against them.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path


from ..attacks.autoattack import AutoAttackSuite, run_autoattack
from ..attacks.pgd import PGDBudget
from ..data import load_dataset
from ..groups import ThreatModel
from ..models import load
from .._io import atomic_write_bytes
from ..models.checkpoint import card_path
from ..models.registry import weights_path
from ..zoo_table import ZOO, threat_tag
from .recipes import accuracy, robust_accuracy

logger = logging.getLogger(__name__)

# the threat model each zoo model is evaluated under (robust ones at their training budget)
THREATS = {name: list(e.threats) for name, e in ZOO.items() if e.threats}


def evaluate_zoo_model(name: str, n_attack: int = 1000, n_autoattack: int = 1000, autoattack: bool = True,
                       write: bool = True, state_dir=None) -> dict:
    """Recompute and (optionally) record ``name``'s metrics in its card JSON.

    PGD runs on the first ``n_attack`` test images, AutoAttack (standard) on the first
    ``n_autoattack``; ``state_dir`` keeps AutoAttack's state so an interrupted run resumes.
    """
    model = load(name)
    x, y = load_dataset("fashion-mnist", "test")
    metrics = {"clean": {"accuracy": accuracy(model, x, y), "n": len(x), "split": "test"}}
    xs, ys = x[:n_attack], y[:n_attack]
    for norm, eps in THREATS.get(name, []):
        tag = threat_tag(norm, eps)
        threat = ThreatModel(norm, eps)
        t0 = time.perf_counter()
        metrics[f"pgd20-{tag}"] = {"accuracy": robust_accuracy(model, xs, ys, threat, pgd=PGDBudget(steps=20)),
                                   "eps": eps, "norm": norm, "n": n_attack, "split": f"test[:{n_attack}]",
                                   "attack": "PGD-20, 1 random start, step 2.5*eps/20"}
        pgd50x5 = robust_accuracy(model, xs, ys, threat, pgd=PGDBudget(steps=50, restarts=5))
        metrics[f"pgd50x5-{tag}"] = {"accuracy": pgd50x5,
                                     "eps": eps, "norm": norm, "n": n_attack, "split": f"test[:{n_attack}]",
                                     "attack": "PGD-50, 5 random restarts, step 2.5*eps/50"}
        logger.info("%s %s PGD done in %.0f s", name, tag, time.perf_counter() - t0)
        if autoattack and n_autoattack > 0:
            t0 = time.perf_counter()
            state = Path(state_dir) / f"{name}-{tag}-n{n_autoattack}.aa-state" if state_dir else None
            if state is not None:
                state.parent.mkdir(parents=True, exist_ok=True)
            res = run_autoattack(model, x[:n_autoattack], y[:n_autoattack], threat,
                                 suite=AutoAttackSuite(version="standard", seed=0), batch_size=500, state_path=state)
            metrics[f"autoattack-{tag}"] = {
                "accuracy": res.robust_accuracy, "eps": eps, "norm": norm, "n": n_autoattack,
                "split": f"test[:{n_autoattack}]", "attack": "AutoAttack standard (pyautoattack 0.2.0), seed 0",
                "by_attack": res.accuracy_by_attack, "warnings": res.warnings,
                "robust_indices": res.robust.nonzero()[:, 0].tolist(), "seconds": round(time.perf_counter() - t0)}
            logger.info("%s %s AutoAttack %.4f in %.0f s", name, tag, res.robust_accuracy, time.perf_counter() - t0)
    if write:
        path = card_path(weights_path(name))
        card = json.loads(path.read_text())
        card["metrics"] = {**card["metrics"], **metrics}
        atomic_write_bytes(path, (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())
    return metrics
