"""Thin ``nn.Module`` wrappers around :mod:`robustmix.mixing.functional`."""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import torch
from torch import nn

from .._validation import check_alpha, check_gamma, check_input, check_p, probe_models
from ..errors import ConfigError, InputError, ModelError
from . import functional as MF

logger = logging.getLogger(__name__)


def freeze(model: nn.Module) -> nn.Module:
    """Put ``model`` in eval mode and stop gradients to its parameters (in place)."""
    if not isinstance(model, nn.Module):
        raise ModelError(f"expected a torch.nn.Module, got {type(model).__name__}; wrap plain functions in an nn.Module")
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


class BasePair(nn.Module):
    """Holds a frozen standard model g and a frozen robust model h."""

    def __init__(self, std_model: nn.Module, rob_model: nn.Module, validate_inputs: bool = False):
        super().__init__()
        self.std_model = freeze(std_model)
        self.rob_model = freeze(rob_model)
        self.validate_inputs = validate_inputs
        n_std, n_rob = (getattr(m, "num_classes", None) for m in (std_model, rob_model))
        if n_std is not None and n_rob is not None and n_std != n_rob:
            raise ModelError(f"the standard model has {n_std} classes but the robust model has {n_rob}; "
                             "mix two models trained on the same label set")

    def train(self, mode: bool = True):
        """Switch the wrapper's mode; the base models always stay in eval mode."""
        super().train(mode)
        self.std_model.eval()
        self.rob_model.eval()
        return self

    def _check(self, x):
        if not x.is_floating_point():    # the dtype only: no host sync, so forward still compiles as one graph
            raise InputError(f"x has integer dtype {x.dtype}; the mixer takes float images in [0, 1]: pass x.float() / 255 "
                             "for 8-bit images")
        return check_input(x) if self.validate_inputs else x

    def check(self, x: torch.Tensor) -> torch.Tensor:
        """Check a batch once, outside the hot path: ``x`` finite and in [0, 1], g and h finite logits on it.

        ``forward`` checks only the dtype (it stays free of host syncs, so it compiles and takes a smoothing loop's
        noisy inputs); call this once on real data, as robustmix's entry points do.  Returns ``x``.
        """
        check_input(x)
        probe_models({"g (std_model)": self.std_model, "h (rob_model)": self.rob_model}, x)
        return x

    @staticmethod
    def _check_classes(std_logits: torch.Tensor, rob_logits: torch.Tensor) -> None:
        if std_logits.shape != rob_logits.shape:
            raise ModelError(
                f"the base models disagree on output shape: g gives {tuple(std_logits.shape)}, "
                f"h gives {tuple(rob_logits.shape)}; mix two models over the same classes")


class MixOutput(NamedTuple):
    """The mixture together with the base models' logits from the same forward pass."""

    log_probs: torch.Tensor   # (n, c) or (k, n, c)
    std_logits: torch.Tensor  # (n, c)
    rob_logits: torch.Tensor  # (n, c)


