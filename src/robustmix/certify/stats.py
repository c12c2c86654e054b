"""Confidence bounds for Monte-Carlo estimates (scipy's current APIs)."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import beta, binomtest

from ..errors import ConfigError


def _check_delta(delta: float) -> float:
    if not 0 < delta < 1:
        raise ConfigError(f"the failure probability delta must be in (0, 1), got {delta!r}")
    return float(delta)


def clopper_pearson_lower(k, n, delta: float):
    """One-sided (1 - delta) lower bound on a binomial proportion; 0 where k = 0."""
    _check_delta(delta)
    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        out = beta.ppf(delta, k, n - k + 1)
    return np.where(k > 0, out, 0.0)


def clopper_pearson_upper(k, n, delta: float):
    """One-sided (1 - delta) upper bound on a binomial proportion; 1 where k = n."""
    _check_delta(delta)
    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        out = beta.ppf(1 - delta, k + 1, n - k)
    return np.where(k < n, out, 1.0)


def hoeffding_halfwidth(n: int, delta: float) -> float:
    """One-sided Hoeffding deviation for the mean of n i.i.d. variables in [0, 1]."""
    _check_delta(delta)
    return math.sqrt(math.log(1.0 / delta) / (2.0 * n))


def binomial_pvalue(k: int, n: int, p: float = 0.5) -> float:
    """Two-sided exact binomial test p-value (Cohen et al.'s PREDICT)."""
    return binomtest(int(k), int(n), p).pvalue
