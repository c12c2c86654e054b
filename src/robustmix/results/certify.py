"""Summaries of certificates: certified-accuracy curves, the paper's Fig. 3, a Lipschitz h's exact certificates
and the certified front of every construction.

* ``certify``: ``alphas``, ``grid`` (radii), ``curves`` {"theorem1", "theorem2": {clean: k values, certified:
  k x len(grid)}}, ``n``, ``settings``.
* ``fig3``: ``settings``, ``certified`` {grid, rs, lipschitz}, ``n``.
* ``lipschitz-certified``: certified accuracy per method, alpha and radius, with the curves behind it.
* ``certify-front``: ``n``, ``radii``, ``points`` (one per classifier), ``verdict`` (the front read at fixed clean
  accuracy), ``settings``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from ..errors import ConfigError
from .base import Section, Summary, figure_dir, rate_ci, with_command
from .format import at_radius, fmt_ci, fmt_pct
from .values import Interval, Record, Settings, Value, decode, optional, record, to_json


@record
class Curve(Record):
    """One certified-accuracy curve: ``certified[j]`` at l2 radius ``grid[j]``, and the clean accuracy of the
    classifier certified; the form the plots draw."""

    grid: list[float]
    certified: list[float]
    clean: float


@record
class CertifiedCurves(Record):
    """Certified accuracy of one certificate at several alphas: ``certified[k][j]`` at ``alphas[k]`` and radius
    ``grid[j]``, ``clean[k]`` the clean accuracy there; ``estimator`` and ``clean_of`` (which classifier the clean
    accuracy is about) where the run recorded them.  A certify summary keeps alphas and grid beside its curves."""

    alphas: list[float] | None = optional()
    grid: list[float] | None = optional()
    certified: list[list[float]]
    clean: list[float]
    estimator: str | None = optional()
    clean_of: str | None = optional()

    def curve(self, k: int = 0, grid: list[float] | None = None) -> Curve:
        """The curve at the ``k``-th alpha (on ``grid`` when the curves do not keep their own)."""
        return Curve(grid=self.grid if grid is None else grid, certified=self.certified[k], clean=self.clean[k])


def certify_estimator(settings: dict, curve: str) -> str:
    """How a certify curve's radii were obtained, said plainly (sound or a point estimate)."""
    delta = settings.get("delta")
    if curve == "theorem1" and settings.get("lipschitz"):
        return "Theorem 1 with h's guaranteed Lipschitz bound (exact, sound)"
    if settings.get("sound"):
        return (f"tight sound certificate: selection samples, one Clopper-Pearson bound on the selected class, "
                f"holds with probability 1 - {delta}" + (", sequential sampling" if settings.get("sequential") else ""))
    return ("point estimate from the Monte-Carlo mean of h's smoothed scores (NOT a sound certificate; add --sound "
            "for one)")


