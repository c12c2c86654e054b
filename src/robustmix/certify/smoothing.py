"""Gaussian randomized smoothing: soft smoothed classifiers with sound bounds, and Cohen et al.'s baseline.

``h(x) = E[hbar(x + xi)]``, ``xi ~ N(0, sigma^2 I)``, is estimated by Monte Carlo.
Noise for input ``index`` is drawn on the input's device in chunks of
:func:`chunk_rows` samples, each from a generator seeded by (seed, index, stream,
chunk) alone (:func:`noise_chunk`), so the samples do not depend on the batch
size, on how the data is sharded or on sequential rounds; the noise of several
inputs shares each forward pass (:func:`smoothing_pass`, which draws the samples a
:class:`NoiseSamples` names).  One sampling pass yields every class's mean and
bounds, which serve every alpha of a sweep.  :class:`Inputs` says which inputs a
batch holds (their dataset indices and the run's seed, which name their noise) and
the range they lie in.

Modes:

* ``empirical``: the plain Monte-Carlo mean (as the paper does, 10,000 samples).
* ``sound``: simultaneous bounds, a lower and an upper bound for each of the c
  classes, each failing with probability at most delta / (2c), so that all
  hold together with probability >= 1 - delta (union bound).  Soft scores
  (``estimator="soft"``) use Hoeffding's inequality for variables in [0, 1];
  hard votes (``estimator="hard"``, hbar = one-hot of the base prediction) use
  one-sided Clopper-Pearson.  A radius computed from these bounds holds with
  probability >= 1 - delta; where they do not separate, the classifier abstains.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import norm as normal

from .._validation import check_eps, check_input, check_positive_int
from .._seeding import example_seed
from ..errors import ConfigError, InputError, ModelError
from ..groups import from_keywords
from .stats import binomial_pvalue, clopper_pearson_lower, clopper_pearson_upper, hoeffding_halfwidth

ABSTAIN = -1
NOISE_CHUNK = 1000           # samples per seeded noise chunk (fewer where that exceeds 2^22 values)
NOISE_CHUNK_ELEMENTS = 1 << 22
UNIT_RANGE = (0.0, 1.0)       # the default input_range: images scaled to [0, 1]


def noise_seed(seed: int, index: int, stream: int, chunk: int) -> int:
    """The 63-bit generator seed of noise chunk ``chunk`` of input ``index`` in ``stream`` (the one seeding rule)."""
    return example_seed(seed, index, stream, chunk)


def chunk_rows(shape) -> int:
    """Samples per noise chunk for inputs of ``shape``: NOISE_CHUNK, capped at about 2^22 noise values."""
    return max(1, min(NOISE_CHUNK, NOISE_CHUNK_ELEMENTS // max(1, math.prod(shape))))


def noise_chunk(shape, *, seed: int, index: int, stream: int, chunk: int, device=None, dtype=torch.float32,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise (m, *shape), m = chunk_rows(shape), for sample numbers ``chunk * m`` onwards.

    Drawn on ``device`` by a generator seeded from (seed, index, stream, chunk) alone,
    so sample j of input ``index`` is the same whatever the batch size, the other
    inputs in the batch, the sharding or the number of sequential rounds.
    """
    gen = generator if generator is not None else torch.Generator(device=device)
    gen.manual_seed(noise_seed(seed, index, stream, chunk))
    return torch.randn((chunk_rows(shape), *shape), generator=gen, device=device, dtype=dtype)


