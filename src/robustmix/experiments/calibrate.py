"""Choosing alpha on a validation split, with confidence intervals, confirmed on the test split.

Objectives:
  * ``clean``: reach a target clean accuracy with the most robustness;
  * ``robust``: reach a target attacked (MIX) accuracy with the most clean accuracy;
  * ``certified``: maximise certified accuracy at a given radius.
"""

from __future__ import annotations

import dataclasses

import logging
import math
from pathlib import Path
from typing import Literal

from .._config import accepts_old_keywords, check_literals, flat, group, option
from .._validation import alpha_grid, check_alpha, check_positive_int
from ..groups import Smoothing, ThreatModel, seed_option
from ..errors import ConfigError
from ..results import CalibrationSummary, binomial_ci
from .runner import Records

logger = logging.getLogger(__name__)

OBJECTIVES = ("clean", "robust", "certified")
MIXERS = ("linear", "nonlinear", "adaptive")


@dataclasses.dataclass
class Choice:
    alpha: float
    objective: str
    target: float | None
    feasible: bool             # whether the target was met (point estimate) on validation
    validation: dict           # the chosen alpha's validation numbers with 95% intervals

    def to_dict(self):
        return dataclasses.asdict(self)


def choose_alpha(alphas, clean, robust, n: int, objective: str, target: float | None = None) -> Choice:
    """Pick alpha from per-alpha accuracies (fractions) measured on n validation examples.

    For ``certified`` pass the certified accuracies as ``robust``.  When no
    alpha meets the target, the closest one is returned with ``feasible=False``.
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {objective!r}: use one of {', '.join(OBJECTIVES)}")
    if not (len(alphas) == len(clean) == len(robust)) or not alphas:
        raise ConfigError("alphas, clean and robust must be non-empty and of equal length")
    idx = list(range(len(alphas)))
    if objective == "clean":
        if target is None:
            raise ConfigError("objective 'clean' needs a target clean accuracy")
        ok = [i for i in idx if clean[i] >= target]
        best = max(ok, key=lambda i: (robust[i], clean[i])) if ok else max(idx, key=lambda i: clean[i])
    elif objective == "robust":
        if target is None:
            raise ConfigError("objective 'robust' needs a target attacked accuracy")
        ok = [i for i in idx if robust[i] >= target]
        best = max(ok, key=lambda i: (clean[i], robust[i])) if ok else max(idx, key=lambda i: robust[i])
    else:
        ok = idx
        best = max(idx, key=lambda i: (robust[i], clean[i]))
    val = {"n": n, "clean": clean[best], "clean_ci95": binomial_ci(round(clean[best] * n), n),
           "robust": robust[best], "robust_ci95": binomial_ci(round(robust[best] * n), n)}
    return Choice(float(alphas[best]), objective, target, bool(ok), val)


@dataclasses.dataclass(frozen=True)
class AdaptiveRecipe:
    """The adaptive mixer's recipe: what its mixing network reads, its shape, and its training attack."""

    adaptive_features: Literal["logits", "h", "both"] = option(
        "logits", "adaptive: what the mixing network reads besides both models' logits: logits (nothing more), h "
                  "(h's feature maps) or both (g's and h's)")
    mixing_net: Literal["mlp", "residual"] = option(
        "residual", "adaptive: residual (residual conv branches on the feature maps and a two-layer head; with "
                    "logits only, the head on the layer-normed logits) or mlp (on pooled features)")
    train_attack: Literal["composite+gate", "composite", "none"] = option(
        "composite+gate", "adaptive: the mixing network's training attack: composite+gate (PGD on the whole mixer "
                          "and through its softened gate), composite (PGD on the whole mixer) or none (clean inputs "
                          "only)")

    def __post_init__(self):
        check_literals(self)


