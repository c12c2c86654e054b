"""Adaptive Smoothing's mixer: alpha chosen per input by a small mixing network.

(Bai, Anderson, Sojoudi, "Improving the Accuracy-Robustness Trade-Off of
Classifiers via Adaptive Smoothing", SIMODS 2024.)  For an input x,

    s(x)     = mixing_net(features(x))                  (one logit per input)
    alpha(x) = lo + (hi - lo) * sigmoid(s(x))
    output   = log((1 - alpha(x)) softmax(g(x)) + alpha(x) softmax(h(x)))

where the features are both models' logits, concatenated, followed by the
globally average-pooled outputs of named layers of g and h (``feature_layers``,
captured by forward hooks registered only for the duration of a forward pass).
Both log-weights are formed from ``logsigmoid`` in float64, so the output and
its gradients are finite for any s(x), including alpha exactly 0 or 1.

The mixing network is part of the model: attacks differentiate through alpha(x).
"""

from __future__ import annotations

import functools
import logging
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, ModelError
from .modules import BasePair
from .nonlinear import Surrogate, mix_log_weights, safe_logaddexp

logger = logging.getLogger(__name__)


def check_alpha_range(alpha_range) -> tuple[float, float]:
    """(lo, hi) with 0 <= lo <= hi <= 1."""
    try:
        lo, hi = (float(v) for v in alpha_range)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"alpha_range must be two numbers (lo, hi) with 0 <= lo <= hi <= 1, got {alpha_range!r}") from exc
    if not (0.0 <= lo <= 1.0 and 0.0 <= hi <= 1.0):
        raise ConfigError(f"alpha_range={alpha_range!r} must lie inside [0, 1]: alpha is the weight of h")
    if lo > hi:
        raise ConfigError(f"alpha_range=({lo}, {hi}) has lo > hi; give it as (lo, hi), e.g. ({hi}, {lo})")
    return lo, hi


def pool_features(t: torch.Tensor) -> torch.Tensor:
    """(n, ...) -> (n, d): spatial dims averaged away (n, C, H, W -> n, C); (n, d) unchanged."""
    if t.ndim <= 2:
        return t.reshape(len(t), -1)
    return t.flatten(2).mean(-1)


def _capture(store: dict, key: str, _module, _inputs, output):
    # pooled at once: later in-place ops (ReLU(inplace=True)) must not change what is stored
    store[key] = pool_features(output)


class MixingNet(nn.Module):
    """A small MLP giving one logit per input: LayerNorm, then ``depth`` GELU layers of ``hidden`` units."""

    def __init__(self, in_features: int, hidden: int = 64, depth: int = 2):
        super().__init__()
        for name, value, low in (("in_features", in_features, 1), ("hidden", hidden, 1), ("depth", depth, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"MixingNet {name} must be an integer >= {low}, got {value!r}")
        self.in_features, self.hidden, self.depth = in_features, hidden, depth
        layers: list[nn.Module] = [nn.LayerNorm(in_features)]
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.GELU()]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def config(self) -> dict:
        return {"class": "MixingNet", "in_features": self.in_features, "hidden": self.hidden, "depth": self.depth}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)[:, 0]


def mixing_net_from_config(cfg: dict) -> MixingNet:
    """Rebuild a :class:`MixingNet` from its :meth:`MixingNet.config`."""
    cfg = dict(cfg)
    if cfg.pop("class", "MixingNet") != "MixingNet":
        raise ConfigError(f"cannot rebuild mixing network {cfg!r}: only MixingNet configs are known; "
                          "build your own network and pass it to AdaptiveMixedClassifier")
    return MixingNet(**cfg)


class AdaptiveOutput(NamedTuple):
    """The mixture with its per-input alpha, the mixing network's logit and the base models' logits."""

    log_probs: torch.Tensor    # (n, c)
    alpha: torch.Tensor        # (n,) float64
    alpha_logit: torch.Tensor  # (n,) the mixing network's output s(x)
    std_logits: torch.Tensor   # (n, c)
    rob_logits: torch.Tensor   # (n, c)


