"""Sound Theorem 2 certificates for the mixed classifier with a randomized-smoothing h.

:func:`certify_mixture` follows Cohen et al.'s CERTIFY: ``n0`` selection samples
pick the class ``c_A`` (h's smoothed top class); fresh samples give one lower
bound ``p_A`` on ``h_{c_A}(x)`` with all of ``delta``; since h's scores sum to
one, every other class has ``h_i(x) <= 1 - p_A``.  Theorem 2 is monotone in
both arguments, so

    r_alpha = sigma / 2 * (PhiInv(alpha p_A) - PhiInv(alpha (1 - p_A) + 1 - alpha))

is a certified l2 radius of the mixture ``h^alpha`` at every alpha of the grid
at once, with probability >= 1 - delta.  The certified class is c_A (by Lemma 1
the mixture agrees with it on the whole ball); where ``r_alpha = 0`` the result
abstains (prediction -1).  g's values enter only through Lemma 1's worst case:
on the ball they may be anything in [0, 1], so the radius depends on h alone
(g is evaluated once on x, to check that it has h's classes).

Which smoothed h is certified (``.smoothing``):

* ``"hard"``: ``h_i(x) = P(argmax hbar(x + xi) = i)`` (votes), bounded by
  Clopper-Pearson (exact for Bernoulli votes);
* ``"soft"``: ``h_i(x) = E[softmax(hbar(x + xi))_i]`` (mean scores in [0, 1]),
  bounded by empirical Bernstein or by betting.

Theorem 2 holds for both (Gaussian smoothing of any function into [0, 1]); the
two are different classifiers, and a certificate is about the one it names.
``estimator=None`` picks Clopper-Pearson, measured on the zoo's noise-trained
CNN (sigma 0.5, g the standard CNN, 500 test images, 10,000 samples, delta
0.001; benchmarks/bench_certify_bounds.py): mean radius at alpha = 1 of 1.024
(Clopper-Pearson), 0.671 (betting), 0.653 (empirical Bernstein); at alpha = 0.8
0.323, 0.235, 0.234.  The soft scores vary less (sample std 0.10) but their
mean is lower than the vote frequency (0.82 against 0.91 for the top class),
and the mean enters PhiInv, so hard votes certify larger radii on this model.
Betting is the tighter of the two soft bounds and the one to use for the soft
smoothed classifier.

Sequential sampling (``sequential=True``) draws the estimation samples in
rounds ending at the looks ``n_1 < ... < n_J = num_samples`` (doubling from
200) and stops an input once its decision is settled.  At each look the
stopping rule projects the radius it could still reach by ``num_samples`` (the
bound there if p sat one bound-width above its point estimate; a heuristic) and
stops the input when, at every alpha, (a) that radius exceeds the current one
by at most ``tolerance``, both counted up to the largest of ``radii``, and (b)
no radius in ``radii`` (the radii you will report) lies between the two.  With
``radii`` given, inputs already certified past the largest of them stop, and
inputs near one of them keep sampling, and so do inputs that abstain now but
could be certified later; inputs that will abstain stop early.
Validity under this optional stopping comes from alpha spending over the fixed
looks: the bound at look j is a fixed-n bound on the first n_j samples at level
``delta / J``.  Let E_j be the event that it exceeds the true p; P(E_j) <=
delta / J, so P(E_1 or ... or E_J) <= delta by the union bound (no
independence needed).  Whatever look the stopping rule picks, the reported
bound is one of these J, so it fails with probability <= delta.  The stopping
rule may use every sample seen so far; it only chooses which bound to report.
Measured on the zoo (500 test images, 10,000 samples, alpha = 1, CPU;
benchmarks/bench_sequential.py), against certified accuracies of 82.0 / 75.2 /
66.4 / 54.6% at radii 0.25 / 0.5 / 0.75 / 1.0 with a fixed 10,000: ``radii=[0.25,
0.5, 0.75, 1.0]`` used 3.50x fewer forward passes (n0 included) for 82.0 / 75.0
/ 66.4 / 54.2% (4.30x with ``tolerance=inf``); without ``radii``, tolerance 0.1
saved 1.61x and lost 1.8 points at 0.5, because confident inputs' radii keep
growing with the sample count.  FIRST_LOOK and OPTIMISM were chosen on these
same images (this does not touch validity, but the saving is an in-sample figure).  Radii past the largest reported one are not
pursued, so the mean radius drops (0.79 against 1.03).

Floating point (Voracek & Hein, 2023): the guarantee is for Gaussian smoothing
in exact arithmetic.  The implementation draws float32 (x's dtype) noise from a
pseudo-random generator and rounds ``x + noise`` before the network sees it, so
the sampled distribution is not exactly Gaussian and a base network built to
detect that rounding can make a certificate false; Voracek & Hein exhibit such
networks.  This module does not cover that gap.  It computes the bounds and
radii in float64 (no loss there), and passing float64 inputs (with a float64
model) draws float64 noise, which shrinks the rounding by about 2^-29 but does
not remove it.  Certificates are for the ideal real-arithmetic smoothed
classifier of the given base network.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math

import numpy as np
import torch

from .._validation import check_alpha, check_positive_int
from ..errors import ConfigError, InputError, ModelError
from .radii import smoothing_radius_from_bounds
from .smoothing import ABSTAIN, check_base_logits, check_batch, smoothing_pass
from .stats import bernstein_lower, betting_lower, clopper_pearson_lower

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SELECTION_STREAM, ESTIMATION_STREAM = 1, 2   # the streams cohen_certify uses, so alpha = 1 matches it exactly


class Estimator(str, enum.Enum):
    """Sound lower bounds on h's top-class score; the value names the smoothed classifier certified."""

    CLOPPER_PEARSON = "clopper-pearson"   # hard votes
    BERNSTEIN = "bernstein"               # soft scores, Maurer & Pontil (2009)
    BETTING = "betting"                   # soft scores, Waudby-Smith & Ramdas (2024)

    @property
    def smoothing(self) -> str:
        return "hard" if self is Estimator.CLOPPER_PEARSON else "soft"


