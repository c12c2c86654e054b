"""The ``robustmix`` command line.  The only place that reads argv, sets up logging and picks exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from ._validation import check_alpha, check_eps
from .errors import ConfigError, RobustMixError

logger = logging.getLogger("robustmix")

EXAMPLES = {
    "demo": "robustmix demo                 # the paper on the shipped Fashion-MNIST zoo (< 10 min)\n"
            "  robustmix demo --quick --out /tmp/rm   # a smaller run (< 2 min)",
    "sweep": "robustmix sweep --std fmnist-std-cnn --rob fmnist-at-linf-cnn --num-examples 1000 --eps 0.1 --out runs/sweep\n"
             "  robustmix sweep --std mypkg.models:standard --rob ckpt/robust.safetensors --dataset cifar10 "
             "--eps 0.0314",
    "tradeoff": "robustmix tradeoff --std fmnist-std-cnn --rob fmnist-trades-linf-cnn --steps 20 --num-examples 100 --out runs/fig4a",
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
           "--torchscript mixed.pt",
    "report": "robustmix report runs/demo      # rebuild report.html / report.md from summary.json",
    "list": "robustmix list 'fmnist-*'",
}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="robustmix", description="Mix a standard and a robust classifier: "
                                 "log((1 - alpha) softmax(g) + alpha softmax(h)); attack it, certify it, report it.")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="command", required=True)

    def add(name, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text, epilog="examples:\n  " + EXAMPLES[name],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--config", help="YAML file of settings (keys as the long option names)")
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
    p.add_argument("--quick", action="store_true", help="smaller settings, under 2 minutes")
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
    p.add_argument("--sound", action="store_true", help="use simultaneous confidence bounds (abstain if unsure)")

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
    p.add_argument("--out", required=True, help="checkpoint path (.safetensors)")
    p.add_argument("--torchscript", help="also write a TorchScript file loadable with torch.jit.load")

    p = add("report", "rebuild the report from a results folder's summary.json")
    p.add_argument("folder")

    p = add("list", "list zoo models and architectures")
    p.add_argument("pattern", nargs="?", default="*")
    return ap


def _apply_config(args, parser) -> None:
    if not getattr(args, "config", None):
        return
    import yaml

    path = Path(args.config)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of option names to values")
    for key, value in data.items():
        attr = key.replace("-", "_")
        if not hasattr(args, attr):
            raise ConfigError(f"unknown setting {key!r} in {path}; see 'robustmix {args.command} --help'")
        setattr(args, attr, value)


def _save_settings(args, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("func",)}
    (out / "settings.json").write_text(json.dumps(settings, indent=2, default=str) + "\n")


def _data(args):
    from .data import load_dataset

    x, y = load_dataset(args.dataset, args.split, args.data_root)
    if args.n <= 0:
        raise ConfigError("--n must be positive")
    return x[:args.n], y[:args.n]


def _models(args):
    from .data import dataset_info
    from .models import resolve_model

    ds = dataset_info(args.dataset).name
    return resolve_model(args.std, ds), resolve_model(args.rob, ds)


def _out(args, default: str) -> Path:
    return Path(args.out or default)


def _sharded(out: Path, name: str, x, y, models, run, block: int):
    """Run ``run(x, y, indices, records_path)`` on this rank's shard (all of it without torchrun).

    Returns the merged per-example records on rank 0 (or the single process), None on other ranks.
    """
    import torch

    from . import distributed
    from .experiments import read_records

    dist = distributed.setup()
    for model in models:
        model.to(dist.device)
    idx = dist.shard(torch.arange(len(x)), block)
    path = out / name
    try:
        run(x[idx], y[idx], idx, dist.records_path(path))
        dist.barrier()
        if dist.active and dist.rank == 0:
            distributed.merge_records(path, dist.world)
        dist.barrier()
    finally:
        distributed.teardown(dist)
    if dist.rank != 0:
        return None
    return read_records(path)[1]


def cmd_demo(args) -> int:
    from .experiments.demo import DemoSettings, run_demo
    from .reports import terminal_summary, write_report

    settings = DemoSettings.quick() if args.quick else DemoSettings()
    t0 = time.perf_counter()
    summary = run_demo(args.out, settings, progress=True)
    paths = write_report(summary, args.out)
    print(terminal_summary(summary))
    print(f"\nreport: {paths['html']}  ({time.perf_counter() - t0:.0f} s)")
    return 0


def cmd_sweep(args) -> int:
    from .experiments import SweepConfig, run_sweep, summarize
    from .experiments.demo import write_json
    from .reports import plot_sweep
    from .reports.report import sweep_table, table1_rows, text_table

    out = _out(args, "runs/sweep")
    _save_settings(args, out)
    cfg = SweepConfig(alphas=args.alphas, eps=args.eps, norm=args.norm, steps=args.steps, restarts=args.restarts,
                      batch_size=args.batch_size, seed=args.seed, early_stop=args.early_stop)
    x, y = _data(args)
    g, h = _models(args)
    header = {"std": args.std, "rob": args.rob, "dataset": args.dataset, "split": args.split}
    records = _sharded(out, "records.jsonl", x, y, (g, h), lambda xs, ys, idx, path: run_sweep(
        g, h, xs, ys, cfg, indices=idx, records_path=path, header=header), cfg.batch_size)
    if records is None:
        return 0
    summary = summarize(records, cfg.alphas)
    write_json(out / "summary.json", summary)
    plot_sweep(summary, out / "fig2_alpha_sweep")
    print(text_table(sweep_table(summary)) + "\n\nTable I\n" + text_table(table1_rows(summary["table1"])))
    print(f"\nwrote {out}/summary.json, fig2_alpha_sweep.png, records.jsonl")
    return 0


def cmd_tradeoff(args) -> int:
    from .experiments import TradeoffConfig, run_tradeoff
    from .experiments.demo import write_json
    from .reports import plot_tradeoff

    out = _out(args, "runs/tradeoff")
    _save_settings(args, out)
    kwargs = {"gammas": args.gammas} if args.gammas else {}
    cfg = TradeoffConfig(trusts=args.trusts, eps=args.eps, norm=args.norm, steps=args.steps,
                         batch_size=args.batch_size, seed=args.seed, **kwargs)
    x, y = _data(args)
    g, h = _models(args)
    summary = run_tradeoff(g, h, x, y, cfg, records_path=out / "records.jsonl",
                           header={"std": args.std, "rob": args.rob, "dataset": args.dataset, "split": args.split})
    write_json(out / "summary.json", summary)
    plot_tradeoff(summary, out / "tradeoff")
    for name, c in summary["curves"].items():
        print(f"{name:24s} clean {' '.join(f'{100 * v:5.1f}' for v in c['clean'])}")
        print(f"{'':24s} adv   {' '.join(f'{100 * v:5.1f}' for v in c['attacked'])}")
    print(f"\nwrote {out}/summary.json, tradeoff.png")
    return 0


def cmd_attack(args) -> int:
    from .experiments.attack_eval import AttackConfig, run_attack_eval, summarize_attack
    from .experiments.demo import write_json
    from .mixing import MixedClassifier

    check_alpha(args.alpha)
    cfg = AttackConfig(eps=args.eps, norm=args.norm, steps=args.steps, restarts=args.restarts,
                       autoattack=args.autoattack, batch_size=args.batch_size, seed=args.seed)
    out = _out(args, "runs/attack")
    _save_settings(args, out)
    x, y = _data(args)
    g, h = _models(args)
    mixed = MixedClassifier(g, h, args.alpha)
    header = {"std": args.std, "rob": args.rob, "alpha": args.alpha, "dataset": args.dataset, "split": args.split}
    records = _sharded(out, "records.jsonl", x, y, (mixed,), lambda xs, ys, idx, path: run_attack_eval(
        mixed, xs, ys, cfg, indices=idx, records_path=path, header=header), cfg.batch_size)
    if records is None:
        return 0
    result = {"alpha": args.alpha, **cfg.to_dict(), **summarize_attack(records)}
    write_json(out / "summary.json", result)
    print(json.dumps(result, indent=2))
    return 0


def cmd_certify(args) -> int:
    from .certify import probability_lipschitz
    from .experiments import CertifyConfig, certified_curve, run_certify
    from .experiments.demo import write_json
    from .reports import plot_certified

    if bool(args.sigma) == bool(args.lipschitz):
        raise ConfigError("give exactly one of --sigma SIGMA (smoothed h) or --lipschitz (h with a known bound)")
    out = _out(args, "runs/certify")
    _save_settings(args, out)
    cfg = CertifyConfig(sigma=args.sigma, num_samples=args.samples, delta=args.delta, seed=args.seed)
    check_alpha(args.alphas)
    x, y = _data(args)
    g, h = _models(args)
    header = {"std": args.std, "rob": args.rob, "dataset": args.dataset, "split": args.split}
    records = _sharded(out, "records.jsonl", x, y, (g, h), lambda xs, ys, idx, path: run_certify(
        g, h, xs, ys, cfg, indices=idx, records_path=path, header=header), cfg.examples_per_record_batch)
    if records is None:
        return 0
    g.cpu(), h.cpu()
    grid = [round(0.05 * i, 3) for i in range(41)]
    summary = {"alphas": args.alphas}
    if args.lipschitz:
        lip = probability_lipschitz(h, 2, getattr(h, "input_shape", None) or tuple(x.shape[1:]))
        summary["theorem1"] = certified_curve(records, args.alphas, grid, theorem=1, lipschitz=lip)
    else:
        for thm in (1, 2):
            summary[f"theorem{thm}"] = certified_curve(records, args.alphas, grid, theorem=thm, sigma=args.sigma,
                                                       sound=args.sound)
    write_json(out / "summary.json", summary)
    for key in [k for k in summary if k.startswith("theorem")]:
        c = summary[key]
        curves = {f"alpha={a:.2f}": {"grid": grid, "certified": c["certified"][i], "clean": c["clean"][i]}
                  for i, a in enumerate(c["alphas"])}
        plot_certified(curves, out / f"certified_{key}", f"Certified accuracy, {key}")
        for i, a in enumerate(c["alphas"]):
            print(f"{key} alpha={a:.2f}: clean {100 * c['clean'][i]:.1f}%  certified@0.5 "
                  f"{100 * c['certified'][i][10]:.1f}%  @1.0 {100 * c['certified'][i][20]:.1f}%")
    print(f"\nwrote {out}/summary.json and plots")
    return 0


def cmd_fig3(args) -> int:
    from .data import dataset_info
    from .experiments.certified import CertifyConfig, run_fig3
    from .experiments.demo import write_json
    from .models import resolve_model
    from .reports import write_report

    CertifyConfig(sigma=args.sigma, num_samples=args.samples, delta=args.delta)
    CertifyConfig(sigma=args.baseline_sigma)
    if args.baseline_sigma >= args.sigma:
        raise ConfigError("--baseline-sigma should be smaller than --sigma (the paper's matched-accuracy baseline)")
    out = _out(args, "runs/fig3")
    _save_settings(args, out)
    x, y = _data(args)
    ds = dataset_info(args.dataset).name
    g, h = _models(args)
    base = resolve_model(args.baseline, ds)
    lip = resolve_model(args.lipschitz_model, ds) if args.lipschitz_model else None
    result = run_fig3(g, h, args.sigma, base, args.baseline_sigma, lip, x, y, samples=args.samples, delta=args.delta,
                      seed=args.seed, records_dir=out,
                      header={"std": args.std, "smooth": args.rob, "baseline": args.baseline,
                              "lip": args.lipschitz_model, "dataset": ds, "split": args.split})
    summary = {"settings": {"smooth_sigma": args.sigma, "baseline_sigma": args.baseline_sigma,
                            "certify_samples": args.samples, "certify_delta": args.delta},
               "certified": result}
    write_json(out / "summary.json", summary)
    paths = write_report(summary, out)
    rs = result["rs"]
    print(f"alpha = {rs['alpha']:.2f} matches the baseline's clean accuracy {100 * rs['baseline_clean']:.1f}%")
    print(f"report: {paths['html']}")
    return 0


def cmd_train(args) -> int:
    from .training import TrainConfig, accuracy, train, train_zoo_model

    if args.zoo:
        path = train_zoo_model(args.zoo, args.out)
        print(f"wrote {path}")
        return 0
    from .data import load_dataset
    from .models import ModelCard, create_model, save_checkpoint

    if not args.out:
        raise ConfigError("--out PATH is required (where to write the checkpoint)")
    cfg = TrainConfig(args.recipe, epochs=args.epochs, eps=args.eps, norm=args.norm, sigma=args.sigma, lr=args.lr,
                      seed=args.seed, optimizer="adam" if args.recipe == "lipschitz" else "sgd")
    model = create_model(args.arch, **({"constrained": True} if args.arch == "lipschitz-cnn" else {}))
    x, y = load_dataset(args.dataset, "train")
    out = Path(args.out).with_suffix(".safetensors")
    model, history = train(model, x, y, cfg, state_path=out.with_suffix(".train-state.pt"))
    kwargs = {}
    if args.arch == "lipschitz-cnn":
        model, kwargs = model.export(), {"constrained": False}
    xv, yv = load_dataset(args.dataset, "val")
    card = ModelCard(name=out.stem, arch=args.arch, arch_kwargs=kwargs, dataset=args.dataset, recipe=args.recipe,
                     hyperparameters=cfg.to_dict(), seed=args.seed,
                     metrics={"clean": {"accuracy": accuracy(model, xv, yv), "split": "val", "n": len(xv)}},
                     train_seconds=round(sum(h["seconds"] for h in history), 1))
    save_checkpoint(model, card, out)
    out.with_suffix(".train-state.pt").unlink(missing_ok=True)
    print(f"wrote {out} (validation accuracy {100 * card.metrics['clean']['accuracy']:.2f}%)")
    return 0


def cmd_calibrate(args) -> int:
    from .experiments import CertifyConfig, SweepConfig, certified_curve, run_certify, run_sweep
    from .experiments.calibrate import binomial_ci, choose_alpha
    from .experiments.demo import write_json

    if args.objective in ("clean", "robust") and args.target is None:
        raise ConfigError(f"--objective {args.objective} needs --target (an accuracy in [0, 1])")
    if args.objective == "certified" and not args.sigma:
        raise ConfigError("--objective certified needs --sigma (the smoothing noise of --rob)")
    check_alpha(args.alphas)
    check_eps(args.eps)
    out = _out(args, "runs/calibrate")
    _save_settings(args, out)
    g, h = _models(args)
    result = {}
    for split in ("val", "test"):
        args.split = split
        x, y = _data(args)
        alphas = args.alphas if split == "val" else [result["choice"]["alpha"]]
        if args.objective == "certified":
            recs = run_certify(g, h, x, y, CertifyConfig(sigma=args.sigma, num_samples=args.samples, seed=args.seed),
                               records_path=out / f"{split}-certify.jsonl", header={"std": args.std, "rob": args.rob})
            cur = certified_curve(recs, alphas, [args.radius], theorem=2, sigma=args.sigma)
            clean, robust = cur["clean"], [row[0] for row in cur["certified"]]
        else:
            cfg = SweepConfig(alphas=alphas, eps=args.eps, norm=args.norm, steps=args.steps, seed=args.seed,
                              attacks=("mix",))
            summ = run_sweep(g, h, x, y, cfg, records_path=out / f"{split}-sweep.jsonl",
                             header={"std": args.std, "rob": args.rob, "split": split})
            clean, robust = summ["accuracy"]["clean"], summ["accuracy"]["mix"]
        if split == "val":
            result["choice"] = choose_alpha(alphas, clean, robust, len(x), args.objective, args.target).to_dict()
        else:
            n = len(x)
            result["test"] = {"n": n, "clean": clean[0], "clean_ci95": binomial_ci(round(clean[0] * n), n),
                              "robust": robust[0], "robust_ci95": binomial_ci(round(robust[0] * n), n)}
    write_json(out / "calibration.json", result)
    c, t = result["choice"], result["test"]
    what = "certified@%.2f" % args.radius if args.objective == "certified" else f"PGD-{args.steps}"
    print(f"alpha = {c['alpha']:.2f} ({args.objective}, target {args.target}; "
          f"{'met' if c['feasible'] else 'NOT met, closest shown'} on validation)")
    for name, d in (("validation", c["validation"]), ("test", t)):
        print(f"  {name:10s} clean {100 * d['clean']:.1f}% [{100 * d['clean_ci95'][0]:.1f}, "
              f"{100 * d['clean_ci95'][1]:.1f}]   {what} {100 * d['robust']:.1f}% "
              f"[{100 * d['robust_ci95'][0]:.1f}, {100 * d['robust_ci95'][1]:.1f}]  (n = {d['n']})")
    return 0


def cmd_mix(args) -> int:
    import torch

    from .data import dataset_info
    from .experiments.export import export_torchscript, save_mixed
    from .models import load

    check_alpha(args.alpha)
    info = dataset_info(args.dataset)
    g, h = _models(args)
    path = save_mixed(g, h, args.alpha, args.out, dataset=info.name)
    print(f"wrote {path} (load with robustmix.models.load)")
    if args.torchscript:
        ts = export_torchscript(load(path), torch.rand(2, *info.shape), args.torchscript)
        print(f"wrote {ts} (load with torch.jit.load; inputs in [0, 1], outputs mixed log-probabilities)")
    return 0


def cmd_report(args) -> int:
    from .reports import terminal_summary, write_report

    path = Path(args.folder) / "summary.json"
    if not path.is_file():
        raise ConfigError(f"{path} not found: run 'robustmix demo --out {args.folder}' first")
    summary = json.loads(path.read_text())
    paths = write_report(summary, args.folder)
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
            "certify": cmd_certify, "train": cmd_train, "calibrate": cmd_calibrate, "mix": cmd_mix, "fig3": cmd_fig3,
            "report": cmd_report, "list": cmd_list}


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    try:
        _apply_config(args, parser)
        return COMMANDS[args.command](args)
    except (RobustMixError, FileNotFoundError) as exc:
        message = " ".join(str(exc).split())
        print(f"robustmix {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"robustmix {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
