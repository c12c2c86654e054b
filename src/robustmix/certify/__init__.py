"""Certified robustness of the mixed classifier: Lemma 1, Theorems 1 and 2, smoothing and Lipschitz bounds.

The sound certificates take option groups: :class:`robustmix.Smoothing` (noise and sample budget),
:class:`Sequential` (sequential sampling, for :func:`certify_mixture`) and :class:`Inputs` (which inputs a batch
holds, which names their noise, and the range they lie in).
"""

from .lipschitz import (SOFTMAX_L2_FACTOR, conv2d_spectral_norm, network_lipschitz, pairwise_logit_lipschitz,
                        probability_lipschitz)
from .logit_ball import logit_ball_gap, logit_ball_radius
from .radii import (certified_accuracy, lemma1_certified, lemma1_margin, lipschitz_radius, lipschitz_radius_from_bounds,
                    smoothed_lipschitz, smoothing_radius, smoothing_radius_from_bounds)
from .mixture import Estimator, MixtureCertificate, Sequential, certify_mixture
from .selection import SelectionCertificate, certify_selection
from .smoothing import ABSTAIN, Inputs, MonteCarloSmoothed, SmoothedClassifier, SmoothingEstimate
from .stats import (bernstein_lower, betting_lower, binomial_cs_lower, binomial_cs_upper, clopper_pearson_lower,
                    clopper_pearson_upper)

__all__ = [
    "lipschitz_radius", "smoothing_radius", "lipschitz_radius_from_bounds", "smoothing_radius_from_bounds",
    "lemma1_margin", "lemma1_certified", "smoothed_lipschitz", "certified_accuracy", "probability_lipschitz",
    "network_lipschitz", "conv2d_spectral_norm", "SOFTMAX_L2_FACTOR", "SmoothedClassifier", "SmoothingEstimate",
    "MonteCarloSmoothed", "ABSTAIN", "certify_mixture", "MixtureCertificate", "Estimator", "bernstein_lower",
    "betting_lower", "clopper_pearson_lower", "clopper_pearson_upper", "logit_ball_gap", "logit_ball_radius",
    "pairwise_logit_lipschitz", "certify_selection", "SelectionCertificate", "binomial_cs_lower", "binomial_cs_upper",
    "Sequential", "Inputs",
]
