"""Typed results: one dataclass per summary, with a versioned JSON schema.

Every summary serialises to a JSON object ``{"kind": ..., "schema_version":
..., <fields>}`` and is rebuilt with :meth:`Summary.from_dict`, which refuses
another kind, a newer schema or unknown fields with a message that says how
to regenerate the file.  Reports and the command line read fields by name.

Schema (version 1), all accuracies are fractions in [0, 1] and every one that
comes from examples carries its two-sided 95% Clopper-Pearson interval and n:

* ``sweep``: ``alphas`` (k), ``n``, ``accuracy`` {clean, std, rob, mix: k
  values}, ``ci95`` {same keys: k pairs [lo, hi]}, ``table1`` {g, h: gap
  statistics of the paper's Table I}.
* ``tradeoff``: ``n``, ``gammas`` (``"inf"`` for infinity), ``eps``, ``norm``,
  ``steps``, ``curves`` {"trust|space": {clean, attacked: per-gamma values}}.
* ``attack``: ``n``, ``alpha``, ``settings``, ``accuracy`` {clean, pgd,
  autoattack}, ``ci95``, ``autoattack_warnings``.
* ``certify``: ``alphas``, ``grid`` (radii), ``curves`` {"theorem1",
  "theorem2": {clean: k values, certified: k x len(grid)}}, ``n``, ``settings``.
* ``calibration``: ``choice`` (alpha, objective, target, feasible, validation
  numbers), ``test`` (n, clean, robust and their intervals), ``settings``.
* ``evaluate``: the worst-case evaluator's summary (``accuracy``, ``ci95``,
  ``n``, per-attack table, diagnostics), see :mod:`robustmix.attacks.evaluate`;
  optional (absent in older files): ``autoattack`` (AutoAttack standard alone:
  accuracy, ci95, n, completion run), ``forward_passes_per_prediction`` (base-model
  forwards per prediction) and ``mixing_network_passes``.
* ``pareto``: ``settings``, ``curve_attack``, ``curves`` {linear, nonlinear,
  adaptive: points {name, clean, clean_ci95, robust, robust_ci95, n, ...}},
  ``headline`` (the same points with diagnostics and per-attack accuracy),
  ``calibration``, ``matched`` (matched-robustness gains over the linear mixer).
* ``verify``: ``n``, ``accuracy`` and ``ci95`` (the model on the saved inputs: an
  upper bound on its robust accuracy there), the file's threat model, weights and
  model record, ``evaluation`` (the file's unchecked claims); optional (absent in
  older files): ``clean_accuracy``, ``clean_ci95``, ``index_range``, ``contiguous``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from ._binomial import binomial_ci  # noqa: F401  (re-exported: the interval every summary carries)
from ._io import read_json, write_json
from .errors import ConfigError
from .reports.format import at_radius, fmt_ci, fmt_pct

SCHEMA_VERSION = 2        # 2: every summary may carry the command line that produced it (``command``)
KINDS: dict[str, type] = {}


def rate_ci(fraction: float, n: int) -> list[float]:
    return list(binomial_ci(round(fraction * n), n))


@dataclasses.dataclass
class Section:
    """One part of a report: a title, a paragraph, tables (rows of strings, the first a header) and figure files."""

    title: str
    text: str
    tables: list = dataclasses.field(default_factory=list)
    figures: list = dataclasses.field(default_factory=list)


def _figure_dir(out_dir) -> Path | None:
    return None if out_dir is None else Path(out_dir) / "figures"


def _with_command(text: str, command: str) -> str:
    return text + (f" Command: `{command}`." if command else "")


@dataclasses.dataclass
class Summary:
    """Base class: JSON round trip with kind and schema checks, and a report section of its own (:meth:`render`)."""

    KIND: ClassVar[str] = ""
    command: str = dataclasses.field(default="", kw_only=True)   # the command line that produced it
    data: dict | None = dataclasses.field(default=None, kw_only=True)   # --data: source, classes, split rule, items

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.KIND:
            KINDS[cls.KIND] = cls

    def to_dict(self) -> dict:
        out = {"kind": self.KIND, "schema_version": SCHEMA_VERSION, **dataclasses.asdict(self)}
        if out.get("data") is None:
            out.pop("data", None)
        return out

    def data_sections(self) -> list[Section]:
        """The report's account of the user's own data (--data): where it came from, its classes, and per split the
        rule that made it and the examples of each class used; none for the named data sets."""
        d = self.data
        if not d:
            return []
        k, names, splits = d.get("num_classes", 0), d.get("classes") or [], d.get("splits", {})
        text = (f"Images from `{d.get('path')}` ({d.get('format')}, shape {'x'.join(map(str, d.get('shape', [])))}, "
                f"{k} classes" + ("; class k is the k-th folder name in sorted order" if names else "") + "). "
                + " ".join(f"{s}: {v.get('n')} examples, {v.get('rule')}." for s, v in splits.items())
                + " summary.json lists every example's file (or row of x) under data.splits.")
        if k > 100:
            return [Section("Data", text + (" Classes: " + ", ".join(f"{i} {c}" for i, c in enumerate(names)) + "."
                                            if names else ""))]
        rows = [["class"] + (["name"] if names else []) + [f"{s} examples" for s in splits]]
        rows += [[str(i)] + ([names[i]] if names else []) +
                 [str((v.get("class_counts") or [])[i]) if i < len(v.get("class_counts") or []) else "0"
                  for v in splits.values()] for i in range(k)]
        return [Section("Data", text, [rows])]

    @classmethod
    def from_dict(cls, data: dict):
        if not isinstance(data, dict):
            raise ConfigError(f"a {cls.KIND} summary must be a JSON object")
        kind, version = data.get("kind", cls.KIND), data.get("schema_version", SCHEMA_VERSION)
        if kind != cls.KIND:
            raise ConfigError(f"expected a {cls.KIND} summary, got kind {kind!r}")
        check_version(version)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        body = {k: v for k, v in data.items() if k not in ("kind", "schema_version")}
        unknown, missing = set(body) - set(fields), {n for n, f in fields.items() if n not in body and
                                                      f.default is dataclasses.MISSING and
                                                      f.default_factory is dataclasses.MISSING}
        if unknown or missing:
            raise ConfigError(f"not a valid {cls.KIND} summary (unknown fields {sorted(unknown)}, missing "
                              f"{sorted(missing)}); rerun the command that wrote it")
        return cls(**body)

    def save(self, path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path):
        return cls.from_dict(read_json(path, what=f"{cls.KIND} summary"))

    def render(self, out_dir=None) -> list[Section]:
        """This summary's report sections; with ``out_dir`` its figures are drawn under ``out_dir/figures``."""
        raise NotImplementedError

    def summary_line(self) -> str:
        """One line for the console: the result that matters, with n and its 95% interval."""
        return ""


