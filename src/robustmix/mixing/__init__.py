"""The paper's mixing formulas (eq. (4), eq. (1)-(3), locally biased smoothing) and the later mixers:
MixedNUTS's nonlinear map and Adaptive Smoothing's per-input alpha.

Option groups (frozen dataclasses, each value checked once when the group is made): :class:`NonlinearMap`, the
MixedNUTS map of h's logits (scale, power, bias, top_k, std_map) that :class:`NonlinearMixedClassifier` and
:func:`nonlinear_mix` take as ``logit_map``; :class:`MixingArchitecture`, the adaptive mixer's gate (features,
net, count, hidden, depth, width, blocks, alpha_range) that :func:`build_mixing_net` takes as ``arch``.
"""

from .functional import (Space, Trust, alpha_from_gamma, class_gradients, gamma_from_alpha, gradient_norm, h_smo1,
                         h_smo2, h_smo3, mix_log_probs, trust_term)
from .adaptive import (FEATURE_SETS, AdaptiveMixedClassifier, AdaptiveOutput, FeatureMaps, MixingArchitecture,
                       MixingNet, ResidualMixingNet, build_mixing_net, default_mixing_net, feature_layer_names,
                       mixing_net_from_config)
from .locally_biased import KNNOracle, LocallyBiasedSmoothing
from .modules import FormulationMixture, MixedClassifier, MixOutput, freeze
from .nonlinear import NonlinearMap, NonlinearMixedClassifier, nonlinear_map, nonlinear_mix

__all__ = [
    "Space", "Trust", "alpha_from_gamma", "gamma_from_alpha", "mix_log_probs", "h_smo1", "h_smo2", "h_smo3",
    "class_gradients", "gradient_norm", "trust_term", "MixedClassifier", "MixOutput", "FormulationMixture",
    "KNNOracle", "LocallyBiasedSmoothing", "freeze", "NonlinearMixedClassifier", "nonlinear_map", "nonlinear_mix",
    "AdaptiveMixedClassifier", "AdaptiveOutput", "MixingNet", "default_mixing_net", "mixing_net_from_config",
    "FEATURE_SETS", "FeatureMaps", "ResidualMixingNet", "build_mixing_net", "feature_layer_names", "NonlinearMap",
    "MixingArchitecture",
]
