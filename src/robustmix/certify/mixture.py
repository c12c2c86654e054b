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
(g is evaluated once on x, to check that it has h's classes and for
``clean_prediction``).

``clean_prediction`` is the certified classifier's own output at x, for clean
accuracy: the certified class c_A where the radius is positive (the mixture
returns it at x with probability >= 1 - delta), elsewhere the argmax of
``(1 - alpha) softmax(g(x)) + alpha h(x)`` with h's point estimate over every
sample drawn (vote frequencies for hard smoothing, mean scores for soft), so
clean and certified accuracy describe the same classifier.

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

Sequential sampling (``sequential=Sequential(...)``, :class:`Sequential`) draws the
estimation samples in rounds and stops an input once its decision is settled: at
every alpha, no radius in ``radii`` (the radii you will report), nor the step from
abstaining to certified, lies between the radius it has now and the radius it could
still reach, and the two differ by at most ``tolerance`` (both counted up to the
largest of ``radii``).  Inputs already certified past the largest reported radius
stop, inputs that can no longer reach the next one stop, inputs near one keep
sampling, up to ``num_samples``.  Two rules (``Sequential.rule``):

* ``"confidence-sequence"`` (default): the bound is a confidence sequence, valid
  at every sample size at once (:func:`~robustmix.certify.stats.binomial_cs_lower`
  for hard votes, time-uniform betting for soft scores) at level delta / 2, and
  an input that samples to ``num_samples`` also gets the fixed-n bound there at
  level delta / 2; the reported bound is the largest of them.  It
  holds with probability >= 1 - delta whatever the stopping rule did: it exceeds
  p only if the sequence ever exceeds p (probability <= delta / 2) or the
  fixed-n bound at num_samples does (<= delta / 2).  The fixed-n share keeps the
  inputs that need the whole budget (those next to a reported radius) as tight
  as a fixed-budget run, up to delta / 2 for delta (CS_CAP_SHARE = 0.5).
  Looks come after CS_FIRST_LOOK = 16 samples and then every 10% more
  (CS_GROWTH = 1.1; any schedule is valid).  The radius an input could still
  reach is judged from the upper end of a confidence sequence at level
  CS_FUTILITY = 0.4 (a heuristic; it decides only how long to sample, never the
  bound).
* ``"doubling-looks"``: alpha spending over fixed looks ``n_1 < ... < n_J =
  num_samples`` (doubling from FIRST_LOOK = 200): the bound at look j is a
  fixed-n bound on the first n_j samples at level ``delta / J``, so by the
  union bound all J hold
  together with probability >= 1 - delta and the look the rule stops at does not
  matter.  The reachable radius is the bound at the last look if p sat
  OPTIMISM = 1.0 bound-widths above its point estimate.

Measured out of sample (constants chosen on 300 validation images, reported
on test images 5000-5499; zoo noise CNN at sigma 0.5, 10,000 samples, delta 0.001,
alpha 1, CPU; benchmarks/bench_sequential.py, figures in BENCHMARKS.md): see
BENCHMARKS.md, "Sequential sampling".  Radii past the largest reported one are not
pursued, so the mean radius drops.

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
import warnings

import numpy as np
import torch

from .._validation import AlphaLike, check_alpha, check_positive_int, probe_models
from ..errors import ConfigError, ModelError
from .._config import refuse_unknown
from ..groups import Smoothing, from_keywords
from .radii import smoothing_radius_from_bounds
from .smoothing import (ABSTAIN, Inputs, NoiseSamples, check_base_logits, check_batch, group_or_default, old_keywords,
                        smoothing_pass)
from .stats import bernstein_lower, betting_lower, binomial_cs_lower, binomial_cs_upper, clopper_pearson_lower

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


class Certificate:
    """A JSON-ready dict of a certificate dataclass (schema_version 1), fields by name, tensors as lists."""

    def to_dict(self) -> dict:
        out = {"schema_version": SCHEMA_VERSION}
        for field in dataclasses.fields(self):
            v = getattr(self, field.name)
            out[field.name] = v.tolist() if isinstance(v, torch.Tensor) else v
        return out


