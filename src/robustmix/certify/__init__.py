"""Certified robustness of the mixed classifier: Lemma 1, Theorems 1 and 2, smoothing and Lipschitz bounds."""

from .lipschitz import SOFTMAX_L2_FACTOR, conv2d_spectral_norm, network_lipschitz, probability_lipschitz
from .radii import (certified_accuracy, lemma1_certified, lemma1_margin, lipschitz_radius, lipschitz_radius_from_bounds,
                    smoothed_lipschitz, smoothing_radius, smoothing_radius_from_bounds)
from .smoothing import ABSTAIN, MonteCarloSmoothed, SmoothedClassifier, SmoothingEstimate

__all__ = [
    "lipschitz_radius", "smoothing_radius", "lipschitz_radius_from_bounds", "smoothing_radius_from_bounds",
    "lemma1_margin", "lemma1_certified", "smoothed_lipschitz", "certified_accuracy", "probability_lipschitz",
    "network_lipschitz", "conv2d_spectral_norm", "SOFTMAX_L2_FACTOR", "SmoothedClassifier", "SmoothingEstimate",
    "MonteCarloSmoothed",
    "ABSTAIN",
]
