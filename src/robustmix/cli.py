"""The ``robustmix`` command line.  The only place that reads argv, sets up logging and picks exit codes."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from ._io import write_json
from ._validation import check_alpha
from .experiments.runner import is_main_process
from .errors import ConfigError, RobustMixError

logger = logging.getLogger("robustmix")

EXAMPLES = {
    "demo": "robustmix demo                 # the paper on the shipped Fashion-MNIST zoo (about 15 min on 2 cores)\n"
            "  robustmix demo --quick --out /tmp/rm   # a smaller run (2-3 min)",
    "sweep": "robustmix sweep --std fmnist-std-cnn --rob fmnist-at-linf-cnn --num-examples 1000 --eps 0.1 --out runs/sweep\n"
             "  robustmix sweep --std mypkg.models:standard --rob ckpt/robust.safetensors --dataset cifar10 "
             "--eps 0.0314",
    "tradeoff": "robustmix tradeoff --std fmnist-std-cnn --rob fmnist-trades-linf-cnn --steps 20 --num-examples 100 --out runs/fig4a",
    "evaluate": "robustmix evaluate --std fmnist-std-cnn --rob fmnist-at-linf-cnn --alpha 0.7 --norm linf --eps 0.1 "
                "-n 1000 --out runs/eval\n"
                "  robustmix evaluate --model fmnist-at-linf-cnn --eps 0.1 -n 1000 --out runs/eval-h   # one model alone\n"
                "  robustmix evaluate --model mixed.safetensors --indices picked.txt --out runs/eval-mix",
    "pareto": "robustmix pareto --std fmnist-std-cnn --rob fmnist-at-linf-cnn --eps 0.1 --out results/pareto-linf\n"
              "  robustmix pareto --rob fmnist-at-l2-cnn --norm 2 --eps 1.5 --n-headline 500 --out results/pareto-l2",
    "attack": "robustmix attack --std fmnist-std-cnn --rob fmnist-at-linf-cnn --alpha 0.6 --autoattack standard --num-examples 500",
    "certify": "robustmix certify --std fmnist-std-cnn --rob fmnist-noise-0.50-cnn --sigma 0.5 --num-examples 500 --out runs/rs\n"
               "  robustmix certify --std fmnist-std-cnn --rob fmnist-lipschitz --lipschitz --out runs/lip",
    "fig3": "robustmix fig3 --rob fmnist-noise-0.50-cnn --sigma 0.5 --baseline fmnist-noise-0.25-cnn "
            "--baseline-sigma 0.25 --lipschitz-model fmnist-lipschitz -n 500 --out results/fig3",
    "train": "robustmix train --zoo fmnist-at-linf-cnn --out my-zoo\n"
             "  robustmix train --arch cnn-small --recipe trades --eps 0.1 --epochs 6 --out ckpt/trades",
    "calibrate": "robustmix calibrate --objective clean --target 0.90 --num-examples 1000      # most robust alpha with >= 90% clean\n"
                 "  robustmix calibrate --objective robust --target 0.60 --num-examples 1000   # most accurate alpha with >= 60% PGD\n"
                 "  robustmix calibrate --objective certified --rob fmnist-noise-0.50-cnn --sigma 0.5 --radius 0.5",
    "mix": "robustmix mix --std fmnist-std-cnn --rob fmnist-at-linf-cnn --alpha 0.6 --out mixed.safetensors "
           "--export mixed.pt2",
    "report": "robustmix report runs/demo      # rebuild report.html / report.md from summary.json",
    "list": "robustmix list 'fmnist-*'",
}


class UsageError(Exception):
    """A command-line mistake, reported as one line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="robustmix", description="Mix a standard and a robust classifier: "
                 "log((1 - alpha) softmax(g) + alpha softmax(h)); attack it, certify it, report it.")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    ap.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    ap.add_argument("--device", default="auto", help="where models run: auto (a GPU when there is one), cpu, cuda, "
                    "cuda:1, ...; inputs follow the models")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add(name, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text, epilog="examples:\n  " + EXAMPLES[name],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--config", help="YAML file of settings (keys as the long option names); flags typed on the "
                       "command line win over it")
        if name not in ("report", "list", "mix", "train"):
            p.add_argument("--fresh", action="store_true",
                           help="move earlier records in --out aside and start over (instead of resuming)")
        return p

    def models_and_data(p, rob_default="fmnist-at-linf-cnn"):
        p.add_argument("--std", default="fmnist-std-cnn",
                       help="standard model g: zoo name, .safetensors checkpoint, module:function, robustbench:NAME")
        p.add_argument("--rob", default=rob_default, help="robust model h (same forms as --std)")
        p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist, mnist, cifar10, cifar100")
        p.add_argument("--data-root", help="folder with the dataset files (default: $ROBUSTMIX_DATA, known places)")
        p.add_argument("--split", default="test", choices=["train", "val", "test"])
        p.add_argument("-n", "--num-examples", dest="n", type=int, default=1000,
                       help="number of examples (from the start of the split)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--out", default=None, help="output folder (records, JSON, plots)")

    p = add("demo", "run the offline end-to-end demo and write a report")
    p.add_argument("--quick", action="store_true", help="smaller settings, 2-3 minutes on 2 cores")
    p.add_argument("--out", default="robustmix-demo", help="output folder (default: robustmix-demo)")

    p = add("sweep", "alpha sweep: clean, STD-, ROB- and MIX-attacked accuracy for every alpha (Fig. 2, Table I)")
    models_and_data(p)
    p.add_argument("--alphas", type=float, nargs="+", default=[round(0.1 * i, 2) for i in range(11)])
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--norm", default="inf", help="inf or 2")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--restarts", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--early-stop", action="store_true", help="stop attacking points once misclassified")

    p = add("tradeoff", "trade-off curves of eq. (3) for each R_i, logits vs probabilities (Fig. 1, Fig. 4)")
    models_and_data(p)
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--norm", default="inf")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--gammas", type=float, nargs="+", default=None)
    p.add_argument("--trusts", nargs="+", default=["one", "grad_std", "grad_max_std", "grad_ratio"])
    p.add_argument("--batch-size", type=int, default=100)

    p = add("evaluate", "worst-case robust accuracy: an adaptive attack ensemble, per example, with a 95% interval")
    models_and_data(p)
    p.add_argument("--alpha", type=float, default=0.5, help="weight of h in the mixture (ignored with --model)")
    p.add_argument("--model", help="evaluate this model instead of the mixture of --std and --rob (a zoo name, a "
                   "checkpoint, e.g. a saved nonlinear or adaptive mixer, or module:function)")
    p.add_argument("--norm", default="inf", help="inf (linf) or 2 (l2)")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--indices", help="file of test-set indices to evaluate, one integer per line (instead of -n)")
    p.add_argument("--attacks", nargs="+", help="ensemble members or patterns (default: all; e.g. 'aa-*')")
    p.add_argument("--steps", type=int, default=100, help="iterations of each APGD member")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--no-diagnostics", action="store_true", help="skip the gradient-masking checks")

    p = add("pareto", "linear, nonlinear (MixedNUTS) and adaptive mixers on one accuracy-robustness front")
    p.add_argument("--std", default="fmnist-std-cnn", help="standard model g")
    p.add_argument("--rob", default="fmnist-at-linf-cnn", help="robust model h")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-root")
    p.add_argument("--norm", default="inf")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--n-curve", type=int, default=1000, help="test images per curve point (cheaper attack)")
    p.add_argument("--n-headline", type=int, default=1000, help="test images per headline point (full ensemble)")
    p.add_argument("--n-val", type=int, default=1000, help="validation images for the calibration")
    p.add_argument("--n-train", type=int, default=10_000, help="training images for the adaptive mixer")
    p.add_argument("--std-map", choices=["softmax", "onehot"], default="softmax")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)

    p = add("attack", "attack the mixture at one alpha: PGD and/or AutoAttack (standard, rand, or Square only)")
    models_and_data(p)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--norm", default="inf")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--restarts", type=int, default=1)
    p.add_argument("--autoattack", choices=["none", "standard", "rand", "plus", "square"], default="standard")
    p.add_argument("--batch-size", type=int, default=250)

    p = add("certify", "certified radii and accuracy curves (Theorems 1 and 2, Fig. 3)")
    models_and_data(p, rob_default="fmnist-noise-0.50-cnn")
    p.add_argument("--sigma", type=float, help="smoothing noise of the robust base model (randomized smoothing)")
    p.add_argument("--lipschitz", action="store_true", help="h has a known Lipschitz bound (e.g. fmnist-lipschitz)")
    p.add_argument("--alphas", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--delta", type=float, default=0.001)
    p.add_argument("--sound", action="store_true", help="sound certificates that hold with probability 1 - delta: "
                   "selection samples, one Clopper-Pearson bound on the selected class (Cohen et al.'s CERTIFY at "
                   "alpha = 1), Theorem 2 for the mixture; abstains when unsure")
    p.add_argument("--sequential", action="store_true", help="with --sound: sample in rounds and stop each input once "
                   "its certificate is settled (alpha spending keeps 1 - delta); the mixture's clean accuracy then "
                   "comes from h's mean over each input's own, smaller sample")
    p.add_argument("--tolerance", type=float, help="with --sequential: l2 radius an input may leave on the table "
                   "(default 0.1; inf: only --radii steer stopping)")
    p.add_argument("--radii", type=float, nargs="+", help="with --sequential: the radii you will report, e.g. 0.25 0.5 "
                   "0.75 1.0 (sampling continues while a radius may cross one; radii past the largest are not pursued)")

    p = add("fig3", "Fig. 3: certified accuracy of the mixture vs a smaller-sigma smoothed baseline of equal clean accuracy")
    models_and_data(p, rob_default="fmnist-noise-0.50-cnn")
    p.add_argument("--sigma", type=float, default=0.5, help="smoothing noise of --rob")
    p.add_argument("--baseline", default="fmnist-noise-0.25-cnn", help="base model of the smoothed baseline")
    p.add_argument("--baseline-sigma", type=float, default=0.25)
    p.add_argument("--lipschitz-model", default=None, help="optional h with a known Lipschitz bound (Theorem 1)")
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--delta", type=float, default=0.001)

    p = add("train", "train a model with a recipe (or rerun a zoo recipe)")
    p.add_argument("--zoo", help="rerun the recipe of this zoo model")
    p.add_argument("--arch", default="cnn-small")
    p.add_argument("--recipe", default="standard", help="standard, pgd, fgsm, trades, noise, lipschitz")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--norm", default="inf")
    p.add_argument("--sigma", type=float, default=0.25)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=False, help="output folder (zoo) or checkpoint path")

    p = add("calibrate", "choose alpha on the validation split, then confirm on the test split")
    models_and_data(p)
    p.add_argument("--mixer", choices=["linear", "nonlinear", "adaptive"], default="linear",
                   help="linear (the paper's alpha), nonlinear (MixedNUTS map of h's logits) or adaptive (alpha per input)")
    p.add_argument("--objective", choices=["clean", "robust", "certified"], default="clean")
    p.add_argument("--target", type=float, help="target clean (objective clean) or attacked (robust) accuracy")
    p.add_argument("--alphas", type=float, nargs="+", default=[round(0.05 * i, 2) for i in range(21)])
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--norm", default="inf")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--sigma", type=float, help="certified objective: smoothing sigma of --rob")
    p.add_argument("--radius", type=float, default=0.5, help="certified objective: l2 radius")
    p.add_argument("--samples", type=int, default=1000, help="certified objective: noise samples per image")

    p = add("mix", "save the mixed classifier as one checkpoint (and optionally TorchScript)")
    p.add_argument("--std", default="fmnist-std-cnn")
    p.add_argument("--rob", default="fmnist-at-linf-cnn")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--alpha", type=float, required=True)
    p.add_argument("--mixer", choices=["linear", "nonlinear"], default="linear",
                   help="linear (eq. 4) or nonlinear (MixedNUTS map of h's logits; an adaptive mixer is saved by "
                        "'calibrate --mixer adaptive')")
    p.add_argument("--scale", type=float, default=1.0, help="nonlinear: scale of the map")
    p.add_argument("--power", type=float, default=1.0, help="nonlinear: power of the map")
    p.add_argument("--bias", type=float, default=0.0, help="nonlinear: bias added after the layer norm")
    p.add_argument("--top-k", type=int, default=None, help="nonlinear: layer norm over the k largest logits")
    p.add_argument("--std-map", choices=["softmax", "onehot"], default="softmax", help="nonlinear: g's probabilities")
    p.add_argument("--out", required=True, help="checkpoint path (.safetensors)")
    p.add_argument("--export", help="also write a torch.export program (.pt2), loadable with torch.export.load")
    p.add_argument("--onnx", help="also write an ONNX file (needs the onnx package)")

    p = add("report", "rebuild the report from a results folder's summary.json")
    p.add_argument("folder")

    p = add("list", "list zoo models and architectures")
    p.add_argument("pattern", nargs="?", default="*")
    return ap


