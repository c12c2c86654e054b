"""File IO used everywhere: atomic writes, strict JSON, weight digests, an exclusive folder lock.

The one module that writes files on robustmix's behalf.  Writes are atomic
(temporary file in the same folder, fsync, rename), JSON is strict (NaN and
infinities become ``null``) and a model's identity is the SHA-256 of its
weights, not its path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

import torch

from .errors import ConfigError


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def plain(obj):
    """A strict-JSON copy: tensors as lists, NaN/inf as null, tuples as lists, dataclasses via ``to_dict``."""
    if hasattr(obj, "to_dict") and not isinstance(obj, type):
        return plain(obj.to_dict())
    if isinstance(obj, torch.Tensor):
        return plain(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path, obj) -> None:
    """Write ``obj`` as strict, indented JSON, atomically."""
    text = json.dumps(plain(obj), indent=2, allow_nan=False, default=str)
    atomic_write_bytes(path, (text + "\n").encode())


def read_json(path, *, what: str = "JSON file") -> dict:
    """Read a JSON object, with an error that names the file and what to do when it is broken."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not a valid {what} ({exc}); rerun the command that wrote it") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a valid {what} (expected a JSON object); rerun the command that wrote it")
    return data


def weights_digest(model) -> str:
    """SHA-256 over a module's parameters and buffers (names, dtypes, shapes and values), device-independent."""
    h = hashlib.sha256()
    if not isinstance(model, torch.nn.Module):
        h.update(repr(type(model)).encode())
        return h.hexdigest()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    layers = getattr(model, "feature_layers", None)
    if layers and any(layers.values()):   # an adaptive mixer: which layers it reads is part of what it computes
        h.update(("feature_layers|" + json.dumps(layers, sort_keys=True)).encode())
    return h.hexdigest()


@contextlib.contextmanager
def exclusive_lock(path):
    """Hold an exclusive lock on ``path`` (a lock file) or fail at once if another process holds it."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(f"another robustmix run is writing to {path.parent} (lock {path.name}); wait for it "
                              "to finish or choose another --out") from None
        yield
    finally:
        fh.close()