def _pieces(n: int, start: int, stop: int, batch_size: int, m: int):
    """(row, chunk, lo, hi): the sample numbers [start, stop) of every row, cut at chunk (m) and batch edges."""
    for row in range(n):
        for chunk in range(start // m, -(-stop // m)):
            lo, hi = max(start - chunk * m, 0), min(stop - chunk * m, m)
            for a in range(lo, hi, batch_size):
                yield row, chunk, a, min(hi, a + batch_size)


def _batches(pieces, batch_size: int):
    batch, size = [], 0
    for piece in pieces:
        if batch and size + piece[3] - piece[2] > batch_size:
            yield batch
            batch, size = [], 0
        batch.append(piece)
        size += piece[3] - piece[2]
    if batch:
        yield batch


def check_input_range(input_range):
    """``input_range`` as a (low, high) pair of floats, or None (inputs on all of R^d): ConfigError otherwise."""
    if input_range is None:
        return None
    try:
        lo, hi = (float(v) for v in input_range)
    except (TypeError, ValueError):
        lo = hi = math.nan
    if not lo < hi:
        raise ConfigError(f"input_range must be (low, high) with low < high, e.g. (0, 1), or None for inputs on all "
                          f"of R^d; got {input_range!r}")
    return lo, hi


def check_batch(x, input_range=UNIT_RANGE) -> torch.Tensor:
    """A finite floating-point batch (n, ...) with values in ``input_range``, checked once at the entry point.

    robustmix models take images in [0, 1] (normalisation lives in the model), so that is the default;
    ``input_range=None`` accepts inputs on all of R^d (smoothing is defined there: toys, features).  The
    noise itself leaves the range by design and is never checked."""
    check_input(x, name="x", min_ndim=2, unit_range=False)
    input_range = check_input_range(input_range)
    if input_range is not None and x.numel():
        low, high = float(x.min()), float(x.max())
        if low < input_range[0] or high > input_range[1]:
            raise InputError(f"x has values in [{low:.3g}, {high:.3g}], outside input_range=({input_range[0]:g}, "
                             f"{input_range[1]:g}); scale x into it (robustmix models take images in [0, 1]: pass "
                             "x / 255 for 8-bit images), or pass input_range=None for inputs on all of R^d")
    return x


def check_base_logits(logits, n: int) -> None:
    """Raise :class:`ModelError` unless a base model's output is one (n, c) logits tensor with c >= 2."""
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != n or logits.shape[1] < 2:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ModelError(f"the base model must return (n, c) logits with c >= 2 for n inputs; got {got} for {n} "
                         "inputs: wrap it so that forward returns one logits tensor per input")


def _seed(value, name: str) -> int:
    """An integer seed or stream number (Python or numpy integer; not a bool), ConfigError otherwise."""
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None


def _index_tuple(indices) -> tuple[int, ...]:
    """Dataset indices (a list, tensor or array of integers) as a tuple of ints, ConfigError otherwise."""
    values = indices.tolist() if hasattr(indices, "tolist") else indices
    try:
        return tuple(int(i) for i in ([values] if isinstance(values, (int, float)) else values))
    except (TypeError, ValueError):
        raise ConfigError(f"indices must be the dataset index (an integer) of each input, got {indices!r}") from None


@dataclasses.dataclass(frozen=True)
class Inputs:
    """Which inputs a batch ``x`` holds, and where inputs live.

    ``indices``: the dataset index of each input (None: 0..n-1).  With ``seed`` it
    names each input's noise: sample j of input i comes from a generator seeded by
    (seed, indices[i], stream, chunk) alone (:func:`noise_seed`), so a certificate
    does not depend on the batch, its order or the sharding.  ``input_range``: the
    (low, high) range every input lies in (default [0, 1], images; None: inputs on
    all of R^d), checked once on x before any noise is drawn.
    """

    indices: tuple[int, ...] | None = None
    seed: int = 0
    input_range: tuple[float, float] | None = UNIT_RANGE

    def __post_init__(self):
        if self.indices is not None:
            object.__setattr__(self, "indices", _index_tuple(self.indices))
        object.__setattr__(self, "seed", _seed(self.seed, "seed"))
        object.__setattr__(self, "input_range", check_input_range(self.input_range))

    def dataset_indices(self, n: int) -> list[int]:
        """The dataset index of each of ``n`` inputs (0..n-1 without ``indices``); InputError on a count mismatch."""
        if self.indices is None:
            return list(range(n))
        if len(self.indices) != n:
            raise InputError(f"{len(self.indices)} indices for {n} inputs: give one dataset index per input")
        return list(self.indices)


@dataclasses.dataclass(frozen=True)
class NoiseSamples:
    """The noise samples one :func:`smoothing_pass` draws: sample numbers ``start <= j < stop`` of stream ``stream``
    for the inputs with dataset indices ``indices`` (one per row of x), in the run seeded by ``seed``."""

    seed: int
    indices: tuple[int, ...]
    stream: int
    start: int
    stop: int

    def __post_init__(self):
        object.__setattr__(self, "seed", _seed(self.seed, "seed"))
        object.__setattr__(self, "indices", _index_tuple(self.indices))
        object.__setattr__(self, "stream", _seed(self.stream, "stream"))
        start, stop = _seed(self.start, "start"), _seed(self.stop, "stop")
        if start < 0 or stop <= start:
            raise ConfigError(f"no samples to draw (start={self.start}, stop={self.stop}): ask for at least one sample")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "stop", stop)