def _subparser(parser, command):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command]


def _config_tokens(path: Path, sub: argparse.ArgumentParser, command: str) -> list[str]:
    """A YAML settings file as command-line tokens, so argparse checks its values like typed flags."""
    import yaml

    if not path.is_file():
        raise ConfigError(f"config file {path} not found" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path} is not a valid YAML file ({' '.join(str(exc).split())[:120]}); write one "
                          "'option: value' per line") from None
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of option names to values, e.g. 'eps: 0.1'")
    options = {a.dest: a for a in sub._actions if a.option_strings}
    tokens = []
    for key, value in data.items():
        action = options.get(str(key).replace("-", "_"))
        if action is None or action.dest in ("config", "help"):
            raise ConfigError(f"unknown setting {key!r} in {path}; see 'robustmix {command} --help'")
        flag = max(action.option_strings, key=len)
        if isinstance(action, argparse._StoreTrueAction):
            if not isinstance(value, bool):
                raise ConfigError(f"setting {key!r} in {path} must be true or false, got {value!r}")
            tokens += [flag] if value else []
        elif isinstance(value, list):
            if action.nargs not in ("+", "*"):
                raise ConfigError(f"setting {key!r} in {path} takes one value, got a list")
            tokens += [flag] + [str(v) for v in value]
        elif isinstance(value, (dict, bool)) or value is None:
            raise ConfigError(f"setting {key!r} in {path} has the wrong type ({value!r}); see 'robustmix {command} "
                              "--help'")
        else:
            tokens += [flag, str(value)]
    return tokens


