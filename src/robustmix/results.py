"""Typed results: one dataclass per summary, with a versioned JSON schema.

Every summary serialises to a JSON object ``{"kind": ..., "schema_version":
..., <fields>}`` and is rebuilt with :meth:`Summary.from_dict`, which refuses
another kind, a newer schema or unknown fields with a message that says how
to regenerate the file.  Reports and the command line read fields by name.

Schema (version 1), all accuracies are fractions in [0, 1] and every one that
comes from examples carries its two-sided 95% Clopper-Pearson interval and n:

* ``sweep``: ``alphas`` (k), ``n``, ``accuracy`` {clean, std, rob, mix: k
  values}, ``ci95`` {same keys: k pairs [lo, hi]}, ``table1`` {g, h: gap
  statistics of the paper's Table I}.
* ``tradeoff``: ``n``, ``gammas`` (``"inf"`` for infinity), ``eps``, ``norm``,
  ``steps``, ``curves`` {"trust|space": {clean, attacked: per-gamma values}}.
* ``attack``: ``n``, ``alpha``, ``settings``, ``accuracy`` {clean, pgd,
  autoattack}, ``ci95``, ``autoattack_warnings``.
* ``certify``: ``alphas``, ``grid`` (radii), ``curves`` {"theorem1",
  "theorem2": {clean: k values, certified: k x len(grid)}}, ``n``, ``settings``.
* ``calibration``: ``choice`` (alpha, objective, target, feasible, validation
  numbers), ``test`` (n, clean, robust and their intervals), ``settings``.
* ``evaluate``: the worst-case evaluator's summary (``accuracy``, ``ci95``,
  ``n``, per-attack table, diagnostics), see :mod:`robustmix.attacks.evaluate`.
* ``pareto``: ``settings``, ``curve_attack``, ``curves`` {linear, nonlinear,
  adaptive: points {name, clean, clean_ci95, robust, robust_ci95, n, ...}},
  ``headline`` (the same points with diagnostics and per-attack accuracy),
  ``calibration``, ``matched`` (matched-robustness gains over the linear mixer).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from scipy.stats import beta

from ._io import read_json, write_json
from .errors import ConfigError

SCHEMA_VERSION = 1


def binomial_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval for k successes out of n (nan, nan for n = 0)."""
    if n <= 0:
        return (float("nan"), float("nan"))
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def rate_ci(fraction: float, n: int) -> list[float]:
    return list(binomial_ci(round(fraction * n), n))


@dataclasses.dataclass
class Summary:
    """Base class: JSON round trip with kind and schema checks."""

    KIND: ClassVar[str] = ""

    def to_dict(self) -> dict:
        return {"kind": self.KIND, "schema_version": SCHEMA_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict):
        if not isinstance(data, dict):
            raise ConfigError(f"a {cls.KIND} summary must be a JSON object")
        kind, version = data.get("kind", cls.KIND), data.get("schema_version", SCHEMA_VERSION)
        if kind != cls.KIND:
            raise ConfigError(f"expected a {cls.KIND} summary, got kind {kind!r}")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ConfigError(f"summary schema version {version!r} is newer than this robustmix understands "
                              f"({SCHEMA_VERSION}); upgrade robustmix or rerun the command")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        body = {k: v for k, v in data.items() if k not in ("kind", "schema_version")}
        unknown, missing = set(body) - set(fields), {n for n, f in fields.items() if n not in body and
                                                      f.default is dataclasses.MISSING and
                                                      f.default_factory is dataclasses.MISSING}
        if unknown or missing:
            raise ConfigError(f"not a valid {cls.KIND} summary (unknown fields {sorted(unknown)}, missing "
                              f"{sorted(missing)}); rerun the command that wrote it")
        return cls(**{k: cls._field_from(k, v) for k, v in body.items()})

    @classmethod
    def _field_from(cls, name, value):
        return value

    def save(self, path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path):
        return cls.from_dict(read_json(path, what=f"{cls.KIND} summary"))


@dataclasses.dataclass
class SweepSummary(Summary):
    KIND: ClassVar[str] = "sweep"
    alphas: list
    n: int
    accuracy: dict
    ci95: dict
    table1: dict

    def at(self, attack: str, alpha: float) -> float:
        """Accuracy under ``attack`` ("clean", "std", "rob", "mix") at the swept alpha closest to ``alpha``."""
        if attack not in self.accuracy:
            raise ConfigError(f"this sweep has no {attack!r} accuracy (it has {', '.join(self.accuracy)})")
        k = min(range(len(self.alphas)), key=lambda i: abs(self.alphas[i] - alpha))
        return self.accuracy[attack][k]


@dataclasses.dataclass
class TradeoffSummary(Summary):
    KIND: ClassVar[str] = "tradeoff"
    n: int
    gammas: list
    eps: float
    norm: str
    steps: int
    curves: dict


@dataclasses.dataclass
class AttackSummary(Summary):
    KIND: ClassVar[str] = "attack"
    n: int
    alpha: float
    settings: dict
    accuracy: dict
    ci95: dict
    autoattack_warnings: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class CertifySummary(Summary):
    KIND: ClassVar[str] = "certify"
    n: int
    alphas: list
    grid: list
    curves: dict
    settings: dict = dataclasses.field(default_factory=dict)

    def certified_at(self, curve: str, alpha: float, radius: float) -> float:
        """Certified accuracy of ``curve`` at ``alpha`` and the largest grid radius <= ``radius``."""
        c = self.curves[curve]
        k = min(range(len(self.alphas)), key=lambda i: abs(self.alphas[i] - alpha))
        j = max(i for i, r in enumerate(self.grid) if r <= radius + 1e-12)
        return c["certified"][k][j]


@dataclasses.dataclass
class CalibrationSummary(Summary):
    KIND: ClassVar[str] = "calibration"
    choice: dict
    test: dict
    settings: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class EvaluateSummary(Summary):
    """The worst case over the attack ensemble, per example, summed up (``robustmix evaluate``)."""

    KIND: ClassVar[str] = "evaluate"
    n: int
    accuracy: float
    ci95: list
    clean_accuracy: float
    clean_ci95: list
    per_attack: list            # [{name, ran_on, broke, seconds}] in ensemble order
    found_by: dict              # member -> examples whose first error it found
    diagnostics: dict           # square_only, eps_not_decreasing, unbounded_not_zero, suspected
    median_robust_margin: float
    warnings: list = dataclasses.field(default_factory=list)
    settings: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ParetoSummary(Summary):
    """``robustmix pareto``: every mixer's clean / worst-case points, calibration and matched-robustness gains."""

    KIND: ClassVar[str] = "pareto"
    settings: dict
    curve_attack: str
    curves: dict          # mixer -> points {name, clean, clean_ci95, robust, robust_ci95, n, ...}
    headline: list        # the same points on the headline images, with diagnostics and per-attack accuracy
    calibration: dict
    matched: list

    def point(self, name: str) -> dict:
        """The headline point of ``name`` ("g", "h", "linear", "nonlinear" or "adaptive")."""
        for p in self.headline:
            if p["name"] == name:
                return p
        raise ConfigError(f"no headline point named {name!r}; have {[p['name'] for p in self.headline]}")

