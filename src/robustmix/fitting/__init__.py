"""Fitting algorithms that produce mixers: the MixedNUTS map and alpha from validation logits
(:mod:`.mixednuts`) and the adaptive mixer's mixing network (:mod:`.adaptive`).

Option groups (frozen dataclasses, each value checked once when the group is made), taken with
:class:`~robustmix.groups.ThreatModel` (the attack's budget): :class:`AdaptiveTraining`, how the mixing network
trains (:func:`train_mixing_net`, :func:`trained_adaptive_mixer`; :data:`FIRST_RECIPE` is the latter's default);
:class:`ValidationAttack`, the attack on h whose logits calibration reads (:func:`collect_logits`,
:func:`cached_validation_logits`); :class:`MapSearch`, how :func:`calibrate_nonlinear` searches the map.

Below the experiments and above mixing/attacks: imports no experiment, training recipe, CLI or report.
"""

from .adaptive import FIRST_RECIPE, AdaptiveTraining, train_mixing_net, trained_adaptive_mixer
from .mixednuts import (MapSearch, NonlinearCalibration, ValidationAttack, ValidationLogits, cached_validation_logits,
                        calibrate_nonlinear, collect_logits)

__all__ = ["train_mixing_net", "trained_adaptive_mixer", "NonlinearCalibration", "ValidationLogits",
           "cached_validation_logits", "calibrate_nonlinear", "collect_logits", "AdaptiveTraining", "FIRST_RECIPE",
           "ValidationAttack", "MapSearch"]
