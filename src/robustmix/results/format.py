"""Number formatting for summaries' report sections and the console (a leaf: standard library only)."""

from __future__ import annotations

import math


def fmt_pct(v) -> str:
    """A fraction as a percentage with one decimal ('n/a' for None or NaN)."""
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def fmt_ci(value, ci) -> str:
    """'66.4 [63.4, 69.3]': a percentage with its 95% interval."""
    if ci is None:
        return fmt_pct(value)
    return f"{fmt_pct(value)} [{fmt_pct(ci[0])}, {fmt_pct(ci[1])}]"


def at_radius(grid: list, values: list, radius: float) -> float:
    """The value at the largest grid radius <= ``radius`` (certified accuracy is non-increasing in the radius)."""
    j = max(i for i, r in enumerate(grid) if r <= radius + 1e-12)
    return values[j]
