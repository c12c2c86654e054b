"""The first commands a user meets: demo (the main job), train, report (rebuild a run's page), list (the zoo)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .._config import group, option
from ..errors import ConfigError
from ..results import Summary
from ..training import TrainConfig
from .common import Command, Context, Data, Output, check_out_folder, check_writable, command
from .mixers import check_export_path


@command("demo", "run the offline end-to-end demo on the shipped Fashion-MNIST zoo and write a report",
         "robustmix demo                       # the paper on the shipped zoo\n"
         "robustmix demo --quick --out /tmp/rm   # a smaller run", out="robustmix-demo")
class DemoCommand(Command):
    quick: bool = option(False, "smaller settings (fewer images, steps and noise samples)")
    output: Output = group(Output)

    def run(self, ctx: Context) -> Summary:
        from ..experiments.demo import DemoSettings, run_demo

        return run_demo(self.output.out_path, DemoSettings.quick() if self.quick else DemoSettings(),
                        progress=ctx.progress, fresh=self.output.fresh)


@command("train", "train a model with a recipe (or rerun a zoo model's recipe)",
         "robustmix train --zoo fmnist-at-linf-cnn --out my-zoo\n"
         "robustmix train --arch cnn-small --recipe trades --eps 0.1 --epochs 6 --out ckpt/trades.safetensors")
class TrainCommand(Command):
    zoo: str | None = option(None, "rerun the recipe of this zoo model (other training flags are ignored)")
    arch: str = option("cnn-small", "architecture (robustmix list shows them)")
    inputs: Data = group(Data, only=("dataset",))
    training: TrainConfig = group(TrainConfig)
    out: str | None = option(None, "checkpoint path (.safetensors), or with --zoo the output folder", required=True)
    force: bool = option(False, "overwrite an existing checkpoint (and its card)")

    def check(self):
        if not self.out:
            raise ConfigError("--out PATH is required (where to write the checkpoint)")
        out = Path(self.out)
        if self.zoo:
            check_out_folder(out)
        elif out.is_dir():
            raise ConfigError(f"--out {out} is a folder; give a checkpoint file such as {out / 'model.safetensors'}")
        else:
            check_export_path(self.out, "--out", {"--out": ".safetensors"}, self.force)
        if self.training.recipe == "lipschitz":
            self.training = dataclasses.replace(self.training, optimizer="adam")

    def run(self, ctx: Context) -> str:
        from ..training import train_checkpoint, train_zoo_model

        if self.zoo:
            return f"wrote {train_zoo_model(self.zoo, self.out)}"
        path, card = train_checkpoint(self.arch, self.training, self.inputs.dataset, self.out)
        return f"wrote {path} (validation accuracy {100 * card.metrics['clean']['accuracy']:.2f}%)"


@command("report", "rebuild report.html and report.md from a results folder's summary.json (any command's)",
         "robustmix report runs/sweep      # then open runs/sweep/report.html")
class ReportCommand(Command):
    folder: str = option(".", "a folder written by a robustmix command (it holds summary.json)", positional=True)

    def check(self):
        folder = Path(self.folder)
        if not folder.is_dir():
            raise ConfigError(f"{folder} {'is a file, not a folder' if folder.exists() else 'not found'}: give the "
                              "--out folder of a robustmix command")
        if not (folder / "summary.json").is_file():
            raise ConfigError(f"{folder} holds no summary.json (expected the summary every robustmix command writes "
                              "into its --out folder when it finishes); finish or rerun that command first")
        check_writable(folder, "report folder")

    def run(self, ctx: Context) -> str:
        from ..reports import terminal_summary, write_report
        from ..results import load_summary

        summary = load_summary(Path(self.folder) / "summary.json")
        paths = write_report(summary, self.folder)
        return f"{terminal_summary(summary)}\n\nreport: {paths['html']}"


@command("list", "list zoo models (with their clean accuracy) and architectures", "robustmix list 'fmnist-*'")
class ListCommand(Command):
    pattern: str = option("*", "shell-style pattern of names", positional=True)

    def run(self, ctx: Context) -> str:
        import fnmatch

        from ..models import card, list_models
        from ..models.weights import ALIASES

        lines = []
        for name in list_models(self.pattern, pretrained=True):
            acc = card(name).metrics.get("clean", {}).get("accuracy")
            lines.append(f"{name:26s} {card(name).recipe:10s} clean {100 * acc:.2f}%" if acc is not None else name)
        lines += [f"{name:26s} (architecture)" for name in list_models(self.pattern, pretrained=False)]
        lines += [f"{name:26s} (architecture: {arch} with {', '.join(f'{k}={v}' for k, v in kw.items())}; "
                  f"{name}@WEIGHTS.pt)"
                  for name, (arch, kw) in ALIASES.items() if fnmatch.fnmatch(name, self.pattern)]
        if not lines:
            raise ConfigError(f"no model or architecture matches {self.pattern!r}; 'robustmix list' lists them all")
        return "\n".join(lines)