@accepts_old_keywords
@dataclasses.dataclass
class CalibrateSettings:
    """Settings of ``robustmix calibrate``; every value checked here, once."""

    objective: str = option("clean", "clean: the most robust mixer keeping --target clean accuracy; robust: the "
                                     "most accurate keeping --target attacked accuracy; certified: the most accurate "
                                     "at --radius", choices=["clean", "robust", "certified"])
    target: float | None = option(None, "target clean (objective clean) or attacked (objective robust) accuracy in "
                                        "[0, 1]; required by those two objectives")
    alphas: list = option(help="candidate alphas of the linear mixer",
                          factory=lambda: alpha_grid(0.05), of=float)
    threat: ThreatModel = group(ThreatModel)
    steps: int = option(20, "PGD/APGD iterations of the attack used on the validation split")
    smoothing: Smoothing = group(Smoothing, only=("sigma", "num_samples"), num_samples=1000,
                                 help={"sigma": "certified objective: smoothing noise of --rob",
                                       "num_samples": "certified objective: noise samples per image"})
    radius: float = option(0.5, "certified objective: l2 radius")
    seed: int = seed_option()
    mixer: str = option("linear", "linear (the paper's alpha), nonlinear (MixedNUTS map of h's logits) or adaptive "
                                  "(alpha per input from a trained mixing network; it does not beat the linear mixer "
                                  "on Fashion-MNIST: at l_inf 0.1 the defaults' recipe, trained by "
                                  "scripts/adaptive_ablation.py, reaches 55.0% worst case at 92.5% clean, on the "
                                  "linear mixer's front there, not above it; RESULTS.md)",
                        choices=["linear", "nonlinear", "adaptive"])
    adaptive: AdaptiveRecipe = group(AdaptiveRecipe)
    adaptive_epochs: int = option(4, "adaptive: epochs of mixing-network training (on 10 x -n training images)")
    confirm_steps: int = option(100, "APGD iterations of the worst-case evaluator that confirms the choice on the "
                                     "test split (the cost of the confirmation grows with it)")

    def __post_init__(self):
        if self.mixer not in MIXERS:
            raise ConfigError(f"unknown mixer {self.mixer!r}: use one of {', '.join(MIXERS)}")
        if self.mixer != "linear" and self.objective == "certified":
            raise ConfigError("the certified objective calibrates the linear mixer only; use --mixer linear")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {self.objective!r}: use one of {', '.join(OBJECTIVES)}")
        if self.objective in ("clean", "robust"):
            if self.target is None:
                raise ConfigError(f"objective {self.objective} needs --target (an accuracy in [0, 1])")
            if not 0 <= self.target <= 1:
                raise ConfigError(f"--target is an accuracy in [0, 1], got {self.target}")
        if self.objective == "certified" and not self.smoothing.sigma:
            raise ConfigError("objective certified needs --sigma (the smoothing noise of --rob)")
        if not (math.isfinite(self.radius) and self.radius >= 0):
            raise ConfigError(f"--radius must be a number >= 0, got {self.radius}")
        self.alphas = [float(a) for a in check_alpha(self.alphas).reshape(-1).tolist()]
        check_positive_int(self.adaptive_epochs, name="--adaptive-epochs")
        check_positive_int(self.steps, name="--steps")
        check_positive_int(self.confirm_steps, name="--confirm-steps")


def run_calibration(g, h, splits: dict, cal: CalibrateSettings, out, *, settings: dict | None = None,
                    fresh: bool = False, export=None) -> CalibrationSummary:
    """Choose the mixer on ``splits["val"]`` and confirm it on ``splits["test"]`` (each an (x, y) pair), resumably.

    The linear mixer's alpha comes from a PGD sweep on validation (or certified accuracy); the nonlinear
    mixer's map and alpha from h's attacked validation logits (:mod:`robustmix.fitting.mixednuts`), choosing along its
    calibration path the point that meets the objective; the adaptive mixer trains its mixing network on
    ``splits["train"]``.  The clean and attacked objectives are confirmed on the test split with the
    worst-case evaluator.  At the end, together (all or none): ``out/calibration.json``, the chosen mixer in
    ``out/mixer.safetensors`` when its base models have cards, and with ``export`` a torch.export program of it.
    One run at a time per folder: a second one is refused before it adds a record to any stage.
    """
    from .._io import exclusive_lock

    with exclusive_lock(Path(out) / ".calibrate.lock"):
        return _run_calibration(g, h, splits, cal, Path(out), settings, fresh, export)


def _run_calibration(g, h, splits: dict, cal: CalibrateSettings, out: Path, settings, fresh: bool, export):
    if cal.mixer != "linear":
        summary, mixer = _calibrate_mixer(g, h, splits, cal, Path(out), settings or {}, fresh)
        _save(summary, mixer, Path(out), settings or {}, export, splits["val"][0][:2])
        return summary
    from .certified import CertifyConfig, certified_curve, run_certify
    from .sweep import SweepConfig, run_sweep

    out = Path(out)
    result = {}
    for split in ("val", "test"):
        x, y = splits[split]
        alphas = cal.alphas if split == "val" else [result["choice"]["alpha"]]
        names = {**(settings or {}), "split": split}
        if cal.objective == "certified":
            recs = run_certify(g, h, x, y, CertifyConfig(smoothing=cal.smoothing, seed=cal.seed),
                               records=Records(out / f"{split}-certify.jsonl", names, fresh))
            cur = certified_curve(recs, alphas, [cal.radius], theorem=2, sigma=cal.smoothing.sigma)
            clean, robust = cur["clean"], [row[0] for row in cur["certified"]]
        else:
            cfg = SweepConfig(alphas=alphas, threat=cal.threat, steps=cal.steps, seed=cal.seed,
                              attacks=("mix",))
            summ = run_sweep(g, h, x, y, cfg, records=Records(out / f"{split}-sweep.jsonl", names, fresh))
            clean, robust = summ.accuracy["clean"], summ.accuracy["mix"]
        if split == "val":
            result["choice"] = choose_alpha(alphas, clean, robust, len(x), cal.objective, cal.target).to_dict()
            if cal.objective != "certified":
                break
        else:
            n = len(x)
            result["test"] = {"n": n, "clean": clean[0], "clean_ci95": binomial_ci(round(clean[0] * n), n),
                              "robust": robust[0], "robust_ci95": binomial_ci(round(robust[0] * n), n),
                              "robust_attack": f"certified at radius {cal.radius}"}
    from ..mixing import MixedClassifier

    mixer = MixedClassifier(g, h, result["choice"]["alpha"])
    if "test" not in result:
        result["test"] = _confirm(mixer, splits["test"], cal, out, settings or {}, fresh)
    summary = CalibrationSummary(choice=result["choice"], test=result["test"],
                                 settings={**flat(cal), **(settings or {})})
    _save(summary, mixer, out, settings or {}, export, splits["val"][0][:2])
    return summary


