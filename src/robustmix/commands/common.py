"""What every command shares: option groups (models, data, output folder), the run context, and checked loading.

A command is a config dataclass built from these groups and an experiment's own config, plus a
``run(config, context) -> Summary``; the command line is generated from the configs (``robustmix.cli``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shlex
import tempfile
from pathlib import Path
from typing import ClassVar

from .._config import leaves, option
from ..errors import ConfigError, ModelError

logger = logging.getLogger(__name__)

PRODUCTS = {"summary.json", "settings.json", "report.html", "report.md", "figures", "adversarial", "calibration.json",
            "mixer.safetensors", "mixer.json", "val-logits.json", "val-logits.safetensors",
            "adaptive.mixing-net.safetensors", "adaptive.train-state.pt"}
MODEL_FORMS = ("zoo name, .safetensors checkpoint, exported .pt2 program, ARCH@WEIGHTS.pt (a state_dict under an "
               "architecture, e.g. wrn-28-10@ckpt.pt), module:function, robustbench:NAME@DIR or timm:NAME@PATH")


@dataclasses.dataclass
class Context:
    """How a command runs (not what it computes): the device, threads and the command line it was started with."""

    device: str = "auto"
    threads: int | None = None
    argv: list = dataclasses.field(default_factory=list)
    progress: bool = True
    import_code: bool = False   # --import-code: a checkpoint's card may name the module of its architecture
    channels_last: bool = False   # --channels-last: models in the channels_last memory format

    @property
    def command_line(self) -> str:
        return shlex.join(["robustmix", *self.argv]) if self.argv else ""

    def torch_device(self):
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(self.device)
        except RuntimeError:
            raise ConfigError(f"--device {self.device!r} is not a device: use auto, cpu, cuda or cuda:N") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("--device cuda but no GPU is visible to PyTorch; use --device cpu")
        return device


NAMES: set[str] = set()   # every command's name, to tell whose results a folder holds


def command(name: str, help: str, examples: str, out: str | None = None):
    """Class decorator: make a config dataclass a command with its name, help, examples and default --out."""
    def wrap(cls):
        NAMES.add(name)
        cls.NAME, cls.HELP, cls.EXAMPLES, cls.DEFAULT_OUT = name, help, examples, out or f"runs/{name}"
        return dataclasses.dataclass(cls)
    return wrap


class Command:
    """What every command config does once its groups are made (each checked itself): claim its --out folder
    (when it has an :class:`Output` group) and check what ties its groups together (``check``)."""

    NAME: ClassVar[str] = ""
    DEFAULT_OUT: ClassVar[str] = "runs/out"

    def __post_init__(self):
        if isinstance(getattr(self, "output", None), Output):
            self.output.claim(self.NAME, self.DEFAULT_OUT)
        self.check()

    def check(self) -> None:
        """Checks across the command's groups and options (each group checks its own values)."""


@dataclasses.dataclass
class Output:
    """The results folder: records, summary.json, settings.json, report and plots."""

    out: str | None = option(None, "output folder (records, summary.json, report.html, plots)", shown="runs/<command>")
    fresh: bool = option(False, "move the earlier records and outputs in --out aside and start over (instead of "
                                "resuming)")

    def claim(self, command: str, default: str) -> None:
        """Resolve --out (``default`` when not given) for ``command``: a writable folder that holds no other
        command's results (unless --fresh moves them aside)."""
        self.out = str(check_out_folder(Path(self.out or default)))
        owner = results_owner(self.out_path)
        if owner and owner != command and not self.fresh:
            raise ConfigError(f"--out {self.out} holds the results of 'robustmix {owner}'; give another folder for "
                              f"this {command} run (or add --fresh to move those results aside)")

    @property
    def out_path(self) -> Path:
        return Path(self.out)

    @property
    def records_path(self) -> Path:
        return self.out_path / "records.jsonl"

    def move_aside_outputs(self) -> Path | None:
        """With --fresh: move what an earlier run wrote (summary, settings, report, plots, saved models and inputs)
        into ``previous-<time>/`` inside --out, so nothing old mixes with the new run; records are moved aside by
        the runner itself (``records.jsonl.<time>.old``)."""
        import time

        old = [p for p in self.out_path.glob("*") if p.name in PRODUCTS or p.suffix in (".png", ".svg")]
        if not old:
            return None
        dest = self.out_path / f"previous-{time.strftime('%Y%m%d-%H%M%S')}"
        dest.mkdir()
        for p in old:
            p.rename(dest / p.name)
        logger.info("moved the earlier run's outputs to %s", dest)
        return dest


