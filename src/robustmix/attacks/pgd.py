"""FGSM and PGD (l_inf and l_2) with random start and restarts.

The attack is bound to a *target* (the model whose gradient it follows: g, h,
the mixture, or anything callable returning logits or log-probabilities);
evaluation of the adversarial examples on another model is the caller's
choice.  Adversarial examples always stay inside the eps-ball around x and
inside the [0, 1] box.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
import torch.nn.functional as F

from .._validation import check_eps, check_input, check_p, check_positive_int
from .._seeding import example_seed
from ..errors import AttackError, ConfigError, InputError
from ..groups import ThreatModel

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_seed(seed, *, name: str = "seed", optional: bool = False) -> int | None:
    """A seed is an integer (None too when ``optional``: unseeded); refused in one line otherwise."""
    if (seed is None and optional) or (isinstance(seed, int) and not isinstance(seed, bool)):
        return seed
    raise ConfigError(f"{name} must be an integer{' or None' if optional else ''}, got {seed!r}")


@dataclasses.dataclass(frozen=True)
class PGDBudget:
    """How hard a PGD evaluation tries: ``steps`` gradient steps (0: no attack) from each of ``restarts`` random
    starts, the starts drawn from ``seed`` (None: unseeded).  Checked once, here."""

    steps: int = 20
    restarts: int = 1
    seed: int | None = 0

    def __post_init__(self):
        check_positive_int(self.steps, name="steps", minimum=0)
        check_positive_int(self.restarts, name="restarts")
        check_seed(self.seed, optional=True)


def legacy_threat(threat, norm, deprecated: dict, caller: str) -> tuple[ThreatModel | None, dict]:
    """Split a call's deprecated (eps, norm) from its ``threat`` (kept for one release, then removed).

    Old calls passed eps, then the norm, where ``threat`` and the deprecated ``norm`` slot now are, or as
    ``eps=`` / ``norm=`` keywords.  Returns (the ThreatModel given or None, the old values as ThreatModel's
    fields) and pops ``eps`` from ``deprecated``; build the group with :func:`robustmix.groups.from_keywords`.
    No threat at all (neither form) is a TypeError, as a missing argument is.
    """
    old = {}
    if threat is not None and not isinstance(threat, ThreatModel):   # f(model, x, y, eps, ...)
        old["eps"], threat = threat, None
    if "eps" in deprecated:
        if "eps" in old:
            raise TypeError(f"{caller}() got multiple values for argument 'eps'")
        old["eps"] = deprecated.pop("eps")
    if norm is not None:
        old["norm"] = norm
    if threat is None and "eps" not in old:
        raise TypeError(f"{caller}() needs threat=ThreatModel(norm, eps), the attack's norm and radius")
    return threat, old


def per_sample_norm(v: torch.Tensor, p: float) -> torch.Tensor:
    """The l_p norm of each example of a batch, shaped (n, 1, ..., 1) to broadcast against ``v``."""
    return torch.linalg.vector_norm(v.flatten(1), ord=p, dim=1).view(-1, *([1] * (v.ndim - 1)))


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, p: float) -> torch.Tensor:
    """Project onto {||x_adv - x||_p <= eps} and then the [0, 1] box (which keeps the norm bound)."""
    delta = x_adv - x
    if p == math.inf:
        delta = delta.clamp(-eps, eps)
    elif p == 2.0:
        norm = per_sample_norm(delta, 2.0)
        delta = delta * torch.clamp(eps / norm.clamp_min(1e-12), max=1.0)
    else:
        raise ConfigError("projection is implemented for p = 2 and inf")
    return (x + delta).clamp(0.0, 1.0)


def random_start(x: torch.Tensor, eps: float, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A uniform random point of the eps-ball around x (then clipped to the box)."""
    if p == math.inf:
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
        return (x + eps * noise).clamp(0, 1)
    direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    direction = direction / per_sample_norm(direction, 2.0).clamp_min(1e-12)
    d = x[0].numel()
    radius = torch.rand((len(x),) + (1,) * (x.ndim - 1), generator=generator, device=x.device, dtype=x.dtype) ** (1 / d)
    return (x + eps * radius * direction).clamp(0, 1)


def example_generators(seeds, restart: int = 0) -> list[torch.Generator]:
    """One CPU generator per example, seeded by (seed, restart): results do not depend on batching."""
    return [torch.Generator().manual_seed(example_seed(int(s), 0, restart)) for s in seeds]


def random_start_per_example(x: torch.Tensor, eps: float, p: float, generators) -> torch.Tensor:
    """Like :func:`random_start`, with each example's noise drawn from its own generator."""
    return torch.cat([random_start(x[i:i + 1].cpu(), eps, p, gen) for i, gen in enumerate(generators)]).to(x.device)


def _ascent_step(grad: torch.Tensor, step: float, p: float) -> torch.Tensor:
    if p == math.inf:
        return step * grad.sign()
    return step * grad / per_sample_norm(grad, 2.0).clamp_min(1e-12)


def _loss_fn(loss) -> Loss:
    if callable(loss):
        return loss
    if loss == "ce":
        return lambda out, y: F.cross_entropy(out, y, reduction="none")
    if loss == "margin":
        def margin(out, y):
            true = out.gather(1, y[:, None])[:, 0]
            other = out.masked_fill(F.one_hot(y, out.shape[1]).bool(), -math.inf).amax(1)
            return other - true
        return margin
    raise ConfigError(f"unknown loss {loss!r}: use 'ce', 'margin' or a callable (outputs, y) -> per-sample loss")