def old_keywords(deprecated: dict, group: type) -> dict:
    """The deprecated keywords (removed from ``deprecated``) that are fields of the option group ``group``."""
    names = {f.name for f in dataclasses.fields(group)}
    return {k: deprecated.pop(k) for k in list(deprecated) if k in names}


def group_or_default(value, group: type, name: str):
    """``value`` if it is a ``group``, ``group()`` (its defaults) for None; ConfigError for anything else."""
    if value is None:
        return group()
    if not isinstance(value, group):
        raise ConfigError(f"{name} must be {group.__name__}(...) or None, got {type(value).__name__}")
    return value


def smoothing_pass(base, x: torch.Tensor, sigma: float, samples: NoiseSamples | None = None, *, batch_size: int,
                   track=None, observe: Callable | None = None, **deprecated) -> tuple:
    """Classify ``x_i + sigma * noise_ij`` for the noise samples ``samples`` names (sample numbers
    ``samples.start <= j < samples.stop`` of every input i).

    The noise of several inputs shares one forward pass of at most ``batch_size``
    samples; noise is drawn and statistics are accumulated on x's device, with one
    copy to the host at the end.  Returns float64 CPU tensors ``(prob_sum (n, c),
    votes (n, c), tracked)``; ``tracked`` (n, stop - start) holds every sample's
    softmax score of class ``track[i]`` (None when ``track`` is None).  ``observe(rows,
    noisy, logits)``, if given, sees every forward pass (``rows``: the input of each
    noisy sample), for statistics of other functions of the same samples.

    Deprecated for one release: ``seed=``, ``indices=``, ``stream=``, ``start=``, ``stop=`` instead of
    ``samples=NoiseSamples(...)`` (DeprecationWarning).
    """
    samples = from_keywords(NoiseSamples, samples, deprecated, "smoothing_pass")
    if not isinstance(samples, NoiseSamples):
        raise ConfigError("smoothing_pass needs samples=NoiseSamples(seed, indices, stream, start, stop)")
    if len(samples.indices) != len(x):
        raise InputError(f"{len(samples.indices)} indices for {len(x)} inputs: give one dataset index per input")
    with torch.no_grad():
        return _smoothing_pass(base, x, sigma, samples, batch_size, track, observe)


