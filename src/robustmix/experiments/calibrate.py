"""Choosing alpha on a validation split, with confidence intervals, confirmed on the test split.

Objectives:
  * ``clean``: reach a target clean accuracy with the most robustness;
  * ``robust``: reach a target attacked (MIX) accuracy with the most clean accuracy;
  * ``certified``: maximise certified accuracy at a given radius.
"""

from __future__ import annotations

import dataclasses

import math
from pathlib import Path

from .._validation import check_alpha, check_eps
from ..errors import ConfigError
from ..results import CalibrationSummary, binomial_ci

OBJECTIVES = ("clean", "robust", "certified")


@dataclasses.dataclass
class Choice:
    alpha: float
    objective: str
    target: float | None
    feasible: bool             # whether the target was met (point estimate) on validation
    validation: dict           # the chosen alpha's validation numbers with 95% intervals

    def to_dict(self):
        return dataclasses.asdict(self)


def choose_alpha(alphas, clean, robust, n: int, objective: str, target: float | None = None) -> Choice:
    """Pick alpha from per-alpha accuracies (fractions) measured on n validation examples.

    For ``certified`` pass the certified accuracies as ``robust``.  When no
    alpha meets the target, the closest one is returned with ``feasible=False``.
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {objective!r}: use one of {', '.join(OBJECTIVES)}")
    if not (len(alphas) == len(clean) == len(robust)) or not alphas:
        raise ConfigError("alphas, clean and robust must be non-empty and of equal length")
    idx = list(range(len(alphas)))
    if objective == "clean":
        if target is None:
            raise ConfigError("objective 'clean' needs a target clean accuracy")
        ok = [i for i in idx if clean[i] >= target]
        best = max(ok, key=lambda i: (robust[i], clean[i])) if ok else max(idx, key=lambda i: clean[i])
    elif objective == "robust":
        if target is None:
            raise ConfigError("objective 'robust' needs a target attacked accuracy")
        ok = [i for i in idx if robust[i] >= target]
        best = max(ok, key=lambda i: (clean[i], robust[i])) if ok else max(idx, key=lambda i: robust[i])
    else:
        ok = idx
        best = max(idx, key=lambda i: (robust[i], clean[i]))
    val = {"n": n, "clean": clean[best], "clean_ci95": binomial_ci(round(clean[best] * n), n),
           "robust": robust[best], "robust_ci95": binomial_ci(round(robust[best] * n), n)}
    return Choice(float(alphas[best]), objective, target, bool(ok), val)


@dataclasses.dataclass
class CalibrateSettings:
    """Settings of ``robustmix calibrate``; every value checked here, once."""

    objective: str = "clean"
    target: float | None = None
    alphas: list = dataclasses.field(default_factory=lambda: [round(0.05 * i, 2) for i in range(21)])
    eps: float = 0.1
    norm: str = "inf"
    steps: int = 20
    sigma: float | None = None
    radius: float = 0.5
    samples: int = 1000
    seed: int = 0

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {self.objective!r}: use one of {', '.join(OBJECTIVES)}")
        if self.objective in ("clean", "robust"):
            if self.target is None:
                raise ConfigError(f"objective {self.objective} needs --target (an accuracy in [0, 1])")
            if not 0 <= self.target <= 1:
                raise ConfigError(f"--target is an accuracy in [0, 1], got {self.target}")
        if self.objective == "certified" and not self.sigma:
            raise ConfigError("objective certified needs --sigma (the smoothing noise of --rob)")
        if not (math.isfinite(self.radius) and self.radius >= 0):
            raise ConfigError(f"--radius must be a number >= 0, got {self.radius}")
        self.alphas = [float(a) for a in check_alpha(self.alphas).reshape(-1).tolist()]
        check_eps(self.eps)


def run_calibration(g, h, splits: dict, cal: CalibrateSettings, out, *, settings: dict | None = None,
                    fresh: bool = False) -> CalibrationSummary:
    """Choose alpha on ``splits["val"]`` and confirm it on ``splits["test"]`` (each an (x, y) pair), resumably."""
    from .certified import CertifyConfig, certified_curve, run_certify
    from .sweep import SweepConfig, run_sweep

    out = Path(out)
    result = {}
    for split in ("val", "test"):
        x, y = splits[split]
        alphas = cal.alphas if split == "val" else [result["choice"]["alpha"]]
        names = {**(settings or {}), "split": split}
        if cal.objective == "certified":
            recs = run_certify(g, h, x, y, CertifyConfig(sigma=cal.sigma, num_samples=cal.samples, seed=cal.seed),
                               records_path=out / f"{split}-certify.jsonl", settings=names, fresh=fresh)
            cur = certified_curve(recs, alphas, [cal.radius], theorem=2, sigma=cal.sigma)
            clean, robust = cur["clean"], [row[0] for row in cur["certified"]]
        else:
            cfg = SweepConfig(alphas=alphas, eps=cal.eps, norm=cal.norm, steps=cal.steps, seed=cal.seed,
                              attacks=("mix",))
            summ = run_sweep(g, h, x, y, cfg, records_path=out / f"{split}-sweep.jsonl", settings=names, fresh=fresh)
            clean, robust = summ.accuracy["clean"], summ.accuracy["mix"]
        if split == "val":
            result["choice"] = choose_alpha(alphas, clean, robust, len(x), cal.objective, cal.target).to_dict()
        else:
            n = len(x)
            result["test"] = {"n": n, "clean": clean[0], "clean_ci95": binomial_ci(round(clean[0] * n), n),
                              "robust": robust[0], "robust_ci95": binomial_ci(round(robust[0] * n), n)}
    return CalibrationSummary(choice=result["choice"], test=result["test"],
                              settings={**dataclasses.asdict(cal), **(settings or {})})
