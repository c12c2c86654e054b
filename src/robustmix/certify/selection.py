"""Certified compositional selection (ACES): a smoothed selector decides per input whether h answers.

Horvath, Mueller, Fischer, Vechev, "Robust and Accurate - Compositional
Architectures for Randomized Smoothing" (2022).  With an accurate model g, a
noise-trained base model ``h_base`` smoothed at noise level sigma, and a selector
``s`` that maps an input to "h answers" (1) or "g answers" (0), the composite is

    F(x) = H(x)      if S(x) = 1, where S(x) = 1[P(s(x + xi) = 1) > 1/2],
    F(x) = g(x)      otherwise,

with ``H(x) = argmax_c P(argmax h_base(x + xi) = c)`` (Cohen et al.'s smoothed
classifier) and xi ~ N(0, sigma^2 I).  Selectors:

* ``"entropy"`` (default): h answers where the entropy of softmax(h_base(x + xi))
  is at most the threshold (a confident h); thresholds lie in [0, ln c].
* a module returning one value in [0, 1] per input (the probability that h should
  answer, e.g. a trained selection network): h answers where it is at least the
  threshold; thresholds lie in [0, 1].

Each threshold gives one composite; the k thresholds trade clean accuracy (more
inputs to g) against certified accuracy (more inputs to h).

Certificate (:func:`certify_selection`): n0 samples pick H's class c_A; ``num_samples``
fresh samples give one-sided Clopper-Pearson lower bounds ``p_A`` on
``P(argmax h_base(x + xi) = c_A)`` at level delta / 2 and ``q_j`` on
``P(s_j(x + xi) = 1)`` at level delta / (2k) for each threshold j (the same noise
samples serve both).  If ``p_A > 1/2`` and ``q_j > 1/2``, composite j returns c_A on
the whole l2 ball of radius ``min(sigma PhiInv(p_A), sigma PhiInv(q_j))``;
otherwise it abstains there (prediction -1, radius 0).

Proof.  Let A be the event that p_A exceeds the true probability and B_j the event
that q_j exceeds the true selection probability of threshold j.  Each bound is a
one-sided Clopper-Pearson bound on Bernoulli samples, so P(A) <= delta / 2 and
P(B_j) <= delta / (2k); by the union bound (no independence needed, so sharing the
samples is fine) P(A or B_1 or ... or B_k) <= delta / 2 + k delta / (2k) = delta.
Outside that event, for any x' with ||x' - x||_2 < sigma PhiInv(q_j), Cohen et al.'s
Theorem 1 applied to the binary smoothed selector gives P(s_j(x' + xi) = 1) >=
Phi(PhiInv(q_j) - ||x' - x|| / sigma) > 1/2, so S_j(x') = 1 and F_j(x') = H(x');
and for ||x' - x|| < sigma PhiInv(p_A), the same theorem (every other class has
probability <= 1 - p_A < 1/2) gives H(x') = c_A.  So every certificate of the
k composites holds together with probability >= 1 - delta (per input, over the
noise).  g is never certified: where the selector sends an input to g, the
composite answers g(x) with radius 0 (``clean_prediction``).

``clean_prediction`` is what the composite outputs at x with its Monte-Carlo
point estimates (S from the selection frequency over the estimation samples, H
from the votes over all samples); use it for clean accuracy.  The floating-point
caveat of :mod:`robustmix.certify.mixture` (Voracek & Hein, 2023) applies here too.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import torch
import torch.nn.functional as F
from scipy.stats import norm as normal

from .._validation import probe_models
from ..errors import ConfigError, ModelError
from .._config import refuse_unknown
from ..groups import Smoothing, from_keywords
from .mixture import ESTIMATION_STREAM, SELECTION_STREAM, Certificate
from .smoothing import (ABSTAIN, Inputs, NoiseSamples, check_base_logits, check_batch, group_or_default, old_keywords,
                        smoothing_pass)
from .stats import clopper_pearson_lower

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SelectionCertificate(Certificate):
    """Certificates of k selection composites (one per threshold) at n inputs (CPU tensors)."""

    prediction: torch.Tensor        # (k, n) certified class, ABSTAIN (-1) where the radius is 0
    radius: torch.Tensor            # (k, n) float64 l2 radius, 0 where abstaining
    clean_prediction: torch.Tensor  # (k, n) the composite's output at x (point estimates): H's class or g's
    selected: torch.Tensor          # (k, n) bool: the smoothed selector sends x to h (point estimate)
    select_lower: torch.Tensor      # (k, n) lower bound on the selection probability (level delta / (2k))
    thresholds: torch.Tensor        # (k,)
    top_class: torch.Tensor         # (n,) H's class picked by the selection samples
    p_lower: torch.Tensor           # (n,) lower bound on H's vote probability for top_class (level delta / 2)
    g_prediction: torch.Tensor      # (n,) g's class at x
    selector: str
    sigma: float
    delta: float
    n0: int
    num_samples: int


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of softmax(logits) per row, finite for any finite logits."""
    logp = F.log_softmax(logits.double(), -1)
    return -(logp.exp() * logp).sum(-1)