@dataclasses.dataclass
class CertifySummary(Summary):
    KIND: ClassVar[str] = "certify"
    n: int
    alphas: list[float]
    grid: list[float]
    curves: dict[str, CertifiedCurves]      # "theorem1", "theorem2" -> certified accuracy per alpha and radius
    settings: Settings = dataclasses.field(default_factory=Settings)

    def certified_at(self, curve: str, alpha: float, radius: float) -> float:
        """Certified accuracy of ``curve`` at ``alpha`` and the largest grid radius <= ``radius``."""
        c = self.curves[curve]
        k = min(range(len(self.alphas)), key=lambda i: abs(self.alphas[i] - alpha))
        j = max(i for i, r in enumerate(self.grid) if r <= radius + 1e-12)
        return c.certified[k][j]

    def reported_radii(self) -> list[float]:
        return list(self.settings.get("radii") or [0.25, 0.5, 0.75, 1.0])

    def render(self, out_dir=None) -> list[Section]:
        from .plots import plot_certified

        s, radii, out = self.settings, self.reported_radii(), []
        what = f"sigma = {s['sigma']}" if s.get("sigma") else "Lipschitz h"
        for key, c in self.curves.items():
            sound = "sound" if "NOT" not in certify_estimator(s, key) else "point estimate, not sound"
            rows = [["alpha", "clean (%) [95% CI]"] + [f"certified @ {r:g} (%) [95% CI]" for r in radii]]
            for i, a in enumerate(self.alphas):
                rows.append([f"{a:.2f}", fmt_ci(c.clean[i], rate_ci(c.clean[i], self.n))] +
                            [fmt_ci(v, rate_ci(v, self.n)) for v in
                             (self.certified_at(key, a, r) for r in radii)])
            figs = [] if out_dir is None else plot_certified(
                {f"alpha={a:.2f}": c.curve(i, self.grid).to_json() for i, a in enumerate(self.alphas)},
                figure_dir(out_dir) / f"certified_{key}",
                f"Certified l2 accuracy, {key}, {what}, {sound}, n = {self.n}")[:1]
            text = (f"Mixture of g = `{s.get('std')}` and h = `{s.get('rob')}` ({what}), certified with "
                    f"{key.replace('theorem', 'Theorem ')}; estimator: {certify_estimator(s, key)}"
                    + (f"; {_noise_samples(s)}" if s.get("sigma") else "")
                    + f"; n = {self.n}; brackets: 95% Clopper-Pearson intervals over the images."
                    + f" Clean: {_clean_of(s, key)}."
                    + (f" Sequential sampling ({_sequential_rule(s)}), steered by --radii: the curve between and "
                       "beyond them is a lower bound." if s.get("sequential") else ""))
            out.append(Section(f"Certified accuracy: {key.replace('theorem', 'Theorem ')} ({sound})",
                               with_command(text, self.command), [rows], figs))
        return out

    def summary_line(self) -> str:
        key, a, s = next(iter(self.curves)), self.alphas[-1], self.settings
        used = (f"; {_noise_samples(s)}" if s.get("sigma") else "")
        return ("certified " + "  ".join(f"@{r:g} {fmt_pct(self.certified_at(key, a, r))}%" for r in self.reported_radii())
                + f"  ({key}, alpha = {a:.2f}, n = {self.n}{'' if s.get('sound') or s.get('lipschitz') else ', point estimate'}"
                + f"{', ' + _sequential_rule(s) + ' steered by --radii' if s.get('sequential') else ''}){used}")


def _sequential_rule(settings: dict) -> str:
    rule = settings.get("sequential_rule", "doubling-looks")      # runs before the option existed used the looks
    return ("a confidence sequence, valid after any sample" if rule == "confidence-sequence" else
            "alpha spending over doubling looks")


def _noise_samples(s: dict) -> str:
    """The noise samples per image a smoothed certify run drew: with --sound, n0 selection + the estimation ones."""
    total, est = s.get("samples_per_image"), s.get("num_samples")
    if not s.get("sound"):
        return f"{est:,} noise samples per image (one Monte-Carlo pass)"
    parts = f"{s.get('n0')} selection + {'up to ' if s.get('sequential') else ''}{est:,} estimation samples"
    if total is None:
        return f"noise samples per image: {parts}"
    return f"{total:,.0f} noise samples per image{' on average' if s.get('sequential') else ''} ({parts})"


def _clean_of(s: dict, curve: str) -> str:
    """Which classifier a certify summary's clean accuracy is about."""
    if curve == "theorem1" and s.get("lipschitz"):
        return "the mixture's prediction at the clean input"
    if not s.get("sound"):
        return "the mixture with h's Monte-Carlo estimate at the clean input, the classifier the radii are computed for"
    if s.get("clean_of") == "certified":
        return ("the certified classifier's output at the clean input (its certified class where it certifies, "
                "elsewhere the mixture with h's vote frequencies)")
    return ("the mixture with h's mean softmax at the clean input, a point estimate of another classifier than the "
            "hard-vote mixture certified (records written before the certified classifier's clean prediction was "
            "kept; rerun with --fresh for it)")


