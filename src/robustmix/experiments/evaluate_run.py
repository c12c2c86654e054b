"""Worst-case evaluation of one model through the runner (``robustmix evaluate``): per-example records, resumable.

Each batch goes through :func:`robustmix.attacks.evaluate` (the adaptive
ensemble); its records hold whether the example survived, the smallest
true-model margin found, the member that found it and, when every AutoAttack
member ran, whether AutoAttack standard alone broke it (``aa_robust``).  The
first record of a batch also carries that batch's per-member table, the
AutoAttack completion run and the gradient-masking diagnostics, so the summary
is rebuilt from the records alone.  The summary also states the cost of one
prediction in forward passes (:func:`forward_passes`).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from .._config import accepts_old_keywords, flat, group, option
from .._io import atomic_write_bytes
from .._validation import check_positive_int
from ..attacks.evaluate import DiagnosticChecks, Ensemble, evaluate
from ..errors import ConfigError
from ..groups import ThreatModel, seed_option
from ..results import EvaluateSummary, binomial_ci, to_json
from .runner import Records, check_batch_size, is_main_process, records_of, run_records


@accepts_old_keywords
@dataclasses.dataclass
class EvaluateConfig:
    threat: ThreatModel = group(ThreatModel)
    seed: int = seed_option()
    attacks: list | None = option(None, "ensemble members or patterns, e.g. 'aa-*'", of=str, shown="the whole ensemble")
    steps: int = option(100, "iterations of each APGD member of robustmix's own (apgd-*); AutoAttack's members (aa-*) run "
                                 "with AutoAttack's standard settings (100 iterations, Square 5,000 queries)")
    restarts: int = 1
    batch_size: int = option(250, "examples per batch (fixed: AutoAttack's members draw their random starts per "
                                  "batch; a batch that runs out of memory is halved)")
    square_queries: int = 5000
    diagnostics: bool = option(True, "the gradient-masking checks (a black-box attack on a sample, and how the "
                                     "attacks' losses behave); --no-diagnostics skips them")
    save_adversarial: bool = False    # keep each batch's worst-case inputs under the records (adversarial/*.safetensors)
    precision: str = option("fp32", "the attacks' gradient steps in fp32, bf16 or fp16 (autocast; faster on recent "
                            "GPUs, slower on CPUs); every judgement of an input stays in the model's own precision",
                            choices=("fp32", "bf16", "fp16"))

    def __post_init__(self):
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ConfigError(f"--precision must be fp32, bf16 or fp16, got {self.precision!r}")
        check_batch_size(self.batch_size, "evaluate")
        for name in ("steps", "restarts", "square_queries"):
            check_positive_int(getattr(self, name), name="--" + name.replace("_", "-"))

    def to_dict(self) -> dict:
        d = flat(self)
        for key, default in (("save_adversarial", False), ("precision", "fp32")):
            if d[key] == default:   # records written before the option existed resume unchanged
                del d[key]
        return d


def evaluate_batch(model, xb, yb, idx, cfg: EvaluateConfig, adv_dir=None) -> list[dict]:
    ensemble = Ensemble(attacks=tuple(cfg.attacks) if cfg.attacks else None, steps=cfg.steps, restarts=cfg.restarts, square_queries=cfg.square_queries,
                        seed=cfg.seed, batch_size=len(xb), precision=cfg.precision)
    res = evaluate(model, xb, yb, threat=cfg.threat, ensemble=ensemble, indices=idx,
                   diagnostics=DiagnosticChecks() if cfg.diagnostics else None, keep_adv=cfg.save_adversarial)
    if cfg.save_adversarial:   # written before the batch's records, so a recorded batch always has its inputs
        from safetensors.torch import save

        atomic_write_bytes(Path(adv_dir) / f"{int(idx[0])}.safetensors",
                           save({"x_adv": res.x_adv.float().contiguous(), "indices": idx.cpu().long().contiguous()}))
    recs = [{k: v for k, v in r.items() if k not in ("index", "label")} for r in res.records()]
    recs[0]["batch"] = {"per_attack": [dataclasses.asdict(s) for s in res.per_attack],
                        "diagnostics": dataclasses.asdict(res.diagnostics) if res.diagnostics else None,
                        "warnings": res.warnings}
    if res.autoattack_completion is not None:
        recs[0]["batch"]["autoattack_completion"] = dataclasses.asdict(res.autoattack_completion)
    return recs


def forward_passes(model) -> tuple[int, int]:
    """(base-model forward passes, mixing-network passes) per prediction, counted from the model's parts.

    A mixer of g and h (``std_model``/``rob_model``: linear, nonlinear, adaptive) runs each once: 2; the
    adaptive mixer adds one pass of its mixing network (a small network on their logits and features).  A
    torch.export program of a mixer keeps these submodules, so it counts the same; any other model counts 1.
    """
    from torch import nn

    base = sum(isinstance(getattr(model, a, None), nn.Module) for a in ("std_model", "rob_model"))
    return max(base, 1), int(isinstance(getattr(model, "mixing_net", None), nn.Module))


def run_evaluate(model, x, y, cfg: EvaluateConfig, *, indices=None, records: Records | None = None,
                 **deprecated) -> EvaluateSummary | None:
    """Run (or resume) the worst-case evaluation; returns the summary (None on torchrun ranks other than 0)."""
    files = records_of(records, deprecated, "run_evaluate")
    if cfg.save_adversarial and files.records_path is None:
        raise ConfigError("save_adversarial keeps the inputs beside the records: give Records(records_path=...)")
    adv_dir = Path(files.records_path).parent / "adversarial" if files.records_path is not None else None
    records = run_records(files.for_run("worst-case evaluation", cfg.to_dict()),
                          lambda xb, yb, idx: evaluate_batch(model, xb, yb, idx, cfg, adv_dir), x, y,
                          kind="evaluate", models={"model": model}, indices=indices, batch_size=cfg.batch_size)
    return summarize_evaluate(records, cfg, dict(files.settings), passes=forward_passes(model)) \
        if is_main_process() else None


def summarize_evaluate(records: list[dict], cfg: EvaluateConfig, settings: dict | None = None,
                       passes: tuple[int, int] | None = None) -> EvaluateSummary:
    """The summary of evaluation records; ``passes``: :func:`forward_passes` of the evaluated model."""
    n = len(records)
    robust = sum(r["robust"] for r in records)
    clean = sum(r["clean_correct"] for r in records)
    autoattack = None
    if n and all("aa_robust" in r for r in records):   # every batch ran AutoAttack standard in full
        k = sum(r["aa_robust"] for r in records)
        done = [r["batch"]["autoattack_completion"] for r in records if r.get("batch")]
        autoattack = {"accuracy": k / n, "ci95": list(binomial_ci(k, n)), "n": n,
                      "completion": {"ran_on": sum(d["ran_on"] for d in done), "broke": sum(d["broke"] for d in done),
                                     "seconds": round(sum(d["seconds"] for d in done), 2)}}
    table: dict[str, dict] = {}
    square_only, flags, warnings = 0, {"eps_not_decreasing": False, "unbounded_not_zero": False}, set()
    for r in records:
        batch = r.get("batch")
        if not batch:
            continue
        for s in batch["per_attack"]:
            row = table.setdefault(s["name"], {"ran_on": 0, "broke": 0, "seconds": 0.0})
            row["ran_on"] += s["ran_on"]
            row["broke"] += s["broke"]
            row["seconds"] += s["seconds"]
        d = batch.get("diagnostics")
        if d:
            square_only += d.get("square_only") or 0
            for k in flags:
                flags[k] = flags[k] or bool(d.get(k))
        warnings.update(batch.get("warnings", []))
    if autoattack is not None:
        warnings.update(square_check(records, autoattack))
    margins = [r["margin"] for r in records if r["margin"] is not None and r["robust"]]
    return EvaluateSummary(
        n=n, accuracy=robust / n, ci95=list(binomial_ci(robust, n)), clean_accuracy=clean / n,
        clean_ci95=list(binomial_ci(clean, n)),
        per_attack=[{"name": k, **v, "seconds": round(v["seconds"], 2)} for k, v in table.items()],
        found_by={name: sum(r["found_by"] == name for r in records if not r["robust"] and r["clean_correct"])
                  for name in table},
        diagnostics={"square_only": square_only, **flags, "suspected": bool(square_only) or any(flags.values())},
        median_robust_margin=sorted(margins)[len(margins) // 2] if margins else math.nan,
        warnings=sorted(warnings), settings={**cfg.to_dict(), **(settings or {})}, autoattack=autoattack,
        forward_passes_per_prediction=None if passes is None else passes[0],
        mixing_network_passes=0 if passes is None else passes[1])


def evaluation_fields(s: EvaluateSummary) -> dict:
    """What a summary built on an evaluation (pareto's headline, calibrate's test row) repeats of it: AutoAttack
    standard alone, AutoAttack's flags and the forward passes per prediction."""
    passes = None if s.forward_passes_per_prediction is None else s.forward_passes_per_prediction + \
        s.mixing_network_passes
    return {"autoattack": to_json(s.autoattack), "autoattack_flags": list(s.warnings), "forward_passes": passes}


