"""MixedNUTS's nonlinear mixer: h's logits pass through a fixed map before mixing.

The map (Bai, Anderson, Kim, Sojoudi, "MixedNUTS", TMLR 2024; "LN + clamp +
power + scale"), in float64, for h's logits z of one input:

    LN_k(z) = (z - mean(topk(z))) / sqrt(var(topk(z)) + 1e-8)   (unbiased var of the k largest; k=None: all)
    u       = GELU(LN_k(z) + bias)
    M(z)    = scale * sign(u) * |u|^power

and the mixture is ``log((1 - alpha) P_g + alpha softmax(M(z_h)))`` with
``P_g = softmax(z_g)`` (``std_map="softmax"``) or the one-hot of g's argmax
(``std_map="onehot"``).  Everything is done in log space with a log-sum-exp
whose gradient stays finite where both terms are -inf, so values and gradients
are finite at alpha = 0 and 1 and for extreme logits.  The only infinite
values are the log-probabilities -inf of classes without mass, which happens
only for a one-hot g at alpha = 0 (the output is then g's log one-hot).

The map's settings travel as one option group, :class:`NonlinearMap` (checked once, when it is made); the pure
functions come next and :class:`NonlinearMixedClassifier` is a thin module.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_alpha
from ..errors import ConfigError, ModelError
from ..groups import from_keywords
from .modules import BasePair

logger = logging.getLogger(__name__)

STD_MAPS = ("softmax", "onehot")
LN_EPS = 1e-8
# Below this |u| the signed power's *gradient* is taken from its linear extension
# u * floor^(power - 1) (values stay exact), so power < 1 has a finite slope at u = 0.
GRAD_FLOOR = 1e-12


def _positive(value, name: str, hint: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a number > 0, got {value!r}; {hint}") from exc
    if not math.isfinite(v) or v <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}; {hint}")
    return v


def _check_scale(scale) -> float:
    return _positive(scale, "scale", "it multiplies h's mapped logits (an inverse temperature), e.g. scale=1.0")


def _check_power(power) -> float:
    return _positive(power, "power", "it is the exponent of |u|, e.g. power=1.0 for no change")


def _check_bias(bias) -> float:
    try:
        b = float(bias)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bias must be a finite number, got {bias!r}") from exc
    if not math.isfinite(b):
        raise ConfigError(f"bias must be a finite number, got {bias!r}")
    return b


def _check_top_k(top_k) -> int | None:
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 2):
        raise ConfigError(f"top_k must be None (all classes) or an integer >= 2 (a variance needs two logits), "
                          f"got {top_k!r}")
    return top_k


def _check_std_map(std_map) -> str:
    name = str(getattr(std_map, "value", std_map)).lower()
    if name not in STD_MAPS:
        raise ConfigError(f"unknown std_map {std_map!r}: use 'softmax' (g's probabilities) or 'onehot' (g's argmax)")
    return name


@dataclasses.dataclass(frozen=True)
class NonlinearMap:
    """MixedNUTS's map of h's logits (an option group): ``scale * sign(u) |u|^power``, ``u = GELU(LN_k(z) + bias)``.

    ``scale`` > 0 (an inverse temperature), ``power`` > 0, ``bias`` any finite number, ``top_k`` None (the layer
    norm over all classes) or an integer >= 2, ``std_map`` how g enters the mixture: "softmax" (g's probabilities)
    or "onehot" (g's argmax).  Each value is checked once, here; numbers are kept as floats, ``std_map`` in lower
    case.  Whether ``top_k`` fits the models is checked where the classes are known (:meth:`check_classes`)::

        NonlinearMixedClassifier(g, h, alpha=0.7, logit_map=NonlinearMap(scale=2.0, power=1.5, bias=-0.5))
    """

    scale: float = 1.0
    power: float = 1.0
    bias: float = 0.0
    top_k: int | None = None
    std_map: str = "softmax"

    def __post_init__(self):
        object.__setattr__(self, "scale", _check_scale(self.scale))
        object.__setattr__(self, "power", _check_power(self.power))
        object.__setattr__(self, "bias", _check_bias(self.bias))
        object.__setattr__(self, "top_k", _check_top_k(self.top_k))
        object.__setattr__(self, "std_map", _check_std_map(self.std_map))

    def check_classes(self, num_classes: int | None) -> "NonlinearMap":
        """This map, refused in one line when ``top_k`` exceeds the models' number of classes (None: unknown)."""
        if self.top_k is not None and num_classes is not None and self.top_k > num_classes:
            raise ConfigError(f"top_k={self.top_k} exceeds the number of classes ({num_classes}); "
                              f"use top_k <= {num_classes} or None for all classes")
        return self


def _as_map(logit_map, caller: str) -> NonlinearMap:
    if logit_map is None:
        return NonlinearMap()
    if not isinstance(logit_map, NonlinearMap):
        raise TypeError(f"{caller}(): logit_map must be a NonlinearMap(scale, power, bias, top_k, std_map), got "
                        f"{type(logit_map).__name__} {logit_map!r}; give the map's settings as "
                        "logit_map=NonlinearMap(...)")
    return logit_map


def check_map_params(scale, power, bias, top_k=None, std_map="softmax", num_classes: int | None = None):
    """Validate the map's settings; returns (scale, power, bias, top_k, std_map) normalised.

    Kept for callers of the tuple form: the checks are :class:`NonlinearMap`'s.
    """
    m = NonlinearMap(scale, power, bias, top_k, std_map).check_classes(num_classes)
    return m.scale, m.power, m.bias, m.top_k, m.std_map


def layer_norm_topk(z: torch.Tensor, top_k: int | None = None) -> torch.Tensor:
    """``(z - mean(topk(z))) / sqrt(var(topk(z)) + 1e-8)`` per row, unbiased variance; top_k=None: all classes."""
    ref = z if top_k is None or top_k >= z.shape[-1] else z.topk(top_k, dim=-1).values
    mean = ref.mean(-1, keepdim=True)
    var = ref.var(-1, keepdim=True, unbiased=True)
    return (z - mean) / torch.sqrt(var + LN_EPS)


def signed_power(u: torch.Tensor, power, smooth: float = 0.0) -> torch.Tensor:
    """``sign(u) |u|^power`` with exact values and a finite gradient everywhere.

    For power < 1 the true slope at u = 0 is infinite; below ``GRAD_FLOOR`` the
    gradient is that of the linear extension ``u * GRAD_FLOOR^(power - 1)``
    (finite, continuous with the slope just outside), the value stays exact.
    ``smooth > 0`` instead returns the smooth stand-in
    ``u (u^2 + smooth^2)^((power - 1) / 2)`` (used by attack surrogates only).
    """
    p = torch.as_tensor(power, dtype=u.dtype, device=u.device)
    if smooth > 0:
        return u * (u * u + smooth * smooth) ** ((p - 1) / 2)
    a = u.abs()
    big = a > GRAD_FLOOR
    a_safe = torch.where(big, a, torch.ones_like(a))
    surrogate = torch.where(big, torch.sign(u) * a_safe ** p, u * GRAD_FLOOR ** (p - 1))
    exact = torch.sign(u.detach()) * a.detach() ** p
    return surrogate + (exact - surrogate).detach()


def nonlinear_map(rob_logits: torch.Tensor, scale, power, bias, top_k: int | None = None,
                  smooth: float = 0.0) -> torch.Tensor:
    """The map M(z_h) = scale * sign(u) * |u|^power, u = GELU(LN_k(z_h) + bias), in float64."""
    m = NonlinearMap(scale, power, bias, top_k).check_classes(rob_logits.shape[-1])
    return map_checked(rob_logits, m.scale, m.power, m.bias, m.top_k, smooth)


def map_checked(rob_logits: torch.Tensor, scale, power, bias, top_k: int | None = None,
                smooth: float = 0.0) -> torch.Tensor:
    """:func:`nonlinear_map` for settings checked beforehand (numbers or tensors): no host synchronisation."""
    u = F.gelu(layer_norm_topk(rob_logits.double(), top_k) + bias)
    return scale * signed_power(u, power, smooth)


def safe_logaddexp(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``log(exp(a) + exp(b))`` that is -inf where both are -inf, with a zero (not NaN) gradient there."""
    both = torch.isneginf(a) & torch.isneginf(b)
    zero = torch.zeros((), dtype=a.dtype, device=a.device)
    out = torch.logaddexp(torch.where(both, zero, a), torch.where(both, zero, b))
    return torch.where(both, torch.full_like(out, -math.inf), out)


def std_log_probs(std_logits: torch.Tensor, std_map: str = "softmax", temperature: float = 1.0) -> torch.Tensor:
    """log P_g in float64: ``log_softmax(z_g / T)`` or the log one-hot of g's argmax (0 / -inf)."""
    z = std_logits.double()
    if std_map == "onehot":
        hot = F.one_hot(z.argmax(-1), z.shape[-1]).bool()
        return torch.where(hot, torch.zeros_like(z), torch.full_like(z, -math.inf))
    return F.log_softmax(z / temperature, dim=-1)


def mix_log_weights(log_p_std: torch.Tensor, log_p_rob: torch.Tensor, log_w_std, log_w_rob) -> torch.Tensor:
    """``log(w_std p_std + w_rob p_rob)`` from logs; weights are numbers or (n, 1) tensors."""
    return safe_logaddexp(log_w_std + log_p_std, log_w_rob + log_p_rob)


def _scalar_alpha(alpha) -> torch.Tensor:
    a = check_alpha(alpha)
    if a.ndim:
        raise ConfigError(f"the nonlinear mixer takes one alpha in [0, 1], got {a.numel()} values; "
                          "build one mixer per alpha")
    return a


def nonlinear_mix(std_logits: torch.Tensor, rob_logits: torch.Tensor, alpha, logit_map: NonlinearMap | None = None,
                  *, std_temperature: float = 1.0, smooth: float = 0.0, **deprecated) -> torch.Tensor:
    """``log((1 - alpha) P_g + alpha softmax(M(z_h)))``, computed in float64, returned in the logits' dtype.

    ``logit_map``: the map M and g's map (:class:`NonlinearMap`; default ``NonlinearMap()``).
    ``alpha = 1`` gives ``log_softmax(M(z_h))``; ``alpha = 0`` gives ``log P_g``.
    ``std_temperature`` and ``smooth`` exist for attack surrogates (see
    :meth:`NonlinearMixedClassifier.attack_surrogates`).  The keywords ``scale``, ``power``, ``bias``, ``top_k``
    and ``std_map`` still work for one release (deprecated: give ``logit_map=NonlinearMap(...)``).
    """
    logit_map = _as_map(from_keywords(NonlinearMap, logit_map, deprecated, "nonlinear_mix"), "nonlinear_mix")
    logit_map.check_classes(rob_logits.shape[-1])
    return mix_checked(std_logits, rob_logits, _scalar_alpha(alpha), logit_map, std_temperature=std_temperature,
                       smooth=smooth)


def mix_checked(std_logits: torch.Tensor, rob_logits: torch.Tensor, alpha: torch.Tensor,
                logit_map: NonlinearMap | NonlinearMixedClassifier | None = None, *,
                std_map: str | None = None, std_temperature: float = 1.0, smooth: float = 0.0,
                **deprecated) -> torch.Tensor:
    """:func:`nonlinear_mix` for settings checked beforehand (``alpha`` a 0-d tensor): no host synchronisation,
    so a module's forward built on it compiles as one graph.

    ``logit_map``: a :class:`NonlinearMap`, or anything with its fields ``scale``, ``power``, ``bias``, ``top_k``,
    ``std_map`` (a :class:`NonlinearMixedClassifier` passes itself: its float64 buffers).  ``std_map`` replaces
    the map's own (for attack surrogates).  The keywords ``scale``, ``power``, ``bias`` and ``top_k`` still work
    for one release (deprecated).
    """
    if deprecated:
        old = {**deprecated, **({"std_map": std_map} if std_map is not None else {})}
        logit_map = from_keywords(NonlinearMap, logit_map, old, "mix_checked")
    if logit_map is None:
        raise TypeError("mix_checked() needs the map: mix_checked(std_logits, rob_logits, alpha, NonlinearMap(...))")
    if std_logits.shape != rob_logits.shape or std_logits.ndim != 2:
        raise ModelError(f"g and h must give (n, c) logits of one shape, got {tuple(std_logits.shape)} and "
                         f"{tuple(rob_logits.shape)}; mix two models over the same classes")
    a = alpha.to(rob_logits.device)
    m = logit_map
    log_rob = F.log_softmax(map_checked(rob_logits, m.scale, m.power, m.bias, m.top_k, smooth), dim=-1)
    log_std = std_log_probs(std_logits, std_map or m.std_map, std_temperature)
    out = mix_log_weights(log_std, log_rob, torch.log1p(-a), torch.log(a))
    return out.to(std_logits.dtype if std_logits.is_floating_point() else torch.float64)


class NonlinearMixedClassifier(BasePair):
    """MixedNUTS's mixer ``log((1 - alpha) P_g + alpha softmax(M(h(x))))``, output (n, c).

    ``alpha`` in [0, 1] and ``logit_map`` the map M and g's map (:class:`NonlinearMap`: ``scale``, ``power``,
    ``bias``, ``top_k``, ``std_map``; default ``NonlinearMap()``), checked against the models' classes.  The
    settings are float64 buffers (``top_k`` and ``std_map`` plain attributes) and :meth:`config` returns them as
    JSON-able settings (:meth:`from_config` rebuilds the mixer), so a checkpoint is ``state_dict()`` plus
    ``config()``.  The map's fields as keywords (``scale=...``) still work for one release (deprecated).
    """

    def __init__(self, std_model: nn.Module, rob_model: nn.Module, alpha=0.5, logit_map: NonlinearMap | None = None,
                 *, validate_inputs: bool = False, **deprecated):
        logit_map = _as_map(from_keywords(NonlinearMap, logit_map, deprecated, "NonlinearMixedClassifier"),
                            "NonlinearMixedClassifier")
        super().__init__(std_model, rob_model, validate_inputs)
        classes = getattr(std_model, "num_classes", None) or getattr(rob_model, "num_classes", None)
        logit_map.check_classes(classes)
        self.register_buffer("alpha", _scalar_alpha(alpha))
        for name in ("scale", "power", "bias"):
            self.register_buffer(name, torch.tensor(getattr(logit_map, name), dtype=torch.float64))
        self.top_k = logit_map.top_k
        self.std_map = logit_map.std_map

    @classmethod
    def from_config(cls, std_model: nn.Module, rob_model: nn.Module, config: dict) -> "NonlinearMixedClassifier":
        """The mixer of :meth:`config`'s settings (``{"alpha", "scale", "power", "bias", "top_k", "std_map"}``,
        ``"mixer"`` ignored), e.g. read back from a checkpoint's card."""
        settings = {k: v for k, v in config.items() if k != "mixer"}
        alpha = settings.pop("alpha", 0.5)
        names = {f.name for f in dataclasses.fields(NonlinearMap)}
        unknown = sorted(set(settings) - names)
        if unknown:   # a TypeError, as from a constructor: the registry reports it as a card that does not fit
            raise TypeError(f"nonlinear mixer config has unknown setting(s) {', '.join(unknown)}; "
                            f"expected alpha and {', '.join(sorted(names))}")
        return cls(std_model, rob_model, alpha, NonlinearMap(**settings))

    @property
    def logit_map(self) -> NonlinearMap:
        """The map's settings as a :class:`NonlinearMap` (reads the buffers: a host synchronisation)."""
        return NonlinearMap(float(self.scale), float(self.power), float(self.bias), self.top_k, self.std_map)

    def config(self) -> dict:
        """The constructor settings as plain JSON types."""
        return {"mixer": "nonlinear", "alpha": float(self.alpha), "scale": float(self.scale),
                "power": float(self.power), "bias": float(self.bias), "top_k": self.top_k, "std_map": self.std_map}

    def logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(g's logits, h's logits) for the batch x."""
        x = self._check(x)
        std_logits, rob_logits = self.std_model(x), self.rob_model(x)
        self._check_classes(std_logits, rob_logits)
        return std_logits, rob_logits

    def mapped_rob_logits(self, x: torch.Tensor) -> torch.Tensor:
        """M(h(x)) in float64."""
        return map_checked(self.rob_model(self._check(x)), self.scale, self.power, self.bias, self.top_k)

    def mix(self, x: torch.Tensor, *, std_map: str | None = None, std_temperature: float = 1.0,
            smooth: float = 0.0) -> torch.Tensor:
        std_logits, rob_logits = self.logits(x)
        if std_map not in (None, *STD_MAPS):
            raise ConfigError(f"unknown std_map {std_map!r}: use 'softmax' or 'onehot'")
        return mix_checked(std_logits, rob_logits, self.alpha, self, std_map=std_map, std_temperature=std_temperature,
                           smooth=smooth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x)

    def attack_surrogates(self) -> dict[str, nn.Module]:
        """Differentiable stand-ins (inputs -> (n, c) scores) for the worst-case evaluator.

        * ``mix-T<T>``: the mixture with g's softmax at temperature T as P_g, for
          T = 1, 0.25 (sharp) and 4 (soft).  For ``std_map="onehot"`` these replace
          the one-hot, whose gradient through g is zero; for "softmax", T = 1 is
          the model itself;
        * ``mix-smooth-power`` (only when power < 1): the map with ``sign(u)|u|^p``
          replaced by ``u (u^2 + 0.1^2)^((p - 1) / 2)`` (no infinite slope at u = 0);
        * ``h``: h's logits alone (M is increasing in h's logits above GELU's
          minimum, so h's argmax decides the alpha = 1 limit).
        Attacks follow their gradients; candidates are judged on the mixer itself.
        """
        out: dict[str, nn.Module] = {}
        for t in (1.0, 0.25, 4.0):
            same = t == 1.0 and self.std_map == "softmax"
            out[f"mix-T{t:g}"] = self if same else Surrogate(self, std_map="softmax", std_temperature=t)
        if float(self.power) < 1:
            out["mix-smooth-power"] = Surrogate(self, smooth=0.1)
        out["h"] = self.rob_model
        return out

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config().items() if k != "mixer")


class Surrogate(nn.Module):
    """A mixer evaluated with other keyword settings of its ``mix`` method."""

    def __init__(self, mixer: nn.Module, **settings):
        super().__init__()
        self.mixer = mixer
        self.settings = settings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mixer.mix(x, **self.settings)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.settings.items())