@dataclasses.dataclass
class MixtureCertificate(Certificate):
    """Theorem 2 certificates of the mixture at k alphas for n inputs (CPU tensors)."""

    prediction: torch.Tensor    # (k, n) certified class, ABSTAIN (-1) where the radius is 0
    radius: torch.Tensor        # (k, n) float64 l2 radius, 0 where abstaining
    alphas: torch.Tensor        # (k,)
    top_class: torch.Tensor     # (n,) class picked by the selection samples
    p_lower: torch.Tensor       # (n,) lower bound on h's smoothed score of top_class
    samples_used: torch.Tensor  # (n,) estimation samples drawn (the n0 selection samples come on top)
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
    sequential_rule: str | None = None  # sequential runs: "confidence-sequence" or "doubling-looks"
    clean_prediction: torch.Tensor | None = None  # (k, n) the mixture's output at x (module docstring); None without g


SEQUENTIAL_RULES = ("confidence-sequence", "doubling-looks")
DEFAULT_RULE = "confidence-sequence"
# confidence-sequence rule (chosen on validation images; benchmarks/bench_sequential.py)
CS_FIRST_LOOK = 16   # estimation samples before the first look; later looks grow by CS_GROWTH
CS_GROWTH = 1.1
CS_FUTILITY = 0.4    # level of the upper sequence that tells an input it can no longer reach a radius
CS_CAP_SHARE = 0.5   # share of delta kept for one fixed-n bound at num_samples (inputs that sample to the end)
# doubling-looks rule (the earlier rule, kept for comparison)
FIRST_LOOK = 200     # estimation samples at the first look; later looks double
OPTIMISM = 1.0       # stopping heuristic: p may exceed its point estimate by OPTIMISM times the bound's width


def _looks(num_samples: int, sequential: bool, first: int = FIRST_LOOK, growth: float = 2.0) -> list[int]:
    if not sequential:
        return [num_samples]
    looks, n = [], first
    while n < num_samples:
        looks.append(n)
        n = max(n + 1, math.ceil(n * growth))
    return looks + [num_samples]


def check_rule(rule, estimator: "Estimator") -> str:
    """The sequential rule's name (None: the default) after checking that it fits the estimator."""
    rule = DEFAULT_RULE if rule is None else rule
    if rule not in SEQUENTIAL_RULES:
        raise ConfigError(f"unknown sequential rule {rule!r}: use one of {', '.join(SEQUENTIAL_RULES)}")
    if rule == "confidence-sequence" and estimator is Estimator.BERNSTEIN:
        raise ConfigError("the empirical Bernstein bound holds at one fixed sample size, not at every one: with the "
                          "confidence-sequence rule use estimator 'betting' or 'clopper-pearson' (hard votes), or "
                          "choose Sequential(rule='doubling-looks')")
    return rule


