"""Per-example evaluation of one model under PGD and AutoAttack, resumable (``robustmix attack``)."""

from __future__ import annotations

import dataclasses

import torch

from .._config import accepts_old_keywords, flat, group, option
from .._validation import check_positive_int
from ..groups import ThreatModel, seed_option
from ..errors import ConfigError
from ..attacks.autoattack import AutoAttackSuite, run_autoattack
from ..attacks.pgd import PGD
from ..results import AttackSummary, rate_ci
from .runner import Records, check_batch_size, records_of, run_records
from .sweep import example_seeds


AUTOATTACK_CHOICES = ("none", "standard", "rand", "plus", "square", "custom")


@accepts_old_keywords
@dataclasses.dataclass
class AttackConfig:
    threat: ThreatModel = group(ThreatModel)
    steps: int = option(50, "PGD iterations (0: no PGD)")
    restarts: int = option(1, "PGD random restarts")
    autoattack: str = option("standard", "AutoAttack version: standard, rand, plus, square (Square only) or none",
                             choices=["none", "standard", "rand", "plus", "square"])
    attacks: list | None = None     # AutoAttack's attacks for autoattack="custom", e.g. ["apgd-ce", "apgd-t"]
    batch_size: int = option(250, "examples per batch")
    seed: int = seed_option()

    def __post_init__(self):
        check_positive_int(self.steps, name="--steps", minimum=0)
        check_positive_int(self.restarts, name="--restarts")
        check_batch_size(self.batch_size, "attack")
        if self.autoattack not in AUTOATTACK_CHOICES:
            raise ConfigError(f"autoattack must be one of {', '.join(AUTOATTACK_CHOICES)}, got {self.autoattack!r}")
        if self.steps == 0 and self.autoattack == "none":
            raise ConfigError("--steps 0 and --autoattack none leave nothing to run: give PGD steps or an AutoAttack "
                              "version")
        if (self.autoattack == "custom") != bool(self.attacks):
            raise ConfigError("give AutoAttack's attacks (e.g. ['apgd-ce', 'apgd-t']) exactly when autoattack='custom'")

    def to_dict(self):
        return flat(self)



def attack_batch(model, xb, yb, idx, cfg: AttackConfig) -> list[dict]:
    """Per-example clean / PGD / AutoAttack outcomes for one batch (AutoAttack seeded by the batch's first index)."""
    with torch.no_grad():
        clean = model(xb).argmax(1) == yb
    recs = [{"clean": bool(c)} for c in clean.tolist()]
    if cfg.steps > 0:
        xa = PGD(model, cfg.threat.eps, cfg.threat.norm, steps=cfg.steps, restarts=cfg.restarts)(xb, yb, example_seeds(idx, cfg.seed))
        with torch.no_grad():
            for r, ok in zip(recs, (model(xa).argmax(1) == yb).tolist()):
                r["pgd"] = bool(ok)
    if cfg.autoattack != "none":
        version, attacks = ("custom", ["square"]) if cfg.autoattack == "square" else (cfg.autoattack, cfg.attacks)
        suite = AutoAttackSuite(version, tuple(attacks) if attacks else None, seed=cfg.seed + int(idx[0]))
        res = run_autoattack(model, xb, yb, cfg.threat, suite=suite, batch_size=len(xb))
        for r, ok in zip(recs, res.robust.tolist()):
            r["autoattack"] = bool(ok)
        if res.warnings:
            recs[0]["autoattack_warnings"] = res.warnings
    return recs


def run_attack_eval(model, x, y, cfg: AttackConfig, *, indices=None, records: Records | None = None,
                    **deprecated) -> list[dict]:
    """Per-example clean, PGD and AutoAttack outcomes of ``model`` (resumable through ``records``)."""
    records = records_of(records, deprecated, "run_attack_eval").for_run("attack", cfg.to_dict())
    return run_records(records, lambda xb, yb, idx: attack_batch(model, xb, yb, idx, cfg), x, y, kind="attack",
                       models={"model": model}, indices=indices, batch_size=cfg.batch_size)


def summarize_attack(records: list[dict], alpha: float, cfg: AttackConfig) -> AttackSummary:
    n = len(records)
    # attacked: correct on the attacked and on the clean input (an attack cannot fix a mistake)
    acc = {key: sum(r[key] and r["clean"] for r in records) / n for key in ("clean", "pgd", "autoattack")
           if records and key in records[0]}
    warns = sorted({w for r in records for w in r.get("autoattack_warnings", [])})
    return AttackSummary(n=n, alpha=alpha, settings=cfg.to_dict(), accuracy=acc,
                         ci95={k: rate_ci(v, n) for k, v in acc.items()}, autoattack_warnings=warns)