def parse_args(argv=None) -> argparse.Namespace:
    """Parse with precedence defaults < YAML (--config) < flags typed on the command line."""
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if not getattr(args, "config", None):
        return args
    at = argv.index(args.command)
    tokens = _config_tokens(Path(args.config), _subparser(parser, args.command), args.command)
    return parser.parse_args(argv[:at + 1] + tokens + argv[at + 1:])


def _check_out(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file; give a folder for the results")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {path} is not writable; choose a folder you can write to")
    return path


def _data(args):
    from .data import load_dataset

    if args.n <= 0:
        raise ConfigError(f"--num-examples must be positive, got {args.n}")
    x, y = load_dataset(args.dataset, args.split, args.data_root)
    if args.n > len(x):
        raise ConfigError(f"--num-examples {args.n} is more than the {len(x)} examples of {args.dataset} {args.split}")
    return x[:args.n], y[:args.n]


def _models(args):
    from .data import dataset_info
    from .models import resolve_model

    info = dataset_info(args.dataset)
    return tuple(_checked_model(resolve_model(spec, info.name), spec, info) for spec in (args.std, args.rob))


_DEVICE = "auto"


def _device():
    import torch

    if _DEVICE == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(_DEVICE)
    except RuntimeError:
        raise ConfigError(f"--device {_DEVICE!r} is not a device: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda but no GPU is visible to PyTorch; use --device cpu")
    return device


