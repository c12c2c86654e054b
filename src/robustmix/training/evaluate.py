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


from ..attacks.autoattack import run_autoattack
from ..data import load_dataset
from ..models import load
from .._io import atomic_write_bytes
from ..models.checkpoint import card_path
from ..models.registry import _resolve
from ..errors import ModelError
from ..zoo_table import ZOO
from .recipes import accuracy, robust_accuracy

logger = logging.getLogger(__name__)

# the threat model each zoo model is evaluated under (robust ones at their training budget)
THREATS = {name: list(e.threats) for name, e in ZOO.items() if e.threats}


def threat_tag(norm: str, eps: float) -> str:
    """The metric-key suffix of a threat model, e.g. ``linf-0.1``."""
    return f"{'linf' if norm == 'inf' else 'l2'}-{eps}"


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
        t0 = time.perf_counter()
        metrics[f"pgd20-{tag}"] = {"accuracy": robust_accuracy(model, xs, ys, eps, norm, steps=20), "eps": eps,
                                   "norm": norm, "n": n_attack, "split": f"test[:{n_attack}]",
                                   "attack": "PGD-20, 1 random start, step 2.5*eps/20"}
        metrics[f"pgd50x5-{tag}"] = {"accuracy": robust_accuracy(model, xs, ys, eps, norm, steps=50, restarts=5),
                                     "eps": eps, "norm": norm, "n": n_attack, "split": f"test[:{n_attack}]",
                                     "attack": "PGD-50, 5 random restarts, step 2.5*eps/50"}
        logger.info("%s %s PGD done in %.0f s", name, tag, time.perf_counter() - t0)
        if autoattack and n_autoattack > 0:
            t0 = time.perf_counter()
            state = Path(state_dir) / f"{name}-{tag}-n{n_autoattack}.aa-state" if state_dir else None
            if state is not None:
                state.parent.mkdir(parents=True, exist_ok=True)
            res = run_autoattack(model, x[:n_autoattack], y[:n_autoattack], eps, norm, version="standard", seed=0,
                                 batch_size=500, state_path=state)
            metrics[f"autoattack-{tag}"] = {
                "accuracy": res.robust_accuracy, "eps": eps, "norm": norm, "n": n_autoattack,
                "split": f"test[:{n_autoattack}]", "attack": "AutoAttack standard (pyautoattack 0.2.0), seed 0",
                "by_attack": res.accuracy_by_attack, "warnings": res.warnings,
                "robust_indices": res.robust.nonzero()[:, 0].tolist(), "seconds": round(time.perf_counter() - t0)}
            logger.info("%s %s AutoAttack %.4f in %.0f s", name, tag, res.robust_accuracy, time.perf_counter() - t0)
    if write:
        path = card_path(_resolve(name))
        card = json.loads(path.read_text())
        card["metrics"] = {**card["metrics"], **metrics}
        atomic_write_bytes(path, (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())
    return metrics


def record_worst_case(name: str, summary_path, write: bool = True) -> dict:
    """Put a ``robustmix evaluate`` summary of zoo model ``name`` into its card as ``worst-case-<threat>``.

    ``summary_path``: a ``summary.json`` of ``robustmix evaluate --model NAME``, or a records file
    (``records.jsonl``) of an evaluation of that model (e.g. ``robustmix pareto``'s ``headline-h``).
    """
    from ..experiments.evaluate_run import EvaluateConfig, summarize_evaluate
    from ..experiments.runner import read_records
    from ..results import EvaluateSummary

    if str(summary_path).endswith(".jsonl"):
        header, records = read_records(summary_path)
        settings = dict(header.get("settings", {}))
        cfg = EvaluateConfig(**{k: settings.pop(k) for k in list(settings) if k in EvaluateConfig.__dataclass_fields__})
        s = summarize_evaluate(records, cfg, settings)
        model = s.settings.get("model") or (s.settings.get("rob") if s.settings.get("mixer") == "h" else
                                            s.settings.get("std") if s.settings.get("mixer") == "g" else None)
    else:
        s = EvaluateSummary.load(summary_path)
        model = s.settings.get("model")
    if model != name:
        raise ModelError(f"{summary_path} evaluates {model!r}, not {name!r}")
    norm, eps = str(s.settings["norm"]), float(s.settings["eps"])
    metric = {"accuracy": s.accuracy, "ci95": s.ci95, "eps": eps, "norm": norm, "n": s.n,
              "split": f"test[:{s.n}]", "attack": "worst case over the robustmix evaluate ensemble (AutoAttack "
              "standard, APGD-CE/DLR end to end and by transfer), per example",
              "by_attack": {row["name"]: row["broke"] for row in s.per_attack}, "diagnostics": s.diagnostics,
              "source": str(summary_path)}
    key = f"worst-case-{threat_tag(norm, eps)}"
    if write:
        path = card_path(_resolve(name))
        card = json.loads(path.read_text())
        card["metrics"] = {**card["metrics"], key: metric}
        atomic_write_bytes(path, (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())
    return {key: metric}