def adaptive_log_weights(alpha_logit: torch.Tensor, lo: float, hi: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(log(1 - alpha), log alpha) of alpha = lo + (hi - lo) sigmoid(s), each (n,) float64, finite gradients."""
    s = alpha_logit.double()
    span = torch.log(torch.tensor(hi - lo, dtype=torch.float64, device=s.device))

    def const(v):
        return torch.full_like(s, math.log(v) if v > 0 else -math.inf)

    log_a = safe_logaddexp(const(lo), span + F.logsigmoid(s))
    log_1ma = safe_logaddexp(const(1.0 - hi), span + F.logsigmoid(-s))
    return log_1ma, log_a


class AdaptiveMixedClassifier(BasePair):
    """``log((1 - alpha(x)) softmax(g(x)) + alpha(x) softmax(h(x)))`` with alpha(x) from ``mixing_net``.

    ``mixing_net`` maps the features (n, d) to (n,) or (n, 1) logits; d = 2c plus
    the pooled channel counts of ``feature_layers`` (``{"std": [names], "rob":
    [names]}``, names as in ``model.named_modules()``).  :func:`default_mixing_net`
    builds a :class:`MixingNet` of the right width.  Only the mixing network
    has trainable parameters; lo and hi are buffers and :meth:`config` returns
    the JSON-able settings (mixing-network architecture included when the
    network has a ``config()``).
    """

    def __init__(self, std_model: nn.Module, rob_model: nn.Module, mixing_net: nn.Module, alpha_range=(0.0, 1.0), *,
                 feature_layers: dict | None = None, validate_inputs: bool = False):
        super().__init__(std_model, rob_model, validate_inputs)
        if not isinstance(mixing_net, nn.Module):
            raise ModelError(f"mixing_net must be a torch.nn.Module mapping features (n, d) to (n,) logits, "
                             f"got {type(mixing_net).__name__}")
        lo, hi = check_alpha_range(alpha_range)
        self.register_buffer("alpha_lo", torch.tensor(lo, dtype=torch.float64))
        self.register_buffer("alpha_hi", torch.tensor(hi, dtype=torch.float64))
        self.mixing_net = mixing_net
        self.feature_layers = self._check_layers(feature_layers or {})

    def _check_layers(self, layers: dict) -> dict[str, list[str]]:
        unknown = set(layers) - {"std", "rob"}
        if unknown:
            raise ConfigError(f"feature_layers keys must be 'std' and/or 'rob', got {sorted(unknown)}")
        out = {}
        for side, model in (("std", self.std_model), ("rob", self.rob_model)):
            names = [str(n) for n in layers.get(side, [])]
            modules = dict(model.named_modules())
            for name in names:
                if not name or name not in modules:
                    some = ", ".join(n for n in list(modules)[1:9])
                    raise ModelError(f"feature_layers[{side!r}] names {name!r}, which is not a submodule of the "
                                     f"{side} model; use a name from named_modules(), e.g. {some}")
            out[side] = names
        return out

    def config(self) -> dict:
        net_cfg = self.mixing_net.config() if callable(getattr(self.mixing_net, "config", None)) else {
            "class": type(self.mixing_net).__qualname__}
        return {"mixer": "adaptive", "alpha_range": [float(self.alpha_lo), float(self.alpha_hi)],
                "feature_layers": {k: list(v) for k, v in self.feature_layers.items()}, "mixing_net": net_cfg}

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(g's logits, h's logits, the mixing network's input features (n, d))."""
        x = self._check(x)
        store: dict[str, torch.Tensor] = {}
        handles = []
        for side, model in (("std", self.std_model), ("rob", self.rob_model)):
            modules = dict(model.named_modules())
            for name in self.feature_layers[side]:
                handles.append(modules[name].register_forward_hook(
                    functools.partial(_capture, store, f"{side}:{name}")))
        try:
            std_logits, rob_logits = self.std_model(x), self.rob_model(x)
        finally:
            for handle in handles:
                handle.remove()
        self._check_classes(std_logits, rob_logits)
        hooked = [store[f"{side}:{name}"] for side in ("std", "rob") for name in self.feature_layers[side]]
        feats = torch.cat([std_logits, rob_logits] + [h.to(std_logits.dtype) for h in hooked], dim=1)
        return std_logits, rob_logits, feats

    def alpha_logit(self, features: torch.Tensor) -> torch.Tensor:
        """The mixing network's output s for features (n, d), as (n,)."""
        s = self.mixing_net(features)
        n = len(features)
        if not isinstance(s, torch.Tensor) or s.shape not in ((n,), (n, 1)):
            shape = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
            raise ModelError(f"the mixing network must return shape ({n},) or ({n}, 1) for {n} inputs, got {shape}; "
                             "end it with a Linear(..., 1) layer")
        return s.reshape(n)

    def forward_with_alpha(self, x: torch.Tensor, *, std_temperature: float = 1.0,
                           detach_alpha: bool = False) -> AdaptiveOutput:
        std_logits, rob_logits, feats = self.features(x)
        s = self.alpha_logit(feats)
        lo, hi = float(self.alpha_lo), float(self.alpha_hi)
        log_1ma, log_a = adaptive_log_weights(s.detach() if detach_alpha else s, lo, hi)
        out = mix_log_weights(F.log_softmax(std_logits.double() / std_temperature, -1),
                              F.log_softmax(rob_logits.double(), -1), log_1ma[:, None], log_a[:, None])
        alpha = torch.exp(log_a)
        return AdaptiveOutput(out.to(std_logits.dtype), alpha, s, std_logits, rob_logits)

    def mix(self, x: torch.Tensor, **settings) -> torch.Tensor:
        return self.forward_with_alpha(x, **settings).log_probs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_alpha(x).log_probs

    def alpha(self, x: torch.Tensor) -> torch.Tensor:
        """The per-input weights alpha(x) of h, shape (n,), float64 (differentiable)."""
        _, _, feats = self.features(x)
        return torch.exp(adaptive_log_weights(self.alpha_logit(feats), float(self.alpha_lo), float(self.alpha_hi))[1])

    def attack_surrogates(self) -> dict[str, nn.Module]:
        """Differentiable stand-ins (inputs -> (n, c) scores) for the worst-case evaluator.

        * ``mix-T1``: the model itself (gradients through alpha(x));
        * ``mix-T0.25`` / ``mix-T4``: g's softmax at a sharp / soft temperature
          inside the mixture, gradients through alpha(x) kept;
        * ``mix-alpha-fixed``: alpha(x) recomputed at the current input but
          detached, so the attack follows the two models' terms only (a mixing
          network with masked or misleading gradients cannot hide their slope);
        * ``h``: h's logits alone.
        Attacks follow their gradients; candidates are judged on the mixer itself.
        """
        return {"mix-T1": self,
                "mix-T0.25": Surrogate(self, std_temperature=0.25),
                "mix-T4": Surrogate(self, std_temperature=4.0),
                "mix-alpha-fixed": Surrogate(self, detach_alpha=True),
                "h": self.rob_model}

    def extra_repr(self) -> str:
        return f"alpha_range=({float(self.alpha_lo)}, {float(self.alpha_hi)}), feature_layers={self.feature_layers}"


@torch.no_grad()
def default_mixing_net(std_model: nn.Module, rob_model: nn.Module, example: torch.Tensor, *,
                       feature_layers: dict | None = None, hidden: int = 64, depth: int = 2) -> MixingNet:
    """A :class:`MixingNet` whose width matches the features of (g, h, feature_layers), probed on ``example[:1]``."""
    probe = AdaptiveMixedClassifier(std_model, rob_model, nn.Identity(), feature_layers=feature_layers)
    _, _, feats = probe.features(example[:1])
    net = MixingNet(feats.shape[1], hidden, depth)
    return net.to(device=example.device)
