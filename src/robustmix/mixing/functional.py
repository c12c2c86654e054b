"""The paper's formulas as pure, differentiable functions.

Notation follows "Mixing Classifiers to Alleviate the Accuracy-Robustness
Trade-Off" (Bai, Anderson, Sojoudi): g is the accurate standard model, h the
robust model, both giving logits of shape (n, c).

* eq. (4), :func:`mix_log_probs`: ``log((1 - alpha) softmax(g) + alpha softmax(h))``,
  computed as a log-sum-exp so that values and gradients stay finite at
  alpha in {0, 1} and for logits of any magnitude.
* eq. (1)-(3), :func:`h_smo1`, :func:`h_smo2`, :func:`h_smo3`, mixing either the
  logits or the probabilities (then mapped back by the natural log).
* the trust terms R_i(x) of eq. (3) and the gradient norms they need,
  :func:`class_gradients` and :func:`trust_term`.
"""

from __future__ import annotations

import enum
import math
from typing import Callable

import torch
import torch.nn.functional as F

from .._validation import check_alpha, check_gamma, dual_exponent
from ..errors import ConfigError, ModelError


class Space(str, enum.Enum):
    """What is mixed: the logits, or the probabilities followed by log."""

    LOGITS = "logits"
    PROBS = "probs"

    @classmethod
    def parse(cls, value) -> "Space":
        try:
            return cls(value.value if isinstance(value, enum.Enum) else str(value).lower())
        except ValueError:
            raise ConfigError(f"unknown mixing space {value!r}: use 'logits' or 'probs'") from None


class Trust(str, enum.Enum):
    """The trust term R_i(x) of eq. (3)."""

    ONE = "one"                 # R_i = 1
    GRAD_STD = "grad_std"       # R_i = ||grad g_i(x)||_{p*}
    GRAD_MAX_STD = "grad_max_std"  # R_i = ||grad max_j g_j(x)||_{p*}
    GRAD_RATIO = "grad_ratio"   # R_i = ||grad g_i(x)||_{p*} / ||grad h_i(x)||_{p*}

    @classmethod
    def parse(cls, value) -> "Trust":
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 1:
            return cls.ONE
        try:
            return cls(value.value if isinstance(value, enum.Enum) else str(value).lower())
        except ValueError:
            names = ", ".join(repr(t.value) for t in cls)
            raise ConfigError(f"unknown trust term R_i={value!r}: use one of {names}") from None


def alpha_from_gamma(gamma):
    """alpha = gamma / (1 + gamma); gamma = inf gives alpha = 1."""
    if isinstance(gamma, torch.Tensor):
        return torch.where(torch.isinf(gamma), torch.ones_like(gamma), gamma / (1 + gamma))
    g = check_gamma(gamma)
    return 1.0 if math.isinf(g) else g / (1.0 + g)


def gamma_from_alpha(alpha):
    """gamma = alpha / (1 - alpha); alpha = 1 gives gamma = inf."""
    if isinstance(alpha, torch.Tensor):
        a = check_alpha(alpha).to(alpha.dtype if alpha.is_floating_point() else torch.float64)
        return torch.where(a == 1, torch.full_like(a, math.inf), a / (1 - a))
    a = float(check_alpha(alpha))
    return math.inf if a == 1.0 else a / (1.0 - a)


def _check_pair(std_out: torch.Tensor, rob_out: torch.Tensor) -> None:
    if std_out.shape != rob_out.shape:
        raise ModelError(
            f"the standard and robust outputs differ in shape: {tuple(std_out.shape)} vs {tuple(rob_out.shape)}; "
            "both models must give (n, c) scores over the same c classes")


def mix_log_probs(std_logits: torch.Tensor, rob_logits: torch.Tensor, alpha) -> torch.Tensor:
    """Eq. (4): ``log((1 - alpha) softmax(g) + alpha softmax(h))``.

    ``alpha`` is a number or a 1-D tensor of k values; the result has the
    logits' shape (n, c), or (k, n, c) for k values.  Both terms are handled in
    log space (``logaddexp`` of the two weighted log-softmaxes), so the output
    and its gradients are finite at alpha = 0 and 1 and for extreme logits.
    """
    _check_pair(std_logits, rob_logits)
    return mix_checked(std_logits, rob_logits, check_alpha(alpha).to(device=std_logits.device))