def _checked_model(model, spec, info):
    """Move the model to --device and refuse it if its output is not (n, classes) logits on this data set."""
    import torch

    from .errors import ModelError

    model = model.to(_device())
    probe = torch.rand(2, *info.shape)
    with torch.no_grad():
        try:
            out = model(probe.to(next(iter(model.parameters()), probe).device))
        except Exception as exc:  # noqa: BLE001  (a user's model may raise anything on the wrong input shape)
            raise ModelError(f"model {spec!r} fails on {info.name} inputs of shape {tuple(info.shape)} "
                             f"({type(exc).__name__}: {exc}); give a model for this data set") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, info.num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"model {spec!r} returns {shape} for 2 inputs; robustmix needs (n, {info.num_classes}) "
                         "logits over the data set's classes")
    return model


def _out(args, default: str) -> Path:
    return _check_out(Path(args.out or default))


def _settings(args) -> dict:
    return {k: v for k, v in vars(args).items() if k not in ("func", "config", "fresh", "verbose", "debug")}


def _save_run(summary, out: Path, args) -> None:
    """A finished run's typed summary and the settings it ran with (written only after it succeeded)."""
    summary.save(out / "summary.json")
    write_json(out / "settings.json", _settings(args))


def _data_settings(args) -> dict:
    return {"std": args.std, "rob": args.rob, "dataset": args.dataset, "split": args.split}


def cmd_demo(args) -> int:
    from .experiments.demo import DemoSettings, run_demo
    from .reports import terminal_summary, write_report

    settings = DemoSettings.quick() if args.quick else DemoSettings()
    out = _check_out(Path(args.out))
    t0 = time.perf_counter()
    summary = run_demo(out, settings, progress=True, fresh=args.fresh)
    paths = write_report(summary, out)
    print(terminal_summary(summary))
    print(f"\nreport: {paths['html']}  ({time.perf_counter() - t0:.0f} s)")
    return 0


