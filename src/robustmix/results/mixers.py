"""Summaries of choosing a mixer: calibration on validation confirmed on test, and every mixer on one front.

* ``calibration``: ``choice`` (alpha, objective, target, feasible, validation numbers), ``test`` (n, clean, robust
  and their intervals), ``settings``.
* ``pareto``: ``settings``, ``curve_attack``, ``curves`` {linear, nonlinear, adaptive: points {name, clean,
  clean_ci95, robust, robust_ci95, n, ...}}, ``headline`` (the same points with diagnostics and per-attack
  accuracy), ``calibration``, ``matched`` (matched-robustness gains over the linear mixer).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from ..errors import ConfigError
from .attacks import AttackRun, AutoAttackAlone, Diagnostics
from .base import Section, Summary, figure_dir, norm_name, with_command
from .format import fmt_ci, fmt_pct
from .values import Empty, Interval, Record, Settings, optional, record


def _passes(k) -> str:
    return "" if not k else f"{k} forward pass{'es' if k != 1 else ''} per prediction"


@record
class SplitResult(Record):
    """A mixer on one split: n, clean and robust (or certified) accuracy with their 95% intervals; on test also how
    robust accuracy was measured and what that evaluation reported beside it."""

    n: int
    clean: float
    clean_ci95: Interval
    robust: float
    robust_ci95: Interval
    robust_attack: str | None = optional()
    diagnostics: Diagnostics | None = optional()
    autoattack: AutoAttackAlone | None = optional()
    autoattack_flags: list[str] | None = optional()
    forward_passes: int | None = optional()


@record
class MixerChoice(Record):
    """The mixer calibrate chose: alpha (None for the adaptive mixer, which picks it per input), the objective and
    target, whether the target was met, the validation numbers ({} where nothing was chosen on validation), and the
    nonlinear map's parameters or the mixing network's configuration."""

    alpha: float | None
    objective: str
    target: float | None
    feasible: bool | None
    validation: SplitResult | Empty
    percentile: float | None = optional()
    scale: float | None = optional()
    power: float | None = optional()
    bias: float | None = optional()
    robust_proxy: str | None = optional()
    mixing_net: dict | None = optional()


@dataclasses.dataclass
class CalibrationSummary(Summary):
    KIND: ClassVar[str] = "calibration"
    choice: MixerChoice
    test: SplitResult
    settings: Settings = dataclasses.field(default_factory=Settings)

    def render(self, out_dir=None) -> list[Section]:
        c, s = self.choice, self.settings
        t = self.test
        what = f"certified @ {s.get('radius')}" if c.objective == "certified" else "robust"
        rows = [["split", "n", "clean (%) [95% CI]", f"{what} (%) [95% CI]"]]
        for name, d in (("validation", c.validation), ("test", t)):
            if d:
                rows.append([name, str(d.n), fmt_ci(d.clean, d.clean_ci95), fmt_ci(d.robust, d.robust_ci95)])
        params = ", ".join(f"{k} = {getattr(c, k):.3g}" for k in ("alpha", "scale", "power", "bias")
                           if isinstance(getattr(c, k), (int, float)))
        if s.get("mixer") == "adaptive" and s.get("mixing_net"):
            text = (f"adaptive mixer of g = `{s.get('std')}` and h = `{s.get('rob')}`: alpha chosen per input by a "
                    f"mixing network ({s.get('mixing_net')}, reading {s.get('adaptive_features')}) trained on the "
                    f"training split (training attack {s.get('train_attack')}); no target applies. Test row: "
                    f"{t.robust_attack or 'attack'}, on test images the training never saw.")
        else:
            text = (f"{s.get('mixer', 'linear')} mixer of g = `{s.get('std')}` and h = `{s.get('rob')}` chosen on the "
                    f"validation split for objective {c.objective} (target {c.target}: "
                    f"{'met' if c.feasible else 'NOT met, closest shown'}); {params}. Test row: "
                    f"{t.robust_attack or 'attack'}, on test images the choice never saw.")
        if t.autoattack:
            text += f" AutoAttack standard alone on the test images: {fmt_ci(t.autoattack.accuracy, t.autoattack.ci95)}%."
        d = t.diagnostics
        if d and d.suspected:
            text += (f" Gradient-masking warning on the test images: Square-only errors {d.square_only}, "
                     f"accuracy not falling with eps {d.eps_not_decreasing}, unbounded eps not reaching 0% "
                     f"{d.unbounded_not_zero}.")
        if t.autoattack_flags:
            text += f" AutoAttack's own checks flagged: {'; '.join(t.autoattack_flags)}."
        if t.forward_passes:
            text += f" Cost: {_passes(t.forward_passes)}."
        return [Section("Calibration: the mixer chosen on validation, confirmed on test",
                        with_command(text, self.command), [rows])]

    def summary_line(self) -> str:
        t = self.test
        return f"test: clean {fmt_ci(t.clean, t.clean_ci95)}%, robust {fmt_ci(t.robust, t.robust_ci95)}%, n = {t.n}"


FIRST_ADAPTIVE_RECIPE = ("logits", "mlp", "composite")   # what pareto runs trained before recording the recipe


@record
class MixerPoint(Record):
    """One mixer on the clean / robust plane, with n and 95% intervals: its parameters where it has them (the
    curves' percentile and alpha; the nonlinear map's scale, power and bias) and, on the headline images, what the
    worst-case evaluation reported beside it (diagnostics, each member's run, AutoAttack alone, its flags, the
    forward passes per prediction)."""

    name: str
    clean: float
    clean_ci95: Interval
    robust: float
    robust_ci95: Interval
    n: int
    percentile: float | None = optional()
    scale: float | None = optional()
    power: float | None = optional()
    bias: float | None = optional()
    alpha: float | None = optional()
    diagnostics: Diagnostics | None = optional()
    per_attack: list[AttackRun] | None = optional()
    autoattack: AutoAttackAlone | None = optional()
    autoattack_flags: list[str] | None = optional()
    forward_passes: int | None = optional()


@record
class MatchedRow(Record):
    """A nonlinear or adaptive curve point against the linear curve at the same (curve-attack) robust accuracy: the
    linear curve's clean accuracy there and the gain (None where the linear curve does not reach it)."""

    name: str
    percentile: float | None
    robust: float
    clean: float
    linear_clean: float | None
    gain: float | None