def estimate_top_bound(draw, top: torch.Tensor, est: Estimator, *, smoothing: Smoothing | None = None,
                       alphas: torch.Tensor, c: int, sequential: Sequential | None = None,
                       **deprecated) -> tuple[np.ndarray, np.ndarray]:
    """The estimation stage: (p_lower (n,), samples used (n,)) for the selected classes ``top``.

    ``draw(active, start, stop)`` returns, for the inputs ``active`` (indices into
    ``top``), the number of votes for their top class among the estimation samples
    ``start <= j < stop`` and, for soft estimators, every sample's top-class score
    ((len(active), stop - start)).  ``smoothing`` gives sigma, the estimation budget
    ``num_samples`` and ``delta`` (its n0 and batch_size are not used here).  Fixed
    budget (``sequential=None``): one draw and one bound with all of delta.
    Sequential (a :class:`Sequential`): looks at growing sample counts; an input stops
    once, at every alpha, no radius in ``radii`` (nor the step from abstaining to
    certified) lies between the radius it has and the radius it could still reach,
    and the latter exceeds the former by at most ``tolerance`` (both counted up to
    the largest of ``radii``).  The rule (module docstring) says how the bound is made
    valid under this optional stopping and how the reachable radius is judged.

    Deprecated for one release (DeprecationWarning): ``sigma=``, ``num_samples=``, ``delta=`` for
    ``smoothing=Smoothing(...)``; ``sequential=True/False`` with ``tolerance=`` (default 0.1), ``radii=``, ``rule=``,
    ``first_look=``, ``growth=``, ``futility=``, ``optimism=`` for ``sequential=Sequential(...)`` or None.
    """
    refuse_unknown(deprecated, "estimate_top_bound", {"sigma", "num_samples", "delta", "tolerance", "radii", "rule",
                                                      "first_look", "growth", "futility", "optimism"})
    smoothing = from_keywords(Smoothing, smoothing, old_keywords(deprecated, Smoothing), "estimate_top_bound")
    sequential = sequential_from_keywords(sequential, deprecated, "estimate_top_bound", tolerance=0.1)
    smoothing = group_or_default(smoothing, Smoothing, "smoothing")
    sigma, num_samples, delta = smoothing.required_sigma(), smoothing.num_samples, smoothing.delta
    seq = sequential is not None
    rule = check_rule(sequential.rule, est) if seq else None
    n = len(top)
    cs = rule == "confidence-sequence"
    if cs:
        looks = _looks(num_samples, True, sequential.first_look, sequential.growth)
        step_delta = delta * (1 - CS_CAP_SHARE)       # the sequence; the rest for the fixed-n bound at the end
    else:
        looks = _looks(num_samples, seq, sequential.first_look if seq else FIRST_LOOK)
        step_delta = delta / len(looks)
    votes_top = np.zeros(n)
    scores = np.zeros((n, num_samples)) if est.smoothing == "soft" else None
    p_lower, used = np.zeros(n), np.zeros(n, dtype=np.int64)
    active, prev = np.arange(n), 0
    best = step_delta ** (1.0 / num_samples)   # Clopper-Pearson's ceiling (every vote for c_A); caps the projection
    radii = sequential.radii if seq else None
    grid = torch.as_tensor([] if radii is None else radii, dtype=torch.float64)
    cap = float(grid.max()) if len(grid) else math.inf
    for look in looks:
        votes, tracked = draw(active, prev, look)
        votes_top[active] += votes
        sub = None
        if scores is not None:
            scores[active, prev:look] = tracked
            sub = scores[active, :look]
        if cs:   # the running maximum of a confidence sequence is one too
            p_lower[active] = np.maximum(p_lower[active], _cs_lower(est, votes_top[active], sub, look, step_delta))
            if look == num_samples:
                p_lower[active] = np.maximum(p_lower[active], _lower(est, votes_top[active], sub, look,
                                                                     delta * CS_CAP_SHARE))
        else:
            p_lower[active] = _lower(est, votes_top[active], sub, look, step_delta)
        used[active] = look
        prev = look
        if look == num_samples:
            break
        if cs:
            reachable = _cs_reachable(est, votes_top[active], sub, look, num_samples, delta * CS_CAP_SHARE,
                                      sequential.futility, p_lower[active])
        else:
            point = votes_top[active] / look if scores is None else sub.mean(1)
            width = point - p_lower[active]
            # the bound at the last look if p sat `optimism` widths above the point estimate (a heuristic)
            reachable = np.clip(point + width * (sequential.optimism - math.sqrt(look / num_samples)), 0.0, best)
        rows = torch.from_numpy(active)
        now = top_bound_radius(p_lower[active], top[rows], c, sigma, alphas)
        later = top_bound_radius(reachable, top[rows], c, sigma, alphas)
        # crossing a reported radius, or turning an abstention into a certificate, is never left to the tolerance
        crosses = ((now[..., None] < grid) & (grid <= later[..., None])).any(-1) | ((now <= 0) & (later > 0))
        settled = ((later.clamp(max=cap) - now.clamp(max=cap) <= sequential.tolerance) & ~crosses).all(0).numpy()
        active = active[~settled]
        if len(active) == 0:
            break
    return p_lower, used


def _cs_lower(est: "Estimator", votes_top: np.ndarray, scores: np.ndarray | None, n: int, delta: float) -> np.ndarray:
    if est is Estimator.CLOPPER_PEARSON:
        return binomial_cs_lower(votes_top, n, delta)
    return betting_lower(scores, delta, time_uniform=True)


