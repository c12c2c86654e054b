"""Recording a ``robustmix evaluate`` result of a zoo model in its model card (``worst-case-<threat>``)."""

from __future__ import annotations

import json

from .._io import atomic_write_bytes
from ..errors import ModelError
from ..models.checkpoint import card_path
from ..models.registry import weights_path
from ..results import EvaluateSummary, to_json
from ..zoo_table import threat_tag
from .evaluate_run import EvaluateConfig, summarize_evaluate
from .runner import read_records


def record_worst_case(name: str, summary_path, write: bool = True) -> dict:
    """Put a ``robustmix evaluate`` summary of zoo model ``name`` into its card as ``worst-case-<threat>``.

    ``summary_path``: a ``summary.json`` of ``robustmix evaluate --model NAME``, or a records file
    (``records.jsonl``) of an evaluation of that model (e.g. ``robustmix pareto``'s ``headline-h``).
    """
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
    metric = {"accuracy": s.accuracy, "ci95": to_json(s.ci95), "eps": eps, "norm": norm, "n": s.n,
              "split": f"test[:{s.n}]", "attack": "worst case over the robustmix evaluate ensemble (AutoAttack "
              "standard, APGD-CE/DLR end to end and by transfer), per example",
              "by_attack": {row.name: row.broke for row in s.per_attack}, "diagnostics": to_json(s.diagnostics),
              "source": str(summary_path)}
    key = f"worst-case-{threat_tag(norm, eps)}"
    if write:
        path = card_path(weights_path(name))
        card = json.loads(path.read_text())
        card["metrics"] = {**card["metrics"], key: metric}
        atomic_write_bytes(path, (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())
    return {key: metric}