class MixedClassifier(BasePair):
    """The mixed classifier of eq. (4): ``log((1 - alpha) softmax(g(x)) + alpha softmax(h(x)))``.

    Parameters
    ----------
    std_model, rob_model:
        The accurate standard classifier g and the robust classifier h, both
        mapping the same inputs to logits over the same classes.  They are put in
        eval mode and frozen (in place).
    alpha:
        The weight of h: a number in [0, 1], or a 1-D tensor of k values.  With k
        values the output has shape (k, n, c) and each base model still runs once
        per batch, which makes alpha sweeps cheap.

    Calling the module returns the mixed log-probabilities (n, c) or (k, n, c);
    they are valid logits for any attack.  ``forward`` refuses integer images but
    checks no values (no host sync): call :meth:`check` once on real data to refuse
    inputs outside [0, 1] and NaN or probability outputs of g or h (or pass
    ``validate_inputs=True`` to check every batch's range).  Use :meth:`forward_with_components`
    to also get g's and h's logits from the same pass.
    """

    def __init__(self, std_model: nn.Module, rob_model: nn.Module, alpha=0.5, *, validate_inputs: bool = False):
        super().__init__(std_model, rob_model, validate_inputs)
        self.register_buffer("alpha", check_alpha(alpha))

    @classmethod
    def from_gamma(cls, std_model, rob_model, gamma, **kwargs) -> "MixedClassifier":
        """Build from the paper's gamma >= 0 of eq. (3), alpha = gamma / (1 + gamma)."""
        return cls(std_model, rob_model, MF.alpha_from_gamma(check_gamma(gamma)), **kwargs)

    def set_alpha(self, alpha) -> "MixedClassifier":
        """Replace alpha (a number or 1-D tensor), keeping the buffer's device."""
        self.alpha = check_alpha(alpha).to(device=self.alpha.device, dtype=self.alpha.dtype)
        return self

    @property
    def gamma(self):
        """The paper's gamma = alpha / (1 - alpha) (inf at alpha = 1)."""
        return MF.gamma_from_alpha(self.alpha.double()) if self.alpha.ndim else MF.gamma_from_alpha(float(self.alpha))

    def forward_with_components(self, x: torch.Tensor) -> MixOutput:
        x = self._check(x)
        std_logits = self.std_model(x)
        rob_logits = self.rob_model(x)
        self._check_classes(std_logits, rob_logits)
        alpha = self.alpha.to(device=std_logits.device)
        return MixOutput(MF.mix_checked(std_logits, rob_logits, alpha), std_logits, rob_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_components(x).log_probs

    def attack_surrogates(self) -> dict[str, nn.Module]:
        """Differentiable stand-ins for gradient attacks (the protocol :func:`robustmix.attacks.evaluate` uses).

        ``"mix-T<T>"``: the mixture with g's softmax at temperature T,
        ``log((1 - alpha) softmax(g(x) / T) + alpha softmax(h(x)))``, for T = 1 (the
        model itself), 4 and 16 (a flatter g lets gradients through where g's
        softmax saturates); ``"h"``: the robust model alone.  Attacks follow
        their gradients but every candidate is judged on this model.
        """
        surrogates: dict[str, nn.Module] = {"mix-T1": self}
        for t in (4.0, 16.0):
            surrogates[f"mix-T{t:g}"] = _TemperedMixture(self, t)
        surrogates["h"] = self.rob_model
        return surrogates

    def extra_repr(self) -> str:
        a = self.alpha.tolist()
        return f"alpha={a if isinstance(a, list) else round(a, 6)}"


class _TemperedMixture(nn.Module):
    """Eq. (4) with g's logits divided by a temperature: an attack surrogate, not a classifier to deploy."""

    def __init__(self, mixture: MixedClassifier, temperature: float):
        super().__init__()
        self.std_model, self.rob_model = mixture.std_model, mixture.rob_model
        self.register_buffer("alpha", mixture.alpha.clone())
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        std_logits, rob_logits = self.std_model(x), self.rob_model(x)
        return MF.mix_checked(std_logits / self.temperature, rob_logits, self.alpha.to(std_logits.device))

    def extra_repr(self) -> str:
        return f"temperature={self.temperature:g}"


class FormulationMixture(BasePair):
    """Eq. (1), (2) or (3) of the paper with a chosen trust term R_i(x).

    ``formulation``: 1, 2 or 3.  Eq. (2) fixes R_i = ||grad g_i||_{p*}; eq. (1)
    and (3) take ``trust`` in {"one", "grad_std", "grad_max_std", "grad_ratio"}.
    ``space``: "logits" mixes the logits; "probs" mixes the probabilities and
    returns their natural log.  ``p`` is the attack norm (1, 2 or inf); gradient
    norms use its dual.  The output is differentiable end to end (the gradient
    terms use double backpropagation), so attacks can target it directly.
    """

    def __init__(self, std_model, rob_model, gamma: float, *, formulation: int = 3, trust="one",
                 space="probs", p=math.inf, validate_inputs: bool = False):
        super().__init__(std_model, rob_model, validate_inputs)
        if formulation not in (1, 2, 3):
            raise ConfigError(f"formulation must be 1, 2 or 3 (the paper's eq. 1-3), got {formulation!r}")
        if formulation == 2:
            trust = MF.Trust.GRAD_STD
        self.formulation = formulation
        self.trust = MF.Trust.parse(trust)
        self.space = MF.Space.parse(space)
        self.p = check_p(p)
        gamma = check_gamma(gamma)
        if formulation == 1 and math.isinf(gamma):
            raise ConfigError("eq. (1) needs a finite gamma")
        self.register_buffer("gamma", torch.tensor(gamma, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check(x)
        g, h, r = MF.trust_term(self.trust, self.std_model, self.rob_model, x, p=self.p, space=self.space,
                                create_graph=torch.is_grad_enabled())
        self._check_classes(g, h)
        fn = MF.h_smo1 if self.formulation == 1 else MF.h_smo3
        return fn(g, h, float(self.gamma), r, self.space)

    def extra_repr(self) -> str:
        return (f"formulation={self.formulation}, trust={self.trust.value}, space={self.space.value}, "
                f"p={self.p}, gamma={float(self.gamma)}")
