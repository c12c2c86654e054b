"""Architecture registry and the shipped model zoo.

``list_models(pattern)`` lists loadable names (the shipped zoo and the
architectures); ``create_model(arch, **kwargs)`` builds an untrained
architecture; ``load(name)`` returns a trained zoo model (or a checkpoint
path) in eval mode, ``card(name)`` its model card.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import logging
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import CheckpointError, ModelError
from .architectures import PreActResNet18, SmallCNN, WideResNet
from .checkpoint import ModelCard, card_path, read_card, read_weights
from .lipschitz_net import LipschitzCNN

logger = logging.getLogger(__name__)

ZOO_DIR = Path(__file__).resolve().parent.parent / "zoo"


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    name: str
    factory: Callable[..., nn.Module]
    input_shape: tuple[int, int, int]
    description: str


ARCHITECTURES = {
    "cnn-small": ArchSpec("cnn-small", SmallCNN, (1, 28, 28), "4-conv VGG-style CNN for 28x28 inputs"),
    "preact-resnet18": ArchSpec("preact-resnet18", PreActResNet18, (3, 32, 32), "pre-activation ResNet-18, 32x32"),
    "wide-resnet": ArchSpec("wide-resnet", WideResNet, (3, 32, 32), "WideResNet-depth-width (default 28-10), 32x32"),
    "lipschitz-cnn": ArchSpec("lipschitz-cnn", LipschitzCNN, (1, 28, 28),
                              "l2-Lipschitz CNN from deel-torchlip layers, 28x28"),
}




def register_architecture(name: str, input_shape: tuple[int, int, int], description: str):
    """Decorator: add a model factory to the registry (how :mod:`robustmix.models.mixers` adds mixers)."""
    def wrap(factory):
        ARCHITECTURES[name] = ArchSpec(name, factory, input_shape, description)
        return factory
    return wrap

from ..zoo_table import ZOO_NAMES  # noqa: E402  (the one table of zoo names)


def _suggest(name: str, options) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(options), n=3)
    return f" Did you mean {', '.join(close)}?" if close else ""


def create_model(arch: str, **kwargs) -> nn.Module:
    """Build an untrained architecture by registry name (see ``list_models(pretrained=False)``)."""
    if arch not in ARCHITECTURES:
        raise ModelError(f"unknown architecture {arch!r}; available: {', '.join(ARCHITECTURES)}."
                         + _suggest(arch, ARCHITECTURES))
    spec = ARCHITECTURES[arch]
    try:
        model = spec.factory(**kwargs)
    except TypeError as exc:
        raise ModelError(f"architecture {arch!r} does not take the settings {sorted(kwargs)} ({exc}); fix the "
                         "card's arch_kwargs or re-save the checkpoint") from None
    if not arch.startswith("mixed"):
        model.input_shape = spec.input_shape
    return model


def zoo_path(name: str) -> Path:
    return ZOO_DIR / f"{name}.safetensors"


def available_zoo() -> list[str]:
    return [n for n in ZOO_NAMES if zoo_path(n).is_file()]


def list_models(pattern: str = "*", pretrained: bool | None = None) -> list[str]:
    """Names matching ``pattern``: trained zoo models (``pretrained=True``), architectures
    (``False``) or both (``None``, the default)."""
    names = []
    if pretrained in (None, True):
        names += available_zoo()
    if pretrained in (None, False):
        names += list(ARCHITECTURES)
    return [n for n in names if fnmatch.fnmatch(n, pattern)]


def weights_path(name) -> Path:
    """The ``.safetensors`` file of a zoo name or a checkpoint path (with or without its suffix, or its card's)."""
    path = Path(str(name))
    if str(name) in ZOO_NAMES:
        zp = zoo_path(str(name))
        if not zp.is_file():
            raise ModelError(f"zoo model {name!r} is not in this installation ({zp} missing); "
                             "train it with 'robustmix train' or reinstall robustmix")
        return zp
    if path.suffix == ".safetensors" and path.is_file():
        return path
    if path.with_suffix(".safetensors").is_file() and path.suffix in ("", ".json"):
        return path.with_suffix(".safetensors")
    raise ModelError(f"unknown model {name!r}: not a zoo name ({', '.join(ZOO_NAMES)}) nor a .safetensors "
                     "checkpoint." + _suggest(str(name), ZOO_NAMES))


def load_checkpoint(path, *, expected_dataset: str | None = None, verify_hash: bool = True):
    """Build the model described by the card and load its weights. Returns ``(model, card)`` in eval mode."""
    path = Path(path)
    (state, blob), inner = read_weights(path)
    card = read_card(path)
    if verify_hash and not card_path(path).is_file():
        logger.warning("%s has no card file beside it (%s): using the card inside the weights, whose integrity "
                       "cannot be checked against a SHA-256; re-save it with save_checkpoint", path,
                       card_path(path).name)
    elif verify_hash and card.sha256 is None:
        raise CheckpointError(f"the card {card_path(path)} has no sha256, so {path} cannot be checked; restore the "
                              "card, re-save with robustmix.models.save_checkpoint, or load with verify_hash=False")
    if verify_hash and card.sha256 is not None and hashlib.sha256(blob).hexdigest() != card.sha256:
        raise CheckpointError(f"{path} does not match the SHA-256 in {card_path(path)}: the file was modified or "
                              "corrupted; restore the original")
    if expected_dataset is not None and card.dataset != expected_dataset:
        raise CheckpointError(f"{path} was trained on {card.dataset!r} but is used with {expected_dataset!r}; "
                              f"pick a checkpoint for {expected_dataset!r} or change --dataset")
    model = create_model(card.arch, **card.arch_kwargs)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit architecture {card.arch!r} with {card.arch_kwargs}: {exc}") from exc
    return model.eval(), card


@lru_cache(maxsize=32)
def _load_cached(path: str, mtime: float):
    return load_checkpoint(Path(path))


def load(name, *, expected_dataset: str | None = None, channels_last: bool = True) -> nn.Module:
    """A trained model in eval mode, by zoo name or checkpoint path; takes inputs in [0, 1].

    ``channels_last`` stores convolution weights in NHWC order, about 2x faster on CPU
    (see BENCHMARKS.md); the outputs are the same up to float rounding.
    """
    import copy

    path = weights_path(name)
    model, card = _load_cached(str(path.resolve()), path.stat().st_mtime)
    if expected_dataset is not None and card.dataset != expected_dataset:
        raise CheckpointError(f"{name} was trained on {card.dataset!r} but is used with {expected_dataset!r}; "
                              f"pick a model for {expected_dataset!r}")
    model = copy.deepcopy(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.card = card
    return model.eval()


def card(name) -> ModelCard:
    """The model card of a zoo name or checkpoint path."""
    return read_card(weights_path(name))
