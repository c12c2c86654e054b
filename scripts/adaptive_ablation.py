"""Ablation of the adaptive mixer on the l_inf pair: what it reads x how its gate is trained.

Each variant trains a mixing network for g = fmnist-std-cnn and h = fmnist-at-linf-cnn
(robustmix.fitting.trained_adaptive_mixer) and is evaluated by the worst-case evaluator
(robustmix evaluate's machinery: the full ensemble, AutoAttack standard alone beside it) on the
first --n test images:

  features        logits (both models' logits) / h (h's feature maps + logits) / both (g's and h's maps + logits)
  gate training   standard (clean inputs only: BCE toward g + the mixture's cross-entropy)
                  adversarial (PGD on the whole composite and through the softened gate, clean + attacked terms)
                  adversarial-no-gate-surrogate (PGD on the composite only: the recipe behind RESULTS.md's rows)

Output, under --out: one folder per variant (the mixing network, its resumable training state,
the whole mixer as a robustmix checkpoint mixer.safetensors for `robustmix evaluate/verify --model`,
the evaluation records, summary.json and report.md of the evaluation, training.json), and
ablation.json + ablation.md: clean and worst-case accuracy with 95% Clopper-Pearson intervals and
n, beside the calibrated linear mixer's front from --front (robustmix pareto's summary.json) when
it exists.  Everything resumes: rerun the same command after an interruption (training per epoch,
evaluation per batch); delete a variant's folder to redo it.

  python scripts/adaptive_ablation.py --out results/adaptive-ablation            # the real run
  python scripts/adaptive_ablation.py --quick --out /tmp/ablation-quick          # a minute-scale check
  python scripts/adaptive_ablation.py --table-only --out results/adaptive-ablation   # the table of what ran
  python scripts/adaptive_ablation.py --features both --gate-training adversarial --attack-method apgd  # APGD-10
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

logger = logging.getLogger("adaptive_ablation")

FEATURES = ("logits", "h", "both")
GATE_TRAINING = {"standard": "none", "adversarial": "composite+gate", "adversarial-no-gate-surrogate": "composite"}
STD, ROB, EPS, NORM = "fmnist-std-cnn", "fmnist-at-linf-cnn", 0.1, "inf"
TRIVIAL_FRONT = 0.01   # a front below 1 point: only g's clean accuracy is kept there
QUICK = {"n": 4, "n_train": 32, "epochs": 1, "attack_steps": 2, "steps": 5, "square_queries": 100, "batch_size": 32}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="results/adaptive-ablation", help="output folder (resumed when it exists)")
    p.add_argument("--n", type=int, default=1000, help="test images for the worst-case evaluation")
    p.add_argument("--n-train", type=int, default=10_000, help="training images for the mixing networks")
    p.add_argument("--epochs", type=int, default=4, help="epochs of mixing-network training")
    p.add_argument("--attack-steps", type=int, default=10, help="steps of the training attack")
    p.add_argument("--attack-method", default="pgd", choices=["pgd", "apgd"],
                   help="training attack: PGD (fixed step) or APGD-CE (adaptive step, the evaluator's first member); "
                        "apgd variants are named <features>-<gate training>-apgd<steps>")
    p.add_argument("--features", nargs="+", default=list(FEATURES), choices=FEATURES, help="feature sets to run")
    p.add_argument("--gate-training", nargs="+", default=["standard", "adversarial"], choices=list(GATE_TRAINING),
                   help="gate trainings to run")
    p.add_argument("--net", default="residual", choices=["residual", "mlp"],
                   help="mixing network: residual conv branches on the maps, or an MLP on pooled features")
    p.add_argument("--steps", type=int, default=100, help="APGD iterations of each evaluator member")
    p.add_argument("--square-queries", type=int, default=5000, help="Square's budget (AutoAttack standard: 5,000)")
    p.add_argument("--attacks", nargs="+", default=None, help="evaluator members or patterns (default: all)")
    p.add_argument("--batch-size", type=int, default=250, help="examples per batch (training uses at most 256)")
    p.add_argument("--linear-alphas", nargs="*", type=float, default=[],
                   help="also evaluate the linear mixer at these alphas with the same evaluator and images")
    p.add_argument("--front", default="results/pareto-linf/summary.json",
                   help="robustmix pareto summary whose linear curve is the front to compare with")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--table-only", action="store_true",
                   help="only rebuild ablation.md and ablation.json from the variants already evaluated under --out "
                        "(nothing is trained or attacked; rows of other settings than these options are left out)")
    p.add_argument("--quick", action="store_true",
                   help=f"a check of the whole path in about a minute: {QUICK} (overrides those options)")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    for name in ("n", "n_train", "epochs", "attack_steps", "steps", "square_queries", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def front_robust_at(curve: list[dict], clean: float) -> float | None:
    """The linear curve's robust accuracy at clean accuracy ``clean``, interpolated between neighbouring alphas.

    Above the curve's highest clean accuracy the front is its most accurate point's robustness (the
    linear mixer cannot get more accurate); below its lowest, its least accurate point's.
    """
    pts = sorted(((p["clean"], p["robust"]) for p in curve), key=lambda t: (t[0], -t[1]))
    if not pts:
        return None
    if clean >= pts[-1][0]:
        return max(r for c, r in pts if c == pts[-1][0])
    if clean <= pts[0][0]:
        return pts[0][1]
    for (c0, r0), (c1, r1) in zip(pts, pts[1:]):
        if c0 <= clean <= c1:
            return r0 if c1 == c0 else r0 + (clean - c0) / (c1 - c0) * (r1 - r0)
    return None


def load_front(path) -> dict | None:
    """The linear curve (curve attack) and the calibrated linear headline point (full ensemble) of a pareto run."""
    from robustmix.errors import ConfigError
    from robustmix.results import load_summary

    path = Path(path)
    if not path.is_file():
        logger.warning("no stored front at %s: the table has no linear comparison (run robustmix pareto first)", path)
        return None
    s = load_summary(path)
    if getattr(s, "KIND", "") != "pareto":
        raise ConfigError(f"--front {path} is a {getattr(s, 'KIND', '?')} summary, not robustmix pareto's")
    if (s.settings.get("std"), s.settings.get("rob"), float(s.settings.get("eps", 0))) != (STD, ROB, EPS):
        logger.warning("the front at %s is for %s / %s at eps %s, not this ablation's pair", path,
                       s.settings.get("std"), s.settings.get("rob"), s.settings.get("eps"))
    head = next((p for p in s.headline if p.get("name") == "linear"), None)
    curve = s.curves.get("linear", [])
    # how much the weaker curve attack overstates the linear mixer at its calibrated point (the full ensemble's
    # figure there); the front each row is judged against is lowered by it
    at = front_robust_at(curve, head["clean"]) if head and curve else None
    gap = max(0.0, at - head["robust"]) if at is not None else 0.0
    return {"source": str(path), "attack": s.curve_attack, "curve": curve, "headline": head, "attack_gap": gap}


def _train_state(state_path: Path) -> dict:
    import torch

    if not state_path.is_file():
        return {}
    return dict(torch.load(state_path, weights_only=True))


def _evaluate(model, name: str, folder: Path, x, y, cfg, settings: dict, command: str):
    from robustmix.experiments.evaluate_run import run_evaluate
    from robustmix.experiments.runner import Records
    from robustmix.reports.report import write_report

    summary = run_evaluate(model, x, y, cfg, records=Records(records_path=folder / "records.jsonl", settings=settings))
    summary.command = command
    summary.save(folder / "summary.json")
    write_report(summary, folder, title=f"Adaptive-mixer ablation: {name}")
    return summary


def _row(folder: Path) -> dict:
    """One table row from a variant folder: its evaluation's summary.json and, for an adaptive mixer, its training."""
    summary = json.loads((folder / "summary.json").read_text())
    settings, aa = summary.get("settings", {}), summary.get("autoattack") or {}
    row = {"name": folder.name, "n": summary["n"], "clean": summary["clean_accuracy"],
           "clean_ci95": summary["clean_ci95"], "robust": summary["accuracy"], "robust_ci95": summary["ci95"],
           "autoattack": aa.get("accuracy"), "autoattack_ci95": aa.get("ci95"),
           "forward_passes": summary.get("forward_passes_per_prediction"),
           "mixing_network_passes": summary.get("mixing_network_passes"),
           "gradient_masking_suspected": (summary.get("diagnostics") or {}).get("suspected"),
           "eval_seconds": round(sum(r["seconds"] for r in summary.get("per_attack", [])), 1)}
    if settings.get("mixer") == "linear":
        return {**row, "kind": "linear", "alpha": settings.get("alpha")}
    state = _train_state(folder / "adaptive.train-state.pt")
    history, trained = list(state.get("history", [])), dict(state.get("settings", {}))
    last = history[-1] if history else {}
    gate = settings.get("gate_training")
    attack = None if gate == "standard" else (
        f"{trained.get('attack_method', 'pgd').upper()}-{trained['attack_steps']}" if trained else None)
    return {**row, "kind": "adaptive", "features": settings.get("features"), "gate_training": gate,
            "training_attack": attack, "net": settings.get("net"), "n_train": trained.get("n"),
            "epochs": len(history) if history else None, "alpha_clean": last.get("alpha_clean"),
            "alpha_adv": last.get("alpha_adv"),
            "train_seconds": round(sum(e["seconds"] for e in history), 1) if history else None}


