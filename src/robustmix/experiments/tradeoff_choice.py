"""Picking the trade-off alpha from a sweep and scoring it the way the paper does."""

from __future__ import annotations


def best_tradeoff_alpha(summary, keep: float = 0.8, attack: str = "mix") -> float:
    """The smallest alpha (most clean accuracy) whose ``attack`` accuracy keeps ``keep`` of h's (alpha = 1).

    ``summary`` is a :class:`~robustmix.results.SweepSummary`.
    """
    alphas = summary.alphas
    adv = summary.accuracy[attack]
    ref = adv[alphas.index(max(alphas))]
    ok = [a for a, v in zip(alphas, adv) if v >= keep * ref]
    return min(ok) if ok else max(alphas)


def gap_closed(clean_mix: float, clean_g: float, clean_h: float) -> float:
    """Fraction of the h-to-g clean-accuracy gap that the mixture closes."""
    gap = clean_g - clean_h
    return (clean_mix - clean_h) / gap if gap > 0 else float("nan")


def kept(robust_mix: float, robust_h: float) -> float:
    """Fraction of h's attacked accuracy that the mixture keeps."""
    return robust_mix / robust_h if robust_h > 0 else float("nan")
