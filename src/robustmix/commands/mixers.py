"""Commands that choose and deploy a mixer: pareto (every mixer on one front), calibrate, mix."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Literal

from .._config import group, option
from .._io import all_or_nothing
from .._validation import check_alpha
from ..errors import ConfigError
from ..experiments.calibrate import CalibrateSettings, run_calibration
from ..experiments.pareto import ParetoSettings, run_pareto
from ..results import Summary
from .common import Command, Context, Data, Models, Output, check_writable, command, load_data

logger = logging.getLogger(__name__)
FORMATS = {".safetensors": "a robustmix checkpoint", ".pt2": "a torch.export program", ".onnx": "an ONNX file"}

def load_splits(data: Data, sizes: dict) -> dict:
    """{split: (x[:n], y[:n])} for each split and size (at most the whole split)."""
    return {k: load_data(data, split=k, n=n, at_most=True) for k, n in sizes.items()}


@command("pareto", "linear, nonlinear (MixedNUTS) and adaptive mixers on one accuracy-robustness front",
         "robustmix pareto --std fmnist-std-cnn --rob fmnist-at-linf-cnn --eps 0.1 --out results/pareto-linf\n"
         "robustmix pareto --rob fmnist-at-l2-cnn --norm 2 --eps 1.5 --n-headline 500 --out results/pareto-l2")
class ParetoCommand(Command):
    models: Models = group(Models)
    inputs: Data = group(Data, only=("dataset", "data", "data_root"))
    pareto: ParetoSettings = group(ParetoSettings)
    output: Output = group(Output)

    def check(self):
        self.pareto = dataclasses.replace(self.pareto, std=self.models.std, rob=self.models.rob)

    def run(self, ctx: Context) -> Summary:
        s = self.pareto
        splits = load_splits(self.inputs, {"train": s.n_train, "val": s.n_val, "test": max(s.n_curve, s.n_headline)})
        g, h = self.models.load(self.inputs, ctx, splits["test"][0])
        return run_pareto(g, h, splits, s, self.output.out_path, fresh=self.output.fresh)


@command("calibrate", "choose a mixer on the validation split, then confirm it on the test split with the "
                      "worst-case evaluator",
         "robustmix calibrate --objective clean --target 0.90 -n 1000      # most robust alpha with >= 90% clean\n"
         "robustmix calibrate --objective robust --target 0.60 -n 1000     # most accurate alpha with >= 60% robust\n"
         "robustmix calibrate --objective certified --rob fmnist-noise-0.50-cnn --sigma 0.5 --radius 0.5\n"
         "robustmix calibrate --mixer nonlinear --target 0.9 --export mixed.pt2   # also a deployable program\n"
         "robustmix calibrate --mixer adaptive -n 1000   # alpha per input; on, not above, the linear front on "
         "Fashion-MNIST (RESULTS.md)")
class CalibrateCommand(Command):
    models: Models = group(Models)
    inputs: Data = group(Data)
    calibration: CalibrateSettings = group(CalibrateSettings)
    export: str | None = option(None, "also write the chosen mixer as a torch.export program (.pt2)")
    force: bool = option(False, "overwrite an existing --export file")
    output: Output = group(Output)

    def check(self):
        if self.export:
            check_export_path(self.export, "--export", {"--export": ".pt2"}, self.force)

    def run(self, ctx: Context) -> Summary:
        cal, n, out = self.calibration, self.inputs.n, self.output.out_path
        splits = load_splits(self.inputs, {"val": n, "test": n, **({"train": 10 * n} if cal.mixer == "adaptive" else {})})
        g, h = self.models.load(self.inputs, ctx, splits["val"][0])
        summary = run_calibration(g, h, splits, cal, out, settings=self.inputs.settings(self.models),
                                  fresh=self.output.fresh, export=self.export)
        c = summary.choice
        chosen = ", ".join(f"{k} = {getattr(c, k):.4g}" for k in ("alpha", "scale", "power", "bias")
                           if isinstance(getattr(c, k), (int, float)) and not isinstance(getattr(c, k), bool))
        if c.mixing_net:
            chosen = (f"a mixing network ({cal.adaptive.mixing_net}, reading {cal.adaptive.adaptive_features}): alpha "
                      "per input")
        written = [p for p in (out / "mixer.safetensors", out / "calibration.json") if p.is_file()]
        logger.info("calibrate chose the %s mixer with %s (objective %s, target %s%s); wrote %s", cal.mixer, chosen,
                    cal.objective, cal.target, "" if c.feasible in (True, None) else ": NOT met",
                    ", ".join(map(str, written + ([Path(self.export)] if self.export else []))))
        return summary


def check_export_path(path: str, flag: str, formats: dict | None = None, force: bool = False) -> None:
    """Refuse an output file before any work: a folder, a suffix other than the flag's format (``formats``: flag ->
    suffix), an existing file (or checkpoint card) without --force, an unwritable folder."""
    p, suffix = Path(path), (formats or {}).get(flag)
    if p.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; give a file name such as {p / ('mixed' + (suffix or '.pt2'))}")
    if suffix and p.suffix != suffix:
        other = next((f for f, s in formats.items() if s == p.suffix), None)
        raise ConfigError(f"{flag} {path} must end in {suffix} ({flag} writes {FORMATS[suffix]})" +
                          (f"; {p.suffix} is {FORMATS[p.suffix]}: give it to {other}" if other else
                           f"; e.g. {flag} {p.with_suffix(suffix)}"))
    existing = [q for q in [p] + ([p.with_suffix(".json")] if suffix == ".safetensors" else []) if q.exists()]
    if existing and not force:
        what = "exists" if existing[0] == p else f"has a card {existing[0]} beside it"
        raise ConfigError(f"{flag} {path} {what}; add --force to overwrite it, or give another file name")
    check_writable(p.parent if str(p.parent) else Path("."), f"{flag} {path}: the folder")


@command("mix", "save the mixed classifier of any two models: a robustmix checkpoint (--out, when both models carry "
                "cards), a torch.export program (--export) and/or ONNX (--onnx)",
         "robustmix mix --std fmnist-std-cnn --rob fmnist-at-linf-cnn --alpha 0.6 --out mixed.safetensors "
         "--export mixed.pt2\n"
         "robustmix mix --std mypkg.models:standard --rob mypkg.models:robust --alpha 0.6 --export mixed.pt2")
class MixCommand(Command):
    models: Models = group(Models)
    alpha: float | None = option(None, "weight of h in the mixture", required=True)
    inputs: Data = group(Data, only=("dataset",))
    mixer: Literal["linear", "nonlinear"] = option("linear", "linear (eq. 4) or nonlinear (MixedNUTS map of h's logits; an adaptive mixer is "
                                  "saved by 'calibrate --mixer adaptive')")
    scale: float = option(1.0, "nonlinear: scale of the map")
    power: float = option(1.0, "nonlinear: power of the map")
    bias: float = option(0.0, "nonlinear: bias added after the layer norm")
    top_k: int | None = option(None, "nonlinear: layer norm over the k largest logits", shown="all logits")
    std_map: Literal["softmax", "onehot"] = option("softmax", "nonlinear: how g's output becomes probabilities")
    out: str | None = option(None, "robustmix checkpoint to write (.safetensors; needs base models with cards)")
    export: str | None = option(None, "torch.export program to write (.pt2): works for any models")
    onnx: str | None = option(None, "ONNX file to write (needs the onnx and onnxscript packages)")
    force: bool = option(False, "overwrite existing output files")

    FORMATS = {"--out": ".safetensors", "--export": ".pt2", "--onnx": ".onnx"}

    def check(self):
        from ..experiments.export import onnx_missing

        if self.alpha is None:
            raise ConfigError("give --alpha, the weight of h in the mixture (a number in [0, 1])")
        check_alpha(self.alpha)
        if not (self.out or self.export or self.onnx):
            raise ConfigError("give at least one of --out FILE.safetensors, --export FILE.pt2 or --onnx FILE.onnx")
        targets = {"--out": self.out, "--export": self.export, "--onnx": self.onnx}
        for flag, target in targets.items():
            if target:
                check_export_path(target, flag, self.FORMATS, self.force)
        if self.onnx and onnx_missing():
            raise ConfigError(f"--onnx needs the {' and '.join(onnx_missing())} package(s): pip install onnx "
                              "onnxscript (or leave out --onnx); nothing was written")

    def run(self, ctx: Context) -> str:
        import torch

        from ..data import dataset_info
        from ..experiments.export import export_onnx, export_program, save_mixer
        from ..mixing import MixedClassifier, NonlinearMap, NonlinearMixedClassifier

        info = dataset_info(self.inputs.dataset)
        g, h = self.models.load(self.inputs, ctx)
        if self.mixer == "nonlinear":
            mixer = NonlinearMixedClassifier(g, h, self.alpha, NonlinearMap(self.scale, self.power, self.bias, self.top_k,
                                                                             self.std_map))
        else:
            mixer = MixedClassifier(g, h, self.alpha)
        lines, example = [], torch.rand(2, *info.shape)
        if self.out and not all(hasattr(m, "card") for m in (g, h)):
            raise ConfigError("--out needs base models with robustmix cards (zoo names or checkpoints made with "
                              "robustmix.models.save_checkpoint; see the README's 'Bring your own models'); "
                              "--export FILE.pt2 works for any models")
        with all_or_nothing():   # every file, or none when one fails
            if self.out:
                lines.append(f"wrote {save_mixer(mixer, self.out, dataset=info.name)} and its card "
                             f"{Path(self.out).with_suffix('.json')} (use it as --model, --std or --rob, or "
                             "robustmix.models.load(path))")
            if self.export:
                lines.append(f"wrote {export_program(mixer, example, self.export)} (use it as --model, --std or "
                             "--rob, or torch.export.load(path).module(); inputs in [0, 1], outputs mixed "
                             "log-probabilities)")
            if self.onnx:
                lines.append(f"wrote {export_onnx(mixer, example, self.onnx)}")
        return "\n".join(lines)

