"""The alpha-sweep engine: clean, STD-, ROB- and MIX-attacked accuracy for every alpha.

No work is done twice: one forward pass of each base model gives the clean
predictions of every alpha; the STD and ROB adversarial examples are made once
per example and evaluated at every alpha in one more pass; only the MIX attack
(aimed at the mixture end to end) runs per alpha.  Random starts are seeded per
example index, so results do not depend on batch size, order or sharding.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Literal

import torch

from .._seeding import example_seed
from .._config import accepts_old_keywords, flat, group, option
from .._validation import (alpha_grid, check_alpha, check_input, check_positive_int,
                           probe_models)
from ..attacks.pgd import PGD
from ..groups import ThreatModel, seed_option
from ..errors import ConfigError, InputError
from ..mixing import MixedClassifier
from ..results import SweepSummary, rate_ci
from .runner import Records, check_batch_size, check_data, is_main_process, records_of, run_records

logger = logging.getLogger(__name__)

ATTACKS = ("std", "rob", "mix")


@accepts_old_keywords
@dataclasses.dataclass
class SweepConfig:
    alphas: list = option(help="weights of h to sweep", factory=alpha_grid, of=float)
    threat: ThreatModel = group(ThreatModel)
    steps: int = option(20, "PGD iterations")
    step_size: float | None = None
    restarts: int = option(1, "PGD random restarts")
    batch_size: int | Literal["auto"] = option("auto", "examples per batch, or auto: on a GPU the largest that fits "
                                                       "(halved on out-of-memory), on a CPU 250; the results do not "
                                                       "depend on it", metavar="N|auto")
    seed: int = seed_option()
    attacks: tuple = ATTACKS
    early_stop: bool = option(False, "stop attacking a point once it is misclassified (faster; same accuracy)")

    def __post_init__(self):
        self.alphas = [float(a) for a in check_alpha(self.alphas).reshape(-1).tolist()]
        check_batch_size(self.batch_size, "sweep")
        check_positive_int(self.steps, name="--steps")
        check_positive_int(self.restarts, name="--restarts")
        if self.step_size is not None and not self.step_size > 0:
            raise ConfigError(f"step_size must be positive (or None for the default), got {self.step_size!r}")
        self.attacks = tuple(self.attacks)
        unknown = set(self.attacks) - set(ATTACKS)
        if unknown:
            raise ConfigError(f"unknown attack target(s) {sorted(unknown)}: use {', '.join(ATTACKS)}")

    def to_dict(self) -> dict:
        d = flat(self)
        d["attacks"] = list(self.attacks)
        return d

    def pgd(self, target) -> PGD:
        return PGD(target, self.threat.eps, self.threat.norm, steps=self.steps, step_size=self.step_size, restarts=self.restarts,
                   early_stop=self.early_stop)


def example_seeds(indices: torch.Tensor, seed: int) -> list[int]:
    """Per-example seeds of the PGD random starts (the one seeding rule, :mod:`robustmix._seeding`)."""
    return [example_seed(seed, int(i), stream=1) for i in indices.tolist()]


def _top2_gap(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    probs = logits.softmax(-1)
    top = probs.topk(2, dim=-1)
    return top.indices[:, 0], top.values[:, 0] - top.values[:, 1]


def sweep_batch(std_model, rob_model, x, y, indices, cfg: SweepConfig) -> list[dict]:
    """Per-example records for one batch (see module docstring)."""
    alphas = torch.tensor(cfg.alphas, dtype=torch.float64)
    mixer = MixedClassifier(std_model, rob_model, alphas, validate_inputs=False)
    seeds = example_seeds(indices, cfg.seed)
    out = {}
    with torch.no_grad():
        clean = mixer.forward_with_components(x)
    out["clean"] = clean.log_probs.argmax(-1)
    gaps = {"g_clean": _top2_gap(clean.std_logits), "h_clean": _top2_gap(clean.rob_logits)}
    for name, target in (("std", std_model), ("rob", rob_model)):
        if name not in cfg.attacks:
            continue
        x_adv = cfg.pgd(target)(x, y, seeds)
        with torch.no_grad():
            adv = mixer.forward_with_components(x_adv)
        out[name] = adv.log_probs.argmax(-1)
        key, logits = ("g_adv", adv.std_logits) if name == "std" else ("h_adv", adv.rob_logits)
        gaps[key] = _top2_gap(logits)
    if "mix" in cfg.attacks:
        preds = []
        for a in cfg.alphas:
            single = MixedClassifier(std_model, rob_model, a, validate_inputs=False)
            x_adv = cfg.pgd(single)(x, y, seeds)
            with torch.no_grad():
                preds.append(single(x_adv).argmax(-1))
        out["mix"] = torch.stack(preds)
    records = []
    for j, idx in enumerate(indices.tolist()):
        rec = {"index": int(idx), "label": int(y[j])}
        for name, preds in out.items():
            rec[name] = preds[:, j].tolist()
        for key, (pred, gap) in gaps.items():
            rec[key] = [int(pred[j]), round(float(gap[j]), 6)]
        records.append(rec)
    return records



def run_sweep(std_model, rob_model, x, y, cfg: SweepConfig | None = None, *, indices=None,
              records: Records | None = None, **deprecated) -> SweepSummary:
    """Run (or resume) an alpha sweep through :func:`~robustmix.experiments.runner.run_records`.

    ``indices`` are the examples' dataset indices (default 0..n-1): they key the
    records and seed the attacks.  ``records`` (:class:`~robustmix.experiments.runner.Records`) says where they
    are kept; its ``settings`` (data set, split, model names) join the sweep's own in the records header.  Under ``torchrun``
    ranks other than 0 return None (rank 0 gets the merged summary).
    """
    cfg = cfg or SweepConfig()
    check_input(x)
    probe_models({"g": std_model, "h": rob_model}, x)
    files = records_of(records, deprecated, "run_sweep").for_run("alpha sweep", cfg.to_dict())
    records = run_records(files, lambda xb, yb, idx: sweep_batch(std_model, rob_model, xb, yb, idx, cfg),
                          x, y, kind="sweep", models={"std": std_model, "rob": rob_model}, indices=indices,
                          batch_size=cfg.batch_size)
    if not is_main_process():
        return None
    summary = summarize(records, cfg.alphas)
    summary.settings = dict(files.settings)
    return summary


def summarize(records: list[dict], alphas) -> SweepSummary:
    """Accuracies per alpha and the Table I confidence gaps from per-example records.

    An attacked accuracy counts an example only when both its clean and its attacked input are classified
    correctly (at the same alpha): an attack cannot make a misclassified example correct.  Table I's gap buckets
    sort examples by the prediction on the input at hand (clean or attacked).
    """
    n = len(records)
    if n == 0:
        raise InputError("no records to summarise")
    k = len(alphas)
    acc = {}
    for name in ("clean",) + ATTACKS:
        if name in records[0]:
            # under attack an example counts only if the clean input is classified correctly too (at that alpha)
            acc[name] = [sum(r[name][a] == r["label"] == r["clean"][a] for r in records) / n for a in range(k)]
    table = {}
    for model in ("g", "h"):
        row = {}
        for cond in ("clean", "adv"):
            key = f"{model}_{cond}"
            if key not in records[0]:
                continue
            for correct in (True, False):
                gaps = [r[key][1] for r in records if (r[key][0] == r["label"]) == correct]
                row[f"{cond}_{'correct' if correct else 'incorrect'}"] = sum(gaps) / len(gaps) if gaps else math.nan
                row[f"{cond}_{'correct' if correct else 'incorrect'}_n"] = len(gaps)
            row[f"{cond}_accuracy"] = sum(r[key][0] == r["label"] == r[f"{model}_clean"][0] for r in records) / n
        table[model] = row
    ci = {name: [rate_ci(v, n) for v in values] for name, values in acc.items()}
    return SweepSummary(alphas=list(alphas), n=n, accuracy=acc, ci95=ci, table1=table)


def naive_sweep(std_model, rob_model, x, y, cfg: SweepConfig, indices=None) -> SweepSummary:
    """Reference: every alpha evaluated on its own (redoing the base models' work each time)."""
    indices = check_data(x, y, indices)
    seeds = example_seeds(indices, cfg.seed)
    records = [{"index": int(i), "label": int(y[j])} for j, i in enumerate(indices.tolist())]
    for name in ("clean",) + tuple(cfg.attacks):
        for rec in records:
            rec[name] = []
    for a in cfg.alphas:
        mixer = MixedClassifier(std_model, rob_model, a)
        inputs = {"clean": x}
        if "std" in cfg.attacks:
            inputs["std"] = cfg.pgd(std_model)(x, y, seeds)
        if "rob" in cfg.attacks:
            inputs["rob"] = cfg.pgd(rob_model)(x, y, seeds)
        if "mix" in cfg.attacks:
            inputs["mix"] = cfg.pgd(mixer)(x, y, seeds)
        for name, xi in inputs.items():
            with torch.no_grad():
                pred = mixer(xi).argmax(-1)
            for j, rec in enumerate(records):
                rec[name].append(int(pred[j]))
    return summarize(records, cfg.alphas)
