"""Summaries of empirical attacks: the alpha sweep, the trust-term trade-off, single attacks, the worst-case
evaluation and the re-check of saved adversarial inputs.

* ``sweep``: ``alphas`` (k), ``n``, ``accuracy`` {clean, std, rob, mix: k values}, ``ci95`` {same keys: k pairs
  [lo, hi]}, ``table1`` {g, h: gap statistics of the paper's Table I}.
* ``tradeoff``: ``n``, ``gammas`` (``"inf"`` for infinity), ``eps``, ``norm``, ``steps``, ``curves``
  {"trust|space": {clean, attacked: per-gamma values}}.
* ``attack``: ``n``, ``alpha``, ``settings``, ``accuracy`` {clean, pgd, autoattack}, ``ci95``,
  ``autoattack_warnings``.
* ``evaluate``: the worst-case evaluator's summary (``accuracy``, ``ci95``, ``n``, per-attack table, diagnostics),
  see :mod:`robustmix.attacks.evaluate`; optional (absent in older files): ``autoattack`` (AutoAttack standard
  alone: accuracy, ci95, n, completion run), ``forward_passes_per_prediction`` (base-model forwards per
  prediction) and ``mixing_network_passes``.
* ``verify``: ``n``, ``accuracy`` and ``ci95`` (the model on the saved inputs: an upper bound on its robust
  accuracy there), the file's threat model, weights and model record, ``evaluation`` (the file's unchecked
  claims); optional (absent in older files): ``clean_accuracy``, ``clean_ci95``, ``index_range``, ``contiguous``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from ..errors import ConfigError
from .base import Section, Summary, figure_dir, norm_name, rate_ci, with_command
from .format import fmt_ci, fmt_pct
from .values import Interval, Record, Settings, optional, record


@record
class GapRow(Record):
    """One model's row of the paper's Table I: the mean gap between its top two probabilities over the examples it
    classifies correctly and incorrectly, on clean and on attacked (``adv``) inputs, with the number of examples
    behind each mean (``*_n``) and the accuracy; a condition the sweep did not run is absent."""

    clean_correct: float | None = optional()
    clean_correct_n: int | None = optional()
    clean_incorrect: float | None = optional()
    clean_incorrect_n: int | None = optional()
    clean_accuracy: float | None = optional()
    adv_correct: float | None = optional()
    adv_correct_n: int | None = optional()
    adv_incorrect: float | None = optional()
    adv_incorrect_n: int | None = optional()
    adv_accuracy: float | None = optional()


@dataclasses.dataclass
class SweepSummary(Summary):
    KIND: ClassVar[str] = "sweep"
    alphas: list[float]
    n: int
    accuracy: dict[str, list[float]]        # "clean", "std", "rob", "mix" -> one accuracy per alpha
    ci95: dict[str, list[Interval]]         # the same keys -> one interval per alpha
    table1: dict[str, GapRow]               # "g", "h" -> Table I row
    settings: Settings = dataclasses.field(default_factory=Settings)   # eps, norm, steps, ... of the sweep

    def at(self, attack: str, alpha: float) -> float:
        """Accuracy under ``attack`` ("clean", "std", "rob", "mix") at the swept alpha closest to ``alpha``."""
        if attack not in self.accuracy:
            raise ConfigError(f"this sweep has no {attack!r} accuracy (it has {', '.join(self.accuracy)})")
        k = min(range(len(self.alphas)), key=lambda i: abs(self.alphas[i] - alpha))
        return self.accuracy[attack][k]

    def attack_name(self) -> str:
        s = self.settings
        return (f"PGD-{s.get('steps', '?')} ({norm_name(s.get('norm', 'inf'))}, eps = {s.get('eps', '?')}, "
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
            t = self.table1.get(model) or GapRow()
            cells = [(getattr(t, k), getattr(t, k + "_n")) for k in ("clean_correct", "clean_incorrect", "adv_correct",
                                                                      "adv_incorrect")]
            rows.append([f"{model}(.)"] + [gap(v) if k is None else f"{gap(v)} (n = {k})" for v, k in cells])
        return rows

    def render(self, out_dir=None) -> list[Section]:
        from .plots import plot_sweep

        figs = [] if out_dir is None else plot_sweep(
            self, figure_dir(out_dir) / "fig2_alpha_sweep",
            f"Fig. 2: accuracy vs alpha, {self.attack_name()}, empirical, n = {self.n}")[:1]
        text = (f"{self.attack_name()} aimed at g (STD), at h (ROB) and at the mixture end to end (MIX); n = {self.n} "
                "test images; brackets: 95% Clopper-Pearson intervals. One attack per column: an upper bound on "
                "robust accuracy (the worst case over an attack ensemble: robustmix evaluate).")
        return [Section("Fig. 2: accuracy versus alpha", with_command(text, self.command), [self.table()], figs),
                Section("Table I: average gap between the top two probabilities",
                        f"Attacked columns: each model under {self.attack_name()} aimed at itself; n = {self.n}; "
                        "counts of examples per cell in parentheses.", [self.table1_rows()])]

    def summary_line(self) -> str:
        i = self.alphas.index(max(self.alphas))
        key = "mix" if "mix" in self.accuracy else list(self.accuracy)[-1]
        return (f"h (alpha = {self.alphas[i]:.2f}): clean {fmt_ci(self.accuracy['clean'][i], self.ci95['clean'][i])}%, "
                f"{key.upper()} {fmt_ci(self.accuracy[key][i], self.ci95[key][i])}%, n = {self.n}")


@record
class TradeoffCurve(Record):
    """One trust term and mixing space of Fig. 1: clean and attacked accuracy, one value per gamma."""

    clean: list[float]
    attacked: list[float]


@dataclasses.dataclass
class TradeoffSummary(Summary):
    KIND: ClassVar[str] = "tradeoff"
    n: int
    gammas: list[float | str]               # "inf" for infinity
    eps: float
    norm: str
    steps: int
    curves: dict[str, TradeoffCurve]        # "trust|space" -> its curve

    def render(self, out_dir=None) -> list[Section]:
        from .plots import plot_tradeoff

        attack = f"PGD-{self.steps} ({norm_name(self.norm)}, eps = {self.eps})"
        figs = [] if out_dir is None else plot_tradeoff(
            self, figure_dir(out_dir) / "fig1_trust_terms",
            f"Fig. 1: trust terms $R_i$, PGD-{self.steps} eps={self.eps}, empirical, n = {self.n}")[:1]
        rows = [["R_i, space", "gamma", "clean (%) [95% CI]", "attacked (%) [95% CI]"]]
        for name, c in self.curves.items():
            for gamma, clean, adv in zip(self.gammas, c.clean, c.attacked):
                rows.append([name, str(gamma), fmt_ci(clean, rate_ci(clean, self.n)),
                             fmt_ci(adv, rate_ci(adv, self.n))])
        text = (f"The mixture of eq. (3) for each trust term R_i, mixed in probabilities or logits, over gamma; "
                f"{attack} through the whole formulation; n = {self.n}; brackets: 95% Clopper-Pearson intervals.")
        return [Section("Fig. 1: trust terms R_i and mixing space", with_command(text, self.command), [rows], figs)]


@dataclasses.dataclass
class AttackSummary(Summary):
    KIND: ClassVar[str] = "attack"
    n: int
    alpha: float
    settings: Settings
    accuracy: dict[str, float]              # "clean", "pgd", "autoattack" -> accuracy
    ci95: dict[str, Interval]
    autoattack_warnings: list[str] = dataclasses.field(default_factory=list)

    def render(self, out_dir=None) -> list[Section]:
        s = self.settings
        names = {"clean": "clean", "pgd": f"PGD-{s.get('steps')} x {s.get('restarts', 1)} restart(s)",
                 "autoattack": f"AutoAttack ({s.get('autoattack')})"}
        rows = [["attack", "accuracy (%) [95% CI]", "n"]]
        rows += [[names.get(k, k), fmt_ci(v, self.ci95[k]), str(self.n)] for k, v in self.accuracy.items()]
        text = (f"The mixture at alpha = {self.alpha:g}, {norm_name(s.get('norm'))} eps = {s.get('eps')}; each row one "
                "attack on its own (the worst case over an adaptive ensemble, per example: robustmix evaluate). "
                + (f"AutoAttack warnings: {'; '.join(self.autoattack_warnings)}." if self.autoattack_warnings else
                   "AutoAttack raised no warning." if "autoattack" in self.accuracy else ""))
        return [Section(f"Attacks on the mixture at alpha = {self.alpha:g}", with_command(text, self.command),
                        [rows])]

    def summary_line(self) -> str:
        return "  ".join(f"{k} {fmt_ci(v, self.ci95[k])}%" for k, v in self.accuracy.items()) + f"  n = {self.n}"


@record
class AttackRun(Record):
    """One member of an attack ensemble: the examples it ran on, those it broke, and its seconds (no name: the
    completion run of AutoAttack standard alone)."""

    name: str | None = optional()
    ran_on: int
    broke: int
    seconds: float


@record
class Diagnostics(Record):
    """The gradient-masking checks: examples only Square broke, accuracy not falling with eps, an unbounded eps not
    reaching 0%, and whether any of them raised a suspicion."""

    square_only: int
    eps_not_decreasing: bool
    unbounded_not_zero: bool
    suspected: bool


@record
class AutoAttackAlone(Record):
    """AutoAttack standard on its own (its four attacks, Square completing the examples only other members broke)."""

    accuracy: float
    ci95: Interval
    n: int
    completion: AttackRun | None = optional()


@dataclasses.dataclass
class EvaluateSummary(Summary):
    """The worst case over the attack ensemble, per example, summed up (``robustmix evaluate``)."""

    KIND: ClassVar[str] = "evaluate"
    n: int
    accuracy: float
    ci95: Interval
    clean_accuracy: float
    clean_ci95: Interval
    per_attack: list[AttackRun]             # in ensemble order
    found_by: dict[str, int]                # member -> examples whose first error it found
    diagnostics: Diagnostics
    median_robust_margin: float
    warnings: list[str] = dataclasses.field(default_factory=list)   # AutoAttack's own checks (its flags)
    settings: Settings = dataclasses.field(default_factory=Settings)
    autoattack: AutoAttackAlone | None = None   # AutoAttack standard alone; None: not run
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
            head.append(["AutoAttack standard alone", fmt_ci(aa.accuracy, aa.ci95), str(aa.n)])
        head.append(["worst case over the ensemble", fmt_ci(self.accuracy, self.ci95), str(self.n)])
        members = [["member", "ran on", "broke", "first error found", "seconds"]]
        members += [[r.name, str(r.ran_on), str(r.broke), str(self.found_by.get(r.name, 0)), f"{r.seconds:.1f}"]
                    for r in self.per_attack]
        flags = (f"gradient-masking warning: Square-only errors {d.square_only}, accuracy not falling with "
                 f"eps {d.eps_not_decreasing}, unbounded eps not reaching 0% {d.unbounded_not_zero}."
                 if d.suspected else "No sign of gradient masking in the checks that ran."
                 if s.get("diagnostics", True) else "The gradient-masking checks were skipped (--no-diagnostics).")
        if aa:
            c = aa.completion or AttackRun(ran_on=0, broke=0, seconds=0.0)
            flags += (f" AutoAttack standard alone: its four attacks, Square also run on the {c.ran_on} "
                      f"examples only the other members broke (it broke {c.broke} of them).")
        flags += (f" AutoAttack's own checks flagged: {'; '.join(self.warnings)}." if self.warnings else
                  " AutoAttack's own checks raised no flag." if aa or any(r.name.startswith("aa-")
                                                                          for r in self.per_attack) else "")
        text = (f"Worst case per example over the attack ensemble ({', '.join(r.name for r in self.per_attack)}; "
                f"APGD {s.get('steps')} steps) against {who}, {norm_name(s.get('norm'))} eps = {s.get('eps')}, "
                f"n = {self.n}; brackets: 95% Clopper-Pearson intervals. {flags}{self.cost_text()}")
        return [Section("Worst-case robust accuracy", with_command(text, self.command), [head, members])]

    def summary_line(self) -> str:
        aa = self.autoattack
        return (f"robust accuracy {fmt_ci(self.accuracy, self.ci95)}%  n = {self.n}  (clean "
                f"{fmt_ci(self.clean_accuracy, self.clean_ci95)}%"
                + (f"; AutoAttack standard alone {fmt_ci(aa.accuracy, aa.ci95)}%" if aa else "") + ")")


@record
class Claims(Record):
    """What a saved evaluation reported beside its inputs, kept as the file holds it and not re-checked: the clean
    accuracy, the forward passes per prediction, AutoAttack's flags and AutoAttack standard alone (a claim the file
    does not make is absent; one it made without a value is None)."""

    clean_accuracy: float | None = None
    forward_passes: int | None = None
    autoattack_flags: list[str] | None = optional()
    autoattack: AutoAttackAlone | None = None


@dataclasses.dataclass
class VerifySummary(Summary):
    """``robustmix verify``: a saved evaluation re-checked (threat model, predictions, accuracy).

    What it proves: on these ``n`` test images (``index_range``) the model's robust accuracy is at most
    ``accuracy``; ``evaluation`` holds the file's other claims, shown apart, not re-checked.  Summaries written
    before ``clean_accuracy``, ``clean_ci95``, ``index_range`` and ``contiguous`` existed load with None there."""

    KIND: ClassVar[str] = "verify"
    n: int
    accuracy: float               # accuracy of the model on the saved inputs (an upper bound on robust accuracy)
    ci95: Interval
    claimed_accuracy: float       # the file's accuracy: the mean of its outcomes, each re-checked
    disagreements: int            # examples whose recomputed outcome differs from the saved one
    eps: float
    norm: str
    largest_perturbation: float
    file: str
    weights_sha256: str
    model: dict[str, str | float | None]   # how evaluate built it: {"model": spec} or {"std", "rob", "alpha", ...}
    tolerance: float = 0.0        # differences with |margin| <= tolerance are boundary cases (rounding), not refused
    smallest_margin: float | None = None
    evaluation: Claims | None = None   # the file's unchecked claims (clean accuracy, AutoAttack alone, flags, cost)
    clean_accuracy: float | None = None   # the model on the clean test images at the file's indices
    clean_ci95: Interval | None = None
    index_range: list[int] | None = None  # [smallest, largest] test index of the file
    contiguous: bool | None = None        # whether the file holds every index of that range

    def indices_text(self) -> str:
        if self.index_range is None:
            return "not recorded (an older summary)"
        lo, hi = self.index_range
        return f"{lo}..{hi}, " + ("contiguous" if self.contiguous else f"not contiguous ({self.n} of {hi - lo + 1})")

    def render(self, out_dir=None) -> list[Section]:
        ball = f"{norm_name(self.norm)} ball of radius {self.eps}"
        where = [str(self.n), self.indices_text()]
        rows = [["quantity", "accuracy (%) [95% CI]", "n", "test indices",
                 f"largest {norm_name(self.norm)} perturbation (eps = {self.eps})"],
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
        sections = [Section("Verified evaluation", with_command(text, self.command), [rows, checks])]
        return sections + self.claims_sections()

    def claims_sections(self) -> list[Section]:
        """The file's claims beside its inputs, apart from what verify checked."""
        e = self.evaluation or Claims()
        rows = [["claim", "as the evaluation reported"]]
        if e.clean_accuracy is not None:
            rows.append(["clean accuracy (%)", fmt_pct(e.clean_accuracy)])
        if e.autoattack:
            rows.append(["AutoAttack standard alone (%) [95% CI]", fmt_ci(e.autoattack.accuracy, e.autoattack.ci95)])
        if e.forward_passes:
            rows.append(["forward passes per prediction", str(e.forward_passes)])
        if e.autoattack_flags is not None:
            rows.append(["AutoAttack's flags", "; ".join(e.autoattack_flags) or "none"])
        if len(rows) == 1:
            return []
        text = ("What the file says beside its inputs. verify re-ran none of it (no attack, no cost count); the "
                "numbers it checked are in the section above.")
        if self.clean_accuracy is not None and e.clean_accuracy is not None \
                and abs(e.clean_accuracy - self.clean_accuracy) > 1e-9:
            text += (f" The claimed clean accuracy ({fmt_pct(e.clean_accuracy)}%) differs from this model's on these "
                     f"test images, re-checked above ({fmt_pct(self.clean_accuracy)}%).")
        return [Section("Unchecked claims of the evaluation", text, [rows])]

    def summary_line(self) -> str:
        clean = "" if self.clean_accuracy is None else f"; clean {fmt_ci(self.clean_accuracy, self.clean_ci95)}%"
        return (f"verified: robust accuracy at most {fmt_ci(self.accuracy, self.ci95)}%  n = {self.n}  (test indices "
                f"{self.indices_text()}{clean}; largest perturbation {self.largest_perturbation:.3g}, eps = "
                f"{self.eps}; {self.disagreements} example(s) differ)")