@record
class ParetoCalibration(Record):
    """How the mixers were calibrated on validation: the attack on h's validation logits and its seconds, the
    MixedNUTS fits per percentile (as :mod:`robustmix.fitting.mixednuts` writes them), and the linear mixer's alpha
    by the same rule."""

    logits_attack: str
    logits_seconds: float
    nonlinear: dict[str, dict]
    linear_alpha: float | None = optional()


@dataclasses.dataclass
class ParetoSummary(Summary):
    """``robustmix pareto``: every mixer's clean / worst-case points, calibration and matched-robustness gains."""

    KIND: ClassVar[str] = "pareto"
    settings: Settings
    curve_attack: str
    curves: dict[str, list[MixerPoint]]     # "linear", "nonlinear", "adaptive" -> points under the curve attack
    headline: list[MixerPoint]              # g, h and each mixer on the headline images, worst case
    calibration: ParetoCalibration
    matched: list[MatchedRow]

    def adaptive_recipe(self) -> tuple[str, str, str] | None:
        """(features, mixing net, training attack) of the adaptive rows; runs that predate the recorded recipe are
        the first recipe.  None without an adaptive row."""
        if not any(p.name == "adaptive" for p in self.headline):
            return None
        return tuple(self.settings.get(k, v) for k, v in zip(("adaptive_features", "mixing_net", "train_attack"),
                                                             FIRST_ADAPTIVE_RECIPE))

    def point(self, name: str) -> MixerPoint:
        """The headline point of ``name`` ("g", "h", "linear", "nonlinear" or "adaptive")."""
        for p in self.headline:
            if p.name == name:
                return p
        raise ConfigError(f"no headline point named {name!r}; have {[p.name for p in self.headline]}")

    def render(self, out_dir=None) -> list[Section]:
        from .plots import plot_pareto

        s = self.settings
        head = [["model", "clean (%) [95% CI]", "worst-case robust (%) [95% CI]", "AutoAttack alone (%)", "n",
                 "settings"]]
        flags = []
        for pt in self.headline:
            extra = ", ".join(f"{k}={getattr(pt, k):.3g}" for k in ("alpha", "scale", "power", "bias")
                              if getattr(pt, k) is not None)
            aa = pt.autoattack
            recipe = self.adaptive_recipe() if pt.name == "adaptive" else None
            head.append([pt.name + (" (first recipe)" if recipe == FIRST_ADAPTIVE_RECIPE else ""),
                         fmt_ci(pt.clean, pt.clean_ci95), fmt_ci(pt.robust, pt.robust_ci95),
                         fmt_pct(aa.accuracy) if aa else "not recorded", str(pt.n),
                         ", ".join(filter(None, [extra, _passes(pt.forward_passes),
                                                 recipe and "features {}, {} net, training attack {}".format(*recipe)]))])
            flags += [f"{pt.name}: {w}" for w in pt.autoattack_flags or []]
        matched = [["mixer", "curve robust (%)", "clean (%)", "linear clean at same robust (%)", "gain (points)"]]
        for r in self.matched:
            name = r.name + (f" (keep {r.percentile:g}%)" if r.percentile is not None else "") + (
                " (first recipe)" if r.name == "adaptive" and self.adaptive_recipe() == FIRST_ADAPTIVE_RECIPE else "")
            gain = "n/a" if r.gain is None else f"{100 * r.gain:+.1f}"
            matched.append([name, fmt_pct(r.robust), fmt_pct(r.clean), fmt_pct(r.linear_clean), gain])
        n = self.headline[0].n if self.headline else 0
        figs = [] if out_dir is None else plot_pareto(
            self.to_dict(), figure_dir(out_dir) / "pareto",
            f"Mixers on one front, {norm_name(s['norm'])} eps = {s['eps']} (stars: worst case, 95% CI, "
            f"empirical, n = {n})")[:1]
        text = (f"g = `{s['std']}`, h = `{s['rob']}`, {norm_name(s['norm'])} eps = {s['eps']}. Headline rows: the "
                f"worst case over the whole attack ensemble (AutoAttack standard, APGD-CE/DLR end to end, through "
                f"surrogates and by transfer), per example. Curves and the matched table: {self.curve_attack} on "
                f"{s.get('n_curve')} test images. Calibration on {s['n_val']} validation images only."
                + (" The adaptive rows are the first recipe (an MLP on both logits, trained with PGD on the composite "
                   "only), not the recipe calibrate and pareto train by default (a residual head trained through the "
                   "gate too): at l_inf 0.1 that recipe lands on the linear front (RESULTS.md, results/evaluate-linf-adaptive)."
                   if self.adaptive_recipe() == FIRST_ADAPTIVE_RECIPE else "")
                + (f" AutoAttack's own checks flagged: {'; '.join(flags)}." if flags else ""))
        return [Section("Mixers on one front: linear, nonlinear, adaptive", with_command(text, self.command),
                        [head, matched], figs)]


