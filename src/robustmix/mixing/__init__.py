"""The paper's mixing formulas: eq. (4) (the mixed classifier), eq. (1)-(3) and locally biased smoothing."""

from .functional import (Space, Trust, alpha_from_gamma, class_gradients, gamma_from_alpha, gradient_norm, h_smo1,
                         h_smo2, h_smo3, mix_log_probs, trust_term)
from .locally_biased import KNNOracle, LocallyBiasedSmoothing
from .modules import FormulationMixture, MixedClassifier, MixOutput, freeze

__all__ = [
    "Space", "Trust", "alpha_from_gamma", "gamma_from_alpha", "mix_log_probs", "h_smo1", "h_smo2", "h_smo3",
    "class_gradients", "gradient_norm", "trust_term", "MixedClassifier", "MixOutput", "FormulationMixture",
    "KNNOracle", "LocallyBiasedSmoothing", "freeze",
]
