"""Reports as a person sees them: headless Chromium renders the page (not blank, every section's numbers there)."""

import html
import re
import shutil
import subprocess

import pytest

from robustmix.reports import write_report
from robustmix.reports.format import fmt_ci
from robustmix.results import SweepSummary, binomial_ci

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(BROWSER is None, reason="headless Chromium not installed (apt-get install chromium)")


def _chromium(*args, timeout=120):
    return subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_report_renders_in_a_browser(tmp_path):
    import matplotlib.image

    n = 300
    acc = {"clean": [0.93, 0.91, 0.87], "mix": [0.0, 0.55, 0.79]}
    summary = SweepSummary(alphas=[0.0, 0.6, 1.0], n=n, accuracy=acc,
                           ci95={k: [list(binomial_ci(round(v * n), n)) for v in vs] for k, vs in acc.items()},
                           table1={"g": {"clean_correct": 0.9}, "h": {"clean_correct": 0.7}},
                           settings={"eps": 0.1, "norm": "inf", "steps": 20}, command="robustmix sweep -n 300")
    page = write_report(summary, tmp_path)["html"]
    dom = _chromium("--dump-dom", page.as_uri()).stdout
    text = html.unescape(re.sub(r"<[^>]+>", " ", dom))
    for title in ("Fig. 2: accuracy versus alpha", "Table I"):
        assert title in text
    for k, values in acc.items():
        for v, ci in zip(values, summary.ci95[k]):
            assert fmt_ci(v, ci) in text
    assert "n = 300" in text and "robustmix sweep -n 300" in text and "data:image/png;base64," in dom
    shot = tmp_path / "shot.png"
    _chromium("--window-size=1000,1600", f"--screenshot={shot}", page.as_uri())
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert (pixels.mean(-1) < 0.9).mean() > 0.02   # text, tables and the plot: far from a blank page
