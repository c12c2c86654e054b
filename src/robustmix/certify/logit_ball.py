"""Certificates from a ball in logit space: h's softmax worst case, then Lemma 1 (beyond Theorem 1).

Theorem 1 bounds each probability of h by one global Lipschitz constant, so its
radius can never exceed (h_y - h_i) / (L_y + L_i), however large h's logit
margin.  Here the logits themselves are bounded and pushed through the softmax.

Setting.  h(x) = softmax(z(x)), y = argmax_j z_j(x).  ``K[y, j]`` is an upper
bound on the l2 Lipschitz constant of x -> z_j(x) - z_y(x).  Sources (all
sound): a logit map that is L-Lipschitz as a vector gives K = sqrt(2) L (the
difference is <e_j - e_y, z(x') - z(x)>, and ||e_j - e_y||_2 = sqrt(2)); per-logit
bounds L_j give K = L_j + L_y; a last dense layer W after an L'-Lipschitz body
gives K = ||w_j - w_y||_2 L' (see :func:`~robustmix.certify.lipschitz.pairwise_logit_lipschitz`).

Theorem (worst case of h on the ball).  Let q_j = exp(z_j(x) - z_y(x)) and
Q_j(r) = q_j exp(K[y, j] r) for j != y.  For every x' with ||x' - x||_2 <= r
and every i != y,

    h_y(x') - h_i(x') >= G_i(r) = (1 - Q_i) / (1 + sum_{j != y} Q_j)   if Q_i <= 1,
                                  (1 - Q_i) / (1 + Q_i)                 otherwise.

Proof.  Write q'_j = exp(z_j(x') - z_y(x')).  Dividing numerator and
denominator of the softmax by exp(z_y(x')),
h_y(x') - h_i(x') = (1 - q'_i) / (1 + sum_{j != y} q'_j).  By the Lipschitz
bound, z_j(x') - z_y(x') <= z_j(x) - z_y(x) + K[y, j] r, so 0 < q'_j <= Q_j.
If q'_i <= 1 the fraction has a non-negative numerator that decreases in q'_i
and a denominator that increases in every q'_j, so it is at least its value at
q' = Q when Q_i <= 1.  If Q_i > 1: the fraction is at least
(1 - q'_i) / (1 + q'_i) (equal numerator; when it is negative, a smaller
positive denominator only makes it more negative, and when q'_i <= 1 the value
is >= 0 > (1 - Q_i) / (1 + Q_i)), and t -> (1 - t) / (1 + t) decreases, so it
is >= (1 - Q_i) / (1 + Q_i).  []

Corollary (the mixture).  With mu = (1 - alpha) / alpha, G_i(r) >= mu holds for
all i != y iff  max_{i != y} Q_i(r) + mu sum_{j != y} Q_j(r) <= 1 - mu  (for
mu < 1 the case Q_i > 1 never satisfies it).  The left side increases in r,
so the set of certified radii is an interval [0, r*]; by Lemma 1 the mixture
h^alpha predicts y on the whole l2 ball of radius r*.  At alpha = 1 (mu = 0)
and K = sqrt(2) L, r* = (z_y - max_{i != y} z_i) / (sqrt(2) L): exactly the
logit-margin certificate of a 1-Lipschitz network, which Theorem 1 never
exceeds (h_y - h_i <= tanh((z_y - z_i) / 2) <= (z_y - z_i) / 2).

Only the "others" term is loose: each q'_j is bounded by its own worst
direction, which no single perturbation attains for all j at once.  It is
multiplied by mu and by the small probabilities of the other classes, so it
matters little where h is confident; where it is not, Theorem 1 can win at
alpha < 1, and :func:`logit_ball_radius` with ``theorem1=True`` returns the
larger of the two sound radii.

Floating point: logits are taken in float64 as given; rounding in h's own
forward pass is not covered (as in the rest of certify/).
"""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError, InputError
from .lipschitz import SOFTMAX_L2_FACTOR
from .radii import alpha_grid, finish_radii, lemma1_margin

_BISECTION_STEPS = 64


def _check_logits(logits) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[1] < 2:
        raise InputError("logits must be an (n, c) tensor of h's logits with c >= 2 (not probabilities)")
    if not torch.isfinite(logits).all():
        raise InputError("logits must be finite; check h's outputs for NaN/inf")
    return logits.double()


def pair_bounds(lipschitz, c: int, like: torch.Tensor) -> torch.Tensor:
    """(c, c) bounds K[y, j] >= Lip_2(z_j - z_y) from a number L (the logit vector map's bound: K = sqrt(2) L)
    or a (c, c) tensor of pairwise bounds (diagonal ignored)."""
    lip = torch.as_tensor(lipschitz, dtype=torch.float64, device=like.device)
    if lip.ndim == 0:
        lip = math.sqrt(2.0) * lip.expand(c, c)
    off_diagonal = ~torch.eye(c, dtype=torch.bool, device=lip.device)
    if lip.shape != (c, c) or not torch.isfinite(lip).all() or (lip[off_diagonal] <= 0).any():
        raise ConfigError(f"lipschitz must be the logits' positive l2 Lipschitz bound (a number) or a ({c}, {c}) "
                          "tensor of positive bounds on Lip(z_j - z_y); see pairwise_logit_lipschitz")
    return lip


