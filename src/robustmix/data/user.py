"""Your own data: an image folder (torchvision's ImageFolder layout) or a ``.npz`` / ``.pt`` file of arrays.

``load(path, split)`` returns an :class:`ImageSet`: ``data[i]`` is ``(x, y)`` with x a float32 (C, H, W) tensor in
[0, 1] and y an int; ``data.take(indices)`` gives a batch as tensors.  A folder is read lazily: loading lists the
files (and reads one image header); images are decoded only when examples are asked for, so a folder of 50,000
images costs its file list until then.

* A folder holds one sub-folder of images (PNG, JPEG, ...) per class; class ``k`` is the k-th folder name in sorted
  order.  Images are decoded with Pillow (``pip install pillow``); all must have one size, grayscale (1 channel)
  or colour (3 channels, as the first image; grayscale images among colour ones are converted to RGB).
* A file holds ``x`` (uint8 0-255 or float in [0, 1]; (N, C, H, W), (N, H, W, C) with C = 1 or 3, or (N, H, W))
  and ``y`` (integer labels).  ``.pt`` files are read with ``torch.load(weights_only=True)``: no code runs.

Splits follow the named sets' rule, so calibration (val) never sees a test image:

* sub-folders ``train/``, ``val/``, ``test/`` (a folder whose sub-folders are all among these names), or arrays
  ``x_train``/``y_train``, ``x_val``/``y_val``, ``x_test``/``y_test`` in a file, are the splits;
* without a val split of its own, val is carved from train exactly as for the named sets
  (:func:`~robustmix.data.split_indices`: a fixed, seeded fifth at most, 5,000 at most) and train is the rest;
* a flat class-folder tree, or a file with ``x`` and ``y``, is a test pool: val is carved from it the same way and
  test is the rest; there is no train split.

With split folders the classes are the sorted union of their class folders, so a name has one index everywhere.
A folder's split is listed class by class, so its examples are put in a fixed shuffled order (seed 20240101): the
first n examples (``-n``) mix the classes.  A file's split keeps the file's row order.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, DataNotFoundError, InputError
from .datasets import SPLIT_SEED, SPLITS, split_indices

logger = logging.getLogger(__name__)

VAL_SIZE = 5000   # as the named sets: val is at most 5,000 examples and at most a fifth of the pool it comes from
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
LAYOUT = ("a folder with one sub-folder of images per class (ImageFolder layout), or a .npz/.pt file with arrays x "
          "and y")


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise ConfigError("reading an image folder needs Pillow: pip install pillow (or pip install "
                          "'robustmix[images]')") from None
    return Image


class ImageSet:
    """One split of a user's data set: ``len``, ``data[i] -> (x, y)``, ``take(indices) -> (x, y)`` tensors.

    ``labels`` (int64, one per example) are known without decoding; ``classes`` are the class names (folders;
    empty for files); ``num_classes`` counts the classes the data may use (the class folders, or the largest label
    in the file plus one); ``rule`` says how the split was made.
    """

    kind = ""

    def __init__(self, path: Path, split: str, labels: np.ndarray, shape: tuple, classes: tuple, num_classes: int,
                 rule: str):
        self.path, self.split, self.labels, self.shape = path, split, labels, tuple(int(s) for s in shape)
        self.classes, self.num_classes, self.rule = tuple(classes), int(num_classes), rule

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x, y = self.take([i])
        return x[0], int(y[0])

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.path)!r}, split={self.split!r}, n={len(self)}, "
                f"shape={self.shape}, num_classes={self.num_classes})")

    def _check_indices(self, indices) -> np.ndarray:
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise InputError(f"indices must lie in [0, {len(self)}) for the {len(self)} examples of {self.path} "
                             f"({self.split}); got {int(idx.min())}..{int(idx.max())}")
        return idx

    def take(self, indices=None):
        """(x, y) of the examples at ``indices`` (default all): x float32 (k, C, H, W) in [0, 1], y int64 (k,)."""
        idx = self._check_indices(indices)
        x = self._images(idx)
        xt = torch.from_numpy(x).float().div_(255.0) if x.dtype == np.uint8 else torch.from_numpy(x).float()
        return xt, torch.from_numpy(self.labels[idx].copy())

    def _images(self, idx: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def item_names(self, indices) -> list:
        """Where each example comes from: a file (relative to the folder) or a row of the file's x."""
        raise NotImplementedError

    def describe(self, indices=None) -> dict:
        """What a run used, for its summary: the source, its classes, and per split the rule, the number of
        examples per class and each example's origin (file or row)."""
        idx = self._check_indices(indices)
        counts = np.bincount(self.labels[idx], minlength=self.num_classes) if len(idx) else np.zeros(0, int)
        return {"path": str(self.path), "format": self.kind, "shape": list(self.shape),
                "num_classes": self.num_classes, "classes": list(self.classes),
                "splits": {self.split: {"rule": self.rule, "n": len(idx), "class_counts": [int(c) for c in counts],
                                        "items": self.item_names(idx)}}}