DEFAULT_ESTIMATOR = Estimator.CLOPPER_PEARSON


@dataclasses.dataclass
class MixtureCertificate:
    """Theorem 2 certificates of the mixture at k alphas for n inputs (CPU tensors)."""

    prediction: torch.Tensor    # (k, n) certified class, ABSTAIN (-1) where the radius is 0
    radius: torch.Tensor        # (k, n) float64 l2 radius, 0 where abstaining
    alphas: torch.Tensor        # (k,)
    top_class: torch.Tensor     # (n,) class picked by the selection samples
    p_lower: torch.Tensor       # (n,) lower bound on h's smoothed score of top_class
    samples_used: torch.Tensor  # (n,) estimation samples drawn (n0 selection samples not included)
    h_mean: torch.Tensor        # (n, c) mean softmax of h_base over every sample drawn: a point estimate, not a bound
    smoothing: str              # "hard" (votes) or "soft" (mean softmax): the smoothed h certified
    estimator: str
    sigma: float
    delta: float
    n0: int
    num_samples: int
    sequential: bool
    tolerance: float | None = None     # sequential runs: radius an input may leave on the table
    radii: list | None = None          # sequential runs: the reported radii that steer stopping

    def to_dict(self) -> dict:
        """A JSON-ready dict (schema_version 1), fields by name."""
        out = {"schema_version": SCHEMA_VERSION}
        for field in dataclasses.fields(self):
            v = getattr(self, field.name)
            out[field.name] = v.tolist() if isinstance(v, torch.Tensor) else v
        return out


FIRST_LOOK = 200   # estimation samples at the first look of a sequential run; later looks double
OPTIMISM = 1.0     # stopping heuristic: p may exceed its point estimate by OPTIMISM times the bound's width


def _looks(num_samples: int, sequential: bool, first: int = FIRST_LOOK) -> list[int]:
    if not sequential:
        return [num_samples]
    looks, n = [], first
    while n < num_samples:
        looks.append(n)
        n *= 2
    return looks + [num_samples]