def collect_rows(out: Path, cfg_settings: dict, training: dict | None = None) -> list[dict]:
    """Rows of every evaluated variant under ``out`` whose evaluation used these evaluator settings and n.

    ``training`` (``n_train``, ``epochs``, ``net``): adaptive rows trained otherwise are left out too, so
    that one table never mixes recipes it does not name.
    """
    rows = []
    for folder in sorted(p for p in out.iterdir() if (p / "summary.json").is_file()):
        try:
            row = _row(folder)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            logger.warning("%s left out of the table: its records cannot be read (%s)", folder.name, exc)
            continue
        saved = json.loads((folder / "summary.json").read_text()).get("settings", {})
        other = {k: (saved.get(k), v) for k, v in cfg_settings.items() if k != "n" and saved.get(k) != v}
        if row["n"] != cfg_settings["n"]:
            other["n"] = (row["n"], cfg_settings["n"])
        if training and row["kind"] == "adaptive":
            other.update({k: (row.get(k), v) for k, v in training.items() if row.get(k) != v})
        if other:
            logger.warning("%s left out of the table: evaluated or trained with other settings (saved, now): %s",
                           folder.name, other)
            continue
        rows.append(row)

    def order(r):
        if r["kind"] == "linear":
            return (1, 0, 0, r["name"])
        return (0, FEATURES.index(r["features"]) if r["features"] in FEATURES else len(FEATURES),
                list(GATE_TRAINING).index(r["gate_training"]) if r["gate_training"] in GATE_TRAINING else 9, r["name"])
    return sorted(rows, key=order)