def cmd_sweep(args) -> int:
    from .experiments import SweepConfig, run_sweep
    from .reports import plot_sweep
    from .reports.report import sweep_table, table1_rows, text_table

    out = _out(args, "runs/sweep")
    cfg = SweepConfig(alphas=args.alphas, eps=args.eps, norm=args.norm, steps=args.steps, restarts=args.restarts,
                      batch_size=args.batch_size, seed=args.seed, early_stop=args.early_stop)
    x, y = _data(args)
    g, h = _models(args)
    summary = run_sweep(g, h, x, y, cfg, records_path=out / "records.jsonl", settings=_data_settings(args),
                        fresh=args.fresh)
    if not is_main_process():
        return 0
    _save_run(summary, out, args)
    plot_sweep(summary, out / "fig2_alpha_sweep")
    print(text_table(sweep_table(summary)) + "\n\nTable I\n" + text_table(table1_rows(summary.table1)))
    print(f"\nn = {summary.n}; wrote {out}/summary.json, fig2_alpha_sweep.png, records.jsonl")
    return 0


def cmd_tradeoff(args) -> int:
    from .experiments import TradeoffConfig, run_tradeoff
    from .reports import plot_tradeoff

    out = _out(args, "runs/tradeoff")
    kwargs = {"gammas": args.gammas} if args.gammas else {}
    cfg = TradeoffConfig(trusts=args.trusts, eps=args.eps, norm=args.norm, steps=args.steps,
                         batch_size=args.batch_size, seed=args.seed, **kwargs)
    x, y = _data(args)
    g, h = _models(args)
    summary = run_tradeoff(g, h, x, y, cfg, records_path=out / "records.jsonl", settings=_data_settings(args),
                           fresh=args.fresh)
    if not is_main_process():
        return 0
    _save_run(summary, out, args)
    plot_tradeoff(summary, out / "tradeoff")
    for name, c in summary.curves.items():
        print(f"{name:24s} clean {' '.join(f'{100 * v:5.1f}' for v in c['clean'])}")
        print(f"{'':24s} adv   {' '.join(f'{100 * v:5.1f}' for v in c['attacked'])}")
    print(f"\nn = {summary.n}; wrote {out}/summary.json, tradeoff.png")
    return 0


def cmd_attack(args) -> int:
    from .experiments.attack_eval import AttackConfig, run_attack_eval, summarize_attack
    from .mixing import MixedClassifier

    check_alpha(args.alpha)
    cfg = AttackConfig(eps=args.eps, norm=args.norm, steps=args.steps, restarts=args.restarts,
                       autoattack=args.autoattack, batch_size=args.batch_size, seed=args.seed)
    out = _out(args, "runs/attack")
    x, y = _data(args)
    g, h = _models(args)
    mixed = MixedClassifier(g, h, args.alpha)
    records = run_attack_eval(mixed, x, y, cfg, records_path=out / "records.jsonl",
                              settings={**_data_settings(args), "alpha": args.alpha}, fresh=args.fresh)
    if not is_main_process():
        return 0
    summary = summarize_attack(records, args.alpha, cfg)
    _save_run(summary, out, args)
    for key, value in summary.accuracy.items():
        lo, hi = summary.ci95[key]
        print(f"{key:10s} {100 * value:5.1f}%  95% CI [{100 * lo:.1f}, {100 * hi:.1f}]  n = {summary.n}")
    for w in summary.autoattack_warnings:
        print(f"AutoAttack warning: {w}")
    return 0


def _indices(path: str, size: int):
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


def cmd_evaluate(args) -> int:
    from .data import dataset_info, load_dataset
    from .experiments.evaluate_run import EvaluateConfig, run_evaluate
    from .mixing import MixedClassifier
    from .models import resolve_model

    cfg = EvaluateConfig(norm=args.norm, eps=args.eps, seed=args.seed, attacks=args.attacks, steps=args.steps,
                         batch_size=args.batch_size, diagnostics=not args.no_diagnostics)
    out = _out(args, "runs/evaluate")
    info = dataset_info(args.dataset)
    if args.model:
        model = _checked_model(resolve_model(args.model, info.name), args.model, info)
        what = {"model": args.model}
    else:
        check_alpha(args.alpha)
        g, h = _models(args)
        model, what = MixedClassifier(g, h, args.alpha), {**_data_settings(args), "alpha": args.alpha}
    if args.indices:
        x_all, y_all = load_dataset(args.dataset, args.split, args.data_root)
        idx = _indices(args.indices, len(x_all))
        x, y = x_all[idx], y_all[idx]
    else:
        x, y = _data(args)
        idx = None
    summary = run_evaluate(model, x, y, cfg, indices=idx, records_path=out / "records.jsonl",
                           settings={**what, "dataset": info.name, "split": args.split}, fresh=args.fresh)
    if not is_main_process():
        return 0
    _save_run(summary, out, args)
    lo, hi = summary.ci95
    print(f"robust accuracy {100 * summary.accuracy:.1f}%  95% CI [{100 * lo:.1f}, {100 * hi:.1f}]  n = {summary.n}"
          f"  (clean {100 * summary.clean_accuracy:.1f}%)")
    print(f"{'member':28s} {'ran on':>7s} {'broke':>6s} {'seconds':>8s}")
    for row in summary.per_attack:
        print(f"{row['name']:28s} {row['ran_on']:7d} {row['broke']:6d} {row['seconds']:8.1f}")
    d = summary.diagnostics
    if d["suspected"]:
        print(f"gradient-masking warning: Square-only errors {d['square_only']}, accuracy not falling with eps "
              f"{d['eps_not_decreasing']}, unbounded eps not reaching 0% {d['unbounded_not_zero']}")
    print(f"wrote {out}/summary.json, records.jsonl")
    return 0