def check_version(version) -> None:
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ConfigError(f"summary schema version {version!r} is newer than this robustmix understands "
                          f"({SCHEMA_VERSION}); upgrade robustmix or rerun the command")


def summary_from_dict(data) -> Summary:
    """Any stored summary, typed by its ``kind`` (summaries written before kinds existed are recognised too)."""
    if not isinstance(data, dict):
        raise ConfigError("a robustmix summary must be a JSON object")
    if "kind" not in data:
        data = upgrade_legacy(data)
    kind = data.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"unknown summary kind {kind!r}; this robustmix reads "
                          f"{', '.join(sorted(KINDS))}: rerun the command that wrote it")
    return KINDS[kind].from_dict(data)


def upgrade_legacy(data: dict) -> dict:
    """A summary written before summaries carried their kind (robustmix 0.1 folders), in today's schema."""
    data = dict(data)
    if "schema" in data and "curves" in data:                        # scripts/lipschitz_certified.py, schema 1
        version = data.pop("schema")
        return {**data, "kind": "lipschitz-certified", "schema_version": version}
    if "alpha" in data and "clean" in data and "accuracy" not in data:  # attack: accuracies at the top level
        keys = [k for k in ("clean", "pgd", "autoattack") if isinstance(data.get(k), float)]
        n = data["n"]
        return {"kind": "attack", "n": n, "alpha": data["alpha"], "accuracy": {k: data[k] for k in keys},
                "ci95": {k: rate_ci(data[k], n) for k in keys},
                "settings": {k: v for k, v in data.items() if k not in keys + ["n", "alpha"]}}
    if "alphas" in data and "table1" in data:                        # sweep without intervals
        ci = {k: [rate_ci(v, data["n"]) for v in vals] for k, vals in data["accuracy"].items()}
        return {"ci95": ci, **data, "kind": "sweep"}
    if "gammas" in data and "curves" in data:
        return {**data, "kind": "tradeoff"}
    if any(k in data for k in ("sweep", "tradeoff", "headline")):     # the first demo summaries
        return {**data, "kind": "demo"}
    if "certified" in data:                                           # the first fig3 summaries
        return {**data, "kind": "fig3"}
    return data


def load_summary(path) -> Summary:
    return summary_from_dict(read_json(path, what="robustmix summary"))


def _norm_name(norm) -> str:
    return "l_inf" if str(norm).lower() in ("inf", "linf", "math.inf") or norm == float("inf") else f"l_{norm}"


@dataclasses.dataclass
class SweepSummary(Summary):
    KIND: ClassVar[str] = "sweep"
    alphas: list
    n: int
    accuracy: dict
    ci95: dict
    table1: dict
    settings: dict = dataclasses.field(default_factory=dict)   # eps, norm, steps, ... of the sweep

    def at(self, attack: str, alpha: float) -> float:
        """Accuracy under ``attack`` ("clean", "std", "rob", "mix") at the swept alpha closest to ``alpha``."""
        if attack not in self.accuracy:
            raise ConfigError(f"this sweep has no {attack!r} accuracy (it has {', '.join(self.accuracy)})")
        k = min(range(len(self.alphas)), key=lambda i: abs(self.alphas[i] - alpha))
        return self.accuracy[attack][k]

    def attack_name(self) -> str:
        s = self.settings
        return (f"PGD-{s.get('steps', '?')} ({_norm_name(s.get('norm', 'inf'))}, eps = {s.get('eps', '?')}, "
                f"{s.get('restarts', 1)} restart(s))")

    def table(self) -> list[list[str]]:
        """Accuracy (%) with its 95% interval per alpha; the header names n."""
        acc = self.accuracy
        rows = [[f"alpha (n = {self.n})"] + [k.upper() if k != "clean" else "Clean" for k in acc]]
        for i, a in enumerate(self.alphas):
            rows.append([f"{a:.2f}"] + [fmt_ci(acc[k][i], self.ci95[k][i]) for k in acc])
        return rows

    def table1_rows(self) -> list[list[str]]:
        def gap(v):
            return "n/a" if v is None or v != v else f"{v:.3f}"

        rows = [["model", "clean, correct", "clean, incorrect", "attacked, correct", "attacked, incorrect"]]
        for model in ("g", "h"):
            t = self.table1.get(model, {})
            rows.append([f"{model}(.)"] + [f"{gap(t.get(k))} (n = {t[k + '_n']})" if k + "_n" in t else gap(t.get(k))
                                           for k in ("clean_correct", "clean_incorrect", "adv_correct",
                                                     "adv_incorrect")])
        return rows

    def render(self, out_dir=None) -> list[Section]:
        from .reports.plots import plot_sweep

        figs = [] if out_dir is None else plot_sweep(
            self, _figure_dir(out_dir) / "fig2_alpha_sweep",
            f"Fig. 2: accuracy vs alpha, {self.attack_name()}, empirical, n = {self.n}")[:1]
        text = (f"{self.attack_name()} aimed at g (STD), at h (ROB) and at the mixture end to end (MIX); n = {self.n} "
                "test images; brackets: 95% Clopper-Pearson intervals. One attack per column: an upper bound on "
                "robust accuracy (the worst case over an attack ensemble: robustmix evaluate).")
        return [Section("Fig. 2: accuracy versus alpha", _with_command(text, self.command), [self.table()], figs),
                Section("Table I: average gap between the top two probabilities",
                        f"Attacked columns: each model under {self.attack_name()} aimed at itself; n = {self.n}; "
                        "counts of examples per cell in parentheses.", [self.table1_rows()])]

    def summary_line(self) -> str:
        i = self.alphas.index(max(self.alphas))
        key = "mix" if "mix" in self.accuracy else list(self.accuracy)[-1]
        return (f"h (alpha = {self.alphas[i]:.2f}): clean {fmt_ci(self.accuracy['clean'][i], self.ci95['clean'][i])}%, "
                f"{key.upper()} {fmt_ci(self.accuracy[key][i], self.ci95[key][i])}%, n = {self.n}")


