"""Argument and input checks shared by every layer (exceptions, never assert)."""

from __future__ import annotations

import math
from typing import Union

import torch

from .errors import ConfigError, InputError, ModelError

AlphaLike = Union[float, int, torch.Tensor, "list[float]", "tuple[float, ...]"]

_P_NAMES = {"1": 1.0, "l1": 1.0, "2": 2.0, "l2": 2.0, "inf": math.inf, "linf": math.inf}


def check_alpha(alpha: AlphaLike) -> torch.Tensor:
    """Return alpha as a float64 tensor of rank 0 (one value) or 1 (k values).

    Raises :class:`ConfigError` for NaN, values outside [0, 1], empty or
    higher-rank input.
    """
    if isinstance(alpha, torch.Tensor):
        a = alpha.detach().to(device="cpu", dtype=torch.float64)
    else:
        try:
            a = torch.as_tensor(alpha, dtype=torch.float64)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"alpha must be a number in [0, 1] or a 1-D list/tensor of such numbers, got {alpha!r}") from exc
    if a.ndim > 1:
        raise ConfigError(f"alpha must be a scalar or a 1-D tensor of k values, got shape {tuple(a.shape)}; flatten it first")
    if a.numel() == 0:
        raise ConfigError("alpha is empty: give at least one value in [0, 1]")
    if torch.isnan(a).any():
        raise ConfigError("alpha contains NaN: give values in [0, 1] (0 = standard model only, 1 = robust model only)")
    if (a < 0).any() or (a > 1).any():
        bad = a[(a < 0) | (a > 1)].tolist()
        raise ConfigError(f"alpha must lie in [0, 1] (0 = standard model only, 1 = robust model only), got {bad}")
    return a


def alpha_grid(step: float = 0.1) -> list[float]:
    """The evenly spaced alphas 0, step, ..., 1 (rounded to 2 decimals): the default sweep grids."""
    return [round(i * step, 2) for i in range(round(1 / step) + 1)]


def check_gamma(gamma: float) -> float:
    """The paper's trade-off parameter gamma >= 0 (inf allowed: robust model only)."""
    try:
        g = float(gamma)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"gamma must be a number >= 0, got {gamma!r}") from exc
    if math.isnan(g) or g < 0:
        raise ConfigError(f"gamma must be >= 0 (alpha = gamma / (1 + gamma)), got {gamma!r}")
    return g


def check_p(p) -> float:
    """Normalise an l_p norm name (1, 2, inf, 'l2', 'Linf', ...) to 1.0, 2.0 or math.inf."""
    if isinstance(p, str):
        key = p.strip().lower()
        if key in _P_NAMES:
            return _P_NAMES[key]
    elif isinstance(p, (int, float)) and not isinstance(p, bool):
        if float(p) in (1.0, 2.0, math.inf):
            return float(p)
    raise ConfigError(f"unknown norm p={p!r}: use 1, 2 or inf (also accepted: 'l1', 'l2', 'linf')")


def norm_name(p) -> str:
    """The one spelling of an l_p norm in settings and records: "inf", "2" or "1" (for 'linf', 'L2', 2.0, ...)."""
    return {1.0: "1", 2.0: "2", math.inf: "inf"}[check_p(p)]


def dual_exponent(p) -> float:
    """Dual exponent p* with 1/p + 1/p* = 1, for p in {1, 2, inf}."""
    p = check_p(p)
    return {1.0: math.inf, 2.0: 2.0, math.inf: 1.0}[p]


