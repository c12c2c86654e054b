"""Dataset loading: find the files, read them, split train/val deterministically.

``load_dataset(name, split, root)`` returns ``(x, y)`` with x float32 in [0, 1]
of shape (n, C, H, W) and y int64.  The root is the argument, else the
``ROBUSTMIX_DATA`` environment variable, else a list of known places
(including ``/usr/share/datasets/fashion-mnist`` from the Debian package
``dataset-fashion-mnist``); when nothing is found and the network allows, the
files are downloaded from the canonical source and their MD5 checked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import tarfile
import tempfile
import urllib.request
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError, DataNotFoundError
from .readers import read_cifar_batch, read_idx

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
VAL_SIZE = {"fashion-mnist": 5000, "mnist": 5000, "cifar10": 5000, "cifar100": 5000}
SPLIT_SEED = 20240101


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    shape: tuple[int, int, int]
    subdirs: tuple[str, ...]          # folder names tried under each root
    system_dirs: tuple[str, ...]      # absolute places tried last
    files: dict                       # file name -> md5 of the canonical download
    urls: tuple[str, ...]
    classes: tuple[str, ...] = ()
    install_hint: str = ""


_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

DATASETS = {
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", 10, (1, 28, 28), ("fashion-mnist", "FashionMNIST/raw", "fashion_mnist", "fashion"),
        ("/usr/share/datasets/fashion-mnist",),
        {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
         "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
         "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
         "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        "on Debian/Ubuntu: 'apt-get install dataset-fashion-mnist'; or put the four IDX files in $ROBUSTMIX_DATA/fashion-mnist"),
    "mnist": DatasetInfo(
        "mnist", 10, (1, 28, 28), ("mnist", "MNIST/raw"), ("/usr/share/datasets/mnist",),
        {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
         "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
         "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
         "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
        ("https://ossci-datasets.s3.amazonaws.com/mnist/",),
        tuple(str(i) for i in range(10)),
        "put the four MNIST IDX files in $ROBUSTMIX_DATA/mnist"),
    "cifar10": DatasetInfo(
        "cifar10", 10, (3, 32, 32), ("cifar-10-batches-py", "cifar10/cifar-10-batches-py", "cifar10"), (),
        {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
        ("https://www.cs.toronto.edu/~kriz/",),
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        "extract cifar-10-python.tar.gz into $ROBUSTMIX_DATA (giving $ROBUSTMIX_DATA/cifar-10-batches-py)"),
    "cifar100": DatasetInfo(
        "cifar100", 100, (3, 32, 32), ("cifar-100-python", "cifar100/cifar-100-python", "cifar100"), (),
        {"cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85"},
        ("https://www.cs.toronto.edu/~kriz/",), (),
        "extract cifar-100-python.tar.gz into $ROBUSTMIX_DATA (giving $ROBUSTMIX_DATA/cifar-100-python)"),
}

_ALIASES = {"fmnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
            "cifar-10": "cifar10", "cifar-100": "cifar100"}


def dataset_info(name: str) -> DatasetInfo:
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return DATASETS[key]


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "robustmix" / "data"


def _has_files(info: DatasetInfo, folder: Path) -> bool:
    if info.name.startswith("cifar"):
        needed = ("test_batch",) if info.name == "cifar10" else ("test",)
        return all((folder / f).is_file() for f in needed)
    return all((folder / f).is_file() or (folder / (f + ".gz")).is_file() for f in _IDX_FILES)


def candidate_dirs(info: DatasetInfo, root=None) -> list[Path]:
    roots = []
    if root is not None:
        roots.append(Path(root))
    elif os.environ.get("ROBUSTMIX_DATA"):
        roots.append(Path(os.environ["ROBUSTMIX_DATA"]))
    else:
        roots += [Path.cwd() / "data", default_cache_dir()]
    dirs = []
    for r in roots:
        dirs += [r] + [r / s for s in info.subdirs]
    if root is None:
        dirs += [Path(d) for d in info.system_dirs]
    return dirs


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(info: DatasetInfo, dest: Path, timeout: float = 30.0) -> Path:
    """Fetch the canonical files into ``dest`` (atomic per file) and check their MD5."""
    dest.mkdir(parents=True, exist_ok=True)
    for fname, md5 in info.files.items():
        target = dest / fname
        if target.is_file() and _md5(target) == md5:
            continue
        errors = []
        for base in info.urls:
            fd, tmp = tempfile.mkstemp(dir=dest, suffix=".tmp")
            os.close(fd)
            try:
                logger.info("downloading %s%s", base, fname)
                with urllib.request.urlopen(base + fname, timeout=timeout) as resp, open(tmp, "wb") as out:
                    while chunk := resp.read(1 << 20):
                        out.write(chunk)
                got = _md5(Path(tmp))
                if got != md5:
                    raise CheckpointError(f"checksum mismatch for {fname}: got {got}, expected {md5}")
                os.replace(tmp, target)
                break
            except (OSError, CheckpointError) as exc:
                errors.append(f"{base}{fname}: {exc}")
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        else:
            raise DataNotFoundError("download failed:\n  " + "\n  ".join(errors))
        if fname.endswith(".tar.gz"):
            with tarfile.open(target) as tar:
                tar.extractall(dest, filter="data")
    sub = info.subdirs[0]
    return dest / sub if (dest / sub).is_dir() else dest


def find_dataset(name: str, root=None, allow_download: bool = True) -> Path:
    """Return the folder holding ``name``'s files, downloading them if needed and possible."""
    info = dataset_info(name)
    if root is not None and not Path(root).is_dir():
        what = "is a file, not a folder" if Path(root).exists() else "does not exist"
        raise DataNotFoundError(f"data root {root} {what}. To fix: pass the folder that holds the {info.name} "
                                f"files, or leave it out to search the known places ({info.install_hint})")
    tried = candidate_dirs(info, root)
    for folder in tried:
        if _has_files(info, folder):
            return folder
    problem = ""
    if allow_download and os.environ.get("ROBUSTMIX_NO_DOWNLOAD") != "1":
        dest = Path(root) if root is not None else Path(os.environ.get("ROBUSTMIX_DATA") or default_cache_dir())
        try:
            folder = download(info, dest / info.subdirs[0] if not info.name.startswith("cifar") else dest)
            if _has_files(info, folder):
                return folder
        except DataNotFoundError as exc:
            problem = f"\n{exc}"
    looked = "\n  ".join(str(p) for p in tried)
    raise DataNotFoundError(f"dataset {info.name!r} not found. Looked in:\n  {looked}{problem}\n"
                            f"To fix: {info.install_hint}, or pass --data-root DIR (root=DIR in Python) / set ROBUSTMIX_DATA.")


