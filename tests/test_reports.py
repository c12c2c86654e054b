"""Reports are rebuilt from stored summaries alone: HTML and Markdown present, plots present, numbers traceable."""

import json
import re
import shutil
from pathlib import Path

import pytest

from robustmix.reports import terminal_summary, write_report
from robustmix.errors import ConfigError
from robustmix.results import ParetoSummary, SweepSummary, TradeoffSummary, binomial_ci

ROOT = Path(__file__).resolve().parent.parent


def _demo_like_summary() -> dict:
    n = 200
    acc = {"clean": [0.93, 0.91, 0.87], "mix": [0.0, 0.55, 0.79]}
    sweep = SweepSummary(alphas=[0.0, 0.6, 1.0], n=n, accuracy=acc,
                         ci95={k: [list(binomial_ci(round(v * n), n)) for v in vals] for k, vals in acc.items()},
                         table1={"g": {"clean_correct": 0.9, "clean_incorrect": 0.4},
                                 "h": {"adv_correct": 0.7, "adv_incorrect": 0.3}})
    tradeoff = TradeoffSummary(n=n, gammas=[0.0, 1.0, "inf"], eps=0.1, norm="inf", steps=3,
                               curves={"one|probs": {"clean": [0.93, 0.9, 0.87], "attacked": [0.0, 0.5, 0.79]}})
    return {"settings": {"eps": 0.1, "steps": 20}, "sweep": sweep.to_dict(), "tradeoff": tradeoff.to_dict()}


def test_report_from_a_stored_sweep_and_tradeoff(tmp_path):
    summary = _demo_like_summary()
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    paths = write_report(json.loads((tmp_path / "summary.json").read_text()), tmp_path)
    html, md = paths["html"].read_text(), paths["markdown"].read_text()
    assert paths["fig2_alpha_sweep"].stat().st_size > 1000 and paths["fig1_trust_terms"].stat().st_size > 1000
    assert "data:image/png;base64," in html and "fig2_alpha_sweep.png" in md
    lo, hi = summary["sweep"]["ci95"]["mix"][1]
    assert f"55.0 [{100 * lo:.1f}, {100 * hi:.1f}]" in md  # each accuracy with its interval
    assert "n = 200" in md
    assert terminal_summary(summary).count("\n") > 3


def test_pareto_report_numbers_trace_to_the_summary(tmp_path):
    src = ROOT / "results" / "pareto-linf"
    if not (src / "summary.json").exists():
        pytest.skip("stored results not present")
    shutil.copy(src / "summary.json", tmp_path / "summary.json")
    summary = json.loads((tmp_path / "summary.json").read_text())
    typed = ParetoSummary.load(tmp_path / "summary.json")   # the stored summary is a valid typed result
    assert typed.to_dict()["headline"] == summary["headline"] and typed.point("h") == summary["headline"][1]
    with pytest.raises(ConfigError, match="no headline point"):
        typed.point("z")
    paths = write_report(summary, tmp_path)
    md = paths["markdown"].read_text()
    assert paths["pareto"].exists() and "pareto.png" in md
    for point in summary["headline"]:
        assert f"{100 * point['robust']:.1f} [{100 * point['robust_ci95'][0]:.1f}" in md
        assert f"{100 * point['clean']:.1f}" in md
    numbers = set(re.findall(r"\d+\.\d", md))
    stored = {f"{100 * v:.1f}" for p in summary["headline"] for v in (p["clean"], p["robust"], *p["robust_ci95"],
                                                                      *p["clean_ci95"])}
    stored |= {f"{100 * r[k]:.1f}" for r in summary["matched"] for k in ("robust", "clean", "linear_clean") if r[k]}
    stored |= {f"{100 * r['gain']:+.1f}".lstrip("+-") for r in summary["matched"] if r["gain"] is not None}
    assert stored <= numbers


def test_broken_summary_is_refused(tmp_path):
    from robustmix.errors import ConfigError

    bad = {"kind": "sweep", "schema_version": 99, "alphas": [], "n": 0, "accuracy": {}, "ci95": {}, "table1": {}}
    with pytest.raises(ConfigError, match="newer"):
        SweepSummary.from_dict(bad)
    with pytest.raises(ConfigError, match="unknown fields"):
        SweepSummary.from_dict({**bad, "schema_version": 1, "extra": 1})


def test_shipped_pareto_front_names_the_adaptive_recipe_it_shows():
    """results/pareto-linf was trained with the first adaptive recipe: its report says so in the row itself."""
    import dataclasses
    from pathlib import Path

    from robustmix.results import ParetoSummary

    root = Path(__file__).resolve().parents[1]
    old = ParetoSummary.load(root / "results" / "pareto-linf" / "summary.json")
    text = "\n".join(sec.text for sec in old.render())
    rows = [r for sec in old.render() for t in sec.tables for r in t if r[0].startswith("adaptive")]
    assert rows and all("(first recipe)" in r[0] for r in rows)
    assert "features logits, mlp net, training attack composite" in str(rows)
    assert "first recipe" in text
    new = dataclasses.replace(old, settings={**old.settings, "adaptive_features": "logits", "mixing_net": "residual",
                                             "train_attack": "composite+gate"})
    rows = [r for sec in new.render() for t in sec.tables for r in t if r[0].startswith("adaptive")]
    assert rows and not any("first recipe" in r[0] for r in rows)