class FolderSet(ImageSet):
    kind = "image folder"

    def __init__(self, path, split, files: list, labels, shape, classes, rule):
        super().__init__(path, split, labels, shape, classes, len(classes), rule)
        self.files = files

    def _images(self, idx: np.ndarray) -> np.ndarray:
        c, h, w = self.shape
        out = np.empty((len(idx), c, h, w), dtype=np.uint8)
        if len(idx) > 1000:
            logger.info("decoding %d images from %s", len(idx), self.path)
        for j, i in enumerate(idx.tolist()):
            out[j] = decode_image(self.files[i], c, (h, w))
        return out

    def item_names(self, indices) -> list:
        return [Path(os.path.relpath(self.files[i], self.path)).as_posix() for i in indices]


class ArraySet(ImageSet):
    """A split of a file's arrays: ``x`` is the whole (N, C, H, W) array, ``rows`` the split's rows of it."""

    def __init__(self, path, split, x: np.ndarray, labels, rows: np.ndarray, num_classes, rule, kind):
        super().__init__(path, split, labels, x.shape[1:], (), num_classes, rule)
        self.x, self.rows, self.kind = x, rows, kind

    def _images(self, idx: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.x[self.rows[idx]])

    def item_names(self, indices) -> list:
        return [int(self.rows[i]) for i in indices]