def estimate_top_bound(draw, top: torch.Tensor, est: "Estimator", *, sigma: float, alphas: torch.Tensor, c: int,
                       num_samples: int, delta: float, sequential: bool = False, tolerance: float = 0.1,
                       radii=None, first_look: int = FIRST_LOOK,
                       optimism: float = OPTIMISM) -> tuple[np.ndarray, np.ndarray]:
    """The estimation stage: (p_lower (n,), samples used (n,)) for the selected classes ``top``.

    ``draw(active, start, stop)`` returns, for the inputs ``active`` (indices into
    ``top``), the number of votes for their top class among the estimation samples
    ``start <= j < stop`` and, for soft estimators, every sample's top-class score
    ((len(active), stop - start)).  Fixed budget: one draw and one bound with all of
    delta.  Sequential: the looks of :func:`_looks`, a bound at level delta / J at
    each, and an input stops once, at every alpha, the radius it could still gain
    (counted up to the largest of ``radii``) is at most ``tolerance`` and would not
    cross one of ``radii`` (module docstring).
    """
    n = len(top)
    looks = _looks(num_samples, sequential, first_look)
    step_delta = delta / len(looks)
    votes_top = np.zeros(n)
    scores = np.zeros((n, num_samples)) if est.smoothing == "soft" else None
    p_lower, used = np.zeros(n), np.zeros(n, dtype=np.int64)
    active, prev = np.arange(n), 0
    best = step_delta ** (1.0 / num_samples)   # Clopper-Pearson's ceiling (every vote for c_A); caps the projection
    grid = torch.as_tensor([] if radii is None else radii, dtype=torch.float64)
    cap = float(grid.max()) if len(grid) else math.inf
    for look in looks:
        votes, tracked = draw(active, prev, look)
        votes_top[active] += votes
        if scores is not None:
            scores[active, prev:look] = tracked
            sub = scores[active, :look]
        p_lower[active] = _lower(est, votes_top[active], None if scores is None else sub, look, step_delta)
        used[active] = look
        prev = look
        if look == num_samples:
            break
        point = votes_top[active] / look if scores is None else sub.mean(1)
        width = point - p_lower[active]
        # the bound at the last look if p sat `optimism` widths above the point estimate (a heuristic, not a bound)
        reachable = np.clip(point + width * (optimism - math.sqrt(look / num_samples)), 0.0, best)
        rows = torch.from_numpy(active)
        now = _radius(p_lower[active], top[rows], c, sigma, alphas)
        later = _radius(reachable, top[rows], c, sigma, alphas)
        # crossing a reported radius, or turning an abstention into a certificate, is never left to the tolerance
        crosses = ((now[..., None] < grid) & (grid <= later[..., None])).any(-1) | ((now <= 0) & (later > 0))
        settled = ((later.clamp(max=cap) - now.clamp(max=cap) <= tolerance) & ~crosses).all(0).numpy()
        active = active[~settled]
        if len(active) == 0:
            break
    return p_lower, used


def _lower(estimator: Estimator, votes_top: np.ndarray, scores: np.ndarray | None, n: int, delta: float) -> np.ndarray:
    if estimator is Estimator.CLOPPER_PEARSON:
        return clopper_pearson_lower(votes_top, n, delta)
    if estimator is Estimator.BERNSTEIN:
        return bernstein_lower(scores.mean(1), scores.var(1, ddof=1), n, delta)
    return betting_lower(scores, delta)


def _radius(p_lower: np.ndarray, top: torch.Tensor, c: int, sigma: float, alphas: torch.Tensor) -> torch.Tensor:
    p = torch.as_tensor(p_lower, dtype=torch.float64)
    upper = (1.0 - p)[:, None].expand(len(p), c)
    return smoothing_radius_from_bounds(p, upper, top, sigma, alphas)


def _parse_estimator(estimator) -> Estimator:
    if estimator is None:
        return DEFAULT_ESTIMATOR
    try:
        return Estimator(estimator)
    except ValueError:
        names = ", ".join(repr(e.value) for e in Estimator)
        raise ConfigError(f"unknown estimator {estimator!r}: use one of {names} or None (the default)") from None


def _check_args(x, sigma, alphas, num_samples, n0, delta, indices, batch_size, tolerance, estimator):
    check_batch(x)
    try:
        sigma = float(sigma)
    except (TypeError, ValueError):
        raise ConfigError(f"sigma must be a positive number (the smoothing noise level), got {sigma!r}") from None
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ConfigError(f"sigma must be a positive finite number (the smoothing noise level), got {sigma!r}")
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < 1:
        raise ConfigError(f"delta must be a failure probability in (0, 1) such as 0.001, got {delta!r}")
    check_positive_int(n0, name="n0")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < n0:
        raise ConfigError(f"num_samples must be an integer >= n0 = {n0} (Cohen et al. use 100,000 with n0 = 100), "
                          f"got {num_samples!r}")
    if estimator is not Estimator.CLOPPER_PEARSON and num_samples < 2:
        raise ConfigError(f"the {estimator.value} estimator needs num_samples >= 2")
    check_positive_int(batch_size, name="batch_size")
    try:
        tolerance = float(tolerance)
    except (TypeError, ValueError):
        raise ConfigError(f"tolerance must be a number >= 0 (an l2 radius), got {tolerance!r}") from None
    if not tolerance >= 0:
        raise ConfigError(f"tolerance must be a number >= 0 (an l2 radius; inf: only ``radii`` steer stopping), "
                          f"got {tolerance!r}")
    a = check_alpha(alphas).reshape(-1)
    idx = list(range(len(x))) if indices is None else [int(i) for i in indices]
    if len(idx) != len(x):
        raise InputError(f"{len(idx)} indices for {len(x)} inputs: give one dataset index per input")
    return sigma, a, idx, tolerance