def _log_q(logits: torch.Tensor, lipschitz):
    """log q_j = z_j - z_y and K[y, j] per example, with the top class masked out (-inf, +inf)."""
    n, c = logits.shape
    k = pair_bounds(lipschitz, c, logits)
    pred = logits.argmax(1)
    top = torch.nn.functional.one_hot(pred, c).bool()
    log_q = (logits - logits.gather(1, pred[:, None])).masked_fill(top, -math.inf)
    return log_q, k[pred], pred


def logit_ball_gap(logits: torch.Tensor, lipschitz, radius) -> torch.Tensor:
    """Lower bound, valid on the whole l2 ball of ``radius``, of min_{i != y} (h_y - h_i) (see the module's theorem).

    ``logits`` (n, c) of h at x; ``lipschitz`` a number (the logit map's l2 bound)
    or (c, c) pairwise bounds; ``radius`` a number (returns (n,)) or a 1-D grid
    (returns (m, n)).  Feed it to :func:`~robustmix.certify.radii.lemma1_certified`.
    """
    log_q, k, _ = _log_q(_check_logits(logits), lipschitz)
    r = torch.as_tensor(radius, dtype=torch.float64, device=log_q.device)
    if r.ndim > 1 or not torch.isfinite(r).all() or (r < 0).any():
        raise ConfigError("radius must be a number >= 0 or a 1-D grid of them")
    big_q = torch.exp(log_q[None] + k[None] * r.reshape(-1, 1, 1))      # (m, n, c), 0 at y, may be inf
    inside = (1 - big_q) / (1 + big_q.sum(-1, keepdim=True))
    outside = (1 - big_q) / (1 + big_q)
    gap = torch.where(big_q <= 1, inside, outside)
    gap = torch.nan_to_num(gap, nan=-1.0).masked_fill(log_q[None] == -math.inf, math.inf)
    gap = gap.amin(-1).clamp(-1.0, 1.0)
    return gap[0] if r.ndim == 0 else gap


def logit_ball_radius(logits: torch.Tensor, lipschitz, alpha, labels=None, *, theorem1: bool = False) -> torch.Tensor:
    """Certified l2 radius of the mixture h^alpha at x from h's logits (the module's corollary + Lemma 1).

    ``logits`` (n, c); ``lipschitz`` a number (the logit map's l2 bound L) or
    (c, c) pairwise bounds; ``alpha`` a number (returns (n,)) or 1-D grid (k, n).
    Radii are float64, 0 where nothing is certified (alpha < 1/2, too little
    margin, or h wrong where ``labels`` are given).  The largest radius is found
    by bisection on a monotone condition and the returned value always satisfies
    it.  ``theorem1=True`` returns the larger of this radius and Theorem 1's (both
    sound; Theorem 1 uses the probability bound sqrt(2)/4 * L per class, so it
    needs a number L).
    """
    z = _check_logits(logits)
    log_q, k, pred = _log_q(z, lipschitz)
    a, scalar = alpha_grid(alpha, z)                                   # (k, 1)
    mu = lemma1_margin(a.reshape(-1)).reshape(-1, 1).to(z.device)
    log_budget = torch.log1p(-mu.clamp(max=1.0))                       # log(1 - mu), -inf at alpha = 1/2
    log_mu = torch.log(mu)                                             # -inf at alpha = 1

    def holds(r):                                                      # r (k, n) -> (k, n) bool
        e = log_q[None] + k[None] * r[..., None]                       # (k, n, c)
        lhs = torch.logaddexp(e.amax(-1), log_mu + torch.logsumexp(e, -1))
        return lhs <= log_budget

    k_min = k.masked_fill(log_q == -math.inf, math.inf).amin(1)       # (n,)
    hi = ((log_budget - log_q.amax(1)[None]) / k_min[None]).clamp_min(0.0)
    hi = torch.nan_to_num(hi, nan=0.0, posinf=0.0, neginf=0.0)
    lo = torch.zeros_like(hi)
    ok0 = holds(lo)
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2
        good = holds(mid)
        lo, hi = torch.where(good, mid, lo), torch.where(good, hi, mid)
    good_hi = holds(hi)
    r = torch.where(good_hi, hi, lo)
    r = torch.where(ok0, r, torch.zeros_like(r))
    if theorem1:
        lip = torch.as_tensor(lipschitz, dtype=torch.float64)
        if lip.ndim != 0:
            raise ConfigError("theorem1=True needs the logit map's l2 bound as a number")
        from .radii import lipschitz_radius

        probs = torch.softmax(z, 1)
        t1 = lipschitz_radius(probs, SOFTMAX_L2_FACTOR * float(lip), a[:, 0])
        r = torch.maximum(r, t1.to(r))
    return finish_radii(r, a, scalar, pred, labels)