def _fig3_clean_of(tight: str | None) -> str:
    """Which classifier each Fig. 3 row's clean column is about."""
    text = (" Clean column: each row's own classifier at the clean input; the Monte-Carlo and simultaneous-bound rows "
            "certify the mixture with h's mean softmax and show its clean accuracy")
    if tight == "certified":
        return text + ("; the tight rows certify the mixture with h's hard votes and show that classifier's (its "
                       "certified class where it certifies, elsewhere h's vote frequencies).")
    return text + ("; the tight rows certify the mixture with h's hard votes, but these records predate its clean "
                   "prediction, so their clean column is the mean-softmax mixture's as well (rerun with --fresh for "
                   "the certified classifier's).")


@record
class CurvePair(Record):
    """One certificate of Fig. 3 for the smoothed h's mixture and for the smoothed baseline (alpha = 1)."""

    mixture: CertifiedCurves
    baseline: CertifiedCurves


@record
class SmoothedFig3(Record):
    """Fig. 3's smoothed part: the alpha matching the baseline's clean accuracy, and each certificate's curves
    (Theorems 1 and 2 from the Monte-Carlo mean, from simultaneous bounds, and the tight Clopper-Pearson one)."""

    alpha: float
    baseline_clean: float
    thm1: CurvePair | None = optional()
    thm1_sound: CurvePair | None = optional()
    thm2: CurvePair | None = optional()
    thm2_sound: CurvePair | None = optional()
    thm2_tight: CurvePair | None = optional()


@record
class LipschitzFig3(Record):
    """Theorem 1 with a Lipschitz h: its per-class probability Lipschitz bound and the curves at several alphas."""

    lipschitz_per_class: float
    curve: CertifiedCurves


@record
class Fig3Certified(Record):
    """What ``run_fig3`` returns: the radius grid, the smoothed comparison and, optionally, the Lipschitz h."""

    grid: list[float] | None = optional()
    rs: SmoothedFig3
    lipschitz: LipschitzFig3 | None = optional()