@dataclasses.dataclass
class PGD:
    """Projected gradient ascent on ``loss(target(x_adv), y)`` within an l_p ball.

    ``steps=1, random_init=False, step_size=eps`` is FGSM (l_inf) / the fast
    gradient method (l_2).  ``restarts`` keeps, per example, the first
    adversarial (misclassified) point found, else the highest-loss one.
    ``early_stop=True`` stops updating examples that are already misclassified
    (enough when only accuracy is needed; cheaper on weak models).
    """

    target: Callable[[torch.Tensor], torch.Tensor]
    eps: float
    norm: float | str = math.inf
    steps: int = 20
    step_size: float | None = None
    random_init: bool = True
    restarts: int = 1
    loss: str | Loss = "ce"
    early_stop: bool = False
    seed: int | None = 0

    def __post_init__(self):
        self.eps = check_eps(self.eps)
        self.norm = check_p(self.norm)
        if self.norm == 1.0:
            raise ConfigError("PGD supports p = 2 and inf (robustmix attacks the l_inf or the l_2 ball)")
        self.steps = check_positive_int(self.steps, name="steps", minimum=0)
        self.restarts = check_positive_int(self.restarts, name="restarts")
        if self.step_size is None:
            self.step_size = 2.5 * self.eps / max(self.steps, 1)
        self.step_size = check_eps(self.step_size, name="step_size")
        self._loss = _loss_fn(self.loss)

    def _logits(self, x):
        out = self.target(x)
        if out.ndim != 2:
            raise InputError(f"the attack target must return (n, c) scores, got shape {tuple(out.shape)}; "
                             "for an alpha sweep attack one alpha at a time")
        return out

    def _start(self, x, generator, seeds, restart):
        if not self.random_init or self.eps == 0:
            return x.clone()
        if seeds is not None:
            return random_start_per_example(x, self.eps, self.norm, example_generators(seeds, restart))
        return random_start(x, self.eps, self.norm, generator)

    def _single(self, x, y, x_adv):
        active = torch.arange(len(x), device=x.device)
        for _ in range(self.steps):
            xs, ys = (x[active], y[active]) if self.early_stop else (x, y)
            xa = (x_adv[active] if self.early_stop else x_adv).detach().requires_grad_(True)
            with torch.enable_grad():
                out = self._logits(xa)
                (grad,) = torch.autograd.grad(self._loss(out, ys).sum(), xa)
            if not torch.isfinite(grad).all():
                raise AttackError("the attack target's input gradient is NaN or inf at some inputs, so gradient "
                                  "attacks would silently fail (overstating robustness); fix the model's numerics "
                                  "or use a black-box attack (AutoAttack's Square)")
            step = project(xa.detach() + _ascent_step(grad, self.step_size, self.norm), xs, self.eps, self.norm)
            if not self.early_stop:
                x_adv = step
                continue
            # points already misclassified keep their current (adversarial) value
            still = out.argmax(1) == ys
            x_adv = x_adv.clone()
            x_adv[active[still]] = step[still]
            active = active[still]
            if len(active) == 0:
                break
        return x_adv.detach()

    def __call__(self, x: torch.Tensor, y: torch.Tensor, seeds=None) -> torch.Tensor:
        """Return adversarial examples for the batch ``(x, y)``.

        ``seeds`` (one integer per example, e.g. its dataset index) makes the
        random starts independent of how the data is batched or sharded.
        """
        check_input(x)
        if y.shape != (len(x),) or y.is_floating_point():
            raise InputError(f"labels must be an integer tensor of shape ({len(x)},), got {tuple(y.shape)} {y.dtype}")
        if self.eps == 0 or self.steps == 0:
            return x.clone()
        generator = None
        if self.seed is not None and seeds is None:
            generator = torch.Generator(device=x.device).manual_seed(self.seed)
        best = None
        if seeds is not None and len(seeds) != len(x):
            raise InputError(f"got {len(seeds)} seeds for {len(x)} examples")
        for restart in range(self.restarts):
            cand = self._single(x, y, self._start(x, generator, seeds, restart))
            if best is None:
                best = cand
                if self.restarts == 1:
                    break
                with torch.no_grad():
                    out = self._logits(best)
                    best_fooled, best_loss = out.argmax(1) != y, self._loss(out, y)
                continue
            with torch.no_grad():
                out = self._logits(cand)
                fooled, loss = out.argmax(1) != y, self._loss(out, y)
            better = (fooled & ~best_fooled) | ((fooled == best_fooled) & (loss > best_loss))
            best = torch.where(better.view(-1, *([1] * (x.ndim - 1))), cand, best)
            best_fooled, best_loss = best_fooled | fooled, torch.where(better, loss, best_loss)
        return best


def fgsm(target, x, y, eps, norm=math.inf):
    """One-step fast gradient attack (FGSM for l_inf) of size eps, no random start."""
    return PGD(target, eps, norm, steps=1, step_size=eps, random_init=False)(x, y)


def pgd(target, x, y, eps, norm=math.inf, steps=20, **kwargs):
    """Functional shortcut for :class:`PGD`."""
    return PGD(target, eps, norm, steps=steps, **kwargs)(x, y)
