"""Closed-form certified radii of the mixed classifier (Lemma 1, Theorems 1 and 2).

All functions are vectorised over samples (n) and over an alpha grid (k):
``alpha`` a number gives radii of shape (n,), a 1-D tensor of k values gives
(k, n).  Radii are 0 (never negative or NaN) where nothing is certified:
alpha < 1/2, too little confidence in h, or (when ``labels`` are given) h
itself wrong at x.  The certified prediction is always h's top class y; by
Lemma 1 the mixture agrees with it on the whole ball.
"""

from __future__ import annotations

import math

import torch

from .._validation import check_alpha, check_eps
from ..errors import ConfigError, InputError


def _check_probs(probs: torch.Tensor, name="probs") -> torch.Tensor:
    if not isinstance(probs, torch.Tensor) or probs.ndim != 2 or probs.shape[1] < 2:
        raise InputError(f"{name} must be an (n, c) tensor of h's probabilities with c >= 2")
    if not torch.isfinite(probs).all() or (probs < -1e-6).any() or (probs > 1 + 1e-6).any():
        raise InputError(f"{name} must hold probabilities in [0, 1]; pass softmax outputs, not logits")
    return probs.double().clamp(0.0, 1.0)


def alpha_grid(alpha, like: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """A checked alpha (number or 1-D grid) as a (k, 1) column on ``like``'s device, and whether it was a number."""
    a = check_alpha(alpha).to(like.device)
    return a.reshape(-1, 1), a.ndim == 0


def finish_radii(r: torch.Tensor, alpha: torch.Tensor, scalar: bool, pred: torch.Tensor, labels) -> torch.Tensor:
    """Raw (k, n) radii to certified ones: NaN/inf and negatives to 0, 0 where alpha < 1/2 or ``pred`` is not
    the label (when ``labels`` are given); (n,) again when alpha was a number (see :func:`alpha_grid`)."""
    r = torch.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0.0)
    r = torch.where(alpha >= 0.5, r, torch.zeros_like(r))
    if labels is not None:
        labels = torch.as_tensor(labels, device=r.device)
        r = torch.where((pred == labels)[None], r, torch.zeros_like(r))
    return r[0] if scalar else r


def lemma1_margin(alpha) -> torch.Tensor:
    """The margin (1 - alpha) / alpha that h must keep on the ball (Lemma 1); inf for alpha = 0."""
    a = check_alpha(alpha)
    return torch.where(a > 0, (1 - a) / a.clamp_min(1e-300), torch.full_like(a, math.inf))


def lemma1_certified(worst_case_gap, alpha) -> torch.Tensor:
    """Lemma 1: True where alpha in [1/2, 1] and h keeps ``h_y - h_i >= (1 - alpha) / alpha`` on the ball.

    ``worst_case_gap`` is a lower bound, valid on the whole ball, of
    min_{i != y} (h_y - h_i) (from any verifier); shapes as the radius functions.
    """
    gap = torch.as_tensor(worst_case_gap, dtype=torch.float64)
    a = check_alpha(alpha).to(gap.device)
    a2 = a.reshape(-1, *([1] * gap.ndim)) if a.ndim else a
    ok = (gap >= lemma1_margin(a).reshape(a2.shape)) & (a2 >= 0.5)
    return ok


def _lipschitz_pairs(lipschitz, c: int, like: torch.Tensor) -> torch.Tensor:
    lip = torch.as_tensor(lipschitz, dtype=torch.float64, device=like.device)
    if lip.ndim == 0:
        lip = lip.expand(c)
    if lip.shape != (c,) or not torch.isfinite(lip).all() or (lip <= 0).any():
        raise ConfigError(f"lipschitz must be a positive number or a ({c},) tensor of per-class constants")
    return lip


