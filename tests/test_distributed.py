"""torchrun on CPU (gloo): sharded runs give exactly the single-process records, and survive a dead rank."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustmix.distributed import Dist
from robustmix.experiments import read_records
from robustmix.models import list_models

HERE = Path(__file__).parent

pytestmark = pytest.mark.skipif("fmnist-std-cnn" not in list_models(pretrained=True)
                                or "fmnist-noise-0.25-cnn" not in list_models(pretrained=True),
                                reason="needs the shipped zoo")

SWEEP = ["sweep", "-n", "14", "--alphas", "0", "0.5", "1", "--steps", "2", "--batch-size", "4",
         "--rob", "fmnist-noise-0.25-cnn"]
CERTIFY = ["certify", "-n", "12", "--rob", "fmnist-noise-0.25-cnn", "--sigma", "0.25", "--samples", "100"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", ROBUSTMIX_NO_DOWNLOAD="1")
    return env


def _run(argv, out, nproc=None, script=None, extra=()):
    if nproc:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *extra]
        cmd += [str(script)] if script else ["-m", "robustmix"]
    else:
        cmd = [sys.executable, "-m", "robustmix"]
    res = subprocess.run(cmd + list(argv) + ["--out", str(out)], capture_output=True, text=True, env=_env(),
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return read_records(out / "records.jsonl")


def test_shards_are_disjoint_blocks_without_padding():
    idx = torch.arange(11)
    parts = [Dist(r, 3).shard(idx, 2) for r in range(3)]
    assert sorted(torch.cat(parts).tolist()) == list(range(11))
    assert parts[0].tolist() == [0, 1, 6, 7]


@pytest.mark.parametrize("argv", [SWEEP, CERTIFY], ids=["sweep", "certify"])
def test_two_ranks_equal_one_process(argv, tmp_path):
    single = _run(argv, tmp_path / "single")
    sharded = _run(argv, tmp_path / "sharded", nproc=2)
    assert sharded == single and len(single[1]) == int(argv[2])


EVALUATE = ["evaluate", "-n", "14", "--attacks", "apgd-ce@*", "--steps", "3", "--batch-size", "2", "--no-diagnostics",
            "--rob", "fmnist-noise-0.25-cnn", "--alpha", "0.6"]


def _outcomes(records):
    """What an evaluation decides per example (its records also hold each batch's run times)."""
    return [(r["index"], r["robust"], r["clean_correct"], r["found_by"], round(r["margin"], 5)) for r in records[1]]


def test_dead_rank_of_four_is_restarted_and_resumes(tmp_path):
    """torchrun with 4 gloo processes; rank 1 dies after its first batch, torchrun restarts the group, every rank
    resumes from its records: the worst-case evaluation equals one process's, example for example."""
    single = _run(EVALUATE, tmp_path / "single")
    marker = tmp_path / "marker"
    out = tmp_path / "crashy"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "--max-restarts=1",
           str(HERE / "crashy_run.py"), str(marker)] + EVALUATE + ["--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert marker.exists()  # rank 1 really died once
    merged = read_records(out / "records.jsonl")
    assert _outcomes(merged) == _outcomes(single) and len(merged[1]) == 14