@dataclasses.dataclass
class Models:
    """The two models of a mixture: the accurate g (--std) and the robust h (--rob)."""

    std: str = option("fmnist-std-cnn", f"standard (accurate) model g: {MODEL_FORMS}")
    rob: str = option("fmnist-at-linf-cnn", "robust model h (same forms as --std)")

    def load(self, data: "Data", ctx: Context, probe=None):
        """g and h, each checked on ``probe`` inputs of ``data``; the console names them."""
        g = load_model(self.std, data, ctx, probe)
        h = load_model(self.rob, data, ctx, probe)
        logger.debug("g = %s, h = %s on %s (%s)", self.std, self.rob, data.dataset, ctx.torch_device())
        return g, h


DATASET_NAMES = ["fashion-mnist", "mnist", "cifar10", "cifar100"]


@dataclasses.dataclass
class Data:
    """Which examples: a named data set or the user's own files (--data), a split and the first n."""

    dataset: str = option("fashion-mnist", "data set", choices=DATASET_NAMES)
    data: str | None = option(None, "your own images instead of --dataset's: a folder with one sub-folder of PNG/JPEG "
                                    "images per class (class order: sorted folder names; train/ val/ test/ "
                                    "sub-folders are the splits) or a .npz/.pt file with arrays x (uint8 0-255 or "
                                    "float in [0, 1], NCHW or NHWC) and y (integer labels); without a val split of "
                                    "its own, val is a fixed seeded part carved out of train (or out of test, which "
                                    "then excludes it). Images are fed in [0, 1]: a model that wants normalisation "
                                    "does it inside. --dataset then names the data set the models were made for",
                              metavar="PATH", shown="none, --dataset's images")
    data_root: str | None = option(None, "folder with the data set's files", shown="$ROBUSTMIX_DATA or known places")
    split: str = option("test", "split to evaluate on", choices=["train", "val", "test"])
    n: int = option(1000, "number of examples, from the start of the split", flags=("-n", "--num-examples"))

    def __post_init__(self):
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n <= 0:
            raise ConfigError(f"--num-examples must be positive, got {self.n}")
        if self.data is not None:
            from ..data.user import check_path

            check_path(self.data)

    def settings(self, models: Models | None = None) -> dict:
        """The data's part of a records header: the models' names, data set, split and --data's fingerprint."""
        return {"std": getattr(models, "std", None), "rob": getattr(models, "rob", None), "dataset": self.dataset,
                "split": self.split, **self.data_id()}

    def data_id(self) -> dict:
        """--data's fingerprint for the records' header, so a resumed run refuses changed data ({} without --data:
        the named sets' headers stay as they were)."""
        if not self.data:
            return {}
        from ..data.user import digest

        if "_data_sha256" not in vars(self):
            self._data_sha256 = digest(self.data)
        return {"data_sha256": self._data_sha256}


def config_from_settings(cls, settings, folder):
    """The typed config of the command ``cls`` that a run's ``settings`` (a summary's, or settings.json) describe:
    its options read back by name through the same groups and checks as typed flags; what the run added
    (``samples_per_image``, ...) is left out, and --out is the run's ``folder``."""
    from .._config import build

    names = {leaf.name for leaf in leaves(cls)}
    return build(cls, {**{k: v for k, v in settings.items() if k in names}, "out": str(folder), "fresh": False})