@dataclasses.dataclass
class TradeoffSummary(Summary):
    KIND: ClassVar[str] = "tradeoff"
    n: int
    gammas: list
    eps: float
    norm: str
    steps: int
    curves: dict

    def render(self, out_dir=None) -> list[Section]:
        from .reports.plots import plot_tradeoff

        attack = f"PGD-{self.steps} ({_norm_name(self.norm)}, eps = {self.eps})"
        figs = [] if out_dir is None else plot_tradeoff(
            self, _figure_dir(out_dir) / "fig1_trust_terms",
            f"Fig. 1: trust terms $R_i$, PGD-{self.steps} eps={self.eps}, empirical, n = {self.n}")[:1]
        rows = [["R_i, space", "gamma", "clean (%) [95% CI]", "attacked (%) [95% CI]"]]
        for name, c in self.curves.items():
            for gamma, clean, adv in zip(self.gammas, c["clean"], c["attacked"]):
                rows.append([name, str(gamma), fmt_ci(clean, rate_ci(clean, self.n)),
                             fmt_ci(adv, rate_ci(adv, self.n))])
        text = (f"The mixture of eq. (3) for each trust term R_i, mixed in probabilities or logits, over gamma; "
                f"{attack} through the whole formulation; n = {self.n}; brackets: 95% Clopper-Pearson intervals.")
        return [Section("Fig. 1: trust terms R_i and mixing space", _with_command(text, self.command), [rows], figs)]


@dataclasses.dataclass
class AttackSummary(Summary):
    KIND: ClassVar[str] = "attack"
    n: int
    alpha: float
    settings: dict
    accuracy: dict
    ci95: dict
    autoattack_warnings: list = dataclasses.field(default_factory=list)

    def render(self, out_dir=None) -> list[Section]:
        s = self.settings
        names = {"clean": "clean", "pgd": f"PGD-{s.get('steps')} x {s.get('restarts', 1)} restart(s)",
                 "autoattack": f"AutoAttack ({s.get('autoattack')})"}
        rows = [["attack", "accuracy (%) [95% CI]", "n"]]
        rows += [[names.get(k, k), fmt_ci(v, self.ci95[k]), str(self.n)] for k, v in self.accuracy.items()]
        text = (f"The mixture at alpha = {self.alpha:g}, {_norm_name(s.get('norm'))} eps = {s.get('eps')}; each row one "
                "attack on its own (the worst case over an adaptive ensemble, per example: robustmix evaluate). "
                + (f"AutoAttack warnings: {'; '.join(self.autoattack_warnings)}." if self.autoattack_warnings else
                   "AutoAttack raised no warning."))
        return [Section(f"Attacks on the mixture at alpha = {self.alpha:g}", _with_command(text, self.command),
                        [rows])]

    def summary_line(self) -> str:
        return "  ".join(f"{k} {fmt_ci(v, self.ci95[k])}%" for k, v in self.accuracy.items()) + f"  n = {self.n}"


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
    alphas: list
    grid: list
    curves: dict
    settings: dict = dataclasses.field(default_factory=dict)

    def certified_at(self, curve: str, alpha: float, radius: float) -> float:
        """Certified accuracy of ``curve`` at ``alpha`` and the largest grid radius <= ``radius``."""
        c = self.curves[curve]
        k = min(range(len(self.alphas)), key=lambda i: abs(self.alphas[i] - alpha))
        j = max(i for i, r in enumerate(self.grid) if r <= radius + 1e-12)
        return c["certified"][k][j]

    def reported_radii(self) -> list[float]:
        return list(self.settings.get("radii") or [0.25, 0.5, 0.75, 1.0])

    def render(self, out_dir=None) -> list[Section]:
        from .reports.plots import plot_certified

        s, radii, out = self.settings, self.reported_radii(), []
        what = f"sigma = {s['sigma']}" if s.get("sigma") else "Lipschitz h"
        for key, c in self.curves.items():
            sound = "sound" if "NOT" not in certify_estimator(s, key) else "point estimate, not sound"
            rows = [["alpha", "clean (%) [95% CI]"] + [f"certified @ {r:g} (%) [95% CI]" for r in radii]]
            for i, a in enumerate(self.alphas):
                rows.append([f"{a:.2f}", fmt_ci(c["clean"][i], rate_ci(c["clean"][i], self.n))] +
                            [fmt_ci(v, rate_ci(v, self.n)) for v in
                             (self.certified_at(key, a, r) for r in radii)])
            figs = [] if out_dir is None else plot_certified(
                {f"alpha={a:.2f}": {"grid": self.grid, "certified": c["certified"][i], "clean": c["clean"][i]}
                 for i, a in enumerate(self.alphas)}, _figure_dir(out_dir) / f"certified_{key}",
                f"Certified l2 accuracy, {key}, {what}, {sound}, n = {self.n}")[:1]
            text = (f"Mixture of g = `{s.get('std')}` and h = `{s.get('rob')}` ({what}), certified with "
                    f"{key.replace('theorem', 'Theorem ')}; estimator: {certify_estimator(s, key)}"
                    + (f"; {_noise_samples(s)}" if s.get("sigma") else "")
                    + f"; n = {self.n}; brackets: 95% Clopper-Pearson intervals over the images."
                    + f" Clean: {_clean_of(s, key)}."
                    + (f" Sequential sampling ({_sequential_rule(s)}), steered by --radii: the curve between and "
                       "beyond them is a lower bound." if s.get("sequential") else ""))
            out.append(Section(f"Certified accuracy: {key.replace('theorem', 'Theorem ')} ({sound})",
                               _with_command(text, self.command), [rows], figs))
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


def _passes(k) -> str:
    return "" if not k else f"{k} forward pass{'es' if k != 1 else ''} per prediction"


