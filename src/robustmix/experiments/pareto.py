"""Every mixer on one accuracy-robustness front (``robustmix pareto``).

For a pair (g, h) and a threat model:

1. **curves** (a cheaper attack, named on the axis: every APGD member of the
   worst-case ensemble, end to end, through the mixer's surrogates and by
   transfer from g and h, ``curve_steps`` iterations, on ``n_curve`` test
   images): the paper's linear mixer over its alpha grid, and the nonlinear
   (MixedNUTS) mixer along its calibration path (one calibrated map per
   percentile of h's attacked validation examples kept);
2. **calibration** on the validation split only: the nonlinear mixer at
   ``percentile``, and the linear mixer at the alpha the same rule gives
   (identity map), both from logits computed once (:mod:`robustmix.fitting.mixednuts`);
3. **the adaptive mixer**: a mixing network trained on training images (clean
   toward low alpha, attacked toward high alpha, plus the mixture's loss), by
   the recipe ``adaptive_features`` / ``mixing_net`` / ``train_attack`` (the
   defaults of ``robustmix calibrate --mixer adaptive``);
4. **headline points** from the full worst-case evaluator with 95% intervals
   on ``n_headline`` test images: g, h, the calibrated linear mixer, the
   calibrated nonlinear mixer and the adaptive mixer.

Every evaluation goes through the runner (records under ``out``), the
calibration logits and the trained mixing network are saved, so an
interrupted run resumes.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from .._config import accepts_old_keywords, flat, group, option
from .._validation import alpha_grid
from ..results import ParetoSummary
from ..mixing import MixedClassifier
from ..fitting import (FIRST_RECIPE, MapSearch, ValidationAttack, ValidationLogits, cached_validation_logits,
                       calibrate_nonlinear, trained_adaptive_mixer)
from ..mixing import MixingArchitecture
from ..groups import ThreatModel, seed_option
from .calibrate import AdaptiveRecipe
from .evaluate_run import EvaluateConfig, evaluation_fields, run_evaluate
from .runner import Records

logger = logging.getLogger(__name__)


@accepts_old_keywords
@dataclasses.dataclass
class ParetoSettings:
    std: str = "fmnist-std-cnn"
    rob: str = "fmnist-at-linf-cnn"
    threat: ThreatModel = group(ThreatModel)
    n_curve: int = option(1000, "test images per curve point (a cheaper attack)")
    n_headline: int = option(1000, "test images per headline point (the full worst-case ensemble)")
    n_val: int = option(1000, "validation images for the calibration")
    n_train: int = option(10_000, "training images for the adaptive mixer")
    alphas: list = dataclasses.field(default_factory=alpha_grid)
    percentiles: list = dataclasses.field(default_factory=lambda: [50.0, 80.0, 90.0, 95.0, 99.0])
    percentile: float = 95.0
    std_map: str = option("softmax", "nonlinear mixer: how g's output becomes probabilities",
                          choices=["softmax", "onehot"])
    curve_steps: int = 20
    calib_steps: int = 20
    adaptive_epochs: int = 4
    adaptive: AdaptiveRecipe = group(AdaptiveRecipe)
    adaptive_attack_steps: int = 10
    adaptive_range: tuple = (0.0, 1.0)
    batch_size: int = option(500, "examples per batch")
    seed: int = seed_option()
    square_queries: int = 5000   # of AutoAttack's Square in the headline evaluations (AutoAttack's own number)

    def to_dict(self) -> dict:
        return flat(self)


def _point(summary, name: str, **extra) -> dict:
    return {"name": name, "clean": summary.clean_accuracy, "clean_ci95": summary.clean_ci95,
            "robust": summary.accuracy, "robust_ci95": summary.ci95, "n": summary.n, **extra}


def run_pareto(g, h, splits: dict, s: ParetoSettings, out, *, fresh: bool = False,
               progress: bool = True) -> ParetoSummary:
    """Curves, calibration, adaptive training and headline points (see the module docstring); returns the summary.

    ``splits``: {"train", "val", "test"} -> (x, y), each already cut to the sizes wanted.
    """
    out = Path(out)
    rec = out / "records"
    names = {"std": s.std, "rob": s.rob}
    x_test, y_test = splits["test"]
    curve_cfg = EvaluateConfig(threat=s.threat, seed=s.seed, attacks=["apgd-*"], steps=s.curve_steps,
                               batch_size=s.batch_size, diagnostics=False)
    full_cfg = EvaluateConfig(threat=s.threat, seed=s.seed, batch_size=s.batch_size,
                              square_queries=s.square_queries)
    xc, yc = x_test[:s.n_curve], y_test[:s.n_curve]
    xh, yh = x_test[:s.n_headline], y_test[:s.n_headline]

    def evaluate(model, tag, cfg, x, y, **extra):
        summary = run_evaluate(model, x, y, cfg, records=Records(rec / f"{tag}.jsonl", {**names, **extra}, fresh,
                                                                 progress))
        return summary

    summary = {"kind": "pareto", "settings": s.to_dict(), "curve_attack": f"APGD-CE/DLR ensemble ({s.curve_steps} steps, end to end, "
               f"surrogates and transfer), n = {len(xc)}", "curves": {}, "headline": []}
    linear = []
    for a in s.alphas:
        res = evaluate(MixedClassifier(g, h, a), f"curve-linear-{a:g}", curve_cfg, xc, yc, mixer="linear", alpha=a)
        linear.append(_point(res, "linear", alpha=a))
    summary["curves"]["linear"] = linear

    xv, yv = splits["val"]
    logits = cached_validation_logits(out / "val-logits.safetensors", g, h, xv, yv, s.threat,
                                      ValidationAttack(steps=s.calib_steps, seed=s.seed, batch_size=s.batch_size))
    calib = {}
    for pc in sorted(set(s.percentiles) | {s.percentile}):
        calib[pc] = calibrate_nonlinear(logits.std_clean, logits.rob_clean, logits.rob_adv, logits.y, percentile=pc,
                                        search=MapSearch(std_map=s.std_map))
    summary["calibration"] = {"logits_attack": logits.attack, "logits_seconds": logits.seconds,
                              "nonlinear": {str(pc): c.to_dict() | {"searched": len(c.searched)}
                                            for pc, c in calib.items()}}
    nonlinear = []
    for pc, c in sorted(calib.items()):
        res = evaluate(c.mixer(g, h), f"curve-nonlinear-p{pc:g}", curve_cfg, xc, yc, mixer="nonlinear",
                       **{k: getattr(c, k) for k in ("scale", "power", "bias", "alpha")})
        nonlinear.append(_point(res, "nonlinear", percentile=pc, alpha=c.alpha))
    summary["curves"]["nonlinear"] = nonlinear

    # the linear mixer at the alpha MixedNUTS's rule gives it (h's softmax itself, the identity map is not LN-based,
    # so the rule is applied to h's plain probabilities: alpha = 1 / (1 + c))
    lin_alpha = _linear_alpha(logits, s.percentile)
    summary["calibration"]["linear_alpha"] = lin_alpha

    xt, yt = splits["train"]
    training = dataclasses.replace(FIRST_RECIPE, epochs=s.adaptive_epochs, attack_steps=s.adaptive_attack_steps,
                                   batch_size=min(s.batch_size, 256), seed=s.seed,
                                   train_attack=s.adaptive.train_attack, progress=progress)
    arch = MixingArchitecture(features=s.adaptive.adaptive_features, net=s.adaptive.mixing_net,
                              alpha_range=tuple(s.adaptive_range))
    adaptive = trained_adaptive_mixer(out / "adaptive", g, h, xt, yt, s.threat, training, arch)
    res = evaluate(adaptive, "curve-adaptive", curve_cfg, xc, yc, mixer="adaptive")
    summary["curves"]["adaptive"] = [_point(res, "adaptive")]
    best = calib[s.percentile]
    heads = [("g", g, {}), ("h", h, {}), ("linear", MixedClassifier(g, h, lin_alpha), {"alpha": lin_alpha}),
             ("nonlinear", best.mixer(g, h), {k: getattr(best, k) for k in ("scale", "power", "bias", "alpha")}),
             ("adaptive", adaptive, {})]
    for name, model, extra in heads:
        res = evaluate(model, f"headline-{name}", full_cfg, xh, yh, mixer=name, **extra)
        summary["headline"].append(_point(res, name, **extra, diagnostics=res.diagnostics,
                                          per_attack=res.per_attack, **evaluation_fields(res)))
    summary["matched"] = matched_table(summary)
    result = ParetoSummary.from_dict(summary)
    result.save(out / "summary.json")
    return result


def _linear_alpha(logits: ValidationLogits, percentile: float) -> float:
    """alpha = 1 / (1 + c) with c the ``percentile``-kept margin of h's own softmax on its attacked-correct examples."""
    import math

    q = logits.rob_adv.double().softmax(-1)
    y = logits.y
    top_other = q.scatter(1, y[:, None], -1.0).max(1).values
    margin = q.gather(1, y[:, None])[:, 0] - top_other
    kept = margin[margin > 0].sort().values
    if not len(kept):
        return 1.0
    k = max(0, min(len(kept) - 1, math.floor((1 - percentile / 100) * len(kept))))
    c = min(float(kept[k]), 1 - 1e-6)
    return 1.0 / (1.0 + c)


def matched_table(summary: dict) -> list[dict]:
    """MixedNUTS-style comparison at matched robustness, under the curves' one attack.

    For each point of the nonlinear and adaptive curves: its clean accuracy beside the linear curve's
    clean accuracy at the same (curve-attack) robust accuracy, interpolated between neighbouring alphas.
    """
    curve = sorted(summary["curves"]["linear"], key=lambda p: p["robust"])
    rows = []
    for name in ("nonlinear", "adaptive"):
        for p in summary["curves"].get(name, []):
            lin = _interp(curve, p["robust"])
            rows.append({"name": name, "percentile": p.get("percentile"), "robust": p["robust"], "clean": p["clean"],
                         "linear_clean": lin, "gain": None if lin is None else p["clean"] - lin})
    return rows


def _interp(curve: list[dict], robust: float) -> float | None:
    """Clean accuracy of the linear curve where its (curve-attack) robust accuracy equals ``robust``."""
    for lo, hi in zip(curve, curve[1:]):
        if lo["robust"] <= robust <= hi["robust"]:
            t = 0.0 if hi["robust"] == lo["robust"] else (robust - lo["robust"]) / (hi["robust"] - lo["robust"])
            return lo["clean"] + t * (hi["clean"] - lo["clean"])
    return None
