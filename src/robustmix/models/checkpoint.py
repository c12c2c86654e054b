"""Safe checkpoints: safetensors weights plus a JSON model card.

``name.safetensors`` holds the tensors (and the card, as metadata, so a lone
file is still self-describing); ``name.json`` holds the card with the
SHA-256 of the weights file.  Nothing is ever unpickled.  Writes are atomic
(temporary file in the same folder, then rename).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .._io import all_or_nothing, atomic_write_bytes
from ..errors import CheckpointError

CARD_KEY = "robustmix_card"
ARCH_SOURCES: dict[str, str] = {}   # architecture -> module:function of a user's factory (filled by the registry)


@dataclasses.dataclass
class ModelCard:
    """What a checkpoint is and how good it is."""

    name: str
    arch: str
    arch_kwargs: dict
    dataset: str
    recipe: str = "unknown"
    hyperparameters: dict = dataclasses.field(default_factory=dict)
    seed: int | None = None
    metrics: dict = dataclasses.field(default_factory=dict)   # e.g. {"clean": {...}, "pgd50": {...}}
    lipschitz_l2: float | None = None                         # guaranteed bound, input -> logits
    train_seconds: float | None = None
    notes: str = ""
    sha256: str | None = None
    arch_source: str | None = None   # module:function of a user's registered architecture (None: robustmix's own)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        if data["arch_source"] is None:   # robustmix's own architectures: the card as it always was
            del data["arch_source"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ModelCard":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown or not {"name", "arch", "arch_kwargs", "dataset"} <= set(data):
            raise CheckpointError(f"not a robustmix model card (unknown keys {sorted(unknown)} or missing required ones)")
        return cls(**data)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def card_path(weights_path: Path) -> Path:
    return Path(weights_path).with_suffix(".json")


def save_checkpoint(model: torch.nn.Module, card: ModelCard, path) -> Path:
    """Write ``path`` (.safetensors) and its card (.json), both or neither; returns the weights path.

    A card of an architecture registered outside robustmix (``register_architecture`` in the user's module)
    records where it comes from (``arch_source``, module:function), so a loader can name the module to import.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    card.sha256 = None
    card.arch_source = card.arch_source or ARCH_SOURCES.get(card.arch)
    blob = st_save(state, metadata={CARD_KEY: json.dumps(card.to_dict(), sort_keys=True)})
    card.sha256 = hashlib.sha256(blob).hexdigest()
    with all_or_nothing():
        atomic_write_bytes(path, blob)
        atomic_write_bytes(card_path(path), (json.dumps(card.to_dict(), indent=2, sort_keys=True) + "\n").encode())
    return path


def read_card(path) -> ModelCard:
    """The card of a checkpoint: the .json beside it, else the one inside the weights file."""
    path = Path(path)
    cp = card_path(path)
    if cp.is_file():
        try:
            return ModelCard.from_dict(json.loads(cp.read_text()))
        except (json.JSONDecodeError, TypeError) as exc:
            raise CheckpointError(f"model card {cp} is not valid JSON: {exc}; restore it from the original") from exc
    _, card = read_weights(path)
    return card


def read_weights(path: Path):
    """``((state_dict, file_bytes), card)`` of a robustmix safetensors checkpoint, the card from its header.

    The bytes are returned so a caller can check them against the card file's SHA-256 without reading twice.
    """
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    blob = path.read_bytes()
    try:
        state = st_load(blob)
        from safetensors import safe_open  # metadata lives in the header
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except (SafetensorError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc}); it is truncated or corrupted: "
                              "download or re-save it") from exc
    if CARD_KEY not in meta:
        raise CheckpointError(f"{path} has no robustmix model card; save it with robustmix.models.save_checkpoint")
    card = ModelCard.from_dict(json.loads(meta[CARD_KEY]))
    return (state, blob), card