@dataclasses.dataclass
class Fig3Summary(Summary):
    """``robustmix fig3``: the paper's Fig. 3 (a smoothed h mixed at matched clean accuracy against a
    smaller-sigma smoothed baseline, Theorems 1 and 2) and, optionally, Theorem 1 with a Lipschitz h."""

    KIND: ClassVar[str] = "fig3"
    settings: Settings
    certified: Fig3Certified
    n: int | None = None

    ROWS: ClassVar[dict] = {"thm1": "Theorem 1, Monte-Carlo mean (point estimate, not sound)",
                            "thm2": "Theorem 2, Monte-Carlo mean (point estimate, not sound)",
                            "thm1_sound": "Theorem 1, simultaneous bounds (sound)",
                            "thm2_sound": "Theorem 2, simultaneous bounds (sound)",
                            "thm2_tight": "Theorem 2, tight Clopper-Pearson (sound; = Cohen's CERTIFY at alpha 1)"}

    def render(self, out_dir=None) -> list[Section]:
        from .plots import plot_certified

        c, s = self.certified, self.settings
        rs, radii, n = c.rs, (0.25, 0.5, 1.0), self.n
        ci = (lambda v: fmt_ci(v, rate_ci(v, n))) if n else fmt_pct
        rows = [["curve", "estimator", f"clean (%){' [95% CI]' if n else ''}"] + [f"r = {r:g}" for r in radii]]
        for thm in [k for k in self.ROWS if getattr(rs, k) is not None]:
            for who in ("mixture", "baseline"):
                cur = getattr(getattr(rs, thm), who)
                rows.append([f"{who}", self.ROWS[thm], ci(cur.clean[0])] +
                            [ci(at_radius(cur.grid, cur.certified[0], r)) for r in radii])
        lc = c.lipschitz.curve if c.lipschitz else CertifiedCurves(alphas=[], certified=[], clean=[])
        for k, a in enumerate(lc.alphas):
            rows.append([f"Lipschitz net, alpha={a:.1f}", "Theorem 1, guaranteed Lipschitz bound (sound)",
                         ci(lc.clean[k])] + [ci(at_radius(lc.grid, lc.certified[k], r)) for r in radii])
        figs = []
        if out_dir is not None:
            for theorem, name in ((1, "Lipschitz-based (Theorem 1)"), (2, "RS-based (Theorem 2)")):
                data, sound = getattr(rs, f"thm{theorem}"), getattr(rs, f"thm{theorem}_sound")
                curves = {f"mixture, alpha={rs.alpha:.2f}, point estimate": data.mixture.curve().to_json(),
                          "baseline RS (alpha=1), point estimate": data.baseline.curve().to_json(),
                          "mixture, sound bounds": {**sound.mixture.curve().to_json(), "ls": ":"},
                          "baseline, sound bounds": {**sound.baseline.curve().to_json(), "ls": ":"}}
                if theorem == 2 and rs.thm2_tight is not None:
                    curves["mixture, tight sound (CP)"] = {**rs.thm2_tight.mixture.curve().to_json(), "ls": "--"}
                    curves["baseline, tight sound (= Cohen)"] = {**rs.thm2_tight.baseline.curve().to_json(),
                                                                 "ls": "--"}
                figs += plot_certified(curves, figure_dir(out_dir) / f"fig3_thm{theorem}",
                                       f"Fig. 3: {name}, sigma {s.get('smooth_sigma')} vs "
                                       f"{s.get('baseline_sigma')}, n = {n}")[:1]
            if lc.alphas:
                figs += plot_certified({f"alpha={a:.1f}": lc.curve(k).to_json() for k, a in enumerate(lc.alphas)},
                                       figure_dir(out_dir) / "fig3_lipschitz_net",
                                       f"Theorem 1 with the Lipschitz network as h (sound), n = {n}")[:1]
        text = (f"Smoothed h (sigma = {s.get('smooth_sigma')}) mixed at alpha = {rs.alpha:.2f}, chosen so the "
                f"mixture's clean accuracy matches the sigma = {s.get('baseline_sigma')} baseline "
                f"({fmt_pct(rs.baseline_clean)} %). {s.get('certify_samples')} noise samples per image, failure "
                f"probability {s.get('certify_delta')}; n = {n} test images"
                + ("; brackets: 95% Clopper-Pearson intervals over the images. " if n else ". ")
                + "Rows marked 'point estimate' use the Monte-Carlo mean as if it were exact (the paper's curves) "
                "and are not certificates; 'sound' rows hold with probability 1 - delta."
                + (_fig3_clean_of(rs.thm2_tight.mixture.clean_of) if rs.thm2_tight is not None else "")
                + (f" Lipschitz network: per-class probability Lipschitz bound "
                   f"{c.lipschitz.lipschitz_per_class:.3f}." if c.lipschitz else ""))
        return [Section("Fig. 3: certified accuracy (l2 radius)", with_command(text, self.command), [rows], figs)]


@dataclasses.dataclass
class LipschitzCertifiedSummary(Summary):
    """``scripts/lipschitz_certified.py``: a 1-Lipschitz h and its mixtures, certified by Theorem 1 and the logit
    ball (exact, sound), on a fixed test slice."""

    KIND: ClassVar[str] = "lipschitz-certified"
    n: int
    split: str
    h: str
    g: str
    lipschitz_l2: float
    pairwise_lipschitz_max: float
    alphas: list[float]
    clean_accuracy: dict[str, float]                       # alpha -> clean accuracy of the mixture
    certified: dict[str, dict[str, dict[str, float]]]      # method -> alpha -> radius -> certified accuracy
    curves: dict[str, dict[str, Curve]]                    # method -> alpha -> its curve
    clean_accuracy_h_at_temperature: dict[str, float] = dataclasses.field(default_factory=dict)
    h_plain_margin: dict[str, float] = dataclasses.field(default_factory=dict)   # radius -> h's logit-margin certificate

    def render(self, out_dir=None) -> list[Section]:
        from .plots import plot_lipschitz_certified

        radii = list(next(iter(next(iter(self.certified.values())).values())))
        rows = [["method", "alpha", "clean (%) [95% CI]"] + [f"r = {r}" for r in radii]]
        ci = lambda v: fmt_ci(v, rate_ci(v, self.n))  # noqa: E731
        for method, by_alpha in self.certified.items():
            for a, accs in by_alpha.items():
                rows.append([method, a, ci(self.clean_accuracy.get(a, float("nan")))] + [ci(accs[r]) for r in radii])
        if self.h_plain_margin:
            rows.append(["h alone, logit margin / Lipschitz", "1.0", ci(self.clean_accuracy.get("1.0", float("nan")))]
                        + [ci(self.h_plain_margin[r]) if r in self.h_plain_margin else "n/a" for r in radii])
        figs = [] if out_dir is None else plot_lipschitz_certified(
            self.to_dict(), figure_dir(out_dir) / "lipschitz_certified",
            f"Certified l2 accuracy, 1-Lipschitz h and mixtures (sound), n = {self.n}")[:1]
        text = (f"g = `{self.g}`, h = `{self.h}` (l2 Lipschitz bound {self.lipschitz_l2:.3f}, largest pairwise logit "
                f"bound {self.pairwise_lipschitz_max:.3f}) on {self.split}, n = {self.n}. Certificates are exact "
                "(no sampling): Theorem 1 and the logit-ball bound fed to Lemma 1; brackets: 95% Clopper-Pearson "
                "intervals over the images.")
        return [Section("Certified accuracy of a 1-Lipschitz h and its mixtures", with_command(text, self.command),
                        [rows], figs)]


