"""Choosing alpha on a validation split, with confidence intervals, confirmed on the test split.

Objectives:
  * ``clean``: reach a target clean accuracy with the most robustness;
  * ``robust``: reach a target attacked (MIX) accuracy with the most clean accuracy;
  * ``certified``: maximise certified accuracy at a given radius.
"""

from __future__ import annotations

import dataclasses

from scipy.stats import beta

from ..errors import ConfigError

OBJECTIVES = ("clean", "robust", "certified")


def binomial_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval for k successes out of n."""
    if n <= 0:
        return (float("nan"), float("nan"))
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


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