@dataclasses.dataclass
class CalibrationSummary(Summary):
    KIND: ClassVar[str] = "calibration"
    choice: dict
    test: dict
    settings: dict = dataclasses.field(default_factory=dict)

    def render(self, out_dir=None) -> list[Section]:
        c, s = self.choice, self.settings
        what = f"certified @ {s.get('radius')}" if c.get("objective") == "certified" else "robust"
        rows = [["split", "n", "clean (%) [95% CI]", f"{what} (%) [95% CI]"]]
        for name, d in (("validation", c.get("validation")), ("test", self.test)):
            if d:
                rows.append([name, str(d["n"]), fmt_ci(d["clean"], d["clean_ci95"]),
                             fmt_ci(d["robust"], d["robust_ci95"])])
        params = ", ".join(f"{k} = {c[k]:.3g}" for k in ("alpha", "scale", "power", "bias")
                           if isinstance(c.get(k), (int, float)))
        if s.get("mixer") == "adaptive" and s.get("mixing_net"):
            text = (f"adaptive mixer of g = `{s.get('std')}` and h = `{s.get('rob')}`: alpha chosen per input by a "
                    f"mixing network ({s.get('mixing_net')}, reading {s.get('adaptive_features')}) trained on the "
                    f"training split (training attack {s.get('train_attack')}); no target applies. Test row: "
                    f"{self.test.get('robust_attack', 'attack')}, on test images the training never saw.")
        else:
            text = (f"{s.get('mixer', 'linear')} mixer of g = `{s.get('std')}` and h = `{s.get('rob')}` chosen on the "
                    f"validation split for objective {c.get('objective')} (target {c.get('target')}: "
                    f"{'met' if c.get('feasible') else 'NOT met, closest shown'}); {params}. Test row: "
                    f"{self.test.get('robust_attack', 'attack')}, on test images the choice never saw.")
        aa = self.test.get("autoattack")
        if aa:
            text += f" AutoAttack standard alone on the test images: {fmt_ci(aa['accuracy'], aa['ci95'])}%."
        d = self.test.get("diagnostics") or {}
        if d.get("suspected"):
            text += (f" Gradient-masking warning on the test images: Square-only errors {d.get('square_only')}, "
                     f"accuracy not falling with eps {d.get('eps_not_decreasing')}, unbounded eps not reaching 0% "
                     f"{d.get('unbounded_not_zero')}.")
        if self.test.get("autoattack_flags"):
            text += f" AutoAttack's own checks flagged: {'; '.join(self.test['autoattack_flags'])}."
        if self.test.get("forward_passes"):
            text += f" Cost: {_passes(self.test['forward_passes'])}."
        return [Section("Calibration: the mixer chosen on validation, confirmed on test",
                        _with_command(text, self.command), [rows])]

    def summary_line(self) -> str:
        t = self.test
        return (f"test: clean {fmt_ci(t['clean'], t['clean_ci95'])}%, robust {fmt_ci(t['robust'], t['robust_ci95'])}%"
                f", n = {t['n']}") if t else ""


@dataclasses.dataclass
class EvaluateSummary(Summary):
    """The worst case over the attack ensemble, per example, summed up (``robustmix evaluate``)."""

    KIND: ClassVar[str] = "evaluate"
    n: int
    accuracy: float
    ci95: list
    clean_accuracy: float
    clean_ci95: list
    per_attack: list            # [{name, ran_on, broke, seconds}] in ensemble order
    found_by: dict              # member -> examples whose first error it found
    diagnostics: dict           # square_only, eps_not_decreasing, unbounded_not_zero, suspected
    median_robust_margin: float
    warnings: list = dataclasses.field(default_factory=list)   # AutoAttack's own checks (its flags)
    settings: dict = dataclasses.field(default_factory=dict)
    autoattack: dict | None = None        # AutoAttack standard alone: accuracy, ci95, n, completion; None: not run
    forward_passes_per_prediction: int | None = None   # base-model forward passes (g and h: 2); None: not recorded
    mixing_network_passes: int = 0        # plus passes of an adaptive mixer's mixing network

    def cost_text(self) -> str:
        if self.forward_passes_per_prediction is None:
            return ""
        k, m = self.forward_passes_per_prediction, self.mixing_network_passes
        what = "g and h once each" if k == 2 else "one model" if k == 1 else f"{k} models once each"
        net = ", plus the mixing network once" if m else ""
        return f" Cost per prediction: {k + m} forward pass{'es' if k + m != 1 else ''} ({what}{net})."

    def render(self, out_dir=None) -> list[Section]:
        s, d = self.settings, self.diagnostics
        if s.get("model"):
            who = f"model `{s['model']}`"
        elif s.get("mixer") == "adaptive":
            who = f"the adaptive mixer of g = `{s.get('std')}` and h = `{s.get('rob')}`"
        else:
            who = f"the mixture of g = `{s.get('std')}` and h = `{s.get('rob')}` at alpha = {s.get('alpha')}"
        head = [["quantity", "accuracy (%) [95% CI]", "n"],
                ["clean", fmt_ci(self.clean_accuracy, self.clean_ci95), str(self.n)]]
        aa = self.autoattack
        if aa:
            head.append(["AutoAttack standard alone", fmt_ci(aa["accuracy"], aa["ci95"]), str(aa["n"])])
        head.append(["worst case over the ensemble", fmt_ci(self.accuracy, self.ci95), str(self.n)])
        members = [["member", "ran on", "broke", "first error found", "seconds"]]
        members += [[r["name"], str(r["ran_on"]), str(r["broke"]), str(self.found_by.get(r["name"], 0)),
                     f"{r['seconds']:.1f}"] for r in self.per_attack]
        flags = (f"gradient-masking warning: Square-only errors {d.get('square_only')}, accuracy not falling with "
                 f"eps {d.get('eps_not_decreasing')}, unbounded eps not reaching 0% {d.get('unbounded_not_zero')}."
                 if d.get("suspected") else "No sign of gradient masking in the checks that ran."
                 if s.get("diagnostics", True) else "The gradient-masking checks were skipped (--no-diagnostics).")
        if aa:
            c = aa.get("completion") or {}
            flags += (f" AutoAttack standard alone: its four attacks, Square also run on the {c.get('ran_on', 0)} "
                      f"examples only the other members broke (it broke {c.get('broke', 0)} of them).")
        flags += (f" AutoAttack's own checks flagged: {'; '.join(self.warnings)}." if self.warnings else
                  " AutoAttack's own checks raised no flag." if aa or any(r["name"].startswith("aa-")
                                                                          for r in self.per_attack) else "")
        text = (f"Worst case per example over the attack ensemble ({', '.join(r['name'] for r in self.per_attack)}; "
                f"APGD {s.get('steps')} steps) against {who}, {_norm_name(s.get('norm'))} eps = {s.get('eps')}, "
                f"n = {self.n}; brackets: 95% Clopper-Pearson intervals. {flags}{self.cost_text()}")
        return [Section("Worst-case robust accuracy", _with_command(text, self.command), [head, members])]

    def summary_line(self) -> str:
        aa = self.autoattack
        return (f"robust accuracy {fmt_ci(self.accuracy, self.ci95)}%  n = {self.n}  (clean "
                f"{fmt_ci(self.clean_accuracy, self.clean_ci95)}%"
                + (f"; AutoAttack standard alone {fmt_ci(aa['accuracy'], aa['ci95'])}%" if aa else "") + ")")


