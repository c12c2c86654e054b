"""Turn a user's model spec into a model: zoo name, checkpoint, Python factory, or robustbench/timm name."""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import warnings
from pathlib import Path

from torch import nn

from ..errors import ModelError
from .registry import ZOO_NAMES, load
from .weights import WEIGHT_SUFFIXES, is_weights_spec, load_robustbench, load_timm, load_weights_spec


def resolve_model(spec: str, dataset: str | None = None, *, import_code: bool = False) -> nn.Module:
    """Load a model from:

    * a zoo name (``fmnist-std-cnn``) or a robustmix ``.safetensors`` checkpoint with its card;
    * ``package.module:function``: a factory returning an ``nn.Module`` (inputs in [0, 1]);
    * an exported program (``.pt2``, e.g. what ``robustmix mix --export`` writes), loaded with
      ``torch.export.load`` (no pickled code is run);
    * ``ARCH[,key=value...]@PATH``: a plain ``state_dict`` file (.pt, .pth, .bin, .safetensors) under a registered
      architecture, e.g. ``wrn-28-10@ckpt.pt`` or ``resnet50,normalize=imagenet@rn50.pth``
      (:func:`robustmix.models.weights.load_weights_spec`);
    * ``robustbench:[THREAT/]NAME@DIR`` (RobustBench's definition, the checkpoint from DIR) or ``timm:NAME@PATH``
      (local weights), when those optional packages (and a working torchvision) are installed; never a download.
    A checkpoint trained on another dataset than ``dataset`` is refused; ``import_code`` lets a checkpoint's
    card import the module of a user's architecture it names (see :func:`robustmix.models.load_checkpoint`).
    """
    spec = str(spec)
    if spec.startswith("robustbench:"):
        return load_robustbench(spec, dataset)
    if spec.startswith("timm:"):
        return load_timm(spec)
    if is_weights_spec(spec):
        return load_weights_spec(spec)
    if spec.lower().endswith(tuple(s for s in WEIGHT_SUFFIXES if s != ".safetensors")):
        raise ModelError(f"{spec} is a weights file without its architecture: give it as ARCH@{spec} (e.g. "
                         f"preact-resnet18@{spec}, wrn-28-10@{spec}, resnet50,normalize=imagenet@{spec}; "
                         "'robustmix list' shows them)")
    if spec.endswith(".pt2"):
        return _exported(Path(spec))
    if ":" in spec and not Path(spec).exists():
        module_name, _, func = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ModelError(f"cannot import {module_name!r} for model factory {spec!r}: {exc}; "
                             "make it importable (pip install -e . or PYTHONPATH)") from exc
        factory = getattr(module, func, None)
        if not callable(factory):
            raise ModelError(f"{module_name} has no callable {func!r}")
        try:
            model = factory()
        except Exception as exc:  # noqa: BLE001  (a user's factory may raise anything)
            raise ModelError(f"model factory {spec} raised {type(exc).__name__}: {' '.join(str(exc).split())[:200]}; "
                             f"fix {func}() in {module_name} (robustmix --debug shows the traceback)") from exc
        if not isinstance(model, nn.Module):
            raise ModelError(f"{spec} returned {type(model).__name__}, expected a torch.nn.Module")
        return model.eval()
    return load(spec, expected_dataset=dataset, import_code=import_code)


def _exported(path: Path) -> nn.Module:
    import torch

    if not path.is_file():
        raise ModelError(f"exported program {path} not found; write one with 'robustmix mix ... --export {path.name}'")
    extra = {"robustmix.json": ""}   # experiments.export.EXPORT_META: an adaptive mixer's hooked layers
    try:
        with quiet_torch_export():
            module = torch.export.load(str(path), extra_files=extra).module()
        if extra["robustmix.json"]:
            module.feature_layers = json.loads(extra["robustmix.json"])["feature_layers"]
        return module
    except Exception as exc:  # noqa: BLE001  (a truncated or foreign file may fail anywhere in the loader)
        reason = " ".join(str(exc).split()).split(" Please check the warnings above")[0]   # warnings not shown
        raise ModelError(f"{path} is not a readable torch.export program ({type(exc).__name__}: {reason[:120]}); it "
                         "may be truncated or damaged: export it again (robustmix mix --export, or "
                         "torch.export.save)") from None


class _DropTorchExportNoise(logging.Filter):
    """torch.export's own log lines about a file it cannot read (a traceback, line by line); robustmix reports the
    file in one line instead."""

    NOISE = ("Ran into the following error when deserializing", "Trying to deserialize for the older format")

    def filter(self, record) -> bool:
        return not str(record.msg).startswith(self.NOISE)


@contextlib.contextmanager
def quiet_torch_export():
    """Around robustmix's calls of torch.export: without torch's warnings that robustmix answers itself (a corrupt
    file's traceback; "No complete tensor found in the group" for weights saved channels-last, which load right)."""
    noise, log = _DropTorchExportNoise(), logging.getLogger("torch.export")
    log.addFilter(noise)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No complete tensor found in the group", category=UserWarning)
            yield
    finally:
        log.removeFilter(noise)


__all__ = ["resolve_model", "ZOO_NAMES"]