def records_in(cmd, ctx: Context, path=None, **settings):
    """The records of a command with inputs and output groups: ``path`` (default records.jsonl in --out), the
    data's settings (and ``settings``) for the header, --fresh, progress."""
    from ..experiments.runner import Records

    return Records(path or cmd.output.records_path, {**cmd.inputs.settings(getattr(cmd, "models", None)), **settings},
                   cmd.output.fresh, ctx.progress)


def load_examples(cmd, ctx: Context):
    """(x, y, g, h) of a command over g, h and the first n examples: the data, and both models checked on it."""
    x, y = load_data(cmd.inputs)
    return (x, y, *cmd.models.load(cmd.inputs, ctx, x))


def check_out_folder(path: Path) -> Path:
    """A folder that is (or can be created) writable; refused before any work."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file; give a folder for the results")
    check_writable(path, "--out")
    return path


def results_owner(folder: Path) -> str | None:
    """The command whose summary.json lies in ``folder`` (None when there is none, or it names no command)."""
    try:
        line = json.loads((folder / "summary.json").read_text(encoding="utf-8")).get("command")
    except (OSError, ValueError, AttributeError):
        return None
    words = str(line or "").split()
    if not words or words[0] != "robustmix":   # a script's summary (python scripts/...) belongs to no command
        return None
    return next((word for word in words[1:] if word in NAMES), None)


def check_writable(path: Path, flag: str) -> None:
    """Refuse the folder ``path`` now if it (or, while it does not exist, its nearest existing parent) is not a
    writable folder."""
    probe = Path(path)
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{flag} {path} cannot be written: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path} is not writable; choose a folder you can write to")
    try:   # permissions are not all: a read-only mount, /proc, a full quota
        tempfile.TemporaryFile(dir=probe).close()
    except OSError as exc:
        raise ConfigError(f"{flag} {path} is not writable ({exc.strerror or exc}); choose a folder you can write "
                          "to") from None


def load_data(cfg: Data, indices=None, *, split: str | None = None, n: int | None = None, at_most: bool = False):
    """Examples of a split (default ``cfg.split``) as tensors: those at the dataset ``indices`` given, else the first
    ``n`` (default ``cfg.n``; more than the split holds is refused, or with ``at_most`` gives the whole split).

    With --data the split is read lazily and only these examples are decoded; what they are (files or rows, classes,
    the split's rule) is kept in ``cfg.data_used`` for the summary.
    """
    split, n = split or cfg.split, cfg.n if n is None else n
    if getattr(cfg, "data", None):
        from ..data import load

        data = load(cfg.data, split)
        size, where = len(data), f"{cfg.data} ({split})"
    else:
        from ..data import load_dataset

        data = load_dataset(cfg.dataset, split, cfg.data_root)
        size, where = len(data[1]), f"{cfg.dataset} {split}"
    if indices is None:
        if n > size and not at_most:
            raise ConfigError(f"--num-examples {n} is more than the {size} examples of {where}")
        indices = range(min(n, size))
    if isinstance(data, tuple):
        x, y = data
        return (x[:len(indices)], y[:len(indices)]) if isinstance(indices, range) else (x[indices], y[indices])
    used = data.describe(indices)
    if getattr(cfg, "data_used", None):
        used["splits"] = {**cfg.data_used["splits"], **used["splits"]}
    cfg.data_used = used
    return data.take(indices)


def split_size(cfg: Data) -> int:
    """The number of examples of the configured split."""
    if getattr(cfg, "data", None):
        from ..data import load

        return len(load(cfg.data, cfg.split))
    from ..data import load_dataset

    return len(load_dataset(cfg.dataset, cfg.split, cfg.data_root)[1])


def load_model(spec: str, dataset, ctx: Context, probe=None):
    """Resolve a model spec, move it to the context's device and probe it once on ``probe`` inputs.

    Refused with one line naming the model: a wrong output shape, NaN/inf outputs, outputs that are already
    probabilities or log-probabilities (robustmix needs logits), or parameters of another dtype than the data.
    ``dataset`` is the data set's name, or a command's config: with --data (loaded by :func:`load_data`) the probe
    is the user's images and the model needs an output for each of their classes.
    """
    import torch

    from ..data import dataset_info
    from ..models import resolve_model

    user = None if isinstance(dataset, str) or not getattr(dataset, "data", None) else getattr(dataset, "data_used",
                                                                                                None)
    info = dataset_info(dataset if isinstance(dataset, str) else dataset.dataset)
    model = resolve_model(spec, info.name, import_code=ctx.import_code).to(ctx.torch_device())
    if ctx.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if user is not None:
        return check_on_user_data(model, spec, probe, user)
    x = probe if probe is not None else torch.rand(4, *info.shape)
    out, x = _probe_forward(model, spec, x, lambda exc: (
        f"model {spec!r} fails on {info.name} inputs of shape {tuple(info.shape)} ({_one_line(exc)}); give a model "
        "for this data set"))
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(x), info.num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"model {spec!r} returns {shape} for {len(x)} inputs; robustmix needs (n, "
                         f"{info.num_classes}) logits over the data set's classes")
    check_logits(out, spec)
    return model


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"


def _probe_forward(model, spec: str, x, failure):
    """(outputs, inputs) of the model on the first 8 probe inputs, on its device; a dtype other than the data's or
    a failing forward is one ModelError line (``failure(exc)`` words the latter)."""
    import torch

    params = list(model.parameters())
    x = x[:8].to(params[0].device if params else x.device)
    if params and params[0].dtype != x.dtype:
        raise ModelError(f"model {spec!r} has {params[0].dtype} weights but the data are {x.dtype}; convert it with "
                         f"model.float() before passing it")
    with torch.no_grad():
        try:
            return model(x), x
        except Exception as exc:  # noqa: BLE001  (a user's model may raise anything on the wrong input shape)
            raise ModelError(failure(exc)) from None


def check_on_user_data(model, spec: str, probe, data: dict):
    """The probe of :func:`load_model` on --data's images (``data``: what :func:`load_data` read): the model must
    take their shape (a clear line when its first convolution wants other channels) and have an output per class."""
    import torch

    shape, where = tuple(data["shape"]), data["path"]

    def failure(exc) -> str:
        conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
        if conv is not None and conv.in_channels != shape[0]:
            to = {1: "grayscale", 3: "RGB"}.get(conv.in_channels, f"{conv.in_channels} channels")
            return (f"model {spec!r} takes {conv.in_channels}-channel images but {where} holds {shape[0]}-channel "
                    f"images of shape {shape}; give a model for {shape[0]}-channel images, or convert the images to {to}")
        return (f"model {spec!r} fails on the images of {where}, shape {shape} ({_one_line(exc)}); give a model for "
                "images of this shape")

    out, x = _probe_forward(model, spec, probe, failure)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or len(out) != len(x):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"model {spec!r} returns {got} for {len(x)} inputs; robustmix needs (n, classes) logits")
    k, c = data["num_classes"], out.shape[1]
    if k > c:
        raise ModelError(f"{where} has labels up to {k - 1} but model {spec!r} has {c} outputs (classes 0..{c - 1}): "
                         "labels outside the model's classes; give a model with one output per class, or drop the "
                         "extra classes from the data")
    if data["classes"] and k < c:
        logger.warning("%s has %d class folders for the %d outputs of %r: folder k in sorted order is output k",
                       where, k, c, spec)
    check_logits(out, spec)
    return model


def check_logits(out, spec: str) -> None:
    """Refuse outputs that are not finite logits (NaN/inf, probabilities); note log-probabilities (valid logits)."""
    import torch

    from .._validation import check_logits as refuse_non_logits

    refuse_non_logits(out, repr(spec))
    out = out.detach().double()
    if out.shape[1] > 1 and torch.allclose(torch.logsumexp(out, 1), torch.zeros(len(out), dtype=out.dtype),
                                           atol=1e-4) and (out.max(1).values - out.min(1).values > 1e-6).any():
        logger.info("model %r returns log-probabilities; they are valid logits (softmax gives the same "
                    "probabilities)", spec)


