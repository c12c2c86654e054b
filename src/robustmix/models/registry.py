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
import importlib
import logging
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import CheckpointError, ModelError
from .architectures import PreActResNet18, SmallCNN, WideResNet
from .imagenet import resnet50
from .checkpoint import ARCH_SOURCES, ModelCard, card_path, read_card, read_weights
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
    "resnet50": ArchSpec("resnet50", resnet50, (3, 224, 224),
                         "ResNet-50 for ImageNet, 224x224 (torchvision's state_dict keys; 1,000 classes)"),
    "lipschitz-cnn": ArchSpec("lipschitz-cnn", LipschitzCNN, (1, 28, 28),
                              "l2-Lipschitz CNN from deel-torchlip layers, 28x28"),
}




def register_architecture(name: str, input_shape: tuple[int, int, int], description: str):
    """Decorator: add a model factory to the registry (how :mod:`robustmix.models.mixers` adds mixers)."""
    def wrap(factory):
        ARCHITECTURES[name] = ArchSpec(name, factory, input_shape, description)
        module, qualname = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
        ARCH_SOURCES.pop(name, None)
        if module and module != "__main__" and module.split(".")[0] != "robustmix" and "<" not in qualname:
            ARCH_SOURCES[name] = f"{module}:{qualname}"   # what a card records, so a loader can name the module
        return factory
    return wrap


def arch_source(arch: str) -> str | None:
    """``module:function`` of the factory registered as ``arch`` when it lives in an importable module outside
    robustmix; None otherwise (robustmix's own, a script's ``__main__``, a function defined inside another)."""
    return ARCH_SOURCES.get(arch) if arch in ARCHITECTURES else None


def require_architectures(card: ModelCard, what, *, import_code: bool = False) -> None:
    """Make sure every architecture ``card`` needs (its own; a mixer's base models') is registered: import the
    module its card names (``arch_source``) only with ``import_code``, else say exactly what to pass."""
    needed = [(card.arch, card.arch_source)] + [(b["arch"], b.get("source")) for b in (
        card.arch_kwargs.get("std"), card.arch_kwargs.get("rob")) if card.arch.startswith("mixed") and
        isinstance(b, dict) and "arch" in b]
    for arch, source in needed:
        if arch in ARCHITECTURES or not source:
            continue   # a missing one without a source: create_model names the registered ones
        module = source.partition(":")[0]
        if not import_code:
            raise ModelError(f"{what} needs architecture {arch!r} from {source}; robustmix imports that module only "
                             f"when asked: add --import-code (import_code=True in Python), with {module} importable "
                             f"(PYTHONPATH=<the folder of {module.replace('.', '/')}.py>)")
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001  (the user's module may fail in any way)
            raise ModelError(f"cannot import {module} for architecture {arch!r} of {what} ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:160]}); make it importable: PYTHONPATH=<the folder of "
                             f"{module.replace('.', '/')}.py>") from None
        if arch not in ARCHITECTURES:
            raise ModelError(f"importing {module} did not register architecture {arch!r} needed by {what}; "
                             f"register it there with @register_architecture({arch!r}, ...)")

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
    if path.suffix in (".safetensors", ".json") or len(path.parts) > 1:
        raise ModelError(f"checkpoint {name} not found (no file {path.with_suffix('.safetensors').resolve()}); "
                         "check the path, or write it with 'robustmix train' or 'robustmix mix --out'")
    raise ModelError(f"unknown model {name!r}: not a zoo name ({', '.join(ZOO_NAMES)}) nor a .safetensors "
                     "checkpoint." + _suggest(str(name), ZOO_NAMES))


def load_checkpoint(path, *, expected_dataset: str | None = None, verify_hash: bool = True,
                    import_code: bool = False):
    """Build the model described by the card and load its weights. Returns ``(model, card)`` in eval mode.

    An architecture registered outside robustmix is rebuilt when its module is imported; with ``import_code``
    the module named in the card (``arch_source``) is imported here (that runs its code: trusted files only).
    """
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
    require_architectures(card, path, import_code=import_code)
    model = create_model(card.arch, **card.arch_kwargs)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit architecture {card.arch!r} with {card.arch_kwargs}: {exc}") from exc
    return model.eval(), card


@lru_cache(maxsize=32)
def _load_cached(path: str, mtime: float, import_code: bool = False):
    return load_checkpoint(Path(path), import_code=import_code)


def load(name, *, expected_dataset: str | None = None, channels_last: bool = True,
         import_code: bool = False) -> nn.Module:
    """A trained model in eval mode, by zoo name or checkpoint path; takes inputs in [0, 1].

    ``channels_last`` stores convolution weights in NHWC order, about 2x faster on CPU
    (see BENCHMARKS.md); the outputs are the same up to float rounding.  ``import_code`` lets a card import
    the module of a user's architecture it names (see :func:`load_checkpoint`).
    """
    import copy

    path = weights_path(name)
    model, card = _load_cached(str(path.resolve()), path.stat().st_mtime, import_code)
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