def compare(rows: list[dict], front: dict | None) -> dict:
    """Each variant against the linear front at its clean accuracy; the closest recipe; whether any gets there."""
    for r in rows:
        at = front_robust_at(front["curve"], r["clean"]) if front else None
        at = None if at is None else at - front.get("attack_gap", 0.0)
        r["front_robust_at_clean"] = at
        r["gap_to_front"] = None if at is None else r["robust"] - at
        r["on_or_above_front"] = None if at is None else r["robust_ci95"][1] >= at
        # where the front itself is ~0 (the clean accuracy of g alone), being on it says nothing
        r["trivial"] = at is not None and at < TRIVIAL_FRONT
    ranked = [r for r in rows if r.get("kind") == "adaptive" and r["gap_to_front"] is not None]
    closest = max(ranked, key=lambda r: r["robust_ci95"][1] - r["front_robust_at_clean"], default=None)
    return {"closest": None if closest is None else closest["name"],
            "reaches_front": None if closest is None else any(r["on_or_above_front"] and not r["trivial"]
                                                              for r in ranked),
            "above_front": None if closest is None else any(r["robust_ci95"][0] > r["front_robust_at_clean"]
                                                            for r in ranked)}


def _ci(v, ci) -> str:
    from robustmix.reports.format import fmt_ci

    return "-" if v is None else fmt_ci(v, ci)


def _on_front(r: dict) -> str:
    if r.get("on_or_above_front") is None:
        return "-"
    return "no" if not r["on_or_above_front"] else "trivially (front ~0 there)" if r.get("trivial") else "yes"


