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
from tqdm.auto import tqdm

from .._validation import check_eps, check_gamma, check_p
from ..attacks.pgd import PGD
from ..mixing import FormulationMixture, Space, Trust
from .records import RecordStore
from .sweep import example_seeds


def _default_gammas():
    return [0.0] + [round(10 ** e, 6) for e in (-2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2)] + [math.inf]


@dataclasses.dataclass
class TradeoffConfig:
    trusts: list = dataclasses.field(default_factory=lambda: [t.value for t in Trust])
    spaces: list = dataclasses.field(default_factory=lambda: ["probs", "logits"])
    gammas: list = dataclasses.field(default_factory=_default_gammas)
    eps: float = 0.1
    norm: str = "inf"
    steps: int = 10
    step_size: float | None = None
    batch_size: int = 100
    seed: int = 0

    def __post_init__(self):
        self.trusts = [Trust.parse(t).value for t in self.trusts]
        self.spaces = [Space.parse(s).value for s in self.spaces]
        self.gammas = [check_gamma(g) for g in self.gammas]
        self.eps = check_eps(self.eps)
        check_p(self.norm)

    def curves(self) -> list[str]:
        return [f"{t}|{s}" for t in self.trusts for s in self.spaces]

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["gammas"] = [g if math.isfinite(g) else "inf" for g in self.gammas]
        return d


def run_tradeoff(std_model, rob_model, x, y, cfg: TradeoffConfig | None = None, *, indices=None, records_path=None,
                 header: dict | None = None, progress: bool = True) -> dict:
    cfg = cfg or TradeoffConfig()
    indices = torch.arange(len(x)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
    store = RecordStore(records_path, {"kind": "tradeoff", **cfg.to_dict(), **(header or {})}) if records_path else None
    pending = store.missing(indices) if store else indices.tolist()
    position = {int(i): p for p, i in enumerate(indices.tolist())}
    results = list(store.ordered(indices)) if store else []
    total = math.ceil(len(pending) / cfg.batch_size) * len(cfg.curves()) * len(cfg.gammas)
    bar = tqdm(total=total, desc="trade-off curves", unit="attack", disable=not progress)
    for start in range(0, len(pending), cfg.batch_size):
        idx = torch.tensor(pending[start:start + cfg.batch_size])
        rows = torch.tensor([position[int(i)] for i in idx])
        xb, yb = x[rows], y[rows]
        seeds = example_seeds(idx, cfg.seed)
        curves = {}
        for name in cfg.curves():
            trust, space = name.split("|")
            pairs = []
            for gamma in cfg.gammas:
                model = FormulationMixture(std_model, rob_model, gamma, formulation=3, trust=trust, space=space,
                                           p=cfg.norm, validate_inputs=False)
                with torch.no_grad():
                    clean = model(xb).argmax(1)
                x_adv = PGD(model, cfg.eps, cfg.norm, steps=cfg.steps, step_size=cfg.step_size)(xb, yb, seeds)
                with torch.no_grad():
                    adv = model(x_adv).argmax(1)
                pairs.append(torch.stack([clean, adv], 1))
                bar.update(1)
            curves[name] = torch.stack(pairs, 1)  # (n, gammas, 2)
        recs = [{"index": int(i), "label": int(yb[j]), "curves": {k: v[j].tolist() for k, v in curves.items()}}
                for j, i in enumerate(idx.tolist())]
        if store:
            store.append(recs)
        results += recs
    bar.close()
    return summarize_tradeoff(sorted(results, key=lambda r: r["index"]), cfg)


def summarize_tradeoff(records: list[dict], cfg: TradeoffConfig) -> dict:
    n = len(records)
    out = {"n": n, "gammas": cfg.to_dict()["gammas"], "eps": cfg.eps, "norm": cfg.norm, "steps": cfg.steps,
           "curves": {}}
    for name in cfg.curves():
        clean = [sum(r["curves"][name][k][0] == r["label"] for r in records) / n for k in range(len(cfg.gammas))]
        adv = [sum(r["curves"][name][k][1] == r["label"] for r in records) / n for k in range(len(cfg.gammas))]
        out["curves"][name] = {"clean": clean, "attacked": adv}
    return out