def mix_checked(std_logits: torch.Tensor, rob_logits: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Eq. (4) for an alpha tensor already validated and on the logits' device (the hot path).

    The log-weights are taken in alpha's own (float64) precision and only then cast to
    the logits' dtype: alpha = 1 - 1e-12 keeps g's term (log weight -27.6) instead of
    rounding to alpha = 1 in float32 and dropping it.
    """
    log_g = F.log_softmax(std_logits, dim=-1)
    log_h = F.log_softmax(rob_logits, dim=-1)
    if a.ndim == 1:
        a = a.view(-1, *([1] * std_logits.ndim))
    return torch.logaddexp(torch.log1p(-a).to(log_g.dtype) + log_g, torch.log(a).to(log_h.dtype) + log_h)


def _as_trust(trust, like: torch.Tensor) -> torch.Tensor:
    r = torch.as_tensor(trust, dtype=like.dtype, device=like.device)
    if (r < 0).any() or torch.isnan(r).any():
        raise ConfigError("trust terms R_i must be >= 0 and not NaN")
    return r


_TINY = 1e-30


def _log_sum_weighted(std_logits, rob_logits, t):
    """log(softmax(g) + t softmax(h)) in log space.

    ``t`` is clamped at 1e-30 before its log, so that gamma = 0 or a vanishing
    trust term gives a finite value *and* a finite gradient (log(0) would make
    the gradient 0 * inf = NaN and silently break gradient-based attacks); the
    change in value is below 1e-30 relative.
    """
    return torch.logaddexp(F.log_softmax(std_logits, -1), torch.log(t.clamp_min(_TINY)) + F.log_softmax(rob_logits, -1))


def h_smo3(std_logits, rob_logits, gamma, trust=1.0, space="probs") -> torch.Tensor:
    """Eq. (3): ``(g_i + gamma R_i h_i) / (1 + gamma R_i)`` per class.

    ``trust`` is R_i(x): a number or a tensor broadcastable to (n, c).
    With ``space="probs"`` g and h are the softmax probabilities and the
    mixture is returned as its natural log (computed in log space);
    with ``space="logits"`` the logits are mixed and returned as they are.
    gamma = inf returns h's output (the paper's limit).
    """
    _check_pair(std_logits, rob_logits)
    gamma = check_gamma(gamma)
    space = Space.parse(space)
    r = _as_trust(trust, std_logits)
    if math.isinf(gamma):
        return F.log_softmax(rob_logits, -1) if space is Space.PROBS else rob_logits
    t = gamma * r
    if space is Space.LOGITS:
        return (std_logits + t * rob_logits) / (1 + t)
    return _log_sum_weighted(std_logits, rob_logits, t) - torch.log1p(t)


def h_smo2(std_logits, rob_logits, gamma, std_grad_norm, space="probs") -> torch.Tensor:
    """Eq. (2): eq. (3) with R_i = ||grad g_i(x)||_{p*} (given as ``std_grad_norm``, (n, c))."""
    return h_smo3(std_logits, rob_logits, gamma, std_grad_norm, space)


def h_smo1(std_logits, rob_logits, gamma, trust=1.0, space="logits") -> torch.Tensor:
    """Eq. (1): ``g_i + gamma R_i h_i`` (unnormalised; the paper uses R_i = ||grad g_i||_{p*}).

    With ``space="probs"`` the sum of probabilities is returned as its log.
    """
    _check_pair(std_logits, rob_logits)
    gamma = check_gamma(gamma)
    if math.isinf(gamma):
        raise ConfigError("eq. (1) is unnormalised: gamma must be finite (use eq. (2)/(3) for the gamma -> inf limit)")
    space = Space.parse(space)
    t = gamma * _as_trust(trust, std_logits)
    if space is Space.LOGITS:
        return std_logits + t * rob_logits
    return _log_sum_weighted(std_logits, rob_logits, t)


def _to_space(logits: torch.Tensor, space: Space) -> torch.Tensor:
    return F.softmax(logits, dim=-1) if space is Space.PROBS else logits


def gradient_norm(grad: torch.Tensor, p) -> torch.Tensor:
    """Dual norm ||grad||_{p*} along the last axis (gradients flattened to (..., d))."""
    return torch.linalg.vector_norm(grad, ord=dual_exponent(p), dim=-1)


def _batched_jacobian(out: torch.Tensor, x: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """Gradients of every output column w.r.t. ``x``: (c, n, d), one vmapped backward."""
    if not out.requires_grad:
        raise ModelError("the model's output does not depend differentiably on its input "
                         "(a K-NN oracle, say); gradient-based trust terms need a differentiable model")
    n, c = out.shape
    seeds = torch.eye(c, dtype=out.dtype, device=out.device)[:, None, :].expand(c, n, c)
    (jac,) = torch.autograd.grad(out, x, grad_outputs=seeds, is_grads_batched=True, create_graph=create_graph)
    return jac.reshape(c, n, -1)


def _grad_input(x: torch.Tensor) -> torch.Tensor:
    return x if x.requires_grad else x.detach().requires_grad_(True)


def class_gradients(model: Callable, x: torch.Tensor, space="logits", create_graph: bool = True):
    """Per-class input gradients of ``model`` in one batched backward pass.

    Returns ``(outputs, jac)`` with outputs (n, c) (logits, or probabilities when
    ``space="probs"``) and ``jac`` of shape (c, n, d): ``jac[i, k]`` is the
    gradient of output i at sample k, flattened.  One forward pass and one
    vmapped backward (``is_grads_batched``), no loop over classes or samples.
    With ``create_graph=True`` the result is differentiable (double backprop),
    so an attack can target a mixture that uses these gradients.
    """
    space = Space.parse(space)
    with torch.enable_grad():
        xg = _grad_input(x)
        out = _to_space(model(xg), space)
        return out, _batched_jacobian(out, xg, create_graph)


def trust_term(kind, std_model: Callable, rob_model: Callable, x: torch.Tensor, *, p=math.inf,
               space="probs", create_graph: bool = True, eps: float = 1e-12):
    """Compute ``(g_logits, h_logits, R)`` for eq. (3); R has shape (n, c) or (n, 1).

    Gradients are taken of the quantity that is mixed (logits or probabilities)
    and measured in the dual norm p* of the attack norm p.  Both models' logits
    come back alongside, so no extra forward pass is needed.  For ReLU networks
    the trust terms are piecewise constant in x, so their own input gradient is
    zero almost everywhere; the double-backprop graph is kept anyway so that
    smooth models are attacked end to end.
    """
    kind = Trust.parse(kind)
    space = Space.parse(space)
    if kind is Trust.ONE:
        g_logits, h_logits = std_model(x), rob_model(x)
        return g_logits, h_logits, torch.ones_like(g_logits[:, :1])
    with torch.enable_grad():
        xg = _grad_input(x)
        g_logits = std_model(xg)
        g_out = _to_space(g_logits, space)
        if kind is Trust.GRAD_MAX_STD:
            top = g_out.gather(1, g_out.argmax(1, keepdim=True)).sum()
            (grad,) = torch.autograd.grad(top, xg, create_graph=create_graph)
            r = gradient_norm(grad.reshape(len(grad), -1), p)[:, None]
        else:
            r = gradient_norm(_batched_jacobian(g_out, xg, create_graph), p).T
        h_logits = rob_model(xg)
        if kind is Trust.GRAD_RATIO:
            h_norm = gradient_norm(_batched_jacobian(_to_space(h_logits, space), xg, create_graph), p).T
            r = r / h_norm.clamp_min(eps)
    return g_logits, h_logits, (r if create_graph else r.detach())