def lipschitz_radius_from_bounds(lower_top, upper, pred, lipschitz, alpha, labels=None) -> torch.Tensor:
    """Theorem 1 from confidence bounds: ``lower_top`` (n,) <= h_y, ``upper`` (n, c) >= h_i."""
    n, c = upper.shape
    lip = _lipschitz_pairs(lipschitz, c, upper)
    a, scalar = alpha_grid(alpha, upper)
    gap = lower_top[:, None] - upper                                  # (n, c)
    num = a[:, :, None] * gap[None] + a[:, :, None] - 1               # (k, n, c)
    den = a[:, :, None] * (lip[pred][:, None] + lip[None, :])[None]
    r = num / den.clamp_min(1e-300)
    r = r.masked_fill(torch.nn.functional.one_hot(pred, c).bool()[None], math.inf).amin(-1)
    return finish_radii(r, a, scalar, pred, labels)


def lipschitz_radius(probs: torch.Tensor, lipschitz, alpha, labels=None) -> torch.Tensor:
    """Theorem 1: ``min_{i != y} [alpha (h_y - h_i) + alpha - 1] / [alpha (Lip(h_y) + Lip(h_i))]``.

    ``probs`` (n, c): h's probabilities at x; ``lipschitz``: a number or (c,)
    per-class l_p Lipschitz constants of h's probability outputs (the radius is
    in that same l_p norm); ``alpha``: a number or 1-D tensor in [0, 1].
    """
    probs = _check_probs(probs)
    pred = probs.argmax(1)
    top = probs.gather(1, pred[:, None])[:, 0]
    return lipschitz_radius_from_bounds(top, probs, pred, lipschitz, alpha, labels)


def smoothing_radius_from_bounds(lower_top, upper, pred, sigma, alpha, labels=None) -> torch.Tensor:
    """Theorem 2 from bounds: ``lower_top`` <= h_y and ``upper`` >= h_i for every class."""
    sigma = check_eps(sigma, name="sigma")
    if sigma == 0:
        raise ConfigError("sigma must be > 0 for a smoothed classifier")
    n, c = upper.shape
    a, scalar = alpha_grid(alpha, upper)
    runner_up = upper.masked_fill(torch.nn.functional.one_hot(pred, c).bool(), -math.inf).amax(1)  # (n,)
    top = torch.special.ndtri((a * lower_top[None]).clamp(0.0, 1.0))
    other = torch.special.ndtri((a * runner_up[None].clamp(0.0, 1.0) + 1 - a).clamp(0.0, 1.0))
    r = sigma / 2 * (top - other)
    return finish_radii(r, a, scalar, pred, labels)


def smoothing_radius(probs: torch.Tensor, sigma: float, alpha, labels=None) -> torch.Tensor:
    """Theorem 2: ``sigma / 2 * (PhiInv(alpha h_y) - PhiInv(alpha h_y' + 1 - alpha))`` (l_2).

    ``probs`` (n, c) are the smoothed classifier's probabilities at x (estimated
    or, better, bounded: see :class:`~robustmix.certify.smoothing.SmoothedClassifier`).
    """
    probs = _check_probs(probs)
    pred = probs.argmax(1)
    top = probs.gather(1, pred[:, None])[:, 0]
    return smoothing_radius_from_bounds(top, probs, pred, sigma, alpha, labels)


def smoothed_lipschitz(sigma: float) -> float:
    """l2 Lipschitz constant sqrt(2 / (pi sigma^2)) of each output of a Gaussian-smoothed soft classifier (Salman et al.)."""
    sigma = check_eps(sigma, name="sigma")
    if sigma == 0:
        raise ConfigError("sigma must be > 0")
    return math.sqrt(2.0 / (math.pi * sigma ** 2))


def certified_accuracy(radii: torch.Tensor, correct: torch.Tensor, grid) -> torch.Tensor:
    """Fraction of points that are correct and certified at radius >= r, for each r in ``grid``.

    ``radii`` (n,) or (k, n); ``grid`` (m,); returns (m,) or (k, m).  At r = 0
    only points with a positive radius count (the curves' open circles).
    """
    grid = torch.as_tensor(grid, dtype=torch.float64)
    r = radii.double()
    ok = correct.bool() & (r > 0)
    hit = (r[..., None] >= grid) & ok[..., None]
    return hit.double().mean(-2)