def check_input(x, *, name: str = "x", min_ndim: int = 2, unit_range: bool = True) -> torch.Tensor:
    """Check that ``x`` is a finite floating-point batch of rank >= ``min_ndim`` (values in [0, 1] by default)."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}; convert with torch.as_tensor(..., dtype=torch.float32)")
    if not x.is_floating_point():
        raise InputError(
            f"{name} has integer dtype {x.dtype}; models take floats in [0, 1]: use x.float() / 255 for 8-bit images")
    if x.ndim < min_ndim:
        raise InputError(
            f"{name} has rank {x.ndim} (shape {tuple(x.shape)}), expected a batch of rank >= {min_ndim} such as (n, C, H, W); "
            "add a batch dimension with x.unsqueeze(0)")
    if not torch.isfinite(x).all():
        raise InputError(f"{name} contains NaN or inf values; clean the inputs before evaluating")
    if unit_range and x.numel() and (x.min() < 0 or x.max() > 1):
        raise InputError(f"{name} has values in [{float(x.min()):.3g}, {float(x.max()):.3g}] but robustmix models "
                         "take inputs in [0, 1] (normalisation lives inside the model): pass unnormalised images "
                         "scaled to [0, 1]")
    return x


def check_logits(out, name: str) -> None:
    """Refuse outputs that are not finite logits (NaN/inf, probabilities); ``name`` names the model in the message."""
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"model {name} returns {shape}; robustmix needs (n, classes) logits")
    out = out.detach().double()
    if not torch.isfinite(out).all():
        raise ModelError(f"model {name} returns NaN or infinite outputs on real inputs; check its weights and "
                         "input normalisation (inputs are in [0, 1])")
    if out.shape[1] > 1 and (out >= 0).all() and torch.allclose(out.sum(1), torch.ones(len(out), dtype=out.dtype),
                                                                 atol=1e-4):
        raise ModelError(f"model {name} returns probabilities (rows sum to 1); robustmix needs logits: remove the "
                         "final softmax (or wrap it: torch.log(probs) gives valid logits)")


def mixture_parts(model, name: str) -> dict:
    """A mixer's base models by name (``"<name>'s g"``, ``"<name>'s h"``); empty for any other model."""
    parts = {f"{name}'s {part}": getattr(model, attr, None) for attr, part in (("std_model", "g"), ("rob_model", "h"))}
    return {k: m for k, m in parts.items() if runnable(m)}


def runnable(module) -> bool:
    """An ``nn.Module`` with a forward of its own (an exported program keeps a mixer's std_model / rob_model as
    containers without one)."""
    return isinstance(module, torch.nn.Module) and type(module).forward is not torch.nn.Module.forward


def probe_models(models: dict, x: torch.Tensor, *, num_classes: int | None = None, k: int = 4) -> None:
    """Probe each model once on the first ``k`` inputs of a batch and refuse, in one line naming it, a model that
    raises, returns another shape, NaN/inf or probabilities instead of logits.

    Library entry points (evaluate, certify, sweeps) call this once on their first batch; a module's
    ``forward`` never does (it stays free of host syncs).  ``models`` maps a name (``"g"``, ``"h"``, ...) to a
    callable; ``num_classes`` (when known) is the number of logits each must return.
    """
    xb = x[:k]
    parts = {}
    for name, model in models.items():   # a mixer's g and h are probed too: its own output can hide them
        parts.update({name: model, **mixture_parts(model, name)})
    with torch.no_grad():
        for name, model in parts.items():
            try:
                out = model(xb)
            except Exception as exc:  # noqa: BLE001  (a user's model may raise anything on the wrong input)
                raise ModelError(f"model {name} fails on inputs of shape {tuple(xb.shape[1:])} ({type(exc).__name__}: "
                                 f"{' '.join(str(exc).split())[:160]}); give a model for these inputs") from None
            if isinstance(out, torch.Tensor) and num_classes is not None and tuple(out.shape) != (len(xb), num_classes):
                raise ModelError(f"model {name} returns {tuple(out.shape)} for {len(xb)} inputs; robustmix needs "
                                 f"({len(xb)}, {num_classes}) logits")
            check_logits(out, name)


def check_labels(y, n: int, num_classes: int | None = None, *, name: str = "y") -> torch.Tensor:
    """Check that ``y`` holds n integer class labels in [0, num_classes)."""
    if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise InputError(f"{name} must be an integer tensor of class labels, e.g. torch.tensor([3, 1, ...])")
    if y.ndim != 1 or len(y) != n:
        raise InputError(f"{name} must have shape ({n},), one label per input; got {tuple(y.shape)}")
    if n and (y.min() < 0 or (num_classes is not None and y.max() >= num_classes)):
        raise InputError(f"{name} has labels in [{int(y.min())}, {int(y.max())}] but the model has "
                         f"{num_classes} classes: labels must lie in [0, {num_classes})")
    return y


def check_eps(eps, *, name: str = "eps") -> float:
    try:
        e = float(eps)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a number >= 0, got {eps!r}") from exc
    if math.isnan(e) or e < 0 or math.isinf(e):
        raise ConfigError(f"{name} must be a finite number >= 0, got {eps!r}")
    return e


def check_positive_int(value, *, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def model_device(model) -> torch.device:
    """The device of a model's first parameter (CPU for parameter-free callables)."""
    params = getattr(model, "parameters", None)
    param = next(iter(params()), None) if callable(params) else None
    return param.device if param is not None else torch.device("cpu")