def load(path, split: str = "test") -> ImageSet:
    """One split of your own data (an image folder or a .npz/.pt file); see the module docstring for the rules."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    p = check_path(path)
    if p.is_dir():
        return _load_folder(p, split)
    if p.suffix.lower() == ".npz":
        return _load_arrays(p, split, _read_npz(p), ".npz")
    return _load_arrays(p, split, _read_pt(p), ".pt")


def check_path(path) -> Path:
    """The path of --data, refused now when it is missing or of a form robustmix does not read."""
    p = Path(path)
    if not p.exists():
        raise DataNotFoundError(f"--data {path} does not exist; give {LAYOUT}")
    if p.is_file() and p.suffix.lower() not in (".npz", ".pt"):
        raise ConfigError(f"--data {path} is a {p.suffix or 'suffix-less'} file; give {LAYOUT}")
    return p


def digest(path) -> str:
    """A fingerprint of the data at ``path`` (the bytes of a file; every image's name, size and folder of a tree),
    so a resumed run can tell that its data changed."""
    p, h = Path(path), hashlib.sha256()
    if p.is_file():
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    for f in sorted(_walk(p)):
        h.update(f"{Path(os.path.relpath(f, p)).as_posix()}\0{os.path.getsize(f)}\n".encode())
    return h.hexdigest()


# ---- the split rule -------------------------------------------------------------------------------------------


def _split_rows(sizes: dict, split: str, path: Path) -> tuple[str, np.ndarray, str]:
    """(the source split, its rows that make ``split``, the rule in words) from the sizes of the splits present."""
    carve = None if "val" in sizes else "train" if "train" in sizes else "test" if "test" in sizes else None
    how = f"split_indices, seed {SPLIT_SEED}: a fifth, at most {VAL_SIZE:,}"
    whole = "the data" if carve == "test" else carve
    if split == carve or (split == "val" and carve):
        rest, val = split_indices(sizes[carve], VAL_SIZE)
        if split == "val":
            return carve, val, f"a fixed seeded part of {whole} ({how}), never in {carve}"
        return carve, rest, f"{whole} less the validation part ({how})"
    if split in sizes:
        return split, np.arange(sizes[split]), f"the {split} split as given"
    if split == "test" and "val" in sizes:
        raise DataNotFoundError(f"{path} has no test split (no test/ folder or x_test array); evaluate a folder of "
                                f"test images on its own (--data {path / 'val'} makes it a test pool) or add test/")
    raise DataNotFoundError(f"{path} has no {split} split (it has {', '.join(sorted(sizes))}); give a folder with a "
                            f"{split}/ sub-folder, or a file with x_{split} and y_{split}")


# ---- image folders ----------------------------------------------------------------------------------------------


def _walk(folder: Path) -> list:
    """Image files under ``folder`` (any depth, links followed, hidden names skipped), sorted."""
    out = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        out += [os.path.join(root, f) for f in files if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES)]
    return sorted(out)


def _subfolders(folder: Path) -> list:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _scan_classes(folder: Path) -> dict:
    """{class name: its image files} of a class-folder tree; an empty tree or an empty class folder is refused."""
    names = _subfolders(folder)
    if not names:
        loose = any(f.is_file() and f.name.lower().endswith(IMAGE_SUFFIXES) for f in folder.iterdir())
        raise InputError(f"{folder} holds {'images but ' if loose else ''}no class sub-folders; put each class's "
                         f"images in a sub-folder named after it ({folder / 'cat' / '001.png'}, "
                         f"{folder / 'dog' / '001.png'}, ...: ImageFolder layout), or give a .npz/.pt file with "
                         "arrays x and y")
    out = {}
    for name in names:
        files = _walk(folder / name)
        if not files:
            raise InputError(f"class folder {folder / name} holds no images ({', '.join(IMAGE_SUFFIXES[:3])}, ...); "
                             "add its images or remove the folder")
        out[name] = files
    return out


def _load_folder(path: Path, split: str) -> FolderSet:
    subs = _subfolders(path)
    if subs and set(subs) <= set(SPLITS):
        trees = {s: _scan_classes(path / s) for s in subs}
    else:
        trees = {"test": _scan_classes(path)}
    classes = tuple(sorted(set().union(*trees.values())))
    label = {c: k for k, c in enumerate(classes)}
    shown = ", ".join(f"{k} = {c}" for k, c in enumerate(classes[:12])) + (", ..." if len(classes) > 12 else "")
    logger.info("%s: class k is the k-th folder name in sorted order (%s); the models' output k must be that class",
                path, shown)
    if all(c.isdigit() for c in classes) and list(classes) != sorted(classes, key=int):
        logger.warning("%s: numbered class folders sort as text (%s): folder '10' gets label 2 and so on; name them "
                       "with leading zeros (00, 01, ...) if the numbers are the models' classes", path,
                       ", ".join(classes[:12]))
    lists = {s: [(f, label[c]) for c in sorted(t) for f in t[c]] for s, t in trees.items()}
    source, rows, rule = _split_rows({s: len(v) for s, v in lists.items()}, split, path)
    rows = rows[np.random.default_rng(SPLIT_SEED).permutation(len(rows))]   # the first n mix the classes
    items = [lists[source][r] for r in rows]
    first = next(iter(lists.get("train") or lists.get("val") or lists["test"]))[0]
    shape = _image_shape(first)
    return FolderSet(path, split, [f for f, _ in items], np.array([y for _, y in items], dtype=np.int64), shape,
                     classes, f"{rule}, in a fixed shuffled order (seed {SPLIT_SEED})")


def _image_shape(file) -> tuple:
    """(C, H, W) of the data from its first image (header only): 1 channel for grayscale, else 3."""
    Image = _pillow()
    try:
        with Image.open(file) as im:
            mode, (w, h) = im.mode, im.size
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{file} is not a readable image ({' '.join(str(exc).split())[:120]}); replace or delete "
                         "it") from None
    return (1 if mode in GRAY_MODES else 3, h, w)


def decode_image(file, channels: int, size: tuple) -> np.ndarray:
    """One image as uint8 (C, H, W); a corrupt file, another size, or colour in grayscale data is refused."""
    Image = _pillow()
    try:
        with Image.open(file) as im:
            im.load()
            mode = im.mode
            arr = np.asarray(im.convert("L" if channels == 1 else "RGB"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{file} is not a readable image ({' '.join(str(exc).split())[:120]}); replace or delete "
                         "it") from None
    if channels == 1 and mode not in GRAY_MODES:
        raise InputError(f"{file} is a colour image ({mode}) but the data's first image is grayscale; convert all "
                         "images to one mode (all grayscale or all RGB)")
    if arr.shape[:2] != tuple(size):
        raise InputError(f"{file} is {arr.shape[1]}x{arr.shape[0]} but the data's first image is {size[1]}x{size[0]} "
                         "(width x height): images of mixed sizes; resize all images to one size first")
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


# ---- .npz and .pt files ----------------------------------------------------------------------------------------


def _read_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{path} is not a readable .npz file ({' '.join(str(exc).split())[:120]}); write it with "
                         "numpy.savez(path, x=images, y=labels)") from None


def _read_pt(path: Path) -> dict:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (a foreign or truncated file may fail anywhere in the unpickler)
        raise InputError(f"{path} is not a readable .pt file of tensors ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:120]}); write it with torch.save({{'x': images, 'y': labels}}, "
                         "path)") from None
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        obj = {"x": obj[0], "y": obj[1]}
    if not isinstance(obj, dict):
        raise InputError(f"{path} holds a {type(obj).__name__}; save a dict {{'x': images, 'y': labels}}")
    out = {}
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu()
            out[str(k)] = (v.float() if v.is_floating_point() and v.dtype not in (torch.float32, torch.float64)
                           else v).numpy()
    return out


def _arrays_by_split(path: Path, arrays: dict) -> dict:
    """{split: (x, y)}: x and y (one test pool) or x_<split> and y_<split>."""
    if "x" in arrays or "y" in arrays:
        pairs = {"test": ("x", "y")}
    else:
        pairs = {s: (f"x_{s}", f"y_{s}") for s in SPLITS if f"x_{s}" in arrays or f"y_{s}" in arrays}
    if not pairs:
        names = sorted(arrays)
        shown = ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")
        raise InputError(f"{path} holds arrays {shown or 'none'}; robustmix needs x (images) and y "
                         "(integer labels), or x_test/y_test (and x_train/y_train, x_val/y_val)")
    out = {}
    for split, (kx, ky) in pairs.items():
        if kx not in arrays or ky not in arrays:
            raise InputError(f"{path} has {kx if kx in arrays else ky} but no {ky if kx in arrays else kx}; give "
                             "both the images and their labels")
        out[split] = (_images_nchw(path, kx, arrays[kx]), _labels(path, ky, arrays[ky]))
        if len(out[split][0]) != len(out[split][1]):
            raise InputError(f"{path}: {kx} holds {len(out[split][0])} images but {ky} holds {len(out[split][1])} "
                             "labels; give one label per image")
    shapes = {x.shape[1:] for x, _ in out.values()}
    if len(shapes) > 1:
        raise InputError(f"{path}: the splits hold images of different shapes {sorted(shapes)}; give one shape")
    return out


def _images_nchw(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    """x as (N, C, H, W) uint8 or float32, its values checked."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[3] in (1, 3) and min(x.shape[1], x.shape[2]) > x.shape[3]:
        x = x.transpose(0, 3, 1, 2)
    elif x.ndim != 4:
        raise InputError(f"{path}: {key} has shape {x.shape}; give images as (N, C, H, W), (N, H, W, C) or (N, H, W)")
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind in "iu":
        if x.size and (x.min() < 0 or x.max() > 255):
            raise InputError(f"{path}: {key} holds integers in [{x.min()}, {x.max()}]; store 8-bit images as uint8 "
                             "(0-255) or floats in [0, 1]")
        return x.astype(np.uint8)
    if x.dtype.kind != "f":
        raise InputError(f"{path}: {key} has dtype {x.dtype}; store images as uint8 (0-255) or floats in [0, 1]")
    bad = ~np.isfinite(x)
    if bad.any():
        first = int(np.argwhere(bad.reshape(len(x), -1).any(1))[0, 0])
        raise InputError(f"{path}: {key} holds {int(bad.sum())} NaN or infinite values (the first in image {first}); "
                         "fix or drop those images")
    if x.size and (x.min() < 0 or x.max() > 1):
        hint = (": they look like 0-255 pixel values, so divide by 255 or store them as uint8" if x.min() >= 0 and
                x.max() <= 255 else "; unnormalise them (normalisation lives inside the model)")
        raise InputError(f"{path}: {key} holds floats in [{x.min():.4g}, {x.max():.4g}] but robustmix takes images "
                         f"in [0, 1]{hint}")
    return x.astype(np.float32, copy=False)


def _labels(path: Path, key: str, y: np.ndarray) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise InputError(f"{path}: {key} has shape {y.shape}; give one integer label per image"
                         + (f" (one-hot labels? use {key}.argmax(1))" if y.ndim == 2 else ""))
    if y.dtype.kind not in "iu":
        raise InputError(f"{path}: {key} has dtype {y.dtype}; store the labels as integers (e.g. "
                         f"{key}.astype('int64'))")
    if len(y) and y.min() < 0:
        raise InputError(f"{path}: {key} holds the label {int(y.min())}; labels are class indices 0, 1, ...")
    return y.astype(np.int64)


def _load_arrays(path: Path, split: str, arrays: dict, kind: str) -> ArraySet:
    pairs = _arrays_by_split(path, arrays)
    num_classes = max((int(y.max()) + 1 for _, y in pairs.values() if len(y)), default=0)
    source, rows, rule = _split_rows({s: len(y) for s, (_, y) in pairs.items()}, split, path)
    x, y = pairs[source]
    key = "x" if "x" in arrays else f"x_{source}"
    return ArraySet(path, split, x, y[rows], rows, num_classes, f"{rule}; rows of {key}", kind)