def _cs_reachable(est: "Estimator", votes_top: np.ndarray, scores: np.ndarray | None, n: int, num_samples: int,
                  delta: float, futility: float, p_lower: np.ndarray) -> np.ndarray:
    """The largest bound an input could still reach (a heuristic that steers stopping, never a bound on p).

    p is taken at the upper end of a confidence sequence at level ``futility``.  Hard
    votes: the fixed-n bound at ``num_samples`` (level ``delta``, the share kept for
    it) if every further sample voted for the top class at that rate.  Soft scores:
    that value less the lower bound's current width shrunk to ``num_samples`` (width
    ~ 1 / sqrt(samples))."""
    if est is Estimator.CLOPPER_PEARSON:
        upper = binomial_cs_upper(votes_top, n, futility)
        return clopper_pearson_lower(votes_top + upper * (num_samples - n), num_samples, delta)
    upper = 1.0 - betting_lower(1.0 - scores, futility, time_uniform=True)
    return np.clip(upper - (scores.mean(1) - p_lower) * math.sqrt(n / num_samples), 0.0, 1.0)


def _lower(estimator: Estimator, votes_top: np.ndarray, scores: np.ndarray | None, n: int, delta: float) -> np.ndarray:
    if estimator is Estimator.CLOPPER_PEARSON:
        return clopper_pearson_lower(votes_top, n, delta)
    if estimator is Estimator.BERNSTEIN:
        return bernstein_lower(scores.mean(1), scores.var(1, ddof=1), n, delta)
    return betting_lower(scores, delta)


def top_bound_radius(p_lower: np.ndarray, top: torch.Tensor, c: int, sigma: float, alphas: torch.Tensor) -> torch.Tensor:
    """Theorem 2 radii (k alphas, n) from one lower bound on h's smoothed score of its top class (every other class
    is then at most 1 - p_lower); alpha = 1 gives Cohen et al.'s sigma * PhiInv(p_lower)."""
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


def _check_args(x, smoothing: Smoothing, alphas, inputs: Inputs, estimator: Estimator) -> torch.Tensor:
    """The alphas as a float64 (k,) tensor, after the checks that tie the groups to x and to the estimator (each
    group has checked its own values)."""
    check_batch(x, inputs.input_range)
    smoothing.required_sigma()
    inputs.dataset_indices(len(x))
    num_samples, n0 = smoothing.num_samples, smoothing.n0
    if num_samples < n0:
        raise ConfigError(f"num_samples must be an integer >= n0 = {n0} (Cohen et al. use 100,000 with n0 = 100), "
                          f"got {num_samples!r}")
    if estimator is not Estimator.CLOPPER_PEARSON and num_samples < 2:
        raise ConfigError(f"the {estimator.value} estimator needs num_samples >= 2")
    return check_alpha(alphas).reshape(-1)


def check_tolerance(tolerance) -> float:
    """A sequential run's tolerance as a float >= 0 (an l2 radius; inf allowed), ConfigError otherwise."""
    try:
        value = float(tolerance)
    except (TypeError, ValueError):
        raise ConfigError(f"tolerance must be a number >= 0 (an l2 radius), got {tolerance!r}") from None
    if not value >= 0:
        raise ConfigError(f"tolerance must be a number >= 0 (an l2 radius; inf: only ``radii`` steer stopping), "
                          f"got {tolerance!r}")
    return value


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


def default_tolerance(radii) -> float:
    """The tolerance when none is given: inf when reported radii steer stopping (chosen on validation images),
    0.1 without them."""
    return math.inf if radii is not None else 0.1


def check_sequential(sequential: bool, tolerance: float, radii):
    """The reported radii (sorted, or None) after checking that they and ``tolerance`` fit ``sequential``."""
    radii = check_radii(radii)
    if radii is not None and not sequential:
        raise ConfigError("radii steer sequential sampling: pass sequential=True as well (or drop radii)")
    if sequential and math.isinf(tolerance) and radii is None:
        raise ConfigError("tolerance=inf lets only the reported radii steer stopping: give radii=[...] as well "
                          "(without them every input would stop at the first look)")
    return radii