def check_radii(radii):
    """The reported radii of a sequential run, sorted; None stays None (ConfigError on anything else)."""
    if radii is None:
        return None
    values = [radii] if isinstance(radii, (int, float)) else radii
    try:
        out = sorted(float(r) for r in values if not isinstance(r, bool))
    except (TypeError, ValueError):
        out = []
    if not out or len(out) != len(values) or not all(r > 0 and math.isfinite(r) for r in out):
        raise ConfigError(f"radii must be positive l2 radii (those you will report, e.g. [0.25, 0.5, 1.0]) or None, "
                          f"got {radii!r}")
    return out


def check_sequential(sequential: bool, tolerance: float, radii):
    """The reported radii (sorted, or None) after checking that they and ``tolerance`` fit ``sequential``."""
    radii = check_radii(radii)
    if radii is not None and not sequential:
        raise ConfigError("radii steer sequential sampling: pass sequential=True as well (or drop radii)")
    if sequential and math.isinf(tolerance) and radii is None:
        raise ConfigError("tolerance=inf lets only the reported radii steer stopping: give radii=[...] as well "
                          "(without them every input would stop at the first look)")
    return radii


@torch.no_grad()
def certify_mixture(g, h_base, x: torch.Tensor, *, sigma: float, alphas, num_samples: int = 10_000, n0: int = 100,
                    delta: float = 0.001, estimator: str | Estimator | None = None, seed: int = 0, indices=None,
                    batch_size: int = 1000, sequential: bool = False, tolerance: float = 0.1,
                    radii=None) -> MixtureCertificate:
    """Certify the mixture of ``g`` and the Gaussian-smoothed ``h_base`` at every alpha (Theorem 2).

    ``g``, ``h_base``: models returning (n, c) logits (``g`` may be None: it does
    not enter the radius); ``x`` (n, ...) on the models' device; ``alphas`` a
    number or k values in [0, 1]; ``indices`` the dataset index of each input
    (seeds its noise; default 0..n-1); ``estimator`` one of "clopper-pearson",
    "bernstein", "betting" or None (Clopper-Pearson); ``tolerance``: l2 radius a
    sequential run may leave on the table per input; ``radii``: the l2 radii at
    which you will report certified accuracy (a sequential run keeps sampling an
    input while its radius may still cross one of them, and does not pursue radii
    beyond the largest; None: no such radii).  All certificates hold
    together with probability >= 1 - delta (per input, over the noise).
    """
    est = _parse_estimator(estimator)
    sigma, a, idx, tolerance = _check_args(x, sigma, alphas, num_samples, n0, delta, indices, batch_size, tolerance, est)
    radii = check_sequential(sequential, tolerance, radii)
    n = len(x)
    opts = dict(seed=seed, stream=ESTIMATION_STREAM, batch_size=batch_size)
    prob_sel, votes_sel, _ = smoothing_pass(h_base, x, sigma, indices=idx, start=0, stop=n0,
                                            **{**opts, "stream": SELECTION_STREAM})
    c = prob_sel.shape[1]
    if g is not None:
        g_logits = g(x)
        check_base_logits(g_logits, n)
        if g_logits.shape[1] != c:
            raise ModelError(f"g has {g_logits.shape[1]} classes but h_base has {c}: mix models of the same task")
    top = (votes_sel if est.smoothing == "hard" else prob_sel).argmax(1)

    prob_total = prob_sel.numpy().copy()

    def draw(active, start, stop):
        rows = torch.from_numpy(active)
        prob, votes, tracked = smoothing_pass(h_base, x[rows.to(x.device)], sigma, indices=[idx[i] for i in active],
                                           start=start, stop=stop,
                                           track=top[rows] if est.smoothing == "soft" else None, **opts)
        prob_total[active] += prob.numpy()
        return votes.gather(1, top[rows][:, None])[:, 0].numpy(), None if tracked is None else tracked.numpy()

    p_lower, used = estimate_top_bound(draw, top, est, sigma=sigma, alphas=a, c=c, num_samples=num_samples,
                                       delta=delta, sequential=sequential, tolerance=tolerance,
                                       radii=radii)
    radius = _radius(p_lower, top, c, sigma, a)
    prediction = torch.where(radius > 0, top[None].expand_as(radius), torch.full_like(radius, ABSTAIN, dtype=torch.long))
    log.info("certified %d inputs with %s (%s smoothing): %.0f estimation samples per input on average", n, est.value,
             est.smoothing, used.mean())
    return MixtureCertificate(prediction=prediction, radius=radius, alphas=a, top_class=top,
                              p_lower=torch.from_numpy(p_lower), samples_used=torch.from_numpy(used),
                              h_mean=torch.from_numpy(prob_total / (n0 + used[:, None])),
                              smoothing=est.smoothing, estimator=est.value, sigma=sigma, delta=float(delta), n0=n0,
                              num_samples=num_samples, sequential=bool(sequential),
                              tolerance=tolerance if sequential else None,
                              radii=radii if sequential else None)