def markdown(result: dict) -> str:
    s, front, verdict = result["settings"], result["front"], result["verdict"]
    lines = [f"# Adaptive mixer ablation (l_inf eps {EPS}, g = {STD}, h = {ROB})", "",
             f"n = {s['n']} test images (the first), 95% Clopper-Pearson intervals in brackets. Mixing networks "
             f"trained on {s['n_train']} training images, {s['epochs']} epoch(s) (the training attack in each row); "
             f"mixing network: {s['net']}. Worst case: the robustmix evaluate ensemble (APGD {s['steps']} steps, "
             f"AutoAttack standard, surrogates and transfer), per example; AutoAttack alone beside it.",
             "", "| variant | features | gate training | clean [95% CI] | worst case [95% CI] | AutoAttack alone "
             "[95% CI] | linear front at this clean | on/above front | alpha clean / attacked (training) | "
             "forward passes | eval s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        at = r.get("front_robust_at_clean")
        alphas = "-" if r.get("alpha_clean") is None else (
            f"{r['alpha_clean']:.2f} / " + ("-" if r.get("alpha_adv") is None else f"{r['alpha_adv']:.2f}"))
        passes = "-" if r["forward_passes"] is None else (
            f"{r['forward_passes']}" + (f" + {r['mixing_network_passes']} net" if r["mixing_network_passes"] else ""))
        gate = r.get("gate_training") or "-"
        gate += f" ({r['training_attack']})" if r.get("training_attack") else ""
        lines.append(f"| {r['name']} | {r.get('features', '-')} | {gate} | "
                     f"{_ci(r['clean'], r['clean_ci95'])} | {_ci(r['robust'], r['robust_ci95'])} | "
                     f"{_ci(r['autoattack'], r['autoattack_ci95'])} | {'-' if at is None else f'{100 * at:.1f}'} | "
                     f"{_on_front(r)} | "
                     f"{alphas} | {passes} | {r['eval_seconds']} |")
    lines.append("")
    if front:
        head = front.get("headline")
        lines.append(f"Linear front: `{front['source']}`, its linear curve under the curve attack ({front['attack']}), "
                     "interpolated at each row's clean accuracy and lowered by "
                     f"{100 * front.get('attack_gap', 0.0):.1f} points, what that weaker attack overstates the "
                     "linear mixer at its calibrated alpha against the full ensemble used here. A row is on or above "
                     "the front when the upper end of its interval reaches it; where the front is below 1 point (the "
                     "linear mixer keeps nothing at that clean accuracy), being on it does not count."
                     + (f" The calibrated linear mixer under the full ensemble: clean "
                        f"{_ci(head['clean'], head['clean_ci95'])}%, worst case "
                        f"{_ci(head['robust'], head['robust_ci95'])}%"
                        f" (alpha = {head.get('alpha', 0):.3g}, n = {head['n']})." if head else ""))
    else:
        lines.append("No stored linear front was found (--front); run robustmix pareto to compare.")
    lines.append("")
    if verdict["reaches_front"] is None:
        lines.append("Verdict: no comparison possible without a front.")
    elif verdict["reaches_front"]:
        lines.append(f"Verdict: at least one adaptive variant reaches the linear front within its 95% interval; "
                     f"the closest recipe is {verdict['closest']}. "
                     + ("At least one is above it (the lower end of its interval clears the front)."
                        if verdict.get("above_front") else "None is above it: the adaptive mixer matches the linear "
                        "mixer at best and does not help on this data."))
    else:
        lines.append(f"Verdict: no adaptive variant reaches the linear front within its 95% interval: the adaptive "
                     f"mixer does not help on this data. Closest recipe: {verdict['closest']}.")
    if s.get("quick"):
        lines += ["", "**--quick run: a check of the code path on a handful of images, not a measurement.**"]
    return "\n".join(lines) + "\n"


def run_variants(args: argparse.Namespace, out: Path, cfg, command: str) -> tuple[int, int]:
    """Train and evaluate the requested variants (each resumed where it stopped); returns (n test, n train)."""
    import torch

    from robustmix._io import write_json
    from robustmix.commands.common import Context, load_model
    from robustmix.data import load_dataset
    from robustmix.experiments.export import save_mixer
    from robustmix.fitting import FIRST_RECIPE, trained_adaptive_mixer
    from robustmix.groups import ThreatModel
    from robustmix.mixing import MixedClassifier, MixingArchitecture

    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = Context(device=args.device)
    device = ctx.torch_device()
    xt, yt = (t[:args.n_train] for t in load_dataset("fashion-mnist", "train"))
    x, y = (t[:args.n] for t in load_dataset("fashion-mnist", "test"))
    g, h = load_model(STD, "fashion-mnist", ctx, x[:2]), load_model(ROB, "fashion-mnist", ctx, x[:2])
    xt, yt, x, y = xt.to(device), yt.to(device), x.to(device), y.to(device)
    for features in args.features:
        for gate in args.gate_training:
            name = f"{features}-{gate}"
            if args.attack_method != "pgd" and gate != "standard":
                name += f"-{args.attack_method}{args.attack_steps}"
            folder = out / name
            folder.mkdir(exist_ok=True)
            logger.info("variant %s: training the mixing network", name)
            t0 = time.perf_counter()
            training = dataclasses.replace(FIRST_RECIPE, epochs=args.epochs, attack_steps=args.attack_steps,
                                           batch_size=min(args.batch_size, 256), seed=args.seed,
                                           train_attack=GATE_TRAINING[gate], attack_method=args.attack_method,
                                           progress=True)
            mixer = trained_adaptive_mixer(folder / "adaptive", g, h, xt, yt, ThreatModel(NORM, EPS), training,
                                           MixingArchitecture(features=features, net=args.net))
            save_mixer(mixer, folder / "mixer.safetensors", dataset="fashion-mnist")   # for evaluate/verify --model
            history = list(_train_state(folder / "adaptive.train-state.pt").get("history", []))
            write_json(folder / "training.json", {"mixer": mixer.config(), "train_attack": GATE_TRAINING[gate],
                                                  "attack_method": args.attack_method,
                                                  "attack_steps": args.attack_steps, "history": history})
            train_seconds = round(sum(e["seconds"] for e in history), 1) if history else None
            logger.info("variant %s: worst-case evaluation on %d test images (trained in %s s)", name, len(x),
                        train_seconds if train_seconds is not None else round(time.perf_counter() - t0, 1))
            settings = {"std": STD, "rob": ROB, "mixer": "adaptive", "features": features, "gate_training": gate,
                        "net": args.net, "mixing_net": mixer.config()["mixing_net"],
                        **({"attack_method": args.attack_method, "attack_steps": args.attack_steps}
                           if args.attack_method != "pgd" and gate != "standard" else {})}
            summary = _evaluate(mixer, name, folder, x, y, cfg, settings, command)
            logger.info("variant %s: %s", name, summary.summary_line())
    for alpha in args.linear_alphas:
        name = f"linear-{alpha:g}"
        folder = out / name
        folder.mkdir(exist_ok=True)
        _evaluate(MixedClassifier(g, h, alpha), name, folder, x, y, cfg,
                  {"std": STD, "rob": ROB, "mixer": "linear", "alpha": alpha}, command)
    return len(x), len(xt)


def run(args: argparse.Namespace) -> dict:
    import shlex

    from robustmix._io import write_json
    from robustmix.errors import ConfigError
    from robustmix.experiments.evaluate_run import EvaluateConfig
    from robustmix.groups import ThreatModel

    out = Path(args.out)
    command = shlex.join(["python", "scripts/adaptive_ablation.py", *args.argv])
    cfg = EvaluateConfig(threat=ThreatModel(NORM, EPS), seed=args.seed, attacks=args.attacks, steps=args.steps,
                         batch_size=args.batch_size, square_queries=args.square_queries)
    if args.table_only:
        if not out.is_dir():
            raise ConfigError(f"--table-only rebuilds the table of an existing run, but {out} is not a folder; "
                              "run the ablation first")
        n, n_train = args.n, args.n_train
    else:
        out.mkdir(parents=True, exist_ok=True)
        n, n_train = run_variants(args, out, cfg, command)
    rows = collect_rows(out, {"n": n, **{k: v for k, v in cfg.to_dict().items()
                                         if k in ("norm", "eps", "seed", "attacks", "steps", "square_queries")}},
                        {"n_train": n_train, "epochs": args.epochs, "net": args.net})
    front = load_front(args.front)
    verdict = compare(rows, front)
    settings = {k: v for k, v in vars(args).items() if k not in ("argv", "table_only")}
    result = {"settings": {**settings, "std": STD, "rob": ROB, "eps": EPS, "norm": NORM},
              "command": command, "front": front, "rows": rows, "verdict": verdict}
    write_json(out / "ablation.json", result)
    (out / "ablation.md").write_text(markdown(result))
    return result


def main(argv=None) -> int:
    from robustmix.errors import RobustMixError

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        result = run(args)
    except RobustMixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logger.info("wrote %s and %s", Path(args.out) / "ablation.md", Path(args.out) / "ablation.json")
    v = result["verdict"]
    logger.info("closest adaptive recipe: %s; reaches the linear front: %s", v["closest"], v["reaches_front"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
