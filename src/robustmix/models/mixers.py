"""Saved mixers as registry architectures: a mixture rebuilt from its base models' specs and its settings.

A mixer checkpoint is an ordinary robustmix checkpoint whose card names one of
the architectures below and whose ``arch_kwargs`` hold the base models'
registry specs (``{"arch": ..., "kwargs": ...}``, plus ``"source"``, the module:function of a
user's registered architecture) and the mixer's
``config()``; the weights hold every base model's tensors (and the mixing
network's).  This module imports :mod:`robustmix.mixing` and registers itself in the
registry (imported by ``robustmix.models``); neither imports it back.
"""

from __future__ import annotations

from torch import nn

from ..errors import ModelError
from ..mixing import AdaptiveMixedClassifier, MixedClassifier, NonlinearMixedClassifier, mixing_net_from_config
from .registry import arch_source, create_model, register_architecture


def _bases(std: dict, rob: dict) -> tuple[nn.Module, nn.Module]:
    return (create_model(std["arch"], **std.get("kwargs", {})), create_model(rob["arch"], **rob.get("kwargs", {})))


@register_architecture("mixed", (0, 0, 0), "a saved mixed classifier (eq. 4): both base models + alpha")
def linear_from_specs(std: dict, rob: dict, alpha: float = 0.5) -> MixedClassifier:
    return MixedClassifier(*_bases(std, rob), alpha)


@register_architecture("mixed-nonlinear", (0, 0, 0), "a saved nonlinear (MixedNUTS-style) mixer")
def nonlinear_from_specs(std: dict, rob: dict, **config) -> NonlinearMixedClassifier:
    return NonlinearMixedClassifier.from_config(*_bases(std, rob), config)


@register_architecture("mixed-adaptive", (0, 0, 0), "a saved adaptive mixer with its mixing network")
def adaptive_from_specs(std: dict, rob: dict, *, mixing_net: dict, alpha_range, feature_layers=None,
                        **unused) -> AdaptiveMixedClassifier:
    return AdaptiveMixedClassifier(*_bases(std, rob), mixing_net_from_config(mixing_net), tuple(alpha_range),
                                   feature_layers=feature_layers or None)


def mixer_arch_kwargs(mixer: nn.Module) -> tuple[str, dict]:
    """(architecture name, arch_kwargs) that rebuild ``mixer``; its base models must carry robustmix cards."""
    specs = {}
    for role, model in (("std", mixer.std_model), ("rob", mixer.rob_model)):
        card = getattr(model, "card", None)
        if card is None:
            raise ModelError(f"the {role} model has no robustmix card, so its architecture cannot be rebuilt; "
                             "export the mixer with --export instead")
        specs[role] = {"arch": card.arch, "kwargs": card.arch_kwargs}
        source = getattr(card, "arch_source", None) or arch_source(card.arch)
        if source:
            specs[role]["source"] = source
    if isinstance(mixer, NonlinearMixedClassifier):
        return "mixed-nonlinear", {**specs, **mixer.config()}
    if isinstance(mixer, AdaptiveMixedClassifier):
        return "mixed-adaptive", {**specs, **mixer.config()}
    if isinstance(mixer, MixedClassifier):
        if mixer.alpha.ndim != 0:
            raise ModelError("save a mixture with one alpha, not a sweep")
        return "mixed", {**specs, "alpha": float(mixer.alpha)}
    raise ModelError(f"cannot save a {type(mixer).__name__} as a mixer checkpoint; use save_checkpoint")
