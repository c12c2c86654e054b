"""Summaries of runs made of several steps: ``robustmix demo`` keeps each step's summary as it was written."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from ..errors import ConfigError
from .attacks import EvaluateSummary, SweepSummary, TradeoffSummary
from .base import Section, Summary, rate_ci, with_command
from .certify import Fig3Certified, Fig3Summary
from .format import fmt_ci, fmt_pct
from .values import Interval, Record, Settings, Value, decode, optional, record


@dataclasses.dataclass(frozen=True, eq=False)
class WorstCase(Value):
    """One worst-case evaluation of the demo (on h, or on the mixture at ``alpha``), stored flat: the evaluate
    summary's own JSON with the alpha beside it."""

    alpha: float
    evaluation: EvaluateSummary

    def to_json(self) -> dict:
        return {**self.evaluation.to_dict(), "alpha": self.alpha}

    @classmethod
    def from_json(cls, data, where: str = "") -> WorstCase:
        if isinstance(data, cls):
            return data
        if not (isinstance(data, dict) and "alpha" in data):
            raise ConfigError(f"{where} is not an evaluate summary with its alpha")
        return cls(alpha=decode(float, data["alpha"], f"{where}.alpha"),
                   evaluation=EvaluateSummary.from_dict({k: v for k, v in data.items() if k != "alpha"}))


@record
class DemoHeadline(Record):
    """The demo's headline: the chosen alpha; clean accuracy of g, h and the mixture; PGD (MIX attack) and
    worst-case accuracy of h and of the mixture, with n and 95% intervals (absent in the first demo summaries); the
    share of the h-to-g clean-accuracy gap closed and of h's worst-case accuracy kept."""

    alpha: float
    clean_g: float
    clean_h: float
    clean_mix: float
    pgd_mix: float
    pgd_h: float
    n_pgd: int | None = optional()
    pgd_mix_ci95: Interval | None = optional()
    pgd_h_ci95: Interval | None = optional()
    aa_mix: float
    aa_h: float
    aa_mix_ci95: Interval | None = optional()
    aa_h_ci95: Interval | None = optional()
    n_aa: int | None = optional()
    gap_closed: float
    kept_aa: float


@dataclasses.dataclass
class DemoSummary(Summary):
    """``robustmix demo``: the paper on the shipped zoo; each step's summary is kept as it was written."""

    KIND: ClassVar[str] = "demo"
    settings: Settings = dataclasses.field(default_factory=Settings)
    models: dict[str, str] = dataclasses.field(default_factory=dict)    # "g", "h" -> model name
    sweep: SweepSummary | None = None
    tradeoff: TradeoffSummary | None = None
    autoattack: dict[str, WorstCase] | None = None                      # "h", "mixture" -> worst case
    headline: DemoHeadline | None = None
    certified: Fig3Certified | None = None
    timings_s: dict[str, float] = dataclasses.field(default_factory=dict)

    def steps(self) -> list[Summary]:
        """The steps' own summaries, typed, in report order."""
        out = [dataclasses.replace(step, command=self.command) for step in (self.sweep, self.tradeoff) if step]
        if self.certified:
            s = self.settings
            out.append(Fig3Summary(settings={k: s.get(k) for k in ("smooth_sigma", "baseline_sigma", "certify_samples",
                                                                   "certify_delta")},
                                   certified=self.certified, n=s.get("n_certify"), command=self.command))
        return out

    def headline_rows(self) -> list[list[str]]:
        hl = self.headline
        return [["quantity", "value"],
                ["chosen alpha (smallest keeping 80% of h's MIX-PGD accuracy)", f"{hl.alpha:.2f}"],
                [f"clean accuracy g / h / mixture, n = {hl.n_pgd}",
                 " / ".join(fmt_ci(v, rate_ci(v, hl.n_pgd) if hl.n_pgd else None)
                            for v in (hl.clean_g, hl.clean_h, hl.clean_mix)) + " %"],
                [f"PGD (MIX attack) accuracy h / mixture, n = {hl.n_pgd}",
                 f"{fmt_ci(hl.pgd_h, hl.pgd_h_ci95)} / {fmt_ci(hl.pgd_mix, hl.pgd_mix_ci95)} %"],
                [f"worst-case accuracy (evaluator members) h / mixture, n = {hl.n_aa}",
                 f"{fmt_ci(hl.aa_h, hl.aa_h_ci95)} / {fmt_ci(hl.aa_mix, hl.aa_mix_ci95)} %"],
                ["h-to-g clean-accuracy gap closed", f"{fmt_pct(hl.gap_closed)} %"],
                ["h's worst-case accuracy kept", f"{fmt_pct(hl.kept_aa)} %"]]

    def render(self, out_dir=None) -> list[Section]:
        out, s = [], self.settings
        if self.headline:
            text = (f"Standard model g = `{self.models.get('g')}`, robust model h = `{self.models.get('h')}`, l_inf "
                    f"attacks with eps = {s.get('eps')}. Worst case per example over the evaluator's members "
                    f"{s.get('autoattack_attacks')} ({s.get('autoattack_steps')} APGD steps) on "
                    f"{s.get('n_autoattack')} test images; brackets: 95% Clopper-Pearson intervals. The full ensemble "
                    f"(AutoAttack standard plus surrogates and transfer): robustmix evaluate.")
            out.append(Section("Headline: the best trade-off alpha", with_command(text, self.command),
                               [self.headline_rows()]))
            warns = sorted({w for part in (self.autoattack or {}).values() for w in part.evaluation.warnings})
            if warns:
                out.append(Section("Attack checks", "The evaluator raised: " + "; ".join(warns)))
        for step in self.steps():
            out += step.render(out_dir)
        if self.timings_s:
            out.append(Section("Run time", "Seconds per step on this machine.",
                               [[["step", "seconds"]] + [[k, f"{v}"] for k, v in self.timings_s.items()]]))
        return out
