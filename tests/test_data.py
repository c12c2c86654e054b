import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from robustmix.data import load_dataset, read_cifar_batch, read_idx, split_indices
from robustmix.data.datasets import DATASETS, download
from robustmix.errors import CheckpointError, ConfigError, DataNotFoundError


def write_idx(path, array, gz=False):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    blob = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(blob)
    else:
        path.write_bytes(blob)


def make_mnist_like(folder, n_train=30, n_test=10, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n, dtype=np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", x, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", y, gz)
        arrays[prefix] = (x, y)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reader_and_loader(tmp_path, gz):
    arrays = make_mnist_like(tmp_path / "mnist", gz=gz)
    x, y = load_dataset("mnist", "test", root=tmp_path)
    assert x.shape == (10, 1, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    np.testing.assert_array_equal((x[:, 0] * 255).round().numpy().astype(np.uint8), arrays["t10k"][0])
    np.testing.assert_array_equal(y.numpy(), arrays["t10k"][1])
    xtr, _ = load_dataset("mnist", "train", root=tmp_path)
    xv, _ = load_dataset("mnist", "val", root=tmp_path)
    assert len(xtr) + len(xv) == 30 and len(xv) == 6


def test_splits_are_deterministic_and_disjoint():
    a_tr, a_val = split_indices(1000, 100)
    b_tr, b_val = split_indices(1000, 100)
    assert np.array_equal(a_val, b_val) and not set(a_tr) & set(a_val) and len(a_tr) + len(a_val) == 1000


def test_truncated_and_corrupted_idx(tmp_path):
    make_mnist_like(tmp_path / "mnist", gz=False)
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(CheckpointError, match="truncated"):
        read_idx(path)
    path.write_bytes(b"garbage!")
    with pytest.raises(CheckpointError, match="magic"):
        read_idx(path)


def write_cifar(folder, name="cifar10", n=8, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    key = b"labels" if name == "cifar10" else b"fine_labels"
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if name == "cifar10" else ["train", "test"]
    out = {}
    for f in files:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10 if name == "cifar10" else 100, n).tolist()
        with open(folder / f, "wb") as fh:
            pickle.dump({b"data": data, key: labels, b"batch_label": b"x"}, fh)
        out[f] = (data, labels)
    return out


@pytest.mark.parametrize("name,sub", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_cifar_readers(tmp_path, name, sub):
    files = write_cifar(tmp_path / sub, name)
    x, y = load_dataset(name, "test", root=tmp_path)
    test_key = "test_batch" if name == "cifar10" else "test"
    data, labels = files[test_key]
    assert x.shape == (8, 3, 32, 32)
    np.testing.assert_array_equal((x * 255).round().numpy().astype(np.uint8).reshape(8, -1), data)
    assert y.tolist() == labels
    xtr, _ = load_dataset(name, "train", root=tmp_path)
    xv, _ = load_dataset(name, "val", root=tmp_path)
    assert len(xtr) + len(xv) == (40 if name == "cifar10" else 8)


def test_cifar_pickle_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "test_batch"
    with open(path, "wb") as fh:
        pickle.dump({b"data": Evil(), b"labels": [0]}, fh)
    with pytest.raises(CheckpointError, match="refusing"):
        read_cifar_batch(path)


def test_missing_dataset_lists_places_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTMIX_NO_DOWNLOAD", "1")
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("cifar10", "test", root=tmp_path / "nothing")
    msg = str(err.value)
    assert str(tmp_path / "nothing") in msg and "To fix" in msg
    with pytest.raises(ConfigError):
        load_dataset("imagenet")
    with pytest.raises(ConfigError):
        load_dataset("mnist", "holdout")


def test_download_checks_checksums(tmp_path, monkeypatch):
    src = tmp_path / "mirror"
    make_mnist_like(src, gz=True)
    import dataclasses
    import hashlib

    files = {f: hashlib.md5((src / f).read_bytes()).hexdigest() for f in DATASETS["mnist"].files}
    info = dataclasses.replace(DATASETS["mnist"], files=files, urls=(src.as_uri() + "/",))
    dest = download(info, tmp_path / "dl")
    assert all((dest / f).is_file() for f in files)
    bad = dataclasses.replace(info, files={**files, "t10k-images-idx3-ubyte.gz": "0" * 32})
    with pytest.raises(DataNotFoundError, match="checksum"):
        download(bad, tmp_path / "dl2")


def test_real_fashion_mnist_test_set_when_installed():
    try:
        x, y = load_dataset("fashion-mnist", "test", allow_download=False)
    except DataNotFoundError:
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    assert x.shape == (10000, 1, 28, 28) and torch.equal(torch.bincount(y), torch.full((10,), 1000))