@dataclasses.dataclass
class VerifySummary(Summary):
    """``robustmix verify``: a saved evaluation re-checked (threat model, predictions, accuracy).

    What it proves: on these ``n`` test images (``index_range``) the model's robust accuracy is at most
    ``accuracy``; ``evaluation`` holds the file's other claims, shown apart, not re-checked.  Summaries written
    before ``clean_accuracy``, ``clean_ci95``, ``index_range`` and ``contiguous`` existed load with None there."""

    KIND: ClassVar[str] = "verify"
    n: int
    accuracy: float               # accuracy of the model on the saved inputs (an upper bound on robust accuracy)
    ci95: list
    claimed_accuracy: float       # the file's accuracy: the mean of its outcomes, each re-checked
    disagreements: int            # examples whose recomputed outcome differs from the saved one
    eps: float
    norm: str
    largest_perturbation: float
    file: str
    weights_sha256: str
    model: dict
    tolerance: float = 0.0        # differences with |margin| <= tolerance are boundary cases (rounding), not refused
    smallest_margin: float | None = None
    evaluation: dict | None = None   # the file's unchecked claims (clean accuracy, AutoAttack alone, flags, cost)
    clean_accuracy: float | None = None   # the model on the clean test images at the file's indices
    clean_ci95: list | None = None
    index_range: list | None = None       # [smallest, largest] test index of the file
    contiguous: bool | None = None        # whether the file holds every index of that range

    def indices_text(self) -> str:
        if self.index_range is None:
            return "not recorded (an older summary)"
        lo, hi = self.index_range
        return f"{lo}..{hi}, " + ("contiguous" if self.contiguous else f"not contiguous ({self.n} of {hi - lo + 1})")

    def render(self, out_dir=None) -> list[Section]:
        ball = f"{_norm_name(self.norm)} ball of radius {self.eps}"
        where = [str(self.n), self.indices_text()]
        rows = [["quantity", "accuracy (%) [95% CI]", "n", "test indices",
                 f"largest {_norm_name(self.norm)} perturbation (eps = {self.eps})"],
                ["robust accuracy, at most (the model on the saved inputs)", fmt_ci(self.accuracy, self.ci95), *where,
                 f"{self.largest_perturbation:.6g}"]]
        if self.clean_accuracy is not None:
            rows.append(["clean accuracy (the model on the same test images)",
                         fmt_ci(self.clean_accuracy, self.clean_ci95), *where, "0"])
        checks = [["check", "result"], ["accuracy the file records, the mean of its outcomes (%)",
                                        fmt_pct(self.claimed_accuracy)],
                  ["examples whose outcome differs" + (f" (all within +-{self.tolerance:g} of the decision boundary)"
                                                       if self.tolerance > 0 else ""), str(self.disagreements)]]
        if self.smallest_margin is not None:
            checks.append(["smallest absolute margin (true class minus best other output) on a saved input",
                           f"{self.smallest_margin:.3g}"])
        m = self.model
        what = (f"model `{m['model']}`" if "model" in m else
                f"the mixture of g = `{m.get('std')}` and h = `{m.get('rob')}` at alpha = {m.get('alpha')}")
        text = (f"`{self.file}` re-checked against {what} (weights SHA-256 {self.weights_sha256[:16]}...): every "
                f"saved input lies in the {ball} around its test image and in [0, 1], and the accuracies are the "
                f"model's own predictions on this machine. What this proves: on these {self.n} test images (indices "
                f"{self.indices_text()}) the robust accuracy of this model in the {ball} is at most "
                f"{fmt_pct(self.accuracy)}%, because the model misclassifies each other saved input. It proves nothing "
                "about other test images, nor how strong the attacks that found the inputs were (a weaker attack "
                "only gives a larger bound). Brackets: 95% Clopper-Pearson intervals.")
        sections = [Section("Verified evaluation", _with_command(text, self.command), [rows, checks])]
        return sections + self.claims_sections()

    def claims_sections(self) -> list[Section]:
        """The file's claims beside its inputs, apart from what verify checked."""
        e = self.evaluation or {}
        rows = [["claim", "as the evaluation reported"]]
        if e.get("clean_accuracy") is not None:
            rows.append(["clean accuracy (%)", fmt_pct(e["clean_accuracy"])])
        if e.get("autoattack"):
            rows.append(["AutoAttack standard alone (%) [95% CI]",
                         fmt_ci(e["autoattack"]["accuracy"], e["autoattack"]["ci95"])])
        if e.get("forward_passes"):
            rows.append(["forward passes per prediction", str(e["forward_passes"])])
        if "autoattack_flags" in e:
            rows.append(["AutoAttack's flags", "; ".join(e["autoattack_flags"]) or "none"])
        if len(rows) == 1:
            return []
        text = ("What the file says beside its inputs. verify re-ran none of it (no attack, no cost count); the "
                "numbers it checked are in the section above.")
        if self.clean_accuracy is not None and e.get("clean_accuracy") is not None \
                and abs(e["clean_accuracy"] - self.clean_accuracy) > 1e-9:
            text += (f" The claimed clean accuracy ({fmt_pct(e['clean_accuracy'])}%) differs from this model's on these "
                     f"test images, re-checked above ({fmt_pct(self.clean_accuracy)}%).")
        return [Section("Unchecked claims of the evaluation", text, [rows])]

    def summary_line(self) -> str:
        clean = "" if self.clean_accuracy is None else f"; clean {fmt_ci(self.clean_accuracy, self.clean_ci95)}%"
        return (f"verified: robust accuracy at most {fmt_ci(self.accuracy, self.ci95)}%  n = {self.n}  (test indices "
                f"{self.indices_text()}{clean}; largest perturbation {self.largest_perturbation:.3g}, eps = "
                f"{self.eps}; {self.disagreements} example(s) differ)")


