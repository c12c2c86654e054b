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
from pathlib import Path
from typing import ClassVar

from .._config import Checked, option
from ..errors import ConfigError, ModelError

logger = logging.getLogger(__name__)

PRODUCTS = {"summary.json", "settings.json", "report.html", "report.md", "figures", "adversarial", "calibration.json",
            "mixer.safetensors", "mixer.json", "val-logits.json", "val-logits.safetensors",
            "adaptive.mixing-net.safetensors", "adaptive.train-state.pt"}
MODEL_FORMS = "zoo name, .safetensors checkpoint, exported .pt2 program, module:function or robustbench:NAME"


@dataclasses.dataclass
class Context:
    """How a command runs (not what it computes): the device, threads and the command line it was started with."""

    device: str = "auto"
    threads: int | None = None
    argv: list = dataclasses.field(default_factory=list)
    progress: bool = True

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


@dataclasses.dataclass
class Output(Checked):
    """The results folder: records, summary.json, settings.json, report and plots."""

    DEFAULT_OUT: ClassVar[str] = "runs/out"
    out: str | None = option(None, "output folder (records, summary.json, report.html, plots)", shown="runs/<command>")
    fresh: bool = option(False, "move the earlier records and outputs in --out aside and start over (instead of "
                                "resuming)")

    def check(self):
        self.out = str(check_out_folder(Path(self.out or self.DEFAULT_OUT)))
        owner = results_owner(self.out_path)
        if owner and owner != getattr(self, "NAME", owner) and not self.fresh:
            raise ConfigError(f"--out {self.out} holds the results of 'robustmix {owner}'; give another folder for "
                              f"this {self.NAME} run (or add --fresh to move those results aside)")

    @property
    def out_path(self) -> Path:
        return Path(self.out)

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
    std: str = option("fmnist-std-cnn", f"standard (accurate) model g: {MODEL_FORMS}")
    rob: str = option("fmnist-at-linf-cnn", "robust model h (same forms as --std)")


@dataclasses.dataclass
class Data(Checked):
    dataset: str = option("fashion-mnist", "data set", choices=["fashion-mnist", "mnist", "cifar10", "cifar100"])
    data_root: str | None = option(None, "folder with the data set's files", shown="$ROBUSTMIX_DATA or known places")
    split: str = option("test", "split to evaluate on", choices=["train", "val", "test"])
    n: int = option(1000, "number of examples, from the start of the split", flags=("-n", "--num-examples"))
    seed: int = option(0, "seed of every random draw (attack starts, noise); each example's draws depend only on "
                          "(seed, its index)")

    def check(self):
        if self.n <= 0:
            raise ConfigError(f"--num-examples must be positive, got {self.n}")

    def data_settings(self) -> dict:
        return {"std": getattr(self, "std", None), "rob": getattr(self, "rob", None), "dataset": self.dataset,
                "split": self.split}


class OnPair:
    """For commands over g (--std), h (--rob) and the first n examples: loading, and the runner's arguments."""

    def load(self, ctx: Context):
        """(x, y, g, h): the data, and both models checked on it."""
        x, y = load_data(self)
        return (x, y, *load_pair(self, ctx, x))

    def records(self, ctx: Context, **settings) -> dict:
        """Keyword arguments of an experiment's run: records in --out, the data's settings, --fresh, progress."""
        return {"records_path": self.out_path / "records.jsonl", "settings": {**self.data_settings(), **settings},
                "fresh": self.fresh, "progress": ctx.progress}


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


def load_data(cfg: Data):
    """The first ``cfg.n`` examples of the configured split."""
    from ..data import load_dataset

    x, y = load_dataset(cfg.dataset, cfg.split, cfg.data_root)
    if cfg.n > len(x):
        raise ConfigError(f"--num-examples {cfg.n} is more than the {len(x)} examples of {cfg.dataset} {cfg.split}")
    return x[:cfg.n], y[:cfg.n]


def load_model(spec: str, dataset: str, ctx: Context, probe=None):
    """Resolve a model spec, move it to the context's device and probe it once on ``probe`` inputs.

    Refused with one line naming the model: a wrong output shape, NaN/inf outputs, outputs that are already
    probabilities or log-probabilities (robustmix needs logits), or parameters of another dtype than the data.
    """
    import torch

    from ..data import dataset_info
    from ..models import resolve_model

    info = dataset_info(dataset)
    model = resolve_model(spec, info.name).to(ctx.torch_device())
    params = list(model.parameters())
    x = probe if probe is not None else torch.rand(4, *info.shape)
    x = x[:8].to(params[0].device if params else x.device)
    if params and params[0].dtype != x.dtype:
        raise ModelError(f"model {spec!r} has {params[0].dtype} weights but the data are {x.dtype}; convert it with "
                         f"model.float() before passing it")
    with torch.no_grad():
        try:
            out = model(x)
        except Exception as exc:  # noqa: BLE001  (a user's model may raise anything on the wrong input shape)
            raise ModelError(f"model {spec!r} fails on {info.name} inputs of shape {tuple(info.shape)} "
                             f"({type(exc).__name__}: {' '.join(str(exc).split())[:160]}); give a model for this "
                             "data set") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(x), info.num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"model {spec!r} returns {shape} for {len(x)} inputs; robustmix needs (n, "
                         f"{info.num_classes}) logits over the data set's classes")
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


def load_pair(cfg, ctx: Context, probe=None):
    """g and h of a command with --std and --rob, each checked; the console names them."""
    g = load_model(cfg.std, cfg.dataset, ctx, probe)
    h = load_model(cfg.rob, cfg.dataset, ctx, probe)
    logger.debug("g = %s, h = %s on %s (%s)", cfg.std, cfg.rob, cfg.dataset, ctx.torch_device())
    return g, h
