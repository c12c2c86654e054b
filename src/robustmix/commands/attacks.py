"""Commands that attack a mixture: sweep (Fig. 2, Table I), tradeoff (Fig. 1, 4), attack, evaluate (worst case)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import ClassVar

from .._config import group, option
from .._validation import check_alpha
from ..errors import ConfigError
from ..experiments.attack_eval import AttackConfig, run_attack_eval, summarize_attack
from ..experiments.evaluate_run import EvaluateConfig, run_evaluate
from ..experiments.runner import Records, is_main_process
from ..experiments.sweep import SweepConfig, run_sweep
from ..experiments.tradeoff import TradeoffConfig, run_tradeoff
from ..results import Summary
from .common import (Command, Context, Data, Models, Output, check_writable, command, load_data, load_examples,
                     load_model, records_in, split_size)

logger = logging.getLogger(__name__)


@command("sweep", "alpha sweep: clean, STD-, ROB- and MIX-attacked accuracy for every alpha (Fig. 2, Table I)",
         "robustmix sweep --std fmnist-std-cnn --rob fmnist-at-linf-cnn -n 1000 --eps 0.1 --out runs/sweep\n"
         "robustmix sweep --std mypkg.models:standard --rob ckpt/robust.safetensors --dataset cifar10 --eps 0.0314")
class SweepCommand(Command):
    models: Models = group(Models)
    inputs: Data = group(Data)
    sweep: SweepConfig = group(SweepConfig)
    output: Output = group(Output)

    def run(self, ctx: Context) -> Summary:
        x, y, g, h = load_examples(self, ctx)
        return run_sweep(g, h, x, y, self.sweep, records=records_in(self, ctx))


@command("tradeoff", "trade-off curves of eq. (3) for each R_i, logits vs probabilities (Fig. 1, Fig. 4)",
         "robustmix tradeoff --std fmnist-std-cnn --rob fmnist-trades-linf-cnn --steps 20 -n 100 --out runs/fig4a")
class TradeoffCommand(Command):
    models: Models = group(Models)
    inputs: Data = group(Data)
    tradeoff: TradeoffConfig = group(TradeoffConfig)
    output: Output = group(Output)

    def run(self, ctx: Context) -> Summary:
        x, y, g, h = load_examples(self, ctx)
        return run_tradeoff(g, h, x, y, self.tradeoff, records=records_in(self, ctx))


@command("attack", "attack the mixture at one alpha: PGD and/or AutoAttack (standard, rand, or Square only)",
         "robustmix attack --std fmnist-std-cnn --rob fmnist-at-linf-cnn --alpha 0.6 --autoattack standard -n 500")
class AttackCommand(Command):
    models: Models = group(Models)
    inputs: Data = group(Data)
    alpha: float = option(0.5, "weight of h in the mixture")
    attack: AttackConfig = group(AttackConfig)
    output: Output = group(Output)

    def check(self):
        check_alpha(self.alpha)

    def run(self, ctx: Context) -> Summary:
        from ..mixing import MixedClassifier

        x, y, g, h = load_examples(self, ctx)
        records = run_attack_eval(MixedClassifier(g, h, self.alpha), x, y, self.attack,
                                  records=records_in(self, ctx, alpha=self.alpha))
        return summarize_attack(records, self.alpha, self.attack) if is_main_process() else None


@command("evaluate", "worst-case robust accuracy: an adaptive attack ensemble, per example, with a 95% interval",
         "robustmix evaluate --std fmnist-std-cnn --rob fmnist-at-linf-cnn --alpha 0.7 --norm linf --eps 0.1 -n 1000 "
         "--out runs/eval\n"
         "robustmix evaluate --model fmnist-at-linf-cnn --eps 0.1 -n 1000 --out runs/eval-h   # one model alone\n"
         "robustmix evaluate --model mixed.pt2 --indices picked.txt --out runs/eval-mix")
class EvaluateCommand(Command):
    EXCLUSIVE: ClassVar[tuple] = (("indices", "n"), ("model", "std"), ("model", "rob"), ("model", "alpha"))
    models: Models = group(Models)
    inputs: Data = group(Data)
    alpha: float = option(0.5, "weight of h in the mixture (not with --model)")
    model: str | None = option(None, "evaluate this one model instead of the mixture of --std and --rob (a zoo name, "
                                     "a checkpoint such as a saved mixer, an exported .pt2, ARCH@WEIGHTS.pt or module:function)")
    indices: str | None = option(None, "file of dataset indices to evaluate, one integer per line (instead of -n)")
    evaluation: EvaluateConfig = group(EvaluateConfig)
    save_adversarial_to: str | None = option(None, "write every example's worst-case input (the clean one where no "
                                                   "attack found an error), labels, indices, eps, norm and the "
                                                   "weights' SHA-256 to this .pt file; 'robustmix verify' re-checks it",
                                             flags=("--save-adversarial",), metavar="FILE.pt")
    output: Output = group(Output)

    def check(self):
        check_alpha(self.alpha)
        if self.save_adversarial_to:
            if self.inputs.data:
                raise ConfigError("--save-adversarial takes a named --dataset ('robustmix verify' re-reads its test "
                                  "images); evaluate --data without it")
            check_save_path(self.save_adversarial_to)
            self.evaluation = dataclasses.replace(self.evaluation, save_adversarial=True)

    def run(self, ctx: Context) -> Summary:
        from ..mixing import MixedClassifier

        data = self.inputs
        if self.indices:
            idx = read_indices(self.indices, split_size(data))
            x, y = load_data(data, idx)
        else:
            (x, y), idx = load_data(data), None
        if self.model:
            model, what = load_model(self.model, data, ctx, x), {"model": self.model}
        else:
            g, h = self.models.load(data, ctx, x)
            model, what = MixedClassifier(g, h, self.alpha), {**data.settings(self.models), "alpha": self.alpha}
        records = self.output.records_path
        summary = run_evaluate(model, x, y, self.evaluation, indices=idx, records=Records(
            records, {**what, "dataset": data.dataset, "split": data.split, **data.data_id()}, self.output.fresh,
            ctx.progress))
        if summary is not None and self.save_adversarial_to:
            save_adversarial(self, model, what, records, summary, idx if idx is not None else range(len(x)), y)
        return summary


def save_adversarial(cfg: EvaluateCommand, model, what: dict, records_path, summary, indices, labels) -> None:
    """One file that anyone can re-check (``robustmix verify``): inputs, labels, threat model, weights' SHA-256."""
    import torch

    from .._io import weights_digest
    from ..attacks.saved import SavedEvaluation
    from ..experiments.evaluate_run import collect_adversarial, evaluation_fields
    from ..experiments.runner import read_records

    robust = {r["index"]: bool(r["robust"]) for r in read_records(records_path)[1]}
    idx = [int(i) for i in indices]
    SavedEvaluation(x_adv=collect_adversarial(records_path, idx), labels=labels.cpu().clone(),
                    indices=torch.tensor(idx), robust=torch.tensor([robust[i] for i in idx]),
                    eps=float(cfg.evaluation.threat.eps), norm=cfg.evaluation.threat.norm, dataset=cfg.inputs.dataset,
                    split=cfg.inputs.split, model=what,
                    weights_sha256=weights_digest(model), accuracy=summary.accuracy,
                    evaluation={**evaluation_fields(summary), "clean_accuracy": summary.clean_accuracy},
                    file=cfg.save_adversarial_to).save(cfg.save_adversarial_to)
    logger.info("wrote the %d worst-case inputs to %s; re-check them with 'robustmix verify %s'", len(idx),
                cfg.save_adversarial_to, cfg.save_adversarial_to)


def check_save_path(path: str) -> None:
    """Refuse --save-adversarial before any work: a folder, or a file whose folder cannot be written.  An existing
    file is written over at the end: it is rebuilt from the run's records, so a resumed run rewrites it."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"--save-adversarial {path} is a folder; give a file name such as {p / 'adversarial.pt'}")
    check_writable(p.parent, f"--save-adversarial {path}: the folder")


def read_indices(path: str, size: int):
    """Dataset indices from a file, one integer per line; every mistake named with its line."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--indices {path} not found; give a file with one test-set index per line")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ConfigError(f"--indices {path} is not a text file; write one integer per line") from None
    out = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"--indices {path} line {number}: {text[:20]!r} is not an integer; write one index "
                              "per line") from None
        if not 0 <= value < size:
            raise ConfigError(f"--indices {path} line {number}: {value} is outside the split's 0..{size - 1}")
        out.append(value)
    if not out:
        raise ConfigError(f"--indices {path} holds no indices; write one integer per line")
    if len(set(out)) != len(out):
        raise ConfigError(f"--indices {path} lists an index twice; give each index once")
    return torch.tensor(out)
