"""The starting point of the paper (Section II-C): locally biased smoothing.

Binary case (Anderson & Sojoudi): ``h^gamma(x) = g(x) + gamma * o(x) * ||grad g(x)||_{p*}``
with a real-valued score g (positive means class 1) and a direction oracle
o(x) in {-1, +1}, here the nearest neighbour's label.  Multi-class extension:
eq. (1) with a K-NN vote oracle, i.e. :class:`~robustmix.mixing.FormulationMixture`
with ``formulation=1, trust="grad_std", space="logits"`` and a :class:`KNNOracle`
as the robust model.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._validation import check_gamma, check_input, check_p, check_positive_int
from ..errors import ConfigError, InputError
from .functional import gradient_norm
from .modules import freeze


class KNNOracle(nn.Module):
    """K-nearest-neighbour classifier returning vote fractions (n, c) in l2 distance.

    The training set is stored as buffers (flattened).  The output is piecewise
    constant in x, so it has no useful gradient: attacks on mixtures that use it
    need black-box or transfer attacks (see :mod:`robustmix.attacks`).
    """

    def __init__(self, train_x: torch.Tensor, train_y: torch.Tensor, k: int = 1, num_classes: int | None = None,
                 chunk_size: int = 8192):
        super().__init__()
        check_input(train_x, name="train_x")
        if train_y.ndim != 1 or len(train_y) != len(train_x) or train_y.is_floating_point():
            raise InputError("train_y must be a 1-D integer tensor with one label per row of train_x")
        self.k = check_positive_int(k, name="k")
        if self.k > len(train_x):
            raise ConfigError(f"k={k} exceeds the {len(train_x)} stored training points")
        self.num_classes = int(num_classes if num_classes is not None else int(train_y.max()) + 1)
        self.chunk_size = chunk_size
        self.register_buffer("train_x", train_x.detach().reshape(len(train_x), -1).clone())
        self.register_buffer("train_y", train_y.detach().long().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = x.detach().reshape(len(x), -1).to(self.train_x.dtype)
        best_d = torch.full((len(q), self.k), math.inf, dtype=q.dtype, device=q.device)
        best_i = torch.zeros((len(q), self.k), dtype=torch.long, device=q.device)
        for start in range(0, len(self.train_x), self.chunk_size):
            d = torch.cdist(q, self.train_x[start:start + self.chunk_size])
            dist = torch.cat([best_d, d], 1)
            idx = torch.cat([best_i, torch.arange(start, start + d.shape[1], device=q.device).expand_as(d)], 1)
            best_d, pos = dist.topk(self.k, dim=1, largest=False)
            best_i = idx.gather(1, pos)
        votes = torch.zeros(len(q), self.num_classes, dtype=x.dtype, device=x.device)
        votes.scatter_add_(1, self.train_y[best_i], torch.ones_like(best_d, dtype=x.dtype))
        return votes / self.k

    def direction(self, x: torch.Tensor) -> torch.Tensor:
        """Binary direction oracle in {-1, +1} (ties go to +1); needs two classes."""
        if self.num_classes != 2:
            raise ConfigError("the direction oracle is for binary problems; use the vote fractions (forward) for c > 2")
        votes = self(x)
        return torch.where(votes[:, 1] >= votes[:, 0], 1.0, -1.0).to(x.dtype)


class LocallyBiasedSmoothing(nn.Module):
    """Binary locally biased smoothing: ``g(x) + gamma * o(x) * ||grad g(x)||_{p*}``.

    ``score_model`` maps x to one real score per sample (shape (n,) or (n, 1));
    ``oracle`` is a :class:`KNNOracle` over two classes (its ``direction``) or any
    callable returning values in {-1, +1}.  Returns the smoothed score (n,);
    class 1 where it is positive.
    """

    def __init__(self, score_model: nn.Module, oracle, gamma: float, p=math.inf):
        super().__init__()
        self.score_model = freeze(score_model)
        self.oracle = oracle
        self.gamma = check_gamma(gamma)
        if math.isinf(self.gamma):
            raise ConfigError("gamma must be finite for locally biased smoothing")
        self.p = check_p(p)

    def _direction(self, x):
        if isinstance(self.oracle, KNNOracle):
            return self.oracle.direction(x)
        return self.oracle(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x)
        with torch.enable_grad():
            xg = x if x.requires_grad else x.detach().requires_grad_(True)
            score = self.score_model(xg).reshape(len(x), -1)
            if score.shape[1] != 1:
                raise InputError(f"the binary score model must return one value per sample, got shape {tuple(score.shape)}")
            score = score[:, 0]
            (grad,) = torch.autograd.grad(score.sum(), xg, create_graph=torch.is_grad_enabled())
        norm = gradient_norm(grad.reshape(len(x), -1), self.p)
        return score + self.gamma * self._direction(x).to(score.dtype) * norm

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return (self(x) > 0).long()
