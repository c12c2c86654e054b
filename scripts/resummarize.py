"""Rebuild the summary and report of a finished sweep, tradeoff or attack folder from its per-example records.

For folders whose records predate the current record header (results/fig1-*, fig2-*, fig4*-*, aa-*), where
rerunning the command is refused: the summary is recomputed with the current rules (e.g. an attacked example
counts only when its clean input is classified correctly too), keeping the folder's command and settings.

    python scripts/resummarize.py results/fig2-at-linf results/aa-at-linf-mix ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

from robustmix.experiments.attack_eval import AttackConfig, summarize_attack
from robustmix.experiments.runner import read_records
from robustmix.experiments.sweep import summarize
from robustmix.experiments.tradeoff import TradeoffConfig, summarize_tradeoff
from robustmix.reports import write_report
from robustmix.results import AttackSummary, SweepSummary, TradeoffSummary


def resummarize(folder: Path):
    old = {"sweep": SweepSummary, "tradeoff": TradeoffSummary, "attack": AttackSummary}
    kind = next(k for k, cls in old.items() if (folder / "summary.json").read_text().count(f'"kind": "{k}"'))
    before = old[kind].load(folder / "summary.json")
    header, records = read_records(folder / "records.jsonl")
    if kind == "sweep":
        new = summarize(records, before.alphas)
    elif kind == "tradeoff":
        cfg = TradeoffConfig(**{k: v for k, v in header.get("settings", header).items()
                                if k in TradeoffConfig.__dataclass_fields__})
        new = summarize_tradeoff(records, cfg)
    else:
        cfg = AttackConfig(**{k: v for k, v in before.settings.items() if k in AttackConfig.__dataclass_fields__})
        new = summarize_attack(records, before.alpha, cfg)
        new.settings = before.settings
    for field in ("command", "settings"):
        if hasattr(before, field):
            setattr(new, field, getattr(before, field))
    new.save(folder / "summary.json")
    write_report(new, folder)
    return new


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    for f in parser.parse_args().folders:
        print(f"{f}: {resummarize(f).summary_line()}")
