"""Adaptive Smoothing's mixer: alpha chosen per input by a small mixing network.

(Bai, Anderson, Sojoudi, "Improving the Accuracy-Robustness Trade-Off of
Classifiers via Adaptive Smoothing", SIMODS 2024.)  For an input x,

    s(x)     = mixing_net(features(x))                  (one logit per input)
    alpha(x) = lo + (hi - lo) * sigmoid(s(x))
    output   = log((1 - alpha(x)) softmax(g(x)) + alpha(x) softmax(h(x)))

where the features are both models' logits and the outputs of named layers
of g and h (``feature_layers``, captured by forward hooks registered only for
the duration of a forward pass).  Two kinds of mixing network read them:

* :class:`MixingNet` (an MLP) gets one flat vector: the logits followed by the
  globally average-pooled layer outputs;
* :class:`ResidualMixingNet` (Adaptive Smoothing's design, small) gets the
  feature maps themselves (:class:`FeatureMaps`): each map goes through a 1x1
  projection and residual 3x3 blocks before pooling, then a head on the pooled
  maps and the logits gives s(x).

:func:`build_mixing_net` picks the layers for a feature set ("logits", "h":
h's features + logits, "both": g's and h's features + logits) and reads the
channel counts from the models with one probe forward, so nothing about the
architectures is hard-coded; what it builds is one option group,
:class:`MixingArchitecture` (checked once, when it is made).  Both log-weights
are formed from ``logsigmoid`` in float64, so the output and its gradients are
finite for any s(x), including alpha exactly 0 or 1.

The mixing network is part of the model: attacks differentiate through alpha(x).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import logging
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, ModelError
from .._config import refuse_unknown, require_group
from ..groups import from_keywords
from .modules import BasePair
from .nonlinear import Surrogate, mix_log_weights, safe_logaddexp

logger = logging.getLogger(__name__)

FEATURE_SETS = ("logits", "h", "both")   # what the mixing network reads besides both models' logits
GATE_SURROGATE_TEMPERATURE = 8.0         # the softened gate attacks follow where sigmoid(s) saturates


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
    if t.ndim <= 2:   # a copy: a later in-place op (ReLU(inplace=True)) on the layer's output must not change it
        return t.reshape(len(t), -1).clone()
    return t.flatten(2).mean(-1)


def as_map(t: torch.Tensor) -> torch.Tensor:
    """(n, C, H, W) view of a layer output: (n, d) -> (n, d, 1, 1), (n, C, L) -> (n, C, L, 1), 5-d and up flattened."""
    if t.ndim == 2:
        return t[:, :, None, None]
    if t.ndim == 3:
        return t[..., None]
    return t if t.ndim == 4 else t.flatten(3)


def _capture(store: dict, key: str, maps: bool, _module, _inputs, output):
    if not isinstance(output, torch.Tensor) or output.ndim < 2:
        what = type(output).__name__ if not isinstance(output, torch.Tensor) else f"shape {tuple(output.shape)}"
        raise ModelError(f"feature layer {key} returns {what}, not an (n, ...) tensor; hook a layer that returns "
                         "one tensor per batch")
    # pooled or cloned at once: later in-place ops (ReLU(inplace=True)) must not change what is stored
    store[key] = as_map(output.clone()) if maps else pool_features(output)


class FeatureMaps(NamedTuple):
    """The input of a mixing network that reads feature maps (``wants_maps = True``)."""

    logits: torch.Tensor   # (n, 2c): g's logits, then h's
    maps: tuple            # one (n, C, H, W) tensor per hooked layer: g's layers first, then h's


class MixingNet(nn.Module):
    """A small MLP giving one logit per input: LayerNorm, then ``depth`` GELU layers of ``hidden`` units."""

    def __init__(self, in_features: int, hidden: int = 64, depth: int = 2):
        super().__init__()
        for name, value, low in (("in_features", in_features, 1), ("hidden", hidden, 1), ("depth", depth, 0)):
            _check_int("MixingNet", name, value, low)
        self.in_features, self.hidden, self.depth = in_features, hidden, depth
        layers: list[nn.Module] = [nn.LayerNorm(in_features)]
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.GELU()]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    wants_maps = False

    def config(self) -> dict:
        return {"class": "MixingNet", "in_features": self.in_features, "hidden": self.hidden, "depth": self.depth}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not isinstance(features, torch.Tensor) or features.ndim != 2 or features.shape[1] != self.in_features:
            got = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ModelError(f"this MixingNet reads {self.in_features} features per input but got {got}; build it "
                             "for these models and layers with build_mixing_net(g, h, x, features=...)")
        return self.net(features)[:, 0]


def _check_int(owner: str, name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{owner} {name} must be an integer >= {low}, got {value!r}")


class _ResBlock(nn.Module):
    """Pre-activation residual block: x + conv(GELU(norm(conv(GELU(norm(x)))))), 3x3, same width."""

    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(nn.GroupNorm(1, width), nn.GELU(), nn.Conv2d(width, width, 3, padding=1),
                                  nn.GroupNorm(1, width), nn.GELU(), nn.Conv2d(width, width, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualMixingNet(nn.Module):
    """Adaptive Smoothing's kind of mixing network, small: residual conv branches over the hooked feature maps.

    Each map (n, C_i, H_i, W_i) goes through its own branch: a 1x1 projection to
    ``width`` channels, ``blocks`` residual 3x3 blocks, GroupNorm + GELU and a
    global average pool.  The pooled branches and the layer-normed logits are
    concatenated and a two-layer head gives one logit per input.  Maps of
    different resolutions need no resizing.  ``map_channels`` are the hooked
    layers' channel counts, in order (read by :func:`build_mixing_net`'s probe
    forward); with none it is an MLP on the logits.
    """

    wants_maps = True

    def __init__(self, logit_features: int, map_channels=(), width: int = 16, blocks: int = 1, hidden: int = 64):
        super().__init__()
        map_channels = list(map_channels)
        for name, value, low in (("logit_features", logit_features, 1), ("width", width, 1), ("blocks", blocks, 0),
                                 ("hidden", hidden, 1), *(("map_channels entry", c, 1) for c in map_channels)):
            _check_int("ResidualMixingNet", name, value, low)
        self.logit_features, self.map_channels = logit_features, list(map_channels)
        self.width, self.blocks, self.hidden = width, blocks, hidden
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, width, 1), *(_ResBlock(width) for _ in range(blocks)), nn.GroupNorm(1, width),
                          nn.GELU()) for c in self.map_channels)
        self.logit_norm = nn.LayerNorm(logit_features)
        self.head = nn.Sequential(nn.Linear(logit_features + width * len(self.map_channels), hidden), nn.GELU(),
                                  nn.Linear(hidden, 1))

    def config(self) -> dict:
        return {"class": "ResidualMixingNet", "logit_features": self.logit_features,
                "map_channels": list(self.map_channels), "width": self.width, "blocks": self.blocks,
                "hidden": self.hidden}

    def forward(self, inputs: FeatureMaps) -> torch.Tensor:
        if not isinstance(inputs, FeatureMaps):
            raise ModelError(f"ResidualMixingNet reads FeatureMaps (logits and hooked maps), got "
                             f"{type(inputs).__name__}; use it inside an AdaptiveMixedClassifier")
        channels = [int(m.shape[1]) for m in inputs.maps]
        if channels != self.map_channels or inputs.logits.shape[1] != self.logit_features:
            raise ModelError(f"this ResidualMixingNet was built for {self.logit_features} logits and maps with "
                             f"channels {self.map_channels}, got {inputs.logits.shape[1]} logits and channels "
                             f"{channels}; build it for these models and layers with build_mixing_net(g, h, x, ...)")
        parts = [self.logit_norm(inputs.logits)]
        parts += [branch(m.to(inputs.logits.dtype)).mean((2, 3)) for branch, m in zip(self.branches, inputs.maps)]
        return self.head(torch.cat(parts, 1))[:, 0]


NETS = {"mlp": MixingNet, "residual": ResidualMixingNet}


@dataclasses.dataclass(frozen=True)
class MixingArchitecture:
    """The adaptive mixer's gate (an option group): what its mixing network reads, its kind and size, and the range
    of alpha it gives.

    ``features``: "logits" (both models' logits only), "h" (h's feature maps + logits) or "both" (g's and h's);
    ``count``: feature layers per model (the deepest resolutions, :func:`feature_layer_names`).  ``net``: "mlp"
    (:class:`MixingNet` on pooled features, ``hidden`` units, ``depth`` layers) or "residual"
    (:class:`ResidualMixingNet` on the maps: ``width`` channels, ``blocks`` residual blocks, a ``hidden``-unit
    head).  ``alpha_range``: (lo, hi) with 0 <= lo <= hi <= 1, alpha = lo + (hi - lo) sigmoid(s(x)) (used by the
    mixer, not by :func:`build_mixing_net`).  Each value is checked once, here::

        net, layers = build_mixing_net(g, h, x[:2], MixingArchitecture(features="h", net="residual"))
    """

    features: str = "logits"
    net: str = "mlp"
    count: int = 2
    hidden: int = 64
    depth: int = 2
    width: int = 16
    blocks: int = 1
    alpha_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self):
        if self.features not in FEATURE_SETS:
            raise ConfigError(f"unknown feature set {self.features!r}: use logits (both models' logits only), h (h's "
                              "features + logits) or both (g's and h's features + logits)")
        if self.net not in NETS:
            raise ConfigError(f"unknown mixing network {self.net!r}: use mlp (an MLP on pooled features) or residual "
                              "(residual conv branches on the feature maps)")
        for name, low in (("count", 1), ("hidden", 1), ("depth", 0), ("width", 1), ("blocks", 0)):
            _check_int("MixingArchitecture", name, getattr(self, name), low)
        object.__setattr__(self, "alpha_range", check_alpha_range(self.alpha_range))


def mixing_net_from_config(cfg: dict) -> nn.Module:
    """Rebuild a :class:`MixingNet` or :class:`ResidualMixingNet` from its ``config()``."""
    cfg = dict(cfg)
    name = cfg.pop("class", "MixingNet")
    known = {cls.__name__: cls for cls in NETS.values()}
    if name not in known:
        raise ConfigError(f"cannot rebuild mixing network {name!r}: only {', '.join(known)} configs are known; "
                          "build your own network and pass it to AdaptiveMixedClassifier")
    try:
        return known[name](**cfg)
    except TypeError as exc:
        raise ConfigError(f"mixing-network config {cfg!r} does not fit {name}: {exc}") from exc


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

    ``mixing_net`` maps the features to (n,) or (n, 1) logits.  By default it
    gets (n, d) with d = 2c plus the pooled channel counts of ``feature_layers``
    (``{"std": [names], "rob": [names]}``, names as in ``model.named_modules()``);
    a network with ``wants_maps = True`` gets :class:`FeatureMaps` (the logits
    and the unpooled layer outputs).  :func:`build_mixing_net` builds either kind
    at the right size.  Only the mixing network has trainable parameters; lo
    and hi are buffers and :meth:`config` returns the JSON-able settings
    (mixing-network architecture included when the network has a ``config()``).
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
        self._range = (lo, hi)   # plain floats for forward (torch.export cannot branch on a buffer's value)
        self.register_load_state_dict_post_hook(AdaptiveMixedClassifier._sync_range)
        self.mixing_net = mixing_net
        self.feature_layers = self._check_layers(feature_layers or {})

    def _sync_range(self, _incompatible=None) -> None:
        self._range = (float(self.alpha_lo), float(self.alpha_hi))

    def alpha_bounds(self) -> tuple[float, float]:
        """(lo, hi) as plain floats (a module pickled before they were kept reads them from its buffers once)."""
        if "_range" not in self.__dict__:
            self._sync_range()
        return self._range

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
                    valid = [n for n in modules if n]
                    some = ", ".join(dict.fromkeys(difflib.get_close_matches(name, valid, 3, 0.5) + valid[:6]))
                    raise ModelError(f"feature_layers[{side!r}] names {name!r}, which is not a layer of the "
                                     f"{side} model ({'g' if side == 'std' else 'h'}); valid names include {some}")
            out[side] = names
        return out

    def config(self) -> dict:
        net_cfg = self.mixing_net.config() if callable(getattr(self.mixing_net, "config", None)) else {
            "class": type(self.mixing_net).__qualname__}
        return {"mixer": "adaptive", "alpha_range": list(self.alpha_bounds()),
                "feature_layers": {k: list(v) for k, v in self.feature_layers.items()}, "mixing_net": net_cfg}

    @property
    def wants_maps(self) -> bool:
        """Whether the mixing network reads :class:`FeatureMaps` rather than one flat vector."""
        return bool(getattr(self.mixing_net, "wants_maps", False))

    def features(self, x: torch.Tensor, *, maps: bool | None = None):
        """(g's logits, h's logits, the mixing network's input).

        The input is (n, d) (logits, then pooled layer outputs) or, when
        ``maps`` (default: what the mixing network wants), :class:`FeatureMaps`.
        """
        x = self._check(x)
        maps = self.wants_maps if maps is None else maps
        store: dict[str, torch.Tensor] = {}
        handles = []
        for side, model in (("std", self.std_model), ("rob", self.rob_model)):
            modules = dict(model.named_modules())
            for name in self.feature_layers[side]:
                handles.append(modules[name].register_forward_hook(
                    functools.partial(_capture, store, f"{side}:{name}", maps)))
        try:
            std_logits, rob_logits = self.std_model(x), self.rob_model(x)
        finally:
            for handle in handles:
                handle.remove()
        self._check_classes(std_logits, rob_logits)
        keys = [f"{side}:{name}" for side in ("std", "rob") for name in self.feature_layers[side]]
        silent = [k for k in keys if k not in store]
        if silent:
            raise ModelError(f"feature layer(s) {', '.join(silent)} did not run in the forward pass; hook layers the "
                             "model calls (see model.named_modules())")
        hooked = [store[k] for k in keys]
        if maps:
            return std_logits, rob_logits, FeatureMaps(torch.cat([std_logits, rob_logits], dim=1), tuple(hooked))
        feats = torch.cat([std_logits, rob_logits] + [h.to(std_logits.dtype) for h in hooked], dim=1)
        return std_logits, rob_logits, feats

    def alpha_logit(self, features) -> torch.Tensor:
        """The mixing network's output s for its input (features (n, d) or :class:`FeatureMaps`), as (n,)."""
        s = self.mixing_net(features)
        n = (features.logits if isinstance(features, FeatureMaps) else features).shape[0]   # symbolic under export
        if not isinstance(s, torch.Tensor) or not (s.ndim in (1, 2) and s.shape[0] == n and s.shape[1:] in ((), (1,))):
            shape = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
            raise ModelError(f"the mixing network must return shape ({n},) or ({n}, 1) for {n} inputs, got {shape}; "
                             "end it with a Linear(..., 1) layer")
        return s.reshape(n)

    def forward_with_alpha(self, x: torch.Tensor, *, std_temperature: float = 1.0, detach_alpha: bool = False,
                           gate_temperature: float = 1.0) -> AdaptiveOutput:
        """The mixture and its parts.  ``std_temperature``, ``detach_alpha`` and ``gate_temperature`` (alpha =
        lo + (hi - lo) sigmoid(s / T)) exist for attack surrogates; the model itself uses 1, False, 1."""
        std_logits, rob_logits, feats = self.features(x)
        s = self.alpha_logit(feats)
        lo, hi = self.alpha_bounds()
        gate = s.detach() if detach_alpha else s
        log_1ma, log_a = adaptive_log_weights(gate / gate_temperature if gate_temperature != 1.0 else gate, lo, hi)
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
        return torch.exp(adaptive_log_weights(self.alpha_logit(feats), *self.alpha_bounds())[1])

    def attack_surrogates(self) -> dict[str, nn.Module]:
        """Differentiable stand-ins (inputs -> (n, c) scores) for the worst-case evaluator.

        * ``mix-T1``: the model itself (gradients through alpha(x));
        * ``mix-T0.25`` / ``mix-T4``: g's softmax at a sharp / soft temperature
          inside the mixture, gradients through alpha(x) kept;
        * ``mix-alpha-fixed``: alpha(x) recomputed at the current input but
          detached, so the attack follows the two models' terms only (a mixing
          network with masked or misleading gradients cannot hide their slope);
        * ``mix-gate-T8``: the gate softened, alpha = lo + (hi - lo) sigmoid(s / 8).
          Where the gate saturates (|s| large, sigmoid' ~ e^-|s|) the model's
          gradient says nothing about how to move alpha; the softened gate keeps
          a slope of order 1/8 there, so the attack can steer alpha (e.g. close a
          gate that is wide open on attacked inputs) while it fools g;
        * ``h``: h's logits alone.
        Attacks follow their gradients; candidates are judged on the mixer itself.
        """
        return {"mix-T1": self,
                "mix-T0.25": Surrogate(self, std_temperature=0.25),
                "mix-T4": Surrogate(self, std_temperature=4.0),
                "mix-alpha-fixed": Surrogate(self, detach_alpha=True),
                "mix-gate-T8": Surrogate(self, gate_temperature=GATE_SURROGATE_TEMPERATURE),
                "h": self.rob_model}

    def extra_repr(self) -> str:
        return f"alpha_range={self.alpha_bounds()}, feature_layers={self.feature_layers}"


@torch.no_grad()
def default_mixing_net(std_model: nn.Module, rob_model: nn.Module, example: torch.Tensor, *,
                       feature_layers: dict | None = None, hidden: int = 64, depth: int = 2) -> MixingNet:
    """A :class:`MixingNet` whose width matches the features of (g, h, feature_layers), probed on ``example[:1]``."""
    probe = AdaptiveMixedClassifier(std_model, rob_model, nn.Identity(), feature_layers=feature_layers)
    _, _, feats = probe.features(example[:1], maps=False)
    net = MixingNet(feats.shape[1], hidden, depth)
    return net.to(device=example.device)


def _note_output(order: list, name: str, _module, _inputs, output):
    if isinstance(output, torch.Tensor):
        order.append((name, tuple(output.shape)))


@torch.no_grad()
def feature_layer_names(model: nn.Module, example: torch.Tensor, count: int = 2) -> list[str]:
    """The layers whose outputs a mixing network reads: one per spatial resolution, the ``count`` deepest.

    One probe forward on ``example[:1]`` records every named module's output;
    among those of shape (n, C, H, W), the last module to finish at each
    resolution (H, W) (the end of a stage, before the next downsampling) stands
    for it, and the ``count`` deepest resolutions are kept, shallowest first.
    """
    _check_int("feature_layer_names", "count", count, 1)
    order: list = []
    handles = [m.register_forward_hook(functools.partial(_note_output, order, name))
               for name, m in model.named_modules() if name]
    try:
        model(example[:1])
    finally:
        for handle in handles:
            handle.remove()
    last: dict = {}
    for name, shape in order:
        if len(shape) == 4:
            last[shape[2:]] = name
    if not last:
        raise ConfigError(f"{type(model).__name__} has no layer with an (n, C, H, W) output to read features from; "
                          "use features='logits', or name layers yourself with feature_layers={'std': [...], "
                          "'rob': [...]}")
    return list(last.values())[-count:]


def feature_layers_for(std_model: nn.Module, rob_model: nn.Module, example: torch.Tensor,
                       arch: MixingArchitecture) -> dict:
    """``feature_layers`` for ``arch``'s feature set: "logits" (none), "h" (h's layers) or "both" (g's and h's)."""
    out = {}
    if arch.features == "both":
        out["std"] = feature_layer_names(std_model, example, arch.count)
    if arch.features in ("h", "both"):
        out["rob"] = feature_layer_names(rob_model, example, arch.count)
    return out


BUILD_KEYWORDS = ("features", "net", "count", "hidden", "depth", "width", "blocks")   # build_mixing_net's old ones


@torch.no_grad()
def build_mixing_net(std_model: nn.Module, rob_model: nn.Module, example: torch.Tensor,
                     arch: MixingArchitecture | None = None, *, feature_layers: dict | None = None,
                     **deprecated) -> tuple[nn.Module, dict]:
    """A mixing network for (g, h) and the ``feature_layers`` it reads, sized by a probe forward on ``example[:1]``.

    ``arch`` (:class:`MixingArchitecture`, default ``MixingArchitecture()``: an MLP on both models' logits): the
    feature set (layers picked by :func:`feature_layer_names`, ``count`` per model, unless ``feature_layers``
    names them) and the network ("mlp": :class:`MixingNet` on pooled features; "residual":
    :class:`ResidualMixingNet` on the maps).  Returns ``(network, feature_layers)`` for
    :class:`AdaptiveMixedClassifier` (whose ``alpha_range`` is ``arch.alpha_range``).  The keywords ``features``,
    ``net``, ``count``, ``hidden``, ``depth``, ``width`` and ``blocks`` still work for one release (deprecated).
    """
    refuse_unknown(deprecated, "build_mixing_net", BUILD_KEYWORDS)
    arch = from_keywords(MixingArchitecture, arch, deprecated, "build_mixing_net")
    arch = MixingArchitecture() if arch is None else require_group(arch, MixingArchitecture, "build_mixing_net",
                                                                   "arch")
    layers = feature_layers if feature_layers is not None else feature_layers_for(std_model, rob_model, example, arch)
    probe = AdaptiveMixedClassifier(std_model, rob_model, nn.Identity(), feature_layers=layers)
    std_logits, rob_logits, feats = probe.features(example[:1], maps=arch.net == "residual")
    if arch.net == "mlp":
        module: nn.Module = MixingNet(feats.shape[1], arch.hidden, arch.depth)
    else:
        module = ResidualMixingNet(feats.logits.shape[1], [int(m.shape[1]) for m in feats.maps], arch.width,
                                   arch.blocks, arch.hidden)
    return module.to(device=example.device), probe.feature_layers