def cmd_pareto(args) -> int:
    from .data import load_dataset
    from .experiments.pareto import ParetoSettings, run_pareto
    from .reports import write_report

    s = ParetoSettings(std=args.std, rob=args.rob, norm=args.norm, eps=args.eps, n_curve=args.n_curve,
                       n_headline=args.n_headline, n_val=args.n_val, n_train=args.n_train, std_map=args.std_map,
                       batch_size=args.batch_size, seed=args.seed)
    for flag in ("n_curve", "n_headline", "n_val", "n_train"):
        if getattr(args, flag) <= 0:
            raise ConfigError(f"--{flag.replace('_', '-')} must be positive")
    out = _out(args, "runs/pareto")
    g, h = _models(args)
    sizes = {"train": args.n_train, "val": args.n_val, "test": max(args.n_curve, args.n_headline)}
    splits = {k: tuple(t[:n] for t in load_dataset(args.dataset, k, args.data_root)) for k, n in sizes.items()}
    device = next(g.parameters()).device
    summary = run_pareto(g, h, splits, s, out, fresh=args.fresh)
    write_json(out / "settings.json", _settings(args))
    paths = write_report({"pareto": summary.to_dict()}, out)
    for p in summary.headline:
        print(f"{p['name']:10s} clean {100 * p['clean']:5.1f}%  worst-case {100 * p['robust']:5.1f}% "
              f"[{100 * p['robust_ci95'][0]:.1f}, {100 * p['robust_ci95'][1]:.1f}]  n = {p['n']}")
    print(f"report: {paths['html']} (device {device})")
    return 0


def cmd_certify(args) -> int:
    from .certify import probability_lipschitz
    from .experiments import CertifyConfig, CertifySummary, certified_curve, run_certify
    from .experiments.certified import sound_curve
    from .reports import plot_certified

    if bool(args.sigma) == bool(args.lipschitz):
        raise ConfigError("give exactly one of --sigma SIGMA (smoothed h) or --lipschitz (h with a known bound)")
    out = _out(args, "runs/certify")
    check_alpha(args.alphas)
    if (args.sequential or args.radii) and not (args.sound and args.sigma):
        raise ConfigError("--sequential and --radii apply to the tight sound certificate: add --sound (with --sigma)")
    if args.radii and not args.sequential:
        raise ConfigError("--radii steers sequential sampling: add --sequential")
    if args.tolerance is not None and not args.sequential:
        raise ConfigError("--tolerance applies to sequential sampling: add --sequential")
    sound = bool(args.sound and args.sigma)
    cfg = CertifyConfig(sigma=args.sigma, num_samples=args.samples, delta=args.delta, seed=args.seed,
                        sound_alphas=list(args.alphas) if sound else None, sound_only=sound,
                        sequential=args.sequential, radii=args.radii,
                        **({} if args.tolerance is None else {"tolerance": args.tolerance}))
    x, y = _data(args)
    g, h = _models(args)
    records = run_certify(g, h, x, y, cfg, records_path=out / "records.jsonl", settings=_data_settings(args),
                          fresh=args.fresh)
    if not is_main_process():
        return 0
    g.cpu(), h.cpu()
    grid = sorted({round(0.05 * i, 3) for i in range(41)} | set(args.radii or []))   # the reported radii exactly
    curves = {}
    if args.lipschitz:
        lip = probability_lipschitz(h, 2, getattr(h, "input_shape", None) or tuple(x.shape[1:]))
        curves["theorem1"] = certified_curve(records, args.alphas, grid, theorem=1, lipschitz=lip)
    elif args.sound:  # the tight sound certificate of Theorem 2 (Cohen-style, one bound with all of delta)
        per_alpha = [sound_curve(records, cfg.sound_alphas, a, grid) for a in cfg.sound_alphas]
        curves["theorem2"] = {"clean": [c["clean"][0] for c in per_alpha],
                              "certified": [c["certified"][0] for c in per_alpha]}
    else:
        for thm in (1, 2):
            curves[f"theorem{thm}"] = certified_curve(records, args.alphas, grid, theorem=thm, sigma=args.sigma)
    summary = CertifySummary(n=len(records), alphas=list(args.alphas), grid=grid,
                             curves={k: {"clean": c["clean"], "certified": c["certified"]} for k, c in curves.items()},
                             settings=_settings(args))
    _save_run(summary, out, args)
    for key, c in summary.curves.items():
        plot_certified({f"alpha={a:.2f}": {"grid": grid, "certified": c["certified"][i], "clean": c["clean"][i]}
                        for i, a in enumerate(summary.alphas)}, out / f"certified_{key}", f"Certified accuracy, {key}")
        for i, a in enumerate(summary.alphas):
            print(f"{key} alpha={a:.2f}: clean {100 * c['clean'][i]:.1f}%  certified@0.5 "
                  f"{100 * summary.certified_at(key, a, 0.5):.1f}%  @1.0 {100 * summary.certified_at(key, a, 1.0):.1f}%")
    if args.radii:
        for a in summary.alphas:
            shown = "  ".join(f"@{r:g} {100 * summary.certified_at('theorem2', a, r):.1f}%" for r in args.radii)
            print(f"theorem2 alpha={a:.2f}: certified {shown} (sampling steered by --radii: the curve between and "
                  "beyond them is a lower bound)")
    if sound:
        used = sum(r["sound"]["samples"] for r in records) / len(records)
        print(f"noise samples per image (selection + estimation): {used:,.0f}")
    print(f"\nn = {summary.n}; wrote {out}/summary.json and plots")
    return 0