@dataclasses.dataclass(frozen=True)
class Sequential:
    """Sequential sampling of the estimation samples (module docstring), for ``certify_mixture(sequential=...)``.

    ``rule``: "confidence-sequence" (the default, None too: stop after any sample)
    or "doubling-looks" (the earlier rule, for comparison).  ``radii``: the l2 radii
    at which you will report certified accuracy (an input keeps sampling while its
    radius may still cross one of them; radii beyond the largest are not pursued;
    None: no such radii).  ``tolerance``: the l2 radius an input may leave on the
    table (None: inf with ``radii``, only they steer stopping; 0.1 without them).
    The rule's tuning constants (they decide how long to sample, never the bound, so
    any values keep the guarantee): ``first_look`` (estimation samples at the first
    look; None: CS_FIRST_LOOK or FIRST_LOOK), ``growth`` (the confidence-sequence
    rule's looks grow by this factor; doubling-looks doubles), ``futility``
    (confidence-sequence rule) and ``optimism`` (doubling-looks rule).  The values are
    checked here, once; ``tolerance`` and ``first_look`` hold the values in force.
    """

    rule: str = DEFAULT_RULE
    tolerance: float | None = None
    radii: tuple[float, ...] | None = None
    first_look: int | None = None
    growth: float = CS_GROWTH
    futility: float = CS_FUTILITY
    optimism: float = OPTIMISM

    def __post_init__(self):
        rule = DEFAULT_RULE if self.rule is None else self.rule
        if rule not in SEQUENTIAL_RULES:
            raise ConfigError(f"unknown sequential rule {rule!r}: use one of {', '.join(SEQUENTIAL_RULES)}")
        radii = check_radii(self.radii)
        tolerance = default_tolerance(radii) if self.tolerance is None else check_tolerance(self.tolerance)
        if math.isinf(tolerance) and radii is None:
            raise ConfigError("tolerance=inf lets only the reported radii steer stopping: give radii=[...] as well "
                              "(without them every input would stop at the first look)")
        first = self.first_look
        if first is None:
            first = CS_FIRST_LOOK if rule == "confidence-sequence" else FIRST_LOOK
        check_positive_int(first, name="first_look")
        if not _number(self.growth) or not (1 < self.growth < math.inf):
            raise ConfigError(f"growth must be a finite number > 1 (the factor between looks), got {self.growth!r}")
        if not _number(self.futility) or not 0 < self.futility < 1:
            raise ConfigError(f"futility must be a level in (0, 1), got {self.futility!r}")
        if not _number(self.optimism) or not 0 <= self.optimism < math.inf:
            raise ConfigError(f"optimism must be a finite number >= 0, got {self.optimism!r}")
        for name, value in (("rule", rule), ("radii", None if radii is None else tuple(radii)),
                            ("tolerance", tolerance), ("first_look", first)):
            object.__setattr__(self, name, value)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# the keywords certify_mixture (sequential_rule, ...) and estimate_top_bound (rule, ...) took before Sequential,
# each with the Sequential field it became
_OLD_SEQUENTIAL = {"tolerance": "tolerance", "radii": "radii", "sequential_rule": "rule", "rule": "rule",
                   "first_look": "first_look", "growth": "growth", "futility": "futility", "optimism": "optimism"}


