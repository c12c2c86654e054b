"""Summaries of runs made of several steps: ``robustmix demo`` keeps each step's summary as it was written."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from .base import KINDS, Section, Summary, rate_ci, with_command
from .certify import Fig3Summary
from .format import fmt_ci, fmt_pct


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
            out.append(Section("Headline: the best trade-off alpha", with_command(text, self.command),
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