def _confirm(mixer, test, cal: CalibrateSettings, out: Path, settings: dict, fresh: bool) -> dict:
    """Clean and worst-case accuracy of the chosen mixer on the test split, with 95% intervals."""
    from .evaluate_run import EvaluateConfig, evaluation_fields, run_evaluate

    x, y = test
    records = out / "test-evaluate.jsonl"
    cfg = EvaluateConfig(threat=cal.threat, seed=cal.seed, steps=cal.confirm_steps,
                         diagnostics=_diagnostics_of(records, fresh))
    s = run_evaluate(mixer, x, y, cfg, records=Records(records, {**settings, "split": "test", "mixer": cal.mixer}, fresh))
    return {"n": s.n, "clean": s.clean_accuracy, "clean_ci95": s.clean_ci95, "robust": s.accuracy,
            "robust_ci95": s.ci95, "robust_attack": "worst case over the attack ensemble (robustmix evaluate)",
            "diagnostics": s.diagnostics, **evaluation_fields(s)}


def _diagnostics_of(records: Path, fresh: bool) -> bool:
    """The gradient-masking checks run in the confirmation, except in a folder whose records were written without
    them (before they ran there): those records resume as they are."""
    from .runner import read_records

    if fresh or not records.is_file():
        return True
    try:
        return bool(read_records(records)[0].get("settings", {}).get("diagnostics", True))
    except Exception:  # noqa: BLE001  (an unreadable file is reported by the runner itself)
        return True


def _save(summary, mixer, out: Path, settings: dict, export, example) -> None:
    """calibration.json, mixer.safetensors (when the base models have cards) and the export: all, or none."""
    from .._io import all_or_nothing
    from .export import export_program, save_mixer

    with all_or_nothing():
        summary.save(out / "calibration.json")
        if all(hasattr(m, "card") for m in (mixer.std_model, mixer.rob_model)):
            save_mixer(mixer, out / "mixer.safetensors", dataset=settings.get("dataset", "unknown"))
        else:   # base models without robustmix cards (e.g. module:function factories)
            logger.warning("the calibrated mixer was not saved as a checkpoint (its base models have no robustmix "
                           "cards); --export FILE.pt2 saves it for any models")
        if export:
            export_program(mixer, example, export)


def _calibrate_mixer(g, h, splits: dict, cal: CalibrateSettings, out: Path, settings: dict, fresh: bool):
    from ..fitting.adaptive import FIRST_RECIPE, trained_adaptive_mixer
    from ..fitting.mixednuts import PATH_PERCENTILES, ValidationAttack, cached_validation_logits, calibrate_nonlinear
    from ..mixing import MixingArchitecture

    xv, yv = splits["val"]
    if cal.mixer == "nonlinear":
        logits = cached_validation_logits(out / "val-logits.safetensors", g, h, xv, yv, cal.threat,
                                          ValidationAttack(steps=cal.steps, seed=cal.seed))
        fits = [calibrate_nonlinear(logits.std_clean, logits.rob_clean, logits.rob_adv, logits.y, percentile=pc)
                for pc in PATH_PERCENTILES if pc > 0]
        clean, robust = [f.clean_acc for f in fits], [f.robust_proxy for f in fits]
        pick = choose_alpha(list(range(len(fits))), clean, robust, len(xv), cal.objective, cal.target)
        best = fits[int(pick.alpha)]
        mixer = best.mixer(g, h)
        choice = {**pick.to_dict(), "alpha": best.alpha, "percentile": best.percentile, "scale": best.scale,
                  "power": best.power, "bias": best.bias, "robust_proxy": "h's attacked validation examples kept "
                  "in the worst case (robustmix.fitting.mixednuts)"}
    else:
        xt, yt = splits["train"]
        training = dataclasses.replace(FIRST_RECIPE, seed=cal.seed, epochs=cal.adaptive_epochs,
                                       train_attack=cal.adaptive.train_attack, progress=True)
        arch = MixingArchitecture(features=cal.adaptive.adaptive_features, net=cal.adaptive.mixing_net)
        mixer = trained_adaptive_mixer(out / "adaptive", g, h, xt, yt, cal.threat, training, arch)
        choice = {"alpha": None, "objective": cal.objective, "target": cal.target, "feasible": None,
                  "validation": {}, "mixing_net": mixer.config()}
    test = _confirm(mixer, splits["test"], cal, out, settings, fresh)
    return CalibrationSummary(choice=choice, test=test, settings={**flat(cal), **settings}), mixer