FIRST_ADAPTIVE_RECIPE = ("logits", "mlp", "composite")   # what pareto runs trained before recording the recipe


@dataclasses.dataclass
class ParetoSummary(Summary):
    """``robustmix pareto``: every mixer's clean / worst-case points, calibration and matched-robustness gains."""

    KIND: ClassVar[str] = "pareto"
    settings: dict
    curve_attack: str
    curves: dict          # mixer -> points {name, clean, clean_ci95, robust, robust_ci95, n, ...}
    headline: list        # the same points on the headline images, with diagnostics and per-attack accuracy
    calibration: dict
    matched: list

    def adaptive_recipe(self) -> tuple[str, str, str] | None:
        """(features, mixing net, training attack) of the adaptive rows; runs that predate the recorded recipe are
        the first recipe.  None without an adaptive row."""
        if not any(p["name"] == "adaptive" for p in self.headline):
            return None
        return tuple(self.settings.get(k, v) for k, v in zip(("adaptive_features", "mixing_net", "train_attack"),
                                                             FIRST_ADAPTIVE_RECIPE))

    def point(self, name: str) -> dict:
        """The headline point of ``name`` ("g", "h", "linear", "nonlinear" or "adaptive")."""
        for p in self.headline:
            if p["name"] == name:
                return p
        raise ConfigError(f"no headline point named {name!r}; have {[p['name'] for p in self.headline]}")

    def render(self, out_dir=None) -> list[Section]:
        from .reports.plots import plot_pareto

        s = self.settings
        head = [["model", "clean (%) [95% CI]", "worst-case robust (%) [95% CI]", "AutoAttack alone (%)", "n",
                 "settings"]]
        flags = []
        for pt in self.headline:
            extra = ", ".join(f"{k}={pt[k]:.3g}" for k in ("alpha", "scale", "power", "bias")
                              if pt.get(k) is not None)
            aa = pt.get("autoattack")
            recipe = self.adaptive_recipe() if pt["name"] == "adaptive" else None
            head.append([pt["name"] + (" (first recipe)" if recipe == FIRST_ADAPTIVE_RECIPE else ""),
                         fmt_ci(pt["clean"], pt["clean_ci95"]), fmt_ci(pt["robust"], pt["robust_ci95"]),
                         fmt_pct(aa["accuracy"]) if aa else "not recorded", str(pt["n"]),
                         ", ".join(filter(None, [extra, _passes(pt.get("forward_passes")),
                                                 recipe and "features {}, {} net, training attack {}".format(*recipe)]))])
            flags += [f"{pt['name']}: {w}" for w in pt.get("autoattack_flags") or []]
        matched = [["mixer", "curve robust (%)", "clean (%)", "linear clean at same robust (%)", "gain (points)"]]
        for r in self.matched:
            name = r["name"] + (f" (keep {r['percentile']:g}%)" if r.get("percentile") is not None else "") + (
                " (first recipe)" if r["name"] == "adaptive" and self.adaptive_recipe() == FIRST_ADAPTIVE_RECIPE else "")
            gain = "n/a" if r["gain"] is None else f"{100 * r['gain']:+.1f}"
            matched.append([name, fmt_pct(r["robust"]), fmt_pct(r["clean"]), fmt_pct(r["linear_clean"]), gain])
        n = self.headline[0]["n"] if self.headline else 0
        figs = [] if out_dir is None else plot_pareto(
            dataclasses.asdict(self), _figure_dir(out_dir) / "pareto",
            f"Mixers on one front, {_norm_name(s['norm'])} eps = {s['eps']} (stars: worst case, 95% CI, "
            f"empirical, n = {n})")[:1]
        text = (f"g = `{s['std']}`, h = `{s['rob']}`, {_norm_name(s['norm'])} eps = {s['eps']}. Headline rows: the "
                f"worst case over the whole attack ensemble (AutoAttack standard, APGD-CE/DLR end to end, through "
                f"surrogates and by transfer), per example. Curves and the matched table: {self.curve_attack} on "
                f"{s.get('n_curve')} test images. Calibration on {s['n_val']} validation images only."
                + (" The adaptive rows are the first recipe (an MLP on both logits, trained with PGD on the composite "
                   "only), not the recipe calibrate and pareto train by default (a residual head trained through the "
                   "gate too): at l_inf 0.1 that recipe lands on the linear front (RESULTS.md, results/evaluate-linf-adaptive)."
                   if self.adaptive_recipe() == FIRST_ADAPTIVE_RECIPE else "")
                + (f" AutoAttack's own checks flagged: {'; '.join(flags)}." if flags else ""))
        return [Section("Mixers on one front: linear, nonlinear, adaptive", _with_command(text, self.command),
                        [head, matched], figs)]


def _curve(c: dict, k: int = 0) -> dict:
    return {"grid": c["grid"], "certified": c["certified"][k], "clean": c["clean"][k]}


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