def _smoothing_pass(base, x: torch.Tensor, sigma: float, samples: NoiseSamples, batch_size: int, track,
                    observe) -> tuple:
    seed, indices, stream, start, stop = samples.seed, samples.indices, samples.stream, samples.start, samples.stop
    device, n = x.device, len(x)
    gen = torch.Generator(device=device)
    track = None if track is None else torch.as_tensor(track, device=device).long()
    prob_sum = votes = tracked = None
    m = chunk_rows(x.shape[1:])
    for batch in _batches(_pieces(n, start, stop, batch_size, m), batch_size):
        sizes = torch.tensor([hi - lo for _, _, lo, hi in batch])
        rows = torch.repeat_interleave(torch.tensor([row for row, _, _, _ in batch]), sizes).to(device)
        noisy = torch.empty((int(sizes.sum()), *x.shape[1:]), device=device, dtype=x.dtype)
        at = 0
        for row, chunk, lo, hi in batch:
            if lo == 0 and hi == m:                 # a whole chunk: draw it in place
                gen.manual_seed(noise_seed(seed, indices[row], stream, chunk))
                torch.randn(noisy[at:at + hi].shape, generator=gen, out=noisy[at:at + hi])
            else:
                noisy[at:at + hi - lo] = noise_chunk(x.shape[1:], seed=seed, index=indices[row], stream=stream,
                                                     chunk=chunk, device=device, dtype=x.dtype, generator=gen)[lo:hi]
            at += hi - lo
        noisy.mul_(sigma).add_(x[rows])
        logits = base(noisy)
        check_base_logits(logits, len(noisy))
        probs = F.softmax(logits.double(), -1)
        if prob_sum is None:
            prob_sum = torch.zeros((n, probs.shape[1]), dtype=torch.float64, device=device)
            votes = torch.zeros_like(prob_sum)
            if track is not None:
                tracked = torch.zeros((n, stop - start), dtype=torch.float64, device=device)
        if observe is not None:
            observe(rows, noisy, logits)
        prob_sum.index_add_(0, rows, probs)
        votes.index_put_((rows, logits.argmax(1)), torch.ones_like(rows, dtype=torch.float64), accumulate=True)
        if tracked is not None:
            cols = torch.cat([torch.arange(chunk * m + lo - start, chunk * m + hi - start)
                              for _, chunk, lo, hi in batch]).to(device)
            tracked[rows, cols] = probs.gather(1, track[rows][:, None])[:, 0]
    return prob_sum.cpu(), votes.cpu(), None if tracked is None else tracked.cpu()


@dataclasses.dataclass
class SmoothingEstimate:
    """Monte-Carlo statistics of h at n inputs (all tensors on CPU, float64)."""

    mean: torch.Tensor      # (n, c) mean of softmax scores
    counts: torch.Tensor    # (n, c) hard votes
    num_samples: int

    def bounds(self, delta: float, estimator: str = "soft") -> tuple[torch.Tensor, torch.Tensor]:
        """(lower, upper), each (n, c), holding simultaneously with probability >= 1 - delta."""
        c = self.mean.shape[1]
        per = delta / (2 * c)
        if estimator == "soft":
            t = hoeffding_halfwidth(self.num_samples, per)
            return (self.mean - t).clamp_min(0.0), (self.mean + t).clamp_max(1.0)
        if estimator == "hard":
            k = self.counts.numpy()
            lo = clopper_pearson_lower(k, self.num_samples, per)
            hi = clopper_pearson_upper(k, self.num_samples, per)
            return torch.from_numpy(lo), torch.from_numpy(hi)
        raise ConfigError(f"unknown estimator {estimator!r}: use 'soft' or 'hard'")

    def point(self, estimator: str = "soft") -> torch.Tensor:
        return self.mean if estimator == "soft" else self.counts / self.num_samples


