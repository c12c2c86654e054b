"""kill -9 each long command at random moments, resume it, and compare with a run that was never killed.

The default run kills a sweep twice; the slow suite kills sweep, tradeoff, attack (AutoAttack included),
certify and demo --quick several times each (24 kills in all).
"""

import json
import os
import random
import subprocess
import sys
import time

import pytest

from robustmix.models import list_models

pytestmark = pytest.mark.skipif("fmnist-std-cnn" not in list_models(pretrained=True), reason="needs the shipped zoo")

COMMANDS = {
    "sweep": ["sweep", "-n", "24", "--alphas", "0", "0.5", "1", "--steps", "3", "--batch-size", "4"],
    "tradeoff": ["tradeoff", "-n", "24", "--trusts", "one", "grad_std", "--gammas", "0", "1", "inf", "--steps", "2",
                 "--batch-size", "3"],
    "attack": ["attack", "-n", "24", "--alpha", "0.7", "--steps", "5", "--autoattack", "square", "--batch-size", "3"],
    "certify": ["certify", "-n", "70", "--rob", "fmnist-noise-0.25-cnn", "--sigma", "0.25", "--samples", "300"],
    "demo": ["demo", "--quick"],
}


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", ROBUSTMIX_NO_DOWNLOAD="1", PYTHONUNBUFFERED="1")


def _cmd(name, out):
    return [sys.executable, "-m", "robustmix"] + COMMANDS[name] + ["--out", str(out)]


def _lines(out) -> int:
    """Record lines written so far under ``out`` (all records files)."""
    return sum(p.read_bytes().count(b"\n") for p in out.rglob("*.jsonl")) if out.exists() else 0


def _result(out, name):
    summary = json.loads((out / "summary.json").read_text())
    summary.pop("timings_s", None)
    summary.get("settings", {}).pop("out", None)  # the two runs write to different folders
    summary.pop("command", None)                    # (and so their command lines differ)
    return summary


def _killed_then_resumed(name, tmp_path, kills, seed, max_wait=120):
    ref = tmp_path / "ref"
    subprocess.run(_cmd(name, ref), check=True, env=_env(), capture_output=True, timeout=1800)
    rng = random.Random(seed)
    out = tmp_path / "killed"
    killed = 0
    for _ in range(kills):
        # kill once a random number of new records has landed, plus a random moment into the next batch
        target = _lines(out) + rng.randint(1, 3)
        proc = subprocess.Popen(_cmd(name, out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + max_wait
        while proc.poll() is None and _lines(out) < target and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.kill()
            killed += 1
        proc.wait()
    subprocess.run(_cmd(name, out), check=True, env=_env(), capture_output=True, timeout=1800)
    assert _result(out, name) == _result(ref, name)
    return killed


def test_sweep_killed_twice_resumes_to_the_same_result(tmp_path):
    assert _killed_then_resumed("sweep", tmp_path, kills=2, seed=0) == 2


@pytest.mark.slow
@pytest.mark.parametrize("name,kills", [("sweep", 5), ("tradeoff", 5), ("attack", 5), ("certify", 5), ("demo", 4)])
def test_long_commands_survive_random_kills(name, kills, tmp_path):
    assert _killed_then_resumed(name, tmp_path, kills=kills, seed=len(name)) == kills
