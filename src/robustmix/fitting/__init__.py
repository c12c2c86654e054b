"""Fitting algorithms that produce mixers: the MixedNUTS map and alpha from validation logits
(:mod:`.mixednuts`) and the adaptive mixer's mixing network (:mod:`.adaptive`).

Below the experiments and above mixing/attacks: imports no experiment, training recipe, CLI or report.
"""

from .adaptive import train_mixing_net, trained_adaptive_mixer
from .mixednuts import (NonlinearCalibration, ValidationLogits, cached_validation_logits, calibrate_nonlinear,
                        collect_logits)

__all__ = ["train_mixing_net", "trained_adaptive_mixer", "NonlinearCalibration", "ValidationLogits",
           "cached_validation_logits", "calibrate_nonlinear", "collect_logits"]