def _idx_file(folder: Path, stem: str) -> Path:
    plain = folder / stem
    return plain if plain.is_file() else folder / (stem + ".gz")


@lru_cache(maxsize=8)
def _read_all(name: str, folder: str) -> dict:
    info = dataset_info(name)
    folder = Path(folder)
    if info.name.startswith("cifar"):
        key = "labels" if info.name == "cifar10" else "fine_labels"
        train_files = [folder / f"data_batch_{i}" for i in range(1, 6)] if info.name == "cifar10" else [folder / "train"]
        test_files = [folder / ("test_batch" if info.name == "cifar10" else "test")]
        out = {}
        for split, files in (("train", train_files), ("test", test_files)):
            present = [f for f in files if f.is_file()]
            if present:
                parts = [read_cifar_batch(f, key) for f in present]
                out[split] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        return out
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        img, lab = _idx_file(folder, f"{prefix}-images-idx3-ubyte"), _idx_file(folder, f"{prefix}-labels-idx1-ubyte")
        if img.is_file() and lab.is_file():
            x, y = read_idx(img), read_idx(lab)
            if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
                raise CheckpointError(f"{img} and {lab} do not match: shapes {x.shape} and {y.shape}")
            out[split] = (x[:, None], y.astype(np.int64))
    return out


def split_indices(n: int, val_size: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, val) index split of the official training set."""
    perm = np.random.default_rng(seed).permutation(n)
    val_size = min(val_size, n // 5)
    return np.sort(perm[val_size:]), np.sort(perm[:val_size])


def load_dataset(name: str, split: str = "test", root=None, *, allow_download: bool = True):
    """Load ``(x, y)``: x float32 (n, C, H, W) in [0, 1], y int64 (n,).

    ``split``: "train" (the official training set minus the validation part),
    "val" (a fixed, seeded part of the official training set) or "test".
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    info = dataset_info(name)
    folder = find_dataset(info.name, root, allow_download)
    arrays = _read_all(info.name, str(folder.resolve()))
    source = "test" if split == "test" else "train"
    if source not in arrays:
        raise DataNotFoundError(f"the {source} files of {info.name} are missing in {folder}")
    x, y = arrays[source]
    if split != "test":
        train_idx, val_idx = split_indices(len(x), VAL_SIZE[info.name])
        idx = train_idx if split == "train" else val_idx
        x, y = x[idx], y[idx]
    if tuple(x.shape[1:]) != info.shape:
        raise CheckpointError(f"{info.name} images in {folder} have shape {x.shape[1:]}, expected {info.shape}")
    if len(y) and (y.min() < 0 or y.max() >= info.num_classes):
        raise CheckpointError(f"{info.name} labels in {folder} fall outside [0, {info.num_classes})")
    xt = torch.from_numpy(np.require(x, requirements=["C", "W"])).float().div_(255.0)
    return xt, torch.from_numpy(np.require(y, requirements=["C", "W"]))