def cmd_fig3(args) -> int:
    from .data import dataset_info
    from .experiments.certified import CertifyConfig, run_fig3
    from .models import resolve_model
    from .reports import write_report

    CertifyConfig(sigma=args.sigma, num_samples=args.samples, delta=args.delta)
    CertifyConfig(sigma=args.baseline_sigma)
    if args.baseline_sigma >= args.sigma:
        raise ConfigError("--baseline-sigma should be smaller than --sigma (the paper's matched-accuracy baseline)")
    out = _out(args, "runs/fig3")
    x, y = _data(args)
    info = dataset_info(args.dataset)
    g, h = _models(args)
    base = _checked_model(resolve_model(args.baseline, info.name), args.baseline, info)
    lip = _checked_model(resolve_model(args.lipschitz_model, info.name), args.lipschitz_model, info) \
        if args.lipschitz_model else None
    result = run_fig3(g, h, args.sigma, base, args.baseline_sigma, lip, x, y, samples=args.samples, delta=args.delta,
                      seed=args.seed, records_dir=out, fresh=args.fresh,
                      settings={"std": args.std, "smooth": args.rob, "baseline": args.baseline,
                                "lip": args.lipschitz_model, "dataset": info.name, "split": args.split})
    summary = {"settings": {"smooth_sigma": args.sigma, "baseline_sigma": args.baseline_sigma,
                            "certify_samples": args.samples, "certify_delta": args.delta},
               "certified": result}
    write_json(out / "summary.json", summary)
    write_json(out / "settings.json", _settings(args))
    paths = write_report(summary, out)
    rs = result["rs"]
    print(f"alpha = {rs['alpha']:.2f} matches the baseline's clean accuracy {100 * rs['baseline_clean']:.1f}%")
    print(f"report: {paths['html']}")
    return 0


def cmd_train(args) -> int:
    from .training import TrainConfig, train_checkpoint, train_zoo_model

    if args.zoo:
        print(f"wrote {train_zoo_model(args.zoo, args.out)}")
        return 0
    if not args.out:
        raise ConfigError("--out PATH is required (where to write the checkpoint)")
    cfg = TrainConfig(args.recipe, epochs=args.epochs, eps=args.eps, norm=args.norm, sigma=args.sigma, lr=args.lr,
                      seed=args.seed, optimizer="adam" if args.recipe == "lipschitz" else "sgd")
    path, card = train_checkpoint(args.arch, cfg, args.dataset, args.out)
    print(f"wrote {path} (validation accuracy {100 * card.metrics['clean']['accuracy']:.2f}%)")
    return 0