class SmoothedClassifier:
    """Monte-Carlo smoothed classifier around a base model (logits out) with noise level ``sigma``."""

    def __init__(self, base: torch.nn.Module, sigma: float, *, num_samples: int = 10_000, batch_size: int = 1000,
                 seed: int = 0, input_range=UNIT_RANGE):
        """``input_range``: the (low, high) range every input must lie in (default [0, 1], images); None accepts
        inputs on all of R^d."""
        self.base = base.eval()
        self.input_range = check_input_range(input_range)
        self.sigma = check_eps(sigma, name="sigma")
        if self.sigma == 0:
            raise ConfigError("sigma must be > 0")
        self.num_samples = check_positive_int(num_samples, name="num_samples")
        self.batch_size = check_positive_int(batch_size, name="batch_size")
        self.seed = int(seed)

    def sample(self, x: torch.Tensor, indices=None, num_samples: int | None = None, stream: int = 0,
               progress=None) -> SmoothingEstimate:
        """Estimate h at each input of ``x`` (n, ...). ``indices`` seed the noise (default 0..n-1)."""
        check_batch(x, self.input_range)
        n_samp = num_samples or self.num_samples
        indices = list(range(len(x))) if indices is None else [int(i) for i in indices]
        if len(indices) != len(x):
            raise InputError(f"{len(indices)} indices for {len(x)} inputs: give one dataset index per input")
        prob_sum, votes, _ = smoothing_pass(self.base, x, self.sigma, NoiseSamples(self.seed, indices, stream, 0, n_samp),
                                            batch_size=self.batch_size)
        if progress is not None:
            progress.update(len(x))
        return SmoothingEstimate(prob_sum / n_samp, votes, n_samp)

    # --- Cohen, Rosenfeld & Kolter (2019): hard-vote PREDICT and CERTIFY -----------------------------------

    def cohen_certify(self, x: torch.Tensor, n0: int = 100, n: int = 100_000, delta: float = 0.001, indices=None):
        """Cohen et al.'s CERTIFY: returns (predictions with ABSTAIN = -1, l2 radii).

        n0 selection samples pick the top class; n fresh samples give a one-sided
        Clopper-Pearson lower bound pA on its probability; abstain if pA < 1/2,
        else radius sigma * PhiInv(pA).  Holds with probability >= 1 - delta.
        """
        sel = self.sample(x, indices, n0, stream=1).counts
        est = self.sample(x, indices, n, stream=2).counts
        top = sel.argmax(1)
        k = est.gather(1, top[:, None])[:, 0].numpy()
        p_lower = clopper_pearson_lower(k, n, delta)
        radius = self.sigma * normal.ppf(np.clip(p_lower, 1e-300, 1.0))
        ok = p_lower >= 0.5
        pred = torch.where(torch.from_numpy(ok), top, torch.full_like(top, ABSTAIN))
        return pred, torch.from_numpy(np.where(ok, radius, 0.0))

    def cohen_predict(self, x: torch.Tensor, n: int = 100_000, delta: float = 0.001, indices=None) -> torch.Tensor:
        """Cohen et al.'s PREDICT: the top class, or ABSTAIN unless a binomial test separates the top two."""
        counts = self.sample(x, indices, n, stream=3).counts
        top2 = counts.topk(2, dim=1)
        preds = []
        for (c1, c2), (i1, _) in zip(top2.values.tolist(), top2.indices.tolist()):
            preds.append(i1 if binomial_pvalue(int(c1), int(c1 + c2), 0.5) <= delta else ABSTAIN)
        return torch.tensor(preds)


class MonteCarloSmoothed(torch.nn.Module):
    """Differentiable Monte-Carlo smoothed classifier: ``log(mean_j softmax(base(x + xi_j)))``.

    Each call draws ``num_samples`` fresh noise vectors (expectation over
    transformation), so gradient attacks can target a smoothed h or a mixture
    built on it.  With ``fixed_noise=True`` every call reuses the same draw
    (common random numbers, needs ``seed``): the surrogate is then deterministic,
    which attacks that compare losses across iterations (APGD, AutoAttack) need.
    The output is a log-probability vector, valid as logits.
    """

    def __init__(self, base: torch.nn.Module, sigma: float, num_samples: int = 32, seed: int | None = None,
                 fixed_noise: bool = False):
        super().__init__()
        if fixed_noise and seed is None:
            raise ConfigError("fixed_noise=True needs a seed: pass seed=0 (or any integer)")
        self.base = base.eval()
        self.sigma = check_eps(sigma, name="sigma")
        self.num_samples = check_positive_int(num_samples, name="num_samples")
        self.seed, self.fixed_noise = seed, fixed_noise
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(x)
        if self.fixed_noise:
            self.generator.manual_seed(self.seed)
        noise = torch.randn((self.num_samples, *x.shape), generator=self.generator).to(x) * self.sigma
        logits = self.base((x[None] + noise).reshape(self.num_samples * n, *x.shape[1:]))
        log_probs = F.log_softmax(logits, -1).reshape(self.num_samples, n, -1)
        return torch.logsumexp(log_probs, 0) - math.log(self.num_samples)
