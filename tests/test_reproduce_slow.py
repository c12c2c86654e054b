"""scripts/reproduce_results.sh end to end in its small mode (tiny sizes, a few minutes on 2 CPU cores).

Run: pytest -m slow tests/test_reproduce_slow.py
"""

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "reproduce_results.sh"
ZOO = ["fmnist-std-cnn", "fmnist-at-linf-cnn", "fmnist-trades-linf-cnn", "fmnist-at-l2-cnn", "fmnist-noise-0.12-cnn",
       "fmnist-noise-0.25-cnn", "fmnist-noise-0.50-cnn", "fmnist-lipschitz"]
STEPS = ["fig2-at-linf", "aa-at-linf-h", "aa-at-linf-mix", "fig3-baseline-0.12", "fig3", "lipschitz-certified",
         "fig1-at-linf-pgd10", "fig4a-trades-pgd20", "fig4b-at-l2-pgd20"] + [f"zoo-eval/{name}" for name in ZOO]
WORST_CASE_STEPS = ["evaluate-linf-a0.7", "pareto-linf", "pareto-l2"]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("SMALL", "FRESH", "WORST_CASE", "DEVICE")}
    return {**env, "OMP_NUM_THREADS": "1", "DEVICE": "cpu", **extra}


def _cards() -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((ROOT / "src" / "robustmix" / "zoo").glob("*.json"))}


def _run_small(out: Path, worst_case: bool, timeout: int):
    pytest.importorskip("robustmix")
    from robustmix.data import load_dataset

    try:
        load_dataset("fashion-mnist", "test", allow_download=False)
    except Exception as e:  # noqa: BLE001 - any reason the data is missing
        pytest.skip(f"Fashion-MNIST is not available here: {e}")
    cards = _cards()
    proc = subprocess.run(["bash", str(SCRIPT), "--small", str(out)], cwd=ROOT, capture_output=True, text=True,
                          env=_env(WORST_CASE="1" if worst_case else "0"), timeout=timeout)
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(out.glob("queue_*.log")))
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}\n{logs}"
    for step in STEPS + (WORST_CASE_STEPS if worst_case else []):
        path = out / step / "summary.json"
        assert path.is_file(), f"{step} wrote no summary.json\n{logs}"
        assert json.loads(path.read_text()), f"{step}: empty summary.json"
    if not worst_case:
        assert not any((out / step).exists() for step in WORST_CASE_STEPS)
    assert _cards() == cards, "the small mode must leave the zoo cards alone"


@pytest.mark.slow
def test_small_mode_runs_every_step(tmp_path):
    _run_small(tmp_path / "small", worst_case=False, timeout=1800)


@pytest.mark.slow
def test_small_mode_with_the_worst_case_steps(tmp_path):
    """Adds robustmix evaluate and pareto (about 10 more minutes: AutoAttack and Square dominate)."""
    _run_small(tmp_path / "small", worst_case=True, timeout=3600)


def test_small_mode_refuses_the_shipped_results_folder():
    for target in ("results", "results/", "results/sub"):
        proc = subprocess.run(["bash", str(SCRIPT), "--small", target], cwd=ROOT, capture_output=True, text=True,
                              env=_env(), timeout=60)
        assert proc.returncode == 2 and "shipped results" in proc.stderr, proc.stderr
