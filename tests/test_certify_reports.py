"""What `robustmix certify` and the certify reports say: clean and certified accuracy of one classifier, every
noise sample counted, tables without repeated rows, a curve at zero that can be seen, log lines that leave the
progress bars whole."""

import contextlib
import io
import json
import logging

import pytest
import torch
from tqdm import tqdm

from robustmix.cli import BarSafeHandler, main
from robustmix.experiments.certified import sound_curve
from robustmix.experiments.certified_front import _point, best_by_clean
from robustmix.reports import plots
from robustmix.results import CertifyFrontSummary, CertifySummary, Fig3Summary


def test_certify_sound_clean_is_the_certified_classifier_and_every_noise_sample_is_counted(tmp_path):
    out = tmp_path / "o"
    assert main(["certify", "-n", "3", "--sigma", "0.5", "--samples", "200", "--alphas", "0.5", "1.0", "--sound",
                 "--out", str(out)]) == 0
    recs = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()[1:]]
    for r in recs:    # where the mixture certifies, its clean prediction is the certified class
        assert len(r["sound"]["clean"]) == 2 and r["sound"]["samples"] == 300
        assert all(c == p for c, p in zip(r["sound"]["clean"], r["sound"]["prediction"]) if p >= 0)
    settings = json.loads((out / "summary.json").read_text())["settings"]
    assert settings["clean_of"] == "certified" and settings["samples_per_image"] == 300
    md = (out / "report.md").read_text()
    assert "300 noise samples per image (100 selection + 200 estimation samples)" in md
    assert "Clean: the certified classifier's output at the clean input" in md
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        main(["certify", "--help"])
    assert "n0 + samples in all" in " ".join(buf.getvalue().split())


def _records(with_clean: bool) -> list[dict]:
    """Two images, label 0: g says 0, h's mean softmax leans to 1; the certificate abstains on both at alpha 0.8."""
    recs = []
    for i in range(2):
        sound = {"radius": [0.0], "prediction": [-1], "estimator": "clopper-pearson", "samples": 300}
        if with_clean:
            sound["clean"] = [0]
        recs.append({"index": i, "label": 0, "g_probs": [0.9, 0.1], "h_probs": [0.2, 0.8], "sound": sound})
    return recs


def test_sound_curve_says_which_classifier_its_clean_accuracy_is_about():
    new, old = sound_curve(_records(True), [0.8], 0.8, [0.0]), sound_curve(_records(False), [0.8], 0.8, [0.0])
    assert new["clean_of"] == "certified" and new["clean"] == [1.0]
    assert old["clean_of"] == "mean-softmax" and old["clean"] == [0.0]   # 0.2 * 0.9 + 0.8 * 0.2 < 0.2 * 0.1 + 0.64
    settings = {"sigma": 0.5, "sound": True, "num_samples": 200, "n0": 100, "samples_per_image": 300}
    summary = CertifySummary(n=2, alphas=[0.8], grid=[0.0], curves={"theorem2": {"clean": [0.0], "certified": [[0.0]]}},
                             settings=settings)
    assert "a point estimate of another classifier" in summary.render()[0].text
    fig3 = Fig3Summary(settings={}, n=2, certified={"grid": [0.0], "rs": {
        "alpha": 0.8, "baseline_clean": 1.0,
        "thm2_tight": {"mixture": {**old, "certified": [[0.0]]}, "baseline": {**old, "certified": [[0.0]]}}}})
    assert "predate its clean prediction" in fig3.render()[0].text


def test_front_tables_merge_rows_that_show_the_same_values():
    """n = 10: the alphas that give equal accuracies are one row, and so are the 21 clean levels 90.0 ... 100.0
    (one classifier is the best at each)."""
    y_ok, certified = torch.ones(10, dtype=torch.bool), torch.zeros(10, dtype=torch.bool)
    clean9 = torch.tensor([True] * 9 + [False])
    points = [_point("mixture", 0.5, a, clean9, torch.zeros(10), certified, [0.25], "cp") for a in (0.5, 0.55, 0.6)]
    points += [_point("mixture", 0.5, 1.0, y_ok, torch.ones(10), y_ok, [0.25], "cp")]
    levels = [round(0.9 + 0.005 * i, 3) for i in range(21)]
    verdict = {"0.25": best_by_clean(points, levels, 0.25)}
    summary = CertifyFrontSummary(n=10, radii=[0.25], points=points, verdict=verdict, settings={})
    table, verdict = summary.render()[0].tables
    assert [row[2] for row in table[1:]] == ["0.5 to 0.6 (3)", "1"]
    assert [row[0] for row in verdict[1:]] == ["90.0 to 100.0 (21)"]


def test_a_curve_at_zero_everywhere_is_drawn_visibly(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or [])
    plots.plot_certified({"alpha=0.50": {"grid": [0.0, 0.5, 1.0], "certified": [0.0, 0.0, 0.0], "clean": 0.9},
                          "alpha=1.00": {"grid": [0.0, 0.5, 1.0], "certified": [0.8, 0.5, 0.0], "clean": 0.8}},
                         tmp_path / "c")
    ax = figures[0].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["alpha=0.50 (0 at every radius)", "alpha=1.00"]
    assert ax.get_ylim()[0] < 0 and ax.lines[0].get_marker() == "x"


def test_log_lines_do_not_break_a_progress_bar():
    console = io.StringIO()
    handler = BarSafeHandler(console)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log = logging.getLogger("robustmix.test_bar")
    log.addHandler(handler)
    log.propagate, log.level = False, logging.INFO
    try:
        with tqdm(total=3, file=console, ascii=True, mininterval=0) as bar:
            bar.update(1)
            log.info("certified 10 inputs")
            bar.update(2)
    finally:
        log.removeHandler(handler)
    # the bar was cleared before the line, so the line stands alone on the console, not glued to the bar
    shown = [segment.split("\r")[-1] for segment in console.getvalue().split("\n")]
    assert "INFO robustmix.test_bar: certified 10 inputs" in shown
