"""Per-example evaluation of one model under PGD and AutoAttack, resumable (``robustmix attack``)."""

from __future__ import annotations

import dataclasses

import torch
from tqdm.auto import tqdm

from .._validation import check_eps, check_p, model_device
from ..attacks.autoattack import run_autoattack
from ..attacks.pgd import PGD
from .records import RecordStore
from .sweep import example_seeds


@dataclasses.dataclass
class AttackConfig:
    eps: float = 0.1
    norm: str = "inf"
    steps: int = 50
    restarts: int = 1
    autoattack: str = "standard"    # none, standard, rand, plus, square
    batch_size: int = 250
    seed: int = 0

    def __post_init__(self):
        self.eps = check_eps(self.eps)
        check_p(self.norm)

    def to_dict(self):
        return dataclasses.asdict(self)



def run_attack_eval(model, x, y, cfg: AttackConfig, *, indices=None, records_path=None, header=None,
                    progress: bool = True) -> list[dict]:
    indices = torch.arange(len(x)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
    store = RecordStore(records_path, {"kind": "attack", **cfg.to_dict(), **(header or {})}) if records_path else None
    pending = store.missing(indices) if store else indices.tolist()
    position = {int(i): p for p, i in enumerate(indices.tolist())}
    out = list(store.ordered(indices)) if store else []
    dev = model_device(model)
    for start in tqdm(range(0, len(pending), cfg.batch_size), desc="attack", unit="batch", disable=not progress):
        idx = torch.tensor(pending[start:start + cfg.batch_size])
        rows = torch.tensor([position[int(i)] for i in idx])
        xb, yb = x[rows].to(dev), y[rows].to(dev)
        with torch.no_grad():
            clean = model(xb).argmax(1) == yb
        xa = PGD(model, cfg.eps, cfg.norm, steps=cfg.steps, restarts=cfg.restarts)(xb, yb, example_seeds(idx, cfg.seed))
        with torch.no_grad():
            pgd_ok = model(xa).argmax(1) == yb
        aa_ok, warnings = None, []
        if cfg.autoattack != "none":
            version, attacks = ("custom", ["square"]) if cfg.autoattack == "square" else (cfg.autoattack, None)
            res = run_autoattack(model, xb, yb, cfg.eps, cfg.norm, version=version, attacks=attacks,
                                 seed=cfg.seed + int(idx[0]), batch_size=len(xb))
            aa_ok, warnings = res.robust, res.warnings
        recs = []
        for j, i in enumerate(idx.tolist()):
            rec = {"index": i, "label": int(yb[j]), "clean": bool(clean[j]), "pgd": bool(pgd_ok[j])}
            if aa_ok is not None:
                rec["autoattack"] = bool(aa_ok[j])
                if j == 0 and warnings:
                    rec["autoattack_warnings"] = warnings
            recs.append(rec)
        if store:
            store.append(recs)
        out += recs
    return sorted(out, key=lambda r: r["index"])


def summarize_attack(records: list[dict]) -> dict:
    n = len(records)
    summary = {"n": n}
    for key in ("clean", "pgd", "autoattack"):
        if records and key in records[0]:
            summary[key] = sum(r[key] for r in records) / n
    warns = sorted({w for r in records for w in r.get("autoattack_warnings", [])})
    if warns:
        summary["autoattack_warnings"] = warns
    return summary
