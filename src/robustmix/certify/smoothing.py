"""Gaussian randomized smoothing: soft smoothed classifiers with sound bounds, and Cohen et al.'s baseline.

``h(x) = E[hbar(x + xi)]``, ``xi ~ N(0, sigma^2 I)``, is estimated by Monte Carlo.
Noise for input ``index`` comes from a generator seeded by (seed, index) and is
drawn in fixed chunks, so the samples do not depend on the batch size or on
how the data is sharded.  One sampling pass yields every class's mean and
bounds, which serve every alpha of a sweep.

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

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import norm as normal

from .._validation import check_eps, check_input, check_positive_int
from ..errors import ConfigError
from .stats import binomial_pvalue, clopper_pearson_lower, clopper_pearson_upper, hoeffding_halfwidth

ABSTAIN = -1
NOISE_CHUNK = 500


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
                 seed: int = 0):
        self.base = base.eval()
        self.sigma = check_eps(sigma, name="sigma")
        if self.sigma == 0:
            raise ConfigError("sigma must be > 0")
        self.num_samples = check_positive_int(num_samples, name="num_samples")
        self.batch_size = check_positive_int(batch_size, name="batch_size")
        self.seed = int(seed)

    def _noise_chunks(self, shape, index: int, n: int, stream: int):
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + int(index)) * 4 + stream)
        left = n
        while left > 0:
            m = min(NOISE_CHUNK, left)
            yield torch.randn((m, *shape), generator=gen) * self.sigma
            left -= m

    @torch.no_grad()
    def sample(self, x: torch.Tensor, indices=None, num_samples: int | None = None, stream: int = 0,
               progress=None) -> SmoothingEstimate:
        """Estimate h at each input of ``x`` (n, ...). ``indices`` seed the noise (default 0..n-1)."""
        check_input(x)
        n_samp = num_samples or self.num_samples
        indices = range(len(x)) if indices is None else [int(i) for i in indices]
        means, counts = [], []
        for xi, idx in zip(x, indices):
            total = torch.zeros((), dtype=torch.float64)
            votes = torch.zeros((), dtype=torch.float64)
            buffered: list[torch.Tensor] = []
            drawn = 0
            for noise in self._noise_chunks(xi.shape, idx, n_samp, stream):  # memory bounded by the batch size
                buffered.append(noise)
                drawn += len(noise)
                if sum(len(b) for b in buffered) < self.batch_size and drawn < n_samp:
                    continue
                batch = torch.cat(buffered).to(device=x.device, dtype=x.dtype)
                buffered = []
                logits = self.base(xi[None] + batch)
                total = total + F.softmax(logits.double(), -1).sum(0).cpu()
                votes = votes + torch.bincount(logits.argmax(1), minlength=logits.shape[1]).double().cpu()
            means.append(total / n_samp)
            counts.append(votes)
            if progress is not None:
                progress.update(1)
        return SmoothingEstimate(torch.stack(means), torch.stack(counts), n_samp)

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
