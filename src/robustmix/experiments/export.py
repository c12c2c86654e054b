"""Deployment: save a chosen mixed classifier as one checkpoint, and export it with torch.export (or ONNX)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import torch

from .._io import atomic_write_bytes, written_as
from ..errors import ConfigError, ModelError
from ..mixing import MixedClassifier
from ..models import ModelCard, save_checkpoint
from ..models.mixers import mixer_arch_kwargs
from ..models.resolve import quiet_torch_export

logger = logging.getLogger(__name__)


def save_mixed(std_model, rob_model, alpha: float, path, *, dataset: str) -> Path:
    """One checkpoint of the paper's mixture (eq. 4) at ``alpha``; see :func:`save_mixer`."""
    return save_mixer(MixedClassifier(std_model, rob_model, float(alpha)), path, dataset=dataset)


def save_mixer(mixer: torch.nn.Module, path, *, dataset: str) -> Path:
    """One robustmix checkpoint (safetensors + card) of any mixer: linear, nonlinear or adaptive.

    The card holds every setting of the mixer and the base models' cards; the
    weights hold the base models (and the mixing network).  The base models must
    carry robustmix cards (zoo models or robustmix checkpoints) so that their
    architectures can be rebuilt; ``robustmix.models.load(path)`` restores the
    mixer with identical outputs.
    """
    arch, kwargs = mixer_arch_kwargs(mixer)
    cards = {role: m.card.to_dict() for role, m in (("std", mixer.std_model), ("rob", mixer.rob_model))}
    settings = {k: v for k, v in kwargs.items() if k not in ("std", "rob")}
    card = ModelCard(name=Path(path).stem, arch=arch, arch_kwargs=kwargs, dataset=dataset, recipe="mixture",
                     hyperparameters=settings, metrics={"base_cards": cards})
    return save_checkpoint(mixer, card, path)


EXPORT_META = "robustmix.json"   # settings an exported program keeps beside its graph (see models.resolve)


def export_program(model: torch.nn.Module, example: torch.Tensor, path) -> Path:
    """Export ``model`` with ``torch.export`` (batch size dynamic), checking the exported outputs match.

    Load it with ``torch.export.load(path).module()``; inputs in [0, 1], outputs as the model's.  The file holds
    the graph and the weights only: ``example`` (which traces the model) is not saved with it.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give a file name for the exported program, e.g. {path / 'mixed.pt2'}")
    model, example = model.eval(), example.detach().clone()   # a slice would keep (and save) its whole data set
    validate = getattr(model, "validate_inputs", None)
    if validate is not None:
        model.validate_inputs = False  # input checks are Python control flow, not exportable
    try:
        batch = torch.export.Dim("batch", min=1)
        with torch.no_grad(), quiet_torch_export():
            program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
            ref, got = model(example), program.module()(example)
    except Exception as exc:  # noqa: BLE001  (torch.export raises many types; report them as one)
        raise ModelError(f"torch.export could not trace the model ({type(exc).__name__}: {exc}); "
                         "use the robustmix checkpoint instead") from exc
    finally:
        if validate is not None:
            model.validate_inputs = validate
    if not torch.allclose(ref, got, atol=1e-5, rtol=1e-5):
        raise ModelError("the exported program does not reproduce the model's outputs; use the robustmix checkpoint")
    buf = io.BytesIO()
    layers = getattr(model, "feature_layers", None)   # an adaptive mixer's hooked layers: part of its weights digest
    program.example_inputs = None   # torch.export.save would embed the sample inputs (and a view's whole storage)
    with quiet_torch_export():
        torch.export.save(program, buf, extra_files={EXPORT_META: json.dumps({"feature_layers": layers})} if layers
                          and any(layers.values()) else None)
    atomic_write_bytes(path, buf.getvalue())
    return path


def export_onnx(model: torch.nn.Module, example: torch.Tensor, path) -> Path:
    """Export to ONNX through ``torch.onnx`` (needs the optional ``onnx`` and ``onnxscript`` packages)."""
    missing = onnx_missing()
    if missing:
        raise ConfigError(f"ONNX export needs {' and '.join(missing)}: pip install onnx onnxscript")
    path = Path(path)
    model = model.eval()
    validate = getattr(model, "validate_inputs", None)
    if validate is not None:
        model.validate_inputs = False
    try:
        with written_as(path) as tmp, quiet_torch_export():
            torch.onnx.export(model, (example.detach().clone(),), str(tmp), dynamo=True)
    finally:
        if validate is not None:
            model.validate_inputs = validate
    return path


def onnx_missing() -> list[str]:
    """The packages ONNX export needs that are not installed (checked before any work)."""
    import importlib.util

    return [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