def sequential_from_keywords(sequential, deprecated: dict, caller: str, *, tolerance=None) -> Sequential | None:
    """The Sequential a function was given, or one built from the keywords it used to take (deprecated).

    ``sequential`` True or False (the old flag) and the old keywords in ``deprecated`` (``tolerance``, ``radii``,
    ``sequential_rule``, ...; removed from it) work for one release with a DeprecationWarning; ``tolerance`` is the
    old default tolerance.  Without the flag, old keywords are checked as before and dropped (radii refused).
    Mixing ``Sequential(...)`` with them raises TypeError."""
    old = {k: deprecated.pop(k) for k in list(deprecated) if k in _OLD_SEQUENTIAL}
    flag = sequential if isinstance(sequential, bool) else None
    if flag is None and not old:
        if sequential is not None and not isinstance(sequential, Sequential):
            raise ConfigError(f"sequential must be Sequential(...) or None (a fixed budget), got "
                              f"{type(sequential).__name__}")
        return sequential
    if flag is None and sequential is not None:
        raise TypeError(f"{caller}(): give Sequential(...) or its fields ({', '.join(sorted(old))}), not both")
    names = (["sequential"] if flag is not None else []) + list(old)
    warnings.warn(f"{caller}({', '.join(f'{k}=' for k in names)}...) is deprecated and will be removed in the next "
                  "release; pass sequential=Sequential(rule=..., tolerance=..., radii=...) for sequential sampling, "
                  "sequential=None for a fixed budget", DeprecationWarning, stacklevel=3)
    fields = {_OLD_SEQUENTIAL[k]: v for k, v in old.items()}
    if flag:
        return Sequential(**{"tolerance": tolerance, **fields})
    if fields.get("tolerance") is not None:   # a fixed budget: the old keywords were checked, not used
        check_tolerance(fields["tolerance"])
    if fields.get("radii") is not None:
        check_radii(fields["radii"])
        raise ConfigError("radii steer sequential sampling: pass sequential=Sequential(radii=...) (or drop radii)")
    return None


def certify_mixture(g, h_base, x: torch.Tensor, *, alphas: AlphaLike, smoothing: Smoothing | None = None,
                    estimator: str | Estimator | None = None, sequential: Sequential | None = None,
                    inputs: Inputs | None = None, **deprecated) -> MixtureCertificate:
    """Certify the mixture of ``g`` and the Gaussian-smoothed ``h_base`` at every alpha (Theorem 2).

    ``g``, ``h_base``: models returning (n, c) logits (``g`` may be None: it does
    not enter the radius); ``x`` (n, ...) on the models' device; ``alphas`` a
    number or k values in [0, 1]; ``smoothing``: :class:`~robustmix.groups.Smoothing`
    with the noise ``sigma`` (required), ``n0`` selection samples, ``num_samples``
    (>= n0) estimation samples, ``delta`` and ``batch_size`` noise samples per
    forward pass; ``estimator`` one of "clopper-pearson", "bernstein", "betting" or
    None (Clopper-Pearson); ``sequential``: None (a fixed budget) or
    :class:`Sequential` (sample in rounds, stop each input once its decision is
    settled; its rule, reported radii and tolerance); ``inputs``: :class:`Inputs`,
    the dataset index of each input (seeds its noise with ``seed``; default 0..n-1)
    and the inputs' ``input_range`` (default [0, 1], images; None: inputs on all of
    R^d).  The models are probed once on the first inputs (NaN, wrong shape,
    probabilities) before any noise is drawn.  All certificates hold together with
    probability >= 1 - delta (per input, over the noise).

    Deprecated for one release (DeprecationWarning): ``sigma=``, ``num_samples=``, ``n0=``, ``delta=``,
    ``batch_size=`` for ``smoothing=Smoothing(...)``; ``sequential=True/False``, ``tolerance=``, ``radii=``,
    ``sequential_rule=`` for ``sequential=Sequential(...)`` or None; ``seed=``, ``indices=``, ``input_range=`` for
    ``inputs=Inputs(...)``.  Giving a group and one of its own old keywords raises TypeError.
    """
    refuse_unknown(deprecated, "certify_mixture", {"sigma", "num_samples", "n0", "delta", "batch_size", "seed",
                                                   "indices", "input_range", "tolerance", "radii", "sequential_rule"})
    smoothing = from_keywords(Smoothing, smoothing, old_keywords(deprecated, Smoothing), "certify_mixture")
    inputs = from_keywords(Inputs, inputs, old_keywords(deprecated, Inputs), "certify_mixture")
    sequential = sequential_from_keywords(sequential, deprecated, "certify_mixture")
    smoothing = group_or_default(smoothing, Smoothing, "smoothing")
    inputs = group_or_default(inputs, Inputs, "inputs")
    est = _parse_estimator(estimator)
    a = _check_args(x, smoothing, alphas, inputs, est)
    if sequential is not None:
        check_rule(sequential.rule, est)
    with torch.no_grad():
        probe_models({"h": h_base} if g is None else {"g": g, "h": h_base}, x, num_classes=None)
        return _certify_mixture(g, h_base, x, smoothing, a, est, sequential, inputs)