def _merge_rows(rows: list, vary: int) -> list:
    """Consecutive table rows equal in every column but ``vary`` as one row whose ``vary`` cell reads 'a to b (k)'."""
    out, run = [], []
    for row in rows + [None]:
        if run and row is not None and row[:vary] + row[vary + 1:] == run[0][:vary] + run[0][vary + 1:]:
            run.append(row)
            continue
        if run:
            out.append(run[0] if len(run) == 1 else
                       run[0][:vary] + [f"{run[0][vary]} to {run[-1][vary]} ({len(run)})"] + run[0][vary + 1:])
        run = [row]
    return out


@record
class FrontPoint(Record):
    """One classifier of the certified front: its construction (``family``), noise ``sigma`` (None for a Lipschitz
    h), alpha or threshold (``param``), clean accuracy and, per reported radius (``str(r)``), its sound certified
    accuracy, each with its 95% interval over the n images."""

    family: str
    sigma: float | None
    param: float
    n: int
    clean: float
    clean_ci95: Interval
    certified: dict[str, float]
    certified_ci95: dict[str, Interval]
    estimator: str


@record
class Best(Record):
    """A construction's best classifier at a clean-accuracy level: its certified accuracy with interval, sigma,
    parameter and clean accuracy."""

    certified: float
    ci95: Interval
    sigma: float | None
    param: float
    clean: float


@dataclasses.dataclass(frozen=True, eq=False)
class VerdictRow(Value):
    """The front read at one clean-accuracy level: per construction, its :class:`Best` classifier whose clean
    accuracy reaches ``clean_at_least`` (None where none does).  Stored flat: ``{"clean_at_least": ..., family:
    best, ...}``."""

    clean_at_least: float
    best: dict[str, Best | None]

    def to_json(self) -> dict:
        return {"clean_at_least": self.clean_at_least, **to_json(self.best)}

    @classmethod
    def from_json(cls, data, where: str = "") -> VerdictRow:
        if isinstance(data, cls):
            return data
        if not (isinstance(data, dict) and "clean_at_least" in data):
            raise ConfigError(f"{where} is {data!r}, not a row of the front's verdict")
        rest = {k: v for k, v in data.items() if k != "clean_at_least"}
        return cls(clean_at_least=decode(float, data["clean_at_least"], f"{where}.clean_at_least"),
                   best=decode(dict[str, Best | None], rest, where))


