"""Accuracy-robustness trade-off curves of eq. (3) (the paper's Fig. 1 and Fig. 4).

For each trust term R_i and each mixing space (logits or probabilities), the
trade-off parameter gamma is swept; at every gamma the formulation is attacked
end to end (PGD through the trust terms, with double backpropagation) and its
clean and attacked accuracy recorded.  Records are per example and resumable.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from .._config import accepts_old_keywords, flat, group, option
from .._validation import check_gamma, check_input, check_positive_int, probe_models
from ..attacks.pgd import PGD
from ..groups import ThreatModel, seed_option
from ..mixing import FormulationMixture, Space, Trust
from ..results import TradeoffCurve, TradeoffSummary
from .runner import Records, is_main_process, records_of, run_records
from .sweep import example_seeds


def _default_gammas():
    return [0.0] + [round(10 ** e, 6) for e in (-2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2)] + [math.inf]


@accepts_old_keywords
@dataclasses.dataclass
class TradeoffConfig:
    trusts: list = option(help="trust terms R_i of eq. (3)", factory=lambda: [t.value for t in Trust], of=str)
    spaces: list = dataclasses.field(default_factory=lambda: ["probs", "logits"])
    gammas: list = option(help="trade-off parameters gamma (inf: h alone)", factory=_default_gammas, of=float)
    threat: ThreatModel = group(ThreatModel)
    steps: int = option(10, "PGD iterations through the whole formulation")
    step_size: float | None = None
    batch_size: int = option(100, "examples per batch")
    seed: int = seed_option()

    def __post_init__(self):
        self.trusts = [Trust.parse(t).value for t in self.trusts]
        self.spaces = [Space.parse(s).value for s in self.spaces]
        self.gammas = [check_gamma(g) for g in self.gammas]
        check_positive_int(self.steps, name="--steps")
        check_positive_int(self.batch_size, name="--batch-size")

    def curves(self) -> list[str]:
        return [f"{t}|{s}" for t in self.trusts for s in self.spaces]

    def to_dict(self):
        d = flat(self)
        d["gammas"] = [g if math.isfinite(g) else "inf" for g in self.gammas]
        return d


def tradeoff_batch(std_model, rob_model, xb, yb, idx, cfg: TradeoffConfig) -> list[dict]:
    """Per-example (clean, attacked) predictions at every gamma of every curve, for one batch."""
    seeds = example_seeds(idx, cfg.seed)
    curves = {}
    for name in cfg.curves():
        trust, space = name.split("|")
        pairs = []
        for gamma in cfg.gammas:
            model = FormulationMixture(std_model, rob_model, gamma, formulation=3, trust=trust, space=space,
                                       p=cfg.threat.norm, validate_inputs=False)
            with torch.no_grad():
                clean = model(xb).argmax(1)
            x_adv = PGD(model, cfg.threat.eps, cfg.threat.norm, steps=cfg.steps, step_size=cfg.step_size)(xb, yb, seeds)
            with torch.no_grad():
                adv = model(x_adv).argmax(1)
            pairs.append(torch.stack([clean, adv], 1))
        curves[name] = torch.stack(pairs, 1)  # (n, gammas, 2)
    return [{"curves": {k: v[j].tolist() for k, v in curves.items()}} for j in range(len(xb))]


def run_tradeoff(std_model, rob_model, x, y, cfg: TradeoffConfig | None = None, *, indices=None,
                 records: Records | None = None, **deprecated) -> TradeoffSummary:
    """The trade-off curves of eq. (3) over ``x, y`` (resumable through ``records``)."""
    cfg = cfg or TradeoffConfig()
    records = records_of(records, deprecated, "run_tradeoff").for_run("trade-off curves", cfg.to_dict())
    check_input(x)
    probe_models({"g": std_model, "h": rob_model}, x)
    records = run_records(records, lambda xb, yb, idx: tradeoff_batch(std_model, rob_model, xb, yb, idx, cfg),
                          x, y, kind="tradeoff", models={"std": std_model, "rob": rob_model}, indices=indices,
                          batch_size=cfg.batch_size)
    return summarize_tradeoff(records, cfg) if is_main_process() else None


def summarize_tradeoff(records: list[dict], cfg: TradeoffConfig) -> TradeoffSummary:
    n = len(records)
    curves = {}
    for name in cfg.curves():
        clean = [sum(r["curves"][name][k][0] == r["label"] for r in records) / n for k in range(len(cfg.gammas))]
        # attacked: correct on the attacked input and on the clean one (an attack cannot fix a mistake)
        adv = [sum(r["curves"][name][k][1] == r["label"] == r["curves"][name][k][0] for r in records) / n
               for k in range(len(cfg.gammas))]
        curves[name] = TradeoffCurve(clean=clean, attacked=adv)
    out = TradeoffSummary(n=n, gammas=cfg.to_dict()["gammas"], eps=cfg.threat.eps, norm=str(cfg.threat.norm), steps=cfg.steps,
                          curves=curves)
    return out
