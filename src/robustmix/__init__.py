"""robustmix: mix an accurate standard classifier with a robust one.

The mixed classifier ``log((1 - alpha) softmax(g(x)) + alpha softmax(h(x)))``
(Bai, Anderson & Sojoudi), its attacks, certificates and reports.
"""

import logging

from .errors import (AttackError, CheckpointError, ConfigError, DataNotFoundError, InputError, ModelError,
                     RobustMixError)
from .groups import Smoothing, ThreatModel
from .mixing import (FormulationMixture, KNNOracle, LocallyBiasedSmoothing, MixedClassifier, MixOutput,
                     alpha_from_gamma, gamma_from_alpha, mix_log_probs)

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "MixedClassifier", "MixOutput", "FormulationMixture", "LocallyBiasedSmoothing", "KNNOracle",
    "mix_log_probs", "alpha_from_gamma", "gamma_from_alpha", "ThreatModel", "Smoothing",
    "RobustMixError", "ConfigError", "InputError", "ModelError", "CheckpointError", "DataNotFoundError", "AttackError",
    "__version__",
]