@dataclasses.dataclass
class CertifyFrontSummary(Summary):
    """``robustmix certify-front``: clean against sound certified accuracy for every construction that combines
    g with a certifiable h (smoothed h alone, the Theorem 2 mixture, ACES selection, a Lipschitz h's mixtures)."""

    KIND: ClassVar[str] = "certify-front"
    n: int
    radii: list[float]
    points: list[FrontPoint]
    verdict: dict[str, list[VerdictRow]]    # str(r) -> rows of best_by_clean, one per clean-accuracy level
    settings: Settings

    LABELS: ClassVar[dict] = {"cohen": "smoothed h alone (Cohen)", "mixture": "mixture, Theorem 2",
                              "aces": "ACES selection", "lipschitz-theorem1": "Lipschitz h mixture, Theorem 1",
                              "lipschitz-logit-ball": "Lipschitz h mixture, logit ball (h's logits x T)"}

    def summary_line(self) -> str:
        r = str(self.radii[0])
        best = max(self.points, key=lambda p: p.certified[r])
        return (f"best certified accuracy at r = {r}: {fmt_ci(best.certified[r], best.certified_ci95[r])}% "
                f"({self.LABELS.get(best.family, best.family)}, clean {fmt_pct(best.clean)}%), "
                f"n = {self.n}, {len(self.points)} classifiers")

    def render(self, out_dir=None) -> list[Section]:
        from .plots import plot_front

        cols = [f"certified @ {r:g} (%) [95% CI]" for r in self.radii]
        table = [["construction", "sigma", "alpha / threshold", "clean (%) [95% CI]"] + cols]
        for p in self.points:
            if p.family == "cohen":
                continue      # the mixture's alpha = 1 row
            table.append([self.LABELS.get(p.family, p.family), "-" if p.sigma is None else f"{p.sigma:g}",
                          f"{p.param:g}", fmt_ci(p.clean, p.clean_ci95)] +
                         [fmt_ci(p.certified[str(r)], p.certified_ci95[str(r)]) for r in self.radii])
        table = table[:1] + _merge_rows(table[1:], 2)
        families = list(self.LABELS)
        verdicts = []
        for r in self.radii:
            rows = [["clean >= (%)"] + [f"{self.LABELS[f]} @ {r:g}" for f in families]]
            for row in self.verdict[str(r)]:
                cells = []
                for f in families:
                    b = row.best.get(f)
                    cells.append("-" if b is None else
                                 f"{fmt_ci(b.certified, b.ci95)} ({'' if b.sigma is None else 'σ ' + format(b.sigma, 'g') + ', '}"
                                 f"{b.param:g})")
                rows.append([fmt_pct(row.clean_at_least)] + cells)
            verdicts.append(rows[:1] + _merge_rows(rows[1:], 0))
        figs = [] if out_dir is None else plot_front(
            to_json(self.points), self.radii, self.LABELS, figure_dir(out_dir) / "certified_front",
            f"Certified front, n = {self.n} test images, every point sound at delta = {self.settings.get('delta')} "
            "(95% CI)")[:1]
        s = self.settings
        text = (f"n = {self.n} images of {s.get('dataset')} {s.get('split')}. g = `{s.get('std')}`; smoothed h: {', '.join(f'`{m}` at sigma {sg:g}' for m, sg in zip(s.get('noise_models', []), s.get('sigmas', [])))}"
                f"; Lipschitz h: `{s.get('lipschitz_model')}` (logit-ball mixtures with its logits times T = "
                f"{s.get('lipschitz_temperature', 1)}). {s.get('num_samples')} noise samples and n0 = "
                f"{s.get('n0')} selection samples per image, delta = {s.get('delta')}; one sampling pass per image "
                "and sigma serves the smoothed h, its mixtures and ACES. Clean accuracy: each classifier's output "
                "at the clean input (Monte-Carlo vote frequencies for smoothed models). Certified accuracy at r: "
                "certified radius >= r and the certified class correct. The second table reads the front at fixed "
                "clean accuracy: each construction's best certified accuracy among its classifiers whose clean "
                "accuracy reaches the level (sigma, alpha or threshold in brackets). Consecutive rows equal in "
                "every value shown are merged into one: 'a to b (k)' gives the range of the alpha, threshold or "
                "level that varies and the number of rows.")
        return [Section("Certified front: the mixture against ACES selection and smaller sigma",
                        with_command(text, self.command), [table, *verdicts], figs)]
