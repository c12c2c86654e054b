"""Training recipes and the zoo's recipes (the mixing network's training is in :mod:`robustmix.fitting`)."""

from .recipes import RECIPES, TrainConfig, accuracy, robust_accuracy, train
from .evaluate import THREATS, evaluate_zoo_model, threat_tag
from .zoo import ZOO_RECIPES, train_checkpoint, train_zoo_model

__all__ = ["RECIPES", "TrainConfig", "accuracy", "robust_accuracy", "train", "ZOO_RECIPES", "train_zoo_model", "train_checkpoint",
           "THREATS", "evaluate_zoo_model", "threat_tag"]