def _selector_scores(selector, noisy: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    if selector == "entropy":
        return entropy(logits)
    out = selector(noisy)
    return out.reshape(len(noisy)).double()


def check_selector(selector, thresholds, x: torch.Tensor, c: int):
    """(selector, thresholds as a float64 tensor, selector's name); one-line errors before any sampling."""
    if isinstance(selector, str):
        if selector != "entropy":
            raise ConfigError(f"unknown selector {selector!r}: use 'entropy' or pass a torch.nn.Module that returns "
                              "one value in [0, 1] per input")
        lo, hi, name = 0.0, math.log(c), "entropy"
    elif isinstance(selector, torch.nn.Module):
        with torch.no_grad():
            out = selector(x[:2])
        if not isinstance(out, torch.Tensor) or out.numel() != len(x[:2]) or out.shape[0] != len(x[:2]):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ModelError(f"the selector must return one value per input, shape (n,) or (n, 1); got {got} for "
                             f"{len(x[:2])} inputs: end it with a single-output layer")
        if not torch.isfinite(out).all() or out.min() < 0 or out.max() > 1:
            raise ModelError("the selector must return values in [0, 1] (the probability that h should answer); "
                             "end it with torch.sigmoid")
        lo, hi, name = 0.0, 1.0, type(selector).__name__
    else:
        raise ConfigError(f"selector must be 'entropy' or a torch.nn.Module, got {type(selector).__name__}")
    try:
        values = [float(t) for t in ([thresholds] if isinstance(thresholds, (int, float)) else thresholds)]
    except (TypeError, ValueError):
        raise ConfigError(f"thresholds must be numbers, got {thresholds!r}") from None
    if not values:
        raise ConfigError("thresholds is empty: give at least one selector threshold, e.g. [0.5]")
    bad = [t for t in values if not (lo <= t <= hi)]
    if bad:
        raise ConfigError(f"thresholds {bad} lie outside the {name} selector's range [{lo:g}, {hi:.4g}]"
                          + (f" (entropy of {c} classes is at most ln {c})" if name == "entropy" else ""))
    return selector, torch.tensor(values, dtype=torch.float64), name


def certify_selection(g, h_base, x: torch.Tensor, *, thresholds, smoothing: Smoothing | None = None,
                      selector: str | torch.nn.Module = "entropy", inputs: Inputs | None = None,
                      **deprecated) -> SelectionCertificate:
    """Certify ACES composites of ``g`` and the smoothed ``h_base``, one per selector threshold (module docstring).

    ``g``, ``h_base``: models returning (n, c) logits; ``x`` (n, ...) on their
    device; ``thresholds``: k selector thresholds; ``smoothing``:
    :class:`~robustmix.groups.Smoothing` with the noise ``sigma`` (required), ``n0``
    selection samples, ``num_samples`` (>= n0) estimation samples, ``delta`` and
    ``batch_size``; ``selector``: "entropy" or a module (values in [0, 1], h answers
    at or above the threshold); ``inputs``: :class:`~robustmix.certify.Inputs`, the
    dataset index of each input (seeds its noise with ``seed``; default 0..n-1) and
    the inputs' ``input_range`` (default [0, 1], images; None: inputs on all of
    R^d).  Returns a :class:`SelectionCertificate`; all its certificates hold
    together with probability >= 1 - delta.  Checks everything, and probes the
    models once on the first inputs, before any sampling.

    Deprecated for one release (DeprecationWarning): ``sigma=``, ``num_samples=``, ``n0=``, ``delta=``,
    ``batch_size=`` for ``smoothing=Smoothing(...)``; ``seed=``, ``indices=``, ``input_range=`` for
    ``inputs=Inputs(...)``.  Giving a group and one of its own old keywords raises TypeError.
    """
    refuse_unknown(deprecated, "certify_selection", {"sigma", "num_samples", "n0", "delta", "batch_size", "seed",
                                                     "indices", "input_range"})
    smoothing = from_keywords(Smoothing, smoothing, old_keywords(deprecated, Smoothing), "certify_selection")
    inputs = from_keywords(Inputs, inputs, old_keywords(deprecated, Inputs), "certify_selection")
    smoothing = group_or_default(smoothing, Smoothing, "smoothing")
    inputs = group_or_default(inputs, Inputs, "inputs")
    check_batch(x, inputs.input_range)
    smoothing.required_sigma()
    if smoothing.num_samples < smoothing.n0:
        raise ConfigError(f"num_samples must be an integer >= n0 = {smoothing.n0}, got {smoothing.num_samples!r}")
    n = len(x)
    idx = inputs.dataset_indices(n)
    with torch.no_grad():
        probe_models({"g": g, "h": h_base}, x, num_classes=None)
        g_logits, h_logits = g(x), h_base(x[:2])
        check_base_logits(g_logits, n)
        check_base_logits(h_logits, len(x[:2]))
        c = h_logits.shape[1]
        if g_logits.shape[1] != c:
            raise ModelError(f"g has {g_logits.shape[1]} classes but h_base has {c}: compose models of the same task")
        selector, thr, name = check_selector(selector, thresholds, x, c)
        votes_sel, votes, chosen = selection_counts(h_base, x, smoothing, selector, thr, seed=inputs.seed,
                                                    indices=idx)
        cert = selection_from_counts(votes_sel, votes, chosen, g_logits.argmax(1).cpu(), thr, smoothing=smoothing,
                                     selector=name)
    k = len(thr)
    log.info("certified %d inputs at %d selector thresholds (%s): %.1f%% sent to h at the middle threshold", n, k,
             name, 100 * float(cert.selected[k // 2].double().mean()))
    return cert


def selection_counts(h_base, x: torch.Tensor, smoothing: Smoothing, selector, thresholds: torch.Tensor, *,
                     seed: int = 0, indices=None, **deprecated) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sampling stage: (selection votes (n, c), estimation votes (n, c), selector hits (n, k)), float64 CPU.

    ``smoothing`` gives sigma, the ``n0`` selection and ``num_samples`` estimation
    samples and ``batch_size``; ``seed`` and ``indices`` (the dataset index of each
    input, default 0..n-1) name each input's noise.  ``selector`` and ``thresholds``
    as returned by :func:`check_selector`; the selector sees the estimation samples
    (the same noise as h's votes).

    Deprecated for one release (DeprecationWarning): a number in place of ``smoothing`` (the old positional
    ``sigma``) with ``num_samples=``, ``n0=``, ``batch_size=`` for ``Smoothing(...)``."""
    refuse_unknown(deprecated, "selection_counts", {"sigma", "num_samples", "n0", "batch_size"})
    old = old_keywords(deprecated, Smoothing)
    if smoothing is not None and not isinstance(smoothing, Smoothing):
        old = {"sigma": smoothing, **old}     # the old positional sigma
        smoothing = None
    smoothing = from_keywords(Smoothing, smoothing, old, "selection_counts")
    smoothing = group_or_default(smoothing, Smoothing, "smoothing")
    sigma = smoothing.required_sigma()
    idx = range(len(x)) if indices is None else indices      # NoiseSamples and smoothing_pass check them
    below = selector == "entropy"      # entropy: h answers at or below the threshold; a module: at or above
    device_thr = thresholds.to(x.device)
    chosen = torch.zeros((len(x), len(thresholds)), dtype=torch.float64, device=x.device)

    def observe(rows, noisy, logits):
        score = _selector_scores(selector, noisy, logits)
        hit = (score[:, None] <= device_thr) if below else (score[:, None] >= device_thr)
        chosen.index_add_(0, rows, hit.double())

    _, votes_sel, _ = smoothing_pass(h_base, x, sigma, NoiseSamples(seed, idx, SELECTION_STREAM, 0, smoothing.n0),
                                     batch_size=smoothing.batch_size)
    _, votes, _ = smoothing_pass(h_base, x, sigma, NoiseSamples(seed, idx, ESTIMATION_STREAM, 0, smoothing.num_samples),
                                 batch_size=smoothing.batch_size, observe=observe)
    return votes_sel, votes, chosen.cpu()


def selection_from_counts(votes_sel, votes, chosen, g_class, thresholds, *, smoothing: Smoothing | None = None,
                          selector: str, **deprecated) -> SelectionCertificate:
    """The certificates of :func:`certify_selection` from its counts (module docstring for the proof).

    ``smoothing`` gives sigma, ``delta``, ``n0`` and the ``num_samples`` estimation samples the counts come from.

    Deprecated for one release (DeprecationWarning): ``sigma=``, ``delta=``, ``n0=``, ``num_samples=`` for
    ``smoothing=Smoothing(...)``."""
    refuse_unknown(deprecated, "selection_from_counts", {"sigma", "delta", "n0", "num_samples"})
    smoothing = from_keywords(Smoothing, smoothing, old_keywords(deprecated, Smoothing), "selection_from_counts")
    smoothing = group_or_default(smoothing, Smoothing, "smoothing")
    sigma, delta, n0, num_samples = smoothing.required_sigma(), smoothing.delta, smoothing.n0, smoothing.num_samples
    votes_sel, votes = torch.as_tensor(votes_sel, dtype=torch.float64), torch.as_tensor(votes, dtype=torch.float64)
    thr = torch.as_tensor(thresholds, dtype=torch.float64)
    k, n = len(thr), len(votes)
    top = votes_sel.argmax(1)
    p_lower = torch.from_numpy(clopper_pearson_lower(votes.gather(1, top[:, None])[:, 0].numpy(), num_samples,
                                                     delta / 2))
    counts = torch.as_tensor(chosen, dtype=torch.float64).T       # (k, n)
    q_lower = torch.from_numpy(clopper_pearson_lower(counts.numpy(), num_samples, delta / (2 * k)))
    r_h = sigma * torch.from_numpy(normal.ppf(p_lower.clamp(1e-300, 1).numpy()))
    r_sel = sigma * torch.from_numpy(normal.ppf(q_lower.clamp(1e-300, 1).numpy()))
    ok = (p_lower > 0.5)[None] & (q_lower > 0.5)
    radius = torch.where(ok, torch.minimum(r_h[None].expand(k, n), r_sel), torch.zeros((k, n), dtype=torch.float64))
    prediction = torch.where(ok, top[None].expand(k, n), torch.full((k, n), ABSTAIN, dtype=torch.long))
    selected = counts / num_samples > 0.5
    h_class = (votes + votes_sel).argmax(1)
    g_class = torch.as_tensor(g_class).long()
    clean = torch.where(selected, h_class[None].expand(k, n), g_class[None].expand(k, n))
    return SelectionCertificate(prediction=prediction, radius=radius, clean_prediction=clean, selected=selected,
                                select_lower=q_lower, thresholds=thr, top_class=top, p_lower=p_lower,
                                g_prediction=g_class, selector=selector, sigma=sigma, delta=float(delta), n0=n0,
                                num_samples=num_samples)
