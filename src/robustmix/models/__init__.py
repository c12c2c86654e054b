"""Architectures, safe checkpoints with model cards, and the shipped Fashion-MNIST zoo."""

from .architectures import Normalize, PreActResNet18, SmallCNN, WideResNet
from .checkpoint import ModelCard, read_card, save_checkpoint
from .lipschitz_net import LipschitzCNN
from .registry import ARCHITECTURES, ZOO_NAMES, card, create_model, list_models, load, load_checkpoint, register_architecture
from . import mixers  # noqa: E402,F401  (registers the mixer architectures)
from .resolve import resolve_model

__all__ = ["register_architecture", "Normalize", "SmallCNN", "PreActResNet18", "WideResNet", "LipschitzCNN", "ModelCard", "save_checkpoint",
           "load_checkpoint", "read_card", "ARCHITECTURES", "ZOO_NAMES", "card", "create_model", "list_models", "load",
           "resolve_model"]
