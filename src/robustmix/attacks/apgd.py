"""APGD (Croce & Hein, 2020) with a per-iterate hook, and counter-based noise for batch-independent starts.

The attack climbs a loss of a *source* model (the model itself, a
differentiable surrogate or a base model) and hands every iterate to an
``observe`` callback, so a caller can judge each one on another model and
keep the best point seen anywhere (see :func:`robustmix.attacks.evaluate`).

Step-size schedule (Croce & Hein, Sec. 3): step 2 eps, checkpoints
w_j = ceil(p_j N) with p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06);
at a checkpoint an example's step is halved and it restarts from its best
point when fewer than rho = 0.75 of the steps since the last checkpoint raised
its loss, or when its step was not halved last time and its best loss has not
improved since.  Updates use momentum 0.75.  Everything is per example, so an
example's trajectory does not depend on the others in its batch.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
import torch.nn.functional as F

from .._seeding import example_keys, hash32  # noqa: F401  (example_keys: part of this module's API)
from .._validation import check_positive_int
from ..errors import ConfigError, InputError
from .._config import refuse_unknown
from ..groups import ThreatModel, from_keywords
from .pgd import legacy_threat, per_sample_norm, project


Observe = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def keyed_uniform(keys: torch.Tensor, shape, dtype=torch.float32) -> torch.Tensor:
    """Uniform noise in (0, 1) of shape (len(keys), *shape), a fixed function of each example's key.

    Computed on the keys' device in one batched pass (no per-example generators).
    """
    d = math.prod(shape)
    pos = hash32(torch.arange(d, dtype=torch.int64, device=keys.device) * 0x9E37 + 1)
    bits = hash32(keys.view(-1, 1) ^ pos.view(1, -1)) >> 8
    return ((bits.to(dtype) + 0.5) / 2 ** 24).view(len(keys), *shape)


def keyed_normal(keys: torch.Tensor, shape, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise (Box-Muller over two keyed uniform streams)."""
    u1 = keyed_uniform(keys, shape, dtype)
    u2 = keyed_uniform(hash32(keys ^ 0x5BD1E995), shape, dtype)
    return torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * math.pi * u2)


def keyed_start(x: torch.Tensor, eps: float, p: float, keys: torch.Tensor) -> torch.Tensor:
    """A random start in the eps-ball (uniform in the l_inf cube, on the l_2 sphere), clipped to [0, 1]."""
    if p == math.inf:
        noise = keyed_uniform(keys, x.shape[1:], x.dtype) * 2 - 1
    else:
        noise = keyed_normal(keys, x.shape[1:], x.dtype)
        noise = noise / per_sample_norm(noise, 2.0).clamp_min(1e-12)
    return (x + eps * noise).clamp(0, 1)


def ce_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y, reduction="none")


def dlr_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of logits ratio: -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3), shift and scale invariant.

    Needs 3 or more classes to be informative (with 2 it is +-1 and has no gradient).
    """
    top = out.topk(min(3, out.shape[1]), dim=1).values
    true = out.gather(1, y[:, None])[:, 0]
    other = out.masked_fill(F.one_hot(y, out.shape[1]).bool(), -math.inf).amax(1)
    return -(true - other) / (top[:, 0] - top[:, -1] + 1e-12)


LOSSES = {"ce": ce_loss, "dlr": dlr_loss}


def checkpoints(steps: int) -> list[int]:
    """The iterations at which APGD may halve its step size."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    marks = {math.ceil(round(q * steps, 9)) for q in p[1:]}   # round: 0.57 * 100 is 57.000...01 in floats
    return sorted(w for w in marks if 0 < w < steps)


def _ascent(grad: torch.Tensor, eta: torch.Tensor, p: float) -> torch.Tensor:
    shape = (-1,) + (1,) * (grad.ndim - 1)
    if p == math.inf:
        return eta.view(shape) * grad.sign()
    return eta.view(shape) * grad / per_sample_norm(grad, 2.0).clamp_min(1e-12)


