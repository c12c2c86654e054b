"""Deployment: save a chosen mixed classifier as one checkpoint, and export it to TorchScript."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..errors import ModelError
from ..mixing import MixedClassifier
from ..models import ModelCard, save_checkpoint
from ..models.checkpoint import atomic_write_bytes

logger = logging.getLogger(__name__)


def save_mixed(std_model, rob_model, alpha: float, path, *, dataset: str) -> Path:
    """One robustmix checkpoint (safetensors + card) with both base models, alpha and their cards.

    The base models must carry robustmix cards (zoo models or robustmix checkpoints) so that
    the architecture can be rebuilt; load it back with ``robustmix.models.load(path)``.
    """
    specs, cards = {}, {}
    for role, model in (("std", std_model), ("rob", rob_model)):
        card = getattr(model, "card", None)
        if card is None:
            raise ModelError(f"the {role} model has no robustmix card, so its architecture cannot be rebuilt; "
                             "use --torchscript to export it instead")
        specs[role] = {"arch": card.arch, "kwargs": card.arch_kwargs}
        cards[role] = card.to_dict()
    mixed = MixedClassifier(std_model, rob_model, float(alpha))
    card = ModelCard(name=Path(path).stem, arch="mixed", arch_kwargs={**specs, "alpha": float(alpha)}, dataset=dataset,
                     recipe="mixture", hyperparameters={"alpha": float(alpha)}, metrics={"base_cards": cards})
    return save_checkpoint(mixed, card, path)


def export_torchscript(model: torch.nn.Module, example: torch.Tensor, path) -> Path:
    """Trace ``model`` to TorchScript (loadable with plain ``torch.jit.load``), checking outputs match."""
    import warnings

    model = model.eval()
    validate = getattr(model, "validate_inputs", None)
    if validate is not None:
        model.validate_inputs = False  # input checks are Python control flow, not traceable
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            traced = torch.jit.trace(model, example, check_trace=False)
            ref, got = model(example), traced(example)
    finally:
        if validate is not None:
            model.validate_inputs = validate
    if not torch.allclose(ref, got, atol=1e-5, rtol=1e-5):
        raise ModelError("the TorchScript export does not reproduce the model's outputs (data-dependent control "
                         "flow?); use the robustmix checkpoint instead")
    import io

    buf = io.BytesIO()
    torch.jit.save(traced, buf)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)