SQUARE_ALERT = 0.002   # AutoAttack's check_square_sr threshold on the drop in robust accuracy Square causes


def square_check(records: list[dict], autoattack: dict) -> list[str]:
    """AutoAttack's Square check on the whole run (its members run one at a time here, so AutoAttack's own check
    never sees them together): a flag when Square lowers AutoAttack standard's accuracy by more than 0.2 points."""
    n = len(records)
    by_square = sum(1 for r in records if r["clean_correct"] and not r["aa_robust"] and r["found_by"] == "aa-square")
    drop = (by_square + autoattack["completion"]["broke"]) / n
    if drop <= SQUARE_ALERT:
        return []
    return [f"Square Attack has decreased the robust accuracy of AutoAttack standard by {drop:.2%} (from "
            f"{autoattack['accuracy'] + drop:.2%} to {autoattack['accuracy']:.2%}; AutoAttack's check_square_sr "
            f"threshold {SQUARE_ALERT:.1%}): its gradient attacks may be unreliable on this model; the worst case "
            "counts these errors"]


def collect_adversarial(records_path, indices) -> torch.Tensor:
    """The saved worst-case inputs of ``indices`` (in that order) from a run with ``save_adversarial``."""
    from safetensors.torch import load_file

    found, source = {}, {}
    for f in sorted((Path(records_path).parent / "adversarial").glob("*.safetensors")):
        part = load_file(str(f))
        for i, x_adv in zip(part["indices"].tolist(), part["x_adv"]):
            if i in source:
                raise ConfigError(f"example {i} has saved inputs in both {source[i]} and {f.name} (a folder of two "
                                  "runs); rerun with --fresh and --save-adversarial to evaluate it again")
            found[i], source[i] = x_adv, f.name
    missing = [int(i) for i in indices if int(i) not in found]
    if missing:
        raise ConfigError(f"no saved adversarial input for {len(missing)} example(s) (first: index {missing[0]}); "
                          "rerun with --fresh and --save-adversarial to evaluate them again")
    return torch.stack([found[int(i)] for i in indices])
