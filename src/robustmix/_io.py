"""File IO used everywhere: atomic writes, strict JSON, weight digests, an exclusive folder lock.

The one module that writes files on robustmix's behalf.  Writes are atomic
(temporary file in the same folder, fsync, rename), and a command's outputs
appear together or not at all (:func:`all_or_nothing`); JSON is strict (NaN and
infinities become ``null``) and a model's identity is the SHA-256 of its
weights, not its path.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .errors import ConfigError


_STAGE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("robustmix_stage", default=None)


@contextlib.contextmanager
def all_or_nothing():
    """Files written inside the block appear at their names together when it ends; if it raises, none does.

    Each file (written by :func:`atomic_write_bytes`, :func:`write_json`, or to a name from :func:`written_as` or
    :func:`folder_written_as`) goes to a temporary name in its own folder and is renamed when the block ends;
    a failure removes the temporary files, so a late error leaves nothing half-written.  Nested blocks join the
    outermost.  For a command's final outputs (summary, settings, report, checkpoints, exports), never around
    records a resumed run reads back.
    """
    if _STAGE.get() is not None:
        yield
        return
    stage = {"files": [], "folders": []}
    token = _STAGE.set(stage)
    try:
        yield
        for tmp, path in stage["files"]:
            os.chmod(tmp, 0o644)
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, path)
    finally:
        _STAGE.reset(token)
        for tmp, _ in stage["files"]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        for folder in stage["folders"]:
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def written_as(path):
    """A temporary name beside ``path`` (same suffix) to write ``path``'s content to; it becomes ``path`` when this
    block (or the enclosing :func:`all_or_nothing`) ends, and is removed if either raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with all_or_nothing():
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".partial{path.suffix}")
        except OSError as exc:   # name the file the user asked for, not a temporary one
            raise type(exc)(exc.errno, exc.strerror, str(path)) from None
        os.close(fd)
        _STAGE.get()["files"].append((tmp, path))
        yield Path(tmp)


@contextlib.contextmanager
def folder_written_as(folder):
    """A temporary folder inside ``folder`` for a writer that names its own files (a report, its figures); when the
    block (or the enclosing :func:`all_or_nothing`) ends, its files move into ``folder`` under the same relative
    paths; if either raises, nothing moves and the temporary folder is removed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with all_or_nothing():
        tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".partial-"))
        _STAGE.get()["folders"].append(tmp)
        yield tmp
        _STAGE.get()["files"] += [(str(f), folder / f.relative_to(tmp)) for f in sorted(tmp.rglob("*")) if f.is_file()]


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a torn one (inside
    :func:`all_or_nothing`, the new one appears when the block ends)."""
    with written_as(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def plain(obj):
    """A strict-JSON copy: tensors as lists, NaN/inf as null, tuples as lists, dataclasses via ``to_dict``, the typed
    values inside summaries via ``to_json``."""
    if hasattr(obj, "to_dict") and not isinstance(obj, type):
        return plain(obj.to_dict())
    if hasattr(obj, "to_json") and not isinstance(obj, type):
        return plain(obj.to_json())
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