@dataclasses.dataclass
class Fig3Summary(Summary):
    """``robustmix fig3``: the paper's Fig. 3 (a smoothed h mixed at matched clean accuracy against a
    smaller-sigma smoothed baseline, Theorems 1 and 2) and, optionally, Theorem 1 with a Lipschitz h."""

    KIND: ClassVar[str] = "fig3"
    settings: dict
    certified: dict       # grid, rs {alpha, baseline_clean, thm1, thm2, thm1_sound, thm2_sound, thm2_tight}, lipschitz
    n: int | None = None

    ROWS: ClassVar[dict] = {"thm1": "Theorem 1, Monte-Carlo mean (point estimate, not sound)",
                            "thm2": "Theorem 2, Monte-Carlo mean (point estimate, not sound)",
                            "thm1_sound": "Theorem 1, simultaneous bounds (sound)",
                            "thm2_sound": "Theorem 2, simultaneous bounds (sound)",
                            "thm2_tight": "Theorem 2, tight Clopper-Pearson (sound; = Cohen's CERTIFY at alpha 1)"}

    def render(self, out_dir=None) -> list[Section]:
        from .reports.plots import plot_certified

        c, s = self.certified, self.settings
        rs, radii, n = c["rs"], (0.25, 0.5, 1.0), self.n
        ci = (lambda v: fmt_ci(v, rate_ci(v, n))) if n else fmt_pct
        rows = [["curve", "estimator", f"clean (%){' [95% CI]' if n else ''}"] + [f"r = {r:g}" for r in radii]]
        for thm in [k for k in self.ROWS if k in rs]:
            for who in ("mixture", "baseline"):
                cur = rs[thm][who]
                rows.append([f"{who}", self.ROWS[thm], ci(cur["clean"][0])] +
                            [ci(at_radius(cur["grid"], cur["certified"][0], r)) for r in radii])
        lc = c.get("lipschitz", {}).get("curve", {"alphas": []})
        for k, a in enumerate(lc["alphas"]):
            rows.append([f"Lipschitz net, alpha={a:.1f}", "Theorem 1, guaranteed Lipschitz bound (sound)",
                         ci(lc["clean"][k])] + [ci(at_radius(lc["grid"], lc["certified"][k], r)) for r in radii])
        figs = []
        if out_dir is not None:
            for theorem, name in ((1, "Lipschitz-based (Theorem 1)"), (2, "RS-based (Theorem 2)")):
                data = rs[f"thm{theorem}"]
                curves = {f"mixture, alpha={rs['alpha']:.2f}, point estimate": _curve(data["mixture"]),
                          "baseline RS (alpha=1), point estimate": _curve(data["baseline"]),
                          "mixture, sound bounds": {**_curve(rs[f"thm{theorem}_sound"]["mixture"]), "ls": ":"},
                          "baseline, sound bounds": {**_curve(rs[f"thm{theorem}_sound"]["baseline"]), "ls": ":"}}
                if theorem == 2 and "thm2_tight" in rs:
                    curves["mixture, tight sound (CP)"] = {**_curve(rs["thm2_tight"]["mixture"]), "ls": "--"}
                    curves["baseline, tight sound (= Cohen)"] = {**_curve(rs["thm2_tight"]["baseline"]), "ls": "--"}
                figs += plot_certified(curves, _figure_dir(out_dir) / f"fig3_thm{theorem}",
                                       f"Fig. 3: {name}, sigma {s.get('smooth_sigma')} vs "
                                       f"{s.get('baseline_sigma')}, n = {n}")[:1]
            if lc["alphas"]:
                figs += plot_certified({f"alpha={a:.1f}": _curve(lc, k) for k, a in enumerate(lc["alphas"])},
                                       _figure_dir(out_dir) / "fig3_lipschitz_net",
                                       f"Theorem 1 with the Lipschitz network as h (sound), n = {n}")[:1]
        text = (f"Smoothed h (sigma = {s.get('smooth_sigma')}) mixed at alpha = {rs['alpha']:.2f}, chosen so the "
                f"mixture's clean accuracy matches the sigma = {s.get('baseline_sigma')} baseline "
                f"({fmt_pct(rs['baseline_clean'])} %). {s.get('certify_samples')} noise samples per image, failure "
                f"probability {s.get('certify_delta')}; n = {n} test images"
                + ("; brackets: 95% Clopper-Pearson intervals over the images. " if n else ". ")
                + "Rows marked 'point estimate' use the Monte-Carlo mean as if it were exact (the paper's curves) "
                "and are not certificates; 'sound' rows hold with probability 1 - delta."
                + (_fig3_clean_of(rs["thm2_tight"]["mixture"].get("clean_of")) if "thm2_tight" in rs else "")
                + (f" Lipschitz network: per-class probability Lipschitz bound "
                   f"{c['lipschitz']['lipschitz_per_class']:.3f}." if "lipschitz" in c else ""))
        return [Section("Fig. 3: certified accuracy (l2 radius)", _with_command(text, self.command), [rows], figs)]


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
    alphas: list
    clean_accuracy: dict                  # alpha -> clean accuracy of the mixture
    certified: dict                       # method -> alpha -> radius -> certified accuracy
    curves: dict                          # method -> alpha -> {grid, certified, clean}
    clean_accuracy_h_at_temperature: dict = dataclasses.field(default_factory=dict)
    h_plain_margin: dict = dataclasses.field(default_factory=dict)   # radius -> h's own logit-margin certificate

    def render(self, out_dir=None) -> list[Section]:
        from .reports.plots import plot_lipschitz_certified

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
            dataclasses.asdict(self), _figure_dir(out_dir) / "lipschitz_certified",
            f"Certified l2 accuracy, 1-Lipschitz h and mixtures (sound), n = {self.n}")[:1]
        text = (f"g = `{self.g}`, h = `{self.h}` (l2 Lipschitz bound {self.lipschitz_l2:.3f}, largest pairwise logit "
                f"bound {self.pairwise_lipschitz_max:.3f}) on {self.split}, n = {self.n}. Certificates are exact "
                "(no sampling): Theorem 1 and the logit-ball bound fed to Lemma 1; brackets: 95% Clopper-Pearson "
                "intervals over the images.")
        return [Section("Certified accuracy of a 1-Lipschitz h and its mixtures", _with_command(text, self.command),
                        [rows], figs)]


