"""File-format readers: IDX (MNIST family, gzipped or not) and CIFAR python pickles.

The CIFAR batches are pickles; they are read with an unpickler that only
accepts plain containers, bytes and NumPy arrays, so a tampered file cannot
run code.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from pathlib import Path

import numpy as np

from ..errors import CheckpointError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _open(path: Path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def read_idx(path) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into a NumPy array."""
    path = Path(path)
    try:
        with _open(path) as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise CheckpointError(f"cannot read IDX file {path}: {exc}; delete it and fetch the dataset again") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise CheckpointError(f"{path} is not an IDX file (bad magic number); delete it and fetch the dataset again")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CheckpointError(f"{path} is truncated (header incomplete)")
    shape = struct.unpack(">" + "I" * ndim, data[4:header])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise CheckpointError(f"{path} holds {len(data) - header} bytes of data, expected {expected} for shape {shape}: "
                              "the file is truncated or corrupted; delete it and fetch the dataset again")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


class _SafeUnpickler(pickle.Unpickler):
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


def read_cifar_batch(path, label_key: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR python batch: images (n, 3, 32, 32) uint8 and labels (n,)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            batch = _SafeUnpickler(io.BytesIO(fh.read()), encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, struct.error) as exc:
        raise CheckpointError(f"cannot read CIFAR batch {path}: {exc}; the file is corrupted, re-extract the archive") from exc
    if not isinstance(batch, dict):
        raise CheckpointError(f"{path} is not a CIFAR batch (expected a dict)")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or label_key not in batch:
        raise CheckpointError(f"{path} lacks 'data' or '{label_key}'; is it a CIFAR-10 vs CIFAR-100 mix-up?")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise CheckpointError(f"{path}: data of shape {data.shape} with {len(labels)} labels is not a CIFAR batch")
    return data.reshape(-1, 3, 32, 32), labels