def cmd_calibrate(args) -> int:
    from .data import load_dataset
    from .experiments.calibrate import CalibrateSettings, run_calibration

    cal = CalibrateSettings(objective=args.objective, target=args.target, alphas=args.alphas, eps=args.eps,
                            norm=args.norm, steps=args.steps, sigma=args.sigma, radius=args.radius,
                            samples=args.samples, seed=args.seed, mixer=args.mixer)
    out = _out(args, "runs/calibrate")
    g, h = _models(args)
    if args.n <= 0:
        raise ConfigError(f"--num-examples must be positive, got {args.n}")
    splits = {split: tuple(t[:args.n if split != "train" else 10 * args.n]
                           for t in load_dataset(args.dataset, split, args.data_root))
              for split in (("val", "test", "train") if args.mixer == "adaptive" else ("val", "test"))}
    summary = run_calibration(g, h, splits, cal, out, settings=_data_settings(args), fresh=args.fresh)
    summary.save(out / "calibration.json")
    write_json(out / "settings.json", _settings(args))
    c, t = summary.choice, summary.test
    what = "certified@%.2f" % args.radius if args.objective == "certified" else "robust"
    if c.get("alpha") is not None:
        print(f"{args.mixer} mixer, alpha = {c['alpha']:.3f} ({args.objective}, target {args.target}; "
              f"{'met' if c['feasible'] else 'NOT met, closest shown'} on validation)")
    print(f"test robust accuracy: {t['robust_attack']}")
    for name, d in (("validation", c["validation"]), ("test", t)):
        if not d:
            continue
        print(f"  {name:10s} clean {100 * d['clean']:.1f}% [{100 * d['clean_ci95'][0]:.1f}, "
              f"{100 * d['clean_ci95'][1]:.1f}]   {what} {100 * d['robust']:.1f}% "
              f"[{100 * d['robust_ci95'][0]:.1f}, {100 * d['robust_ci95'][1]:.1f}]  (n = {d['n']})")
    return 0


def cmd_mix(args) -> int:
    import torch

    from .data import dataset_info
    from .experiments.export import export_onnx, export_program, save_mixer
    from .models import load

    check_alpha(args.alpha)
    info = dataset_info(args.dataset)
    for flag, target in (("--export", args.export), ("--onnx", args.onnx)):
        if target and Path(target).is_dir():
            raise ConfigError(f"{flag} {target} is a folder; give a file name such as {Path(target) / 'mixed.pt2'}")
    g, h = _models(args)
    if args.mixer == "nonlinear":
        from .mixing import NonlinearMixedClassifier

        mixer = NonlinearMixedClassifier(g, h, alpha=args.alpha, scale=args.scale, power=args.power, bias=args.bias,
                                         top_k=args.top_k, std_map=args.std_map)
    else:
        from .mixing import MixedClassifier

        mixer = MixedClassifier(g, h, args.alpha)
    path = save_mixer(mixer, args.out, dataset=info.name)
    print(f"wrote {path} (load with robustmix.models.load)")
    example = torch.rand(2, *info.shape)
    if args.export:
        exported = export_program(load(path), example, args.export)
        print(f"wrote {exported} (load with torch.export.load(path).module(); inputs in [0, 1], outputs mixed "
              "log-probabilities)")
    if args.onnx:
        print(f"wrote {export_onnx(load(path), example, args.onnx)}")
    return 0


def cmd_report(args) -> int:
    from ._io import read_json
    from .reports import terminal_summary, write_report

    folder = Path(args.folder)
    path = folder / "summary.json"
    if not path.is_file():
        raise ConfigError(f"{path} not found: run 'robustmix demo --out {args.folder}' first")
    summary = read_json(path, what="robustmix summary")
    paths = write_report(summary, folder)
    print(terminal_summary(summary))
    print(f"\nreport: {paths['html']}")
    return 0


def cmd_list(args) -> int:
    from .models import card, list_models

    for name in list_models(args.pattern, pretrained=True):
        c = card(name)
        acc = c.metrics.get("clean", {}).get("accuracy")
        print(f"{name:26s} {c.recipe:10s} clean {100 * acc:.2f}%" if acc is not None else name)
    for name in list_models(args.pattern, pretrained=False):
        print(f"{name:26s} (architecture)")
    return 0


COMMANDS = {"demo": cmd_demo, "sweep": cmd_sweep, "tradeoff": cmd_tradeoff, "attack": cmd_attack,
            "evaluate": cmd_evaluate, "pareto": cmd_pareto,
            "certify": cmd_certify, "train": cmd_train, "calibrate": cmd_calibrate, "mix": cmd_mix, "fig3": cmd_fig3,
            "report": cmd_report, "list": cmd_list}


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
    except UsageError as exc:
        print(f"robustmix: error: {exc}", file=sys.stderr)
        return 2
    except RobustMixError as exc:
        print(f"robustmix: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    global _DEVICE
    _DEVICE = args.device
    try:
        return COMMANDS[args.command](args)
    except (RobustMixError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        if args.debug:
            raise
        message = " ".join(str(exc).split())
        print(f"robustmix {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"robustmix {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        _teardown()


def _teardown() -> None:
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
