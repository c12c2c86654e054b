"""``robustmix verify``: re-check a saved evaluation (``evaluate --save-adversarial``) without trusting robustmix's
attack code.  The file format and the checks live in :mod:`robustmix.attacks.saved`; this command rebuilds the model
and loads the data."""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import ClassVar

from .._config import group, option
from .._validation import check_alpha
from ..attacks.saved import SavedEvaluation, model_options, read_saved, verify
from ..errors import ConfigError
from ..groups import ThreatModel
from ..results import VerifySummary
from .common import Command, Context, Data, Output, command, load_model

logger = logging.getLogger(__name__)

SAFE_MODEL_FORMS = (".safetensors", ".pt2")   # what a file may name on its own: nothing that imports code


@command("verify", "re-check a file of adversarial inputs written by 'evaluate --save-adversarial'",
         "robustmix evaluate --alpha 0.7 -n 1000 --save-adversarial adv.pt --out runs/eval\n"
         "robustmix verify adv.pt --out runs/verify      # the model recorded in the file\n"
         "robustmix verify adv.pt --model mixed.pt2      # another copy of the same weights\n"
         "robustmix verify adv.pt --std mymodels:make_std --rob mymodels:make_rob --alpha 0.7   # your own factories")
class VerifyCommand(Command):
    EXCLUSIVE: ClassVar[tuple] = (("model", "std"), ("model", "rob"), ("model", "alpha"))
    file: str = option("adversarial.pt", "the .pt file written by evaluate --save-adversarial", positional=True)
    model: str | None = option(None, "model to check (any model form, as evaluate's --model); its weights must match "
                                     "the file's SHA-256", shown="the model recorded in the file")
    std: str | None = option(None, "standard model g of the mixture to check (any model form, as evaluate's --std)",
                             shown="the file's")
    rob: str | None = option(None, "robust model h of the mixture (as evaluate's --rob)", shown="the file's")
    alpha: float | None = option(None, "weight of h in the mixture (as evaluate's --alpha)", shown="the file's")
    norm: str | None = option(None, "threat model to hold the file to: inf (l_inf) or 2 (l_2); a file made for "
                              "another norm is refused", shown="the file's own")
    eps: float | None = option(None, "radius to hold the file to; a file made for another radius is refused",
                               shown="the file's own")
    tolerance: float = option(0.01, "outcomes that differ from the file's only where the model's margin (true "
                                    "class minus the best other output) is within +-tolerance are boundary cases "
                                    "(rounding on another device or library), counted and reported, not refused; 0: "
                                    "every difference is refused")
    inputs: Data = group(Data, only=("data_root",))
    output: Output = group(Output)

    def check(self):
        if not (isinstance(self.tolerance, (int, float)) and 0 <= self.tolerance < math.inf):
            raise ConfigError(f"--tolerance must be a number >= 0, got {self.tolerance!r}")
        if self.alpha is not None:
            check_alpha(self.alpha)

    def run(self, ctx: Context) -> VerifySummary:
        from ..data import load_dataset

        saved = read_saved(self.file)
        self.check_threat_model(saved)
        model, record = self.rebuild(saved, ctx)
        x, y = load_dataset(saved.dataset, saved.split, self.inputs.data_root)
        return dataclasses.replace(verify(model, x, y, saved, tolerance=self.tolerance), model=record)

    def rebuild(self, saved: SavedEvaluation, ctx: Context):
        """(model, its record): --model; else the mixture of --std, --rob and --alpha, the file's where one is not
        given; else the file's own record.  What the user typed may import code; what only the file names may not."""
        from ..mixing import MixedClassifier

        if self.model:
            return load_model(self.model, saved.dataset, ctx), {"model": self.model}
        given = {k: v for k, v in (("std", self.std), ("rob", self.rob), ("alpha", self.alpha)) if v is not None}
        if given and "model" in saved.model and len(given) < 3:
            raise ConfigError(f"{self.file} was made for one model ({model_options(saved.model)}), not a mixture; "
                              "give that --model, or all of --std, --rob and --alpha")
        record = {**({} if len(given) == 3 else saved.model), **given}
        for key in ("model", "std", "rob"):
            if key in record and key not in given:
                record[key] = find_beside(record[key], self.file)
                check_runs_no_code(record[key], self.file, saved.model)
        if "model" in record:
            return load_model(record["model"], saved.dataset, ctx), record
        g, h = (load_model(record[k], saved.dataset, ctx) for k in ("std", "rob"))
        return MixedClassifier(g, h, record["alpha"]), record

    def check_threat_model(self, saved: SavedEvaluation) -> None:
        """Refuse a file made for another threat model than --norm / --eps ask for, before any model is loaded."""
        p, eps = saved.p, saved.eps
        want = ThreatModel(saved.norm if self.norm is None else self.norm, eps if self.eps is None else self.eps)
        want_p, want_eps = want.p, want.eps
        if want_p != p or abs(want_eps - eps) > 1e-9 * max(1.0, want_eps):
            name = {2.0: "2", math.inf: "inf"}
            raise ConfigError(f"{self.file} was made for the l_{name[p]} ball of radius {eps}, not the "
                              f"l_{name.get(want_p, want_p)} ball of radius {want_eps} asked for; verify it without "
                              "--norm/--eps to check its own threat model, or evaluate again at yours")


def find_beside(name, path):
    """A model file named relative to where evaluate ran: as given, else relative to the folders above ``path``."""
    if not isinstance(name, str) or not name.endswith(SAFE_MODEL_FORMS) or Path(name).is_absolute() \
            or Path(name).exists():
        return name
    for folder in Path(path).resolve().parents:
        if (folder / name).is_file():
            return str(folder / name)
    return name


def check_runs_no_code(name: str, path, record: dict) -> None:
    """A model only the file names is loaded only when that cannot run code: zoo names, .safetensors, .pt2."""
    if ":" in str(name) and not str(name).endswith(SAFE_MODEL_FORMS):
        raise ConfigError(f"{path} names its model as {name!r}, which would import code or fetch weights; verify it "
                          f"with {model_options(record)} if you trust that source")