def _certify_mixture(g, h_base, x: torch.Tensor, smoothing: Smoothing, a: torch.Tensor, est: Estimator,
                     sequential: Sequential | None, inputs: Inputs) -> MixtureCertificate:
    """certify_mixture after its checks."""
    n, idx, seed = len(x), inputs.dataset_indices(len(x)), inputs.seed
    sigma, n0, num_samples = smoothing.required_sigma(), smoothing.n0, smoothing.num_samples
    batch_size = smoothing.batch_size
    prob_sel, votes_sel, _ = smoothing_pass(h_base, x, sigma, NoiseSamples(seed, idx, SELECTION_STREAM, 0, n0),
                                            batch_size=batch_size)
    c = prob_sel.shape[1]
    g_logits = None if g is None else g(x)
    if g_logits is not None:
        check_base_logits(g_logits, n)
        if g_logits.shape[1] != c:
            raise ModelError(f"g has {g_logits.shape[1]} classes but h_base has {c}: mix models of the same task")
    top = (votes_sel if est.smoothing == "hard" else prob_sel).argmax(1)

    prob_total, votes_total = prob_sel.numpy().copy(), votes_sel.numpy().copy()

    def draw(active, start, stop):
        rows = torch.from_numpy(active)
        samples = NoiseSamples(seed, [idx[i] for i in active], ESTIMATION_STREAM, start, stop)
        prob, votes, tracked = smoothing_pass(h_base, x[rows.to(x.device)], sigma, samples, batch_size=batch_size,
                                              track=top[rows] if est.smoothing == "soft" else None)
        prob_total[active] += prob.numpy()
        votes_total[active] += votes.numpy()
        return votes.gather(1, top[rows][:, None])[:, 0].numpy(), None if tracked is None else tracked.numpy()

    p_lower, used = estimate_top_bound(draw, top, est, smoothing=smoothing, alphas=a, c=c, sequential=sequential)
    radius = top_bound_radius(p_lower, top, c, sigma, a)
    prediction = torch.where(radius > 0, top[None].expand_as(radius), torch.full_like(radius, ABSTAIN, dtype=torch.long))
    h_point = torch.from_numpy((votes_total if est.smoothing == "hard" else prob_total) / (n0 + used[:, None]))
    clean = None if g_logits is None else mixture_clean_prediction(g_logits.double().softmax(-1).cpu(), h_point,
                                                                   prediction, a)
    log.info("certified %d inputs with %s (%s smoothing): %.0f estimation samples per input on average", n, est.value,
             est.smoothing, used.mean())
    seq = sequential is not None
    return MixtureCertificate(prediction=prediction, radius=radius, alphas=a, top_class=top,
                              p_lower=torch.from_numpy(p_lower), samples_used=torch.from_numpy(used),
                              h_mean=torch.from_numpy(prob_total / (n0 + used[:, None])),
                              smoothing=est.smoothing, estimator=est.value, sigma=sigma, delta=float(smoothing.delta),
                              n0=n0, num_samples=num_samples, sequential=seq,
                              tolerance=sequential.tolerance if seq else None,
                              radii=list(sequential.radii) if seq and sequential.radii is not None else None,
                              sequential_rule=sequential.rule if seq else None, clean_prediction=clean)


def mixture_clean_prediction(g_probs: torch.Tensor, h_point: torch.Tensor, prediction: torch.Tensor,
                             alphas) -> torch.Tensor:
    """The certified mixture's output at x (k, n): the certified class where there is one (``prediction`` >= 0),
    else the argmax of ``(1 - alpha) g_probs + alpha h_point`` (g's softmax and h's point estimate, (n, c))."""
    a = torch.as_tensor(alphas, dtype=torch.float64)[:, None, None]
    point = ((1 - a) * g_probs[None] + a * h_point.double()[None]).argmax(-1)
    return torch.where(prediction >= 0, prediction, point)