@dataclasses.dataclass(frozen=True)
class APGDSettings:
    """One APGD run: ``steps`` forward-backward passes of the source (the random start's included), the ``loss`` it
    climbs ("ce" or "dlr"), and the schedule's constants: a checkpoint halves an example's step when fewer than
    ``rho`` of the steps since the last one raised its loss; updates use ``momentum``.  Checked once, here."""

    steps: int = 100
    loss: str = "ce"
    rho: float = 0.75
    momentum: float = 0.75

    def __post_init__(self):
        check_positive_int(self.steps, name="steps")
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown APGD loss {self.loss!r}: use 'ce' or 'dlr'")
        for name in ("rho", "momentum"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ConfigError(f"APGD's {name} must be a number in [0, 1], got {value!r}")


_SETTINGS = tuple(f.name for f in dataclasses.fields(APGDSettings))


def apgd(source, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel | None = None, p: float | str | None = None, *,
         settings: APGDSettings | None = None, keys: torch.Tensor | None = None, observe: Observe | None = None,
         **deprecated) -> torch.Tensor:
    """Maximise ``loss(source(x_adv), y)`` over ``threat``'s ball and [0, 1]; return each example's highest-loss point.

    ``settings`` (default :class:`APGDSettings`: 100 steps of CE): ``steps`` counts forward-backward passes of
    ``source``.  ``keys`` (one integer per example, see :func:`example_keys`) gives a random start; None starts
    at x.  ``observe(idx, x_iter, source_out)`` sees every iterate (idx: positions in the batch) and returns a
    bool per row: True drops that example from the rest of the run (e.g. once it is misclassified by the model
    that matters).  Inputs are assumed checked by the caller.

    Deprecated, for one release (DeprecationWarning): eps and ``p`` in ``threat``'s place
    (``apgd(source, x, y, eps, p, ...)``) and the keywords ``steps``, ``loss``, ``rho``, ``momentum``.
    """
    threat, old = legacy_threat(threat, p, deprecated, "apgd")
    old_settings = {k: deprecated.pop(k) for k in _SETTINGS if k in deprecated}
    refuse_unknown(deprecated, "apgd")
    threat = from_keywords(ThreatModel, threat, old, "apgd")
    settings = from_keywords(APGDSettings, settings, old_settings, "apgd") or APGDSettings()
    eps, p, steps, rho, momentum = threat.eps, threat.p, settings.steps, settings.rho, settings.momentum
    loss_fn = LOSSES[settings.loss]
    shape = (-1,) + (1,) * (x.ndim - 1)

    def value_and_grad(xa, ya):
        xa = xa.detach().requires_grad_(True)
        with torch.enable_grad():
            out = source(xa)
            if out.ndim != 2:
                raise InputError(f"an attack source must return (n, c) scores, got shape {tuple(out.shape)}; "
                                 "for an alpha sweep evaluate one alpha at a time")
            value = loss_fn(out, ya)
            (grad,) = torch.autograd.grad(value.sum(), xa)
        value = torch.nan_to_num(value.detach(), nan=-math.inf)
        return value, torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0), out.detach()

    x_top = x.clone()
    idx = torch.arange(len(x), device=x.device)
    xs, ys = x, y
    cur = keyed_start(x, eps, p, keys) if keys is not None else x.clone()
    prev = cur
    f, grad, out = value_and_grad(cur, ys)
    done = observe(idx, cur, out) if observe is not None else None
    f_top, x_best, g_best = f, cur, grad
    eta = torch.full((len(x),), 2.0 * eps, device=x.device, dtype=x.dtype)
    rises = torch.zeros(len(x), device=x.device)
    reduced_last = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    f_top_last = f_top.clone()
    marks, last = set(checkpoints(steps)), 0
    for k in range(1, steps):
        if done is not None and done.any():
            x_top[idx[done]] = x_best[done]
            keep = ~done
            idx, xs, ys, cur, prev, f, grad = idx[keep], xs[keep], ys[keep], cur[keep], prev[keep], f[keep], grad[keep]
            f_top, x_best, g_best, eta = f_top[keep], x_best[keep], g_best[keep], eta[keep]
            rises, reduced_last, f_top_last = rises[keep], reduced_last[keep], f_top_last[keep]
            if len(idx) == 0:
                return x_top
        z = project(cur + _ascent(grad, eta, p), xs, eps, p)
        nxt = z if k == 1 else project(cur + momentum * (z - cur) + (1 - momentum) * (cur - prev), xs, eps, p)
        prev, cur = cur, nxt
        f_new, grad, out = value_and_grad(cur, ys)
        done = observe(idx, cur, out) if observe is not None else None
        rises += (f_new > f).float()
        f = f_new
        better = f > f_top
        f_top = torch.where(better, f, f_top)
        x_best = torch.where(better.view(shape), cur, x_best)
        g_best = torch.where(better.view(shape), grad, g_best)
        if k in marks:
            halve = (rises < rho * (k - last)) | (~reduced_last & (f_top <= f_top_last))
            eta = torch.where(halve, eta / 2, eta)
            cur = torch.where(halve.view(shape), x_best, cur)
            prev = torch.where(halve.view(shape), x_best, prev)
            grad = torch.where(halve.view(shape), g_best, grad)
            f = torch.where(halve, f_top, f)
            reduced_last, f_top_last, last = halve, f_top.clone(), k
            rises = torch.zeros_like(rises)
    x_top[idx] = x_best
    return x_top