@dataclasses.dataclass
class DemoSummary(Summary):
    """``robustmix demo``: the paper on the shipped zoo; each step's summary is kept as it was written."""

    KIND: ClassVar[str] = "demo"
    settings: dict = dataclasses.field(default_factory=dict)
    models: dict = dataclasses.field(default_factory=dict)
    sweep: dict | None = None
    tradeoff: dict | None = None
    autoattack: dict | None = None
    headline: dict | None = None
    certified: dict | None = None
    timings_s: dict = dataclasses.field(default_factory=dict)

    def steps(self) -> list[Summary]:
        """The steps' own summaries, typed, in report order."""
        out = []
        for kind, data in (("sweep", self.sweep), ("tradeoff", self.tradeoff)):
            if data:
                out.append(KINDS[kind].from_dict({**data, "command": self.command}))
        if self.certified:
            s = self.settings
            out.append(Fig3Summary(settings={k: s.get(k) for k in ("smooth_sigma", "baseline_sigma", "certify_samples",
                                                                   "certify_delta")},
                                   certified=self.certified, n=s.get("n_certify"), command=self.command))
        return out

    def headline_rows(self) -> list[list[str]]:
        hl = self.headline
        return [["quantity", "value"],
                ["chosen alpha (smallest keeping 80% of h's MIX-PGD accuracy)", f"{hl['alpha']:.2f}"],
                [f"clean accuracy g / h / mixture, n = {hl.get('n_pgd')}",
                 " / ".join(fmt_ci(hl[k], rate_ci(hl[k], hl["n_pgd"]) if hl.get("n_pgd") else None)
                            for k in ("clean_g", "clean_h", "clean_mix")) + " %"],
                [f"PGD (MIX attack) accuracy h / mixture, n = {hl.get('n_pgd')}",
                 f"{fmt_ci(hl['pgd_h'], hl.get('pgd_h_ci95'))} / {fmt_ci(hl['pgd_mix'], hl.get('pgd_mix_ci95'))} %"],
                [f"worst-case accuracy (evaluator members) h / mixture, n = {hl.get('n_aa')}",
                 f"{fmt_ci(hl['aa_h'], hl.get('aa_h_ci95'))} / {fmt_ci(hl['aa_mix'], hl.get('aa_mix_ci95'))} %"],
                ["h-to-g clean-accuracy gap closed", f"{fmt_pct(hl['gap_closed'])} %"],
                ["h's worst-case accuracy kept", f"{fmt_pct(hl['kept_aa'])} %"]]

    def render(self, out_dir=None) -> list[Section]:
        out, s = [], self.settings
        if self.headline:
            text = (f"Standard model g = `{self.models.get('g')}`, robust model h = `{self.models.get('h')}`, l_inf "
                    f"attacks with eps = {s.get('eps')}. Worst case per example over the evaluator's members "
                    f"{s.get('autoattack_attacks')} ({s.get('autoattack_steps')} APGD steps) on "
                    f"{s.get('n_autoattack')} test images; brackets: 95% Clopper-Pearson intervals. The full ensemble "
                    f"(AutoAttack standard plus surrogates and transfer): robustmix evaluate.")
            out.append(Section("Headline: the best trade-off alpha", _with_command(text, self.command),
                               [self.headline_rows()]))
            warns = sorted({w for part in (self.autoattack or {}).values() for w in part.get("warnings", [])})
            if warns:
                out.append(Section("Attack checks", "The evaluator raised: " + "; ".join(warns)))
        for step in self.steps():
            out += step.render(out_dir)
        if self.timings_s:
            out.append(Section("Run time", "Seconds per step on this machine.",
                               [[["step", "seconds"]] + [[k, f"{v}"] for k, v in self.timings_s.items()]]))
        return out



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


@dataclasses.dataclass
class CertifyFrontSummary(Summary):
    """``robustmix certify-front``: clean against sound certified accuracy for every construction that combines
    g with a certifiable h (smoothed h alone, the Theorem 2 mixture, ACES selection, a Lipschitz h's mixtures)."""

    KIND: ClassVar[str] = "certify-front"
    n: int
    radii: list
    points: list          # {family, sigma, param, n, clean, clean_ci95, certified {r}, certified_ci95 {r}, estimator}
    verdict: dict         # {r: rows of best_by_clean}: each family's best certified accuracy at a clean level
    settings: dict

    LABELS: ClassVar[dict] = {"cohen": "smoothed h alone (Cohen)", "mixture": "mixture, Theorem 2",
                              "aces": "ACES selection", "lipschitz-theorem1": "Lipschitz h mixture, Theorem 1",
                              "lipschitz-logit-ball": "Lipschitz h mixture, logit ball (h's logits x T)"}

    def summary_line(self) -> str:
        r = str(self.radii[0])
        best = max(self.points, key=lambda p: p["certified"][r])
        return (f"best certified accuracy at r = {r}: {fmt_ci(best['certified'][r], best['certified_ci95'][r])}% "
                f"({self.LABELS.get(best['family'], best['family'])}, clean {fmt_pct(best['clean'])}%), "
                f"n = {self.n}, {len(self.points)} classifiers")

    def render(self, out_dir=None) -> list[Section]:
        from .reports.plots import plot_front

        cols = [f"certified @ {r:g} (%) [95% CI]" for r in self.radii]
        table = [["construction", "sigma", "alpha / threshold", "clean (%) [95% CI]"] + cols]
        for p in self.points:
            if p["family"] == "cohen":
                continue      # the mixture's alpha = 1 row
            table.append([self.LABELS.get(p["family"], p["family"]), "-" if p["sigma"] is None else f"{p['sigma']:g}",
                          f"{p['param']:g}", fmt_ci(p["clean"], p["clean_ci95"])] +
                         [fmt_ci(p["certified"][str(r)], p["certified_ci95"][str(r)]) for r in self.radii])
        table = table[:1] + _merge_rows(table[1:], 2)
        families = list(self.LABELS)
        verdicts = []
        for r in self.radii:
            rows = [["clean >= (%)"] + [f"{self.LABELS[f]} @ {r:g}" for f in families]]
            for row in self.verdict[str(r)]:
                cells = []
                for f in families:
                    b = row.get(f)
                    cells.append("-" if b is None else
                                 f"{fmt_ci(b['certified'], b['ci95'])} ({'' if b['sigma'] is None else 'σ ' + format(b['sigma'], 'g') + ', '}"
                                 f"{b['param']:g})")
                rows.append([fmt_pct(row["clean_at_least"])] + cells)
            verdicts.append(rows[:1] + _merge_rows(rows[1:], 0))
        figs = [] if out_dir is None else plot_front(
            self.points, self.radii, self.LABELS, _figure_dir(out_dir) / "certified_front",
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
                        _with_command(text, self.command), [table, *verdicts], figs)]
