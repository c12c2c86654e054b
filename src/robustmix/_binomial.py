"""Clopper-Pearson bounds on a binomial proportion: the one implementation every layer uses.

One-sided bounds hold with probability >= 1 - delta each; :func:`binomial_ci` is the two-sided interval
(each side at (1 - level) / 2), the interval every reported accuracy carries.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import beta

from .errors import ConfigError


def check_delta(delta: float) -> float:
    if not 0 < delta < 1:
        raise ConfigError(f"the failure probability delta must be in (0, 1), got {delta!r}")
    return float(delta)


def clopper_pearson_lower(k, n, delta: float):
    """One-sided (1 - delta) lower bound on a binomial proportion; 0 where k = 0."""
    check_delta(delta)
    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        out = beta.ppf(delta, k, n - k + 1)
    return np.where(k > 0, out, 0.0)


def clopper_pearson_upper(k, n, delta: float):
    """One-sided (1 - delta) upper bound on a binomial proportion; 1 where k = n."""
    check_delta(delta)
    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        out = beta.ppf(1 - delta, k + 1, n - k)
    return np.where(k < n, out, 1.0)


def binomial_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval for k successes out of n (nan, nan for n = 0)."""
    if n <= 0:
        return (float("nan"), float("nan"))
    a = (1 - level) / 2
    return float(clopper_pearson_lower(k, n, a)), float(clopper_pearson_upper(k, n, a))
