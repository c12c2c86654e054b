"""The runner: records, resume, refusal, locking, exactly-n, corrupt lines (one test per failure it fixes)."""

import json
import os
import subprocess
import sys
import time

import pytest

from robustmix import ThreatModel
import torch
from torch import nn

from robustmix._io import exclusive_lock, weights_digest
from robustmix.errors import ConfigError, InputError
from robustmix.experiments import SweepConfig, read_records, run_records, run_sweep
from robustmix.experiments.runner import Records


def _compute(calls=None):
    def compute(xb, yb, idx):
        if calls is not None:
            calls.extend(idx.tolist())
        return [{"value": float(v)} for v in xb.sum(1).tolist()]
    return compute


@pytest.fixture
def xy():
    gen = torch.Generator().manual_seed(0)
    return torch.rand(20, 3, generator=gen), torch.randint(0, 4, (20,), generator=gen)


def _run(path, x, y, calls=None, settings=None, model=None, fresh=False, **kw):
    records = Records(path, settings or {"eps": 0.1}, fresh, progress=False)
    return run_records(records, _compute(calls), x, y, kind="toy", models={"m": model or nn.Linear(3, 4)},
                       batch_size=6, **kw)


def test_records_have_index_label_and_resume_skips_done(xy, tmp_path):
    x, y = xy
    torch.manual_seed(0)
    model = nn.Linear(3, 4)
    first = _run(tmp_path / "r.jsonl", x[:8], y[:8], model=model)
    calls = []
    both = _run(tmp_path / "r.jsonl", x, y, calls, model=model)
    assert calls == list(range(8, 20))
    assert [r["index"] for r in both] == list(range(20)) and both[:8] == first
    assert all(r["label"] == int(y[r["index"]]) for r in both)


def test_smaller_rerun_reports_exactly_the_requested_n(xy, tmp_path):
    x, y = xy
    model = nn.Linear(3, 4)
    _run(tmp_path / "r.jsonl", x, y, model=model)
    calls = []
    few = _run(tmp_path / "r.jsonl", x[:5], y[:5], calls, model=model)
    assert calls == [] and len(few) == 5
    cfg = SweepConfig(alphas=[0.0, 1.0], steps=1, batch_size=4)
    g, h = nn.Sequential(nn.Flatten(), nn.Linear(3, 4)), nn.Sequential(nn.Flatten(), nn.Linear(3, 4))
    assert run_sweep(g, h, x, y, cfg, records=Records(tmp_path / "s.jsonl", progress=False)).n == 20
    assert run_sweep(g, h, x[:7], y[:7], cfg, records=Records(tmp_path / "s.jsonl", progress=False)).n == 7


def test_changed_weights_are_refused_and_nothing_changes(xy, tmp_path):
    x, y = xy
    model = nn.Linear(3, 4)
    path = tmp_path / "r.jsonl"
    _run(path, x[:6], y[:6], model=model)
    before = path.read_bytes()
    with torch.no_grad():
        model.weight.add_(1e-3)
    with pytest.raises(ConfigError, match="weights of m.*--fresh"):
        _run(path, x, y, model=model)
    with pytest.raises(ConfigError, match="eps"):
        _run(path, x, y, settings={"eps": 0.2})
    assert path.read_bytes() == before


def test_fresh_moves_old_records_aside(xy, tmp_path):
    x, y = xy
    path = tmp_path / "r.jsonl"
    _run(path, x[:6], y[:6])
    calls = []
    _run(path, x[:6], y[:6], calls, fresh=True)  # a new random model: would be refused without fresh
    assert calls == list(range(6))
    assert len(list(tmp_path.glob("r.jsonl.*.old"))) == 1


def test_corrupt_middle_line_is_skipped_with_a_warning_and_recomputed(xy, tmp_path, caplog):
    x, y = xy
    model = nn.Linear(3, 4)
    path = tmp_path / "r.jsonl"
    ref = _run(path, x, y, model=model)
    lines = path.read_text().splitlines()
    lines[3] = lines[3][:10] + "#garbage"
    lines[5] = json.dumps({"no_index": True})
    path.write_text("\n".join(lines) + "\n")
    calls = []
    again = _run(path, x, y, calls, model=model)
    assert sorted(calls) == [2, 4]  # line 1 is the header, so lines 4 and 6 held examples 2 and 4
    assert again == ref
    text = caplog.text
    assert "line 4 is corrupt" in text and "line 6 has no integer 'index'" in text


def test_torn_last_line_is_cut_and_recomputed(xy, tmp_path):
    x, y = xy
    model = nn.Linear(3, 4)
    path = tmp_path / "r.jsonl"
    ref = _run(path, x, y, model=model)
    raw = path.read_bytes()
    path.write_bytes(raw[:-7])  # the last record loses its end
    calls = []
    assert _run(path, x, y, calls, model=model) == ref and calls == [19]
    assert path.read_bytes().count(b"\n") == 21


def test_header_only_file_does_not_block_a_corrected_rerun(xy, tmp_path):
    x, y = xy
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"header": True, "kind": "toy", "settings": {"eps": 0.5}, "models": {}}) + "\n")
    assert len(_run(path, x, y)) == 20


def test_second_run_into_the_same_output_is_locked_out(xy, tmp_path):
    x, y = xy
    path = tmp_path / "r.jsonl"
    with exclusive_lock(tmp_path / ".r.jsonl.lock"):
        with pytest.raises(ConfigError, match="another robustmix run"):
            _run(path, x, y)
    assert not path.exists()


def test_bad_data_is_refused(xy):
    x, y = xy
    with pytest.raises(InputError, match="labels"):
        _run(None, x, y[:3])
    with pytest.raises(InputError, match="unique"):
        _run(None, x[:2], y[:2], indices=[1, 1])


def test_weights_digest_tracks_values_not_identity():
    torch.manual_seed(0)
    a = nn.Linear(3, 4)
    b = nn.Linear(3, 4)
    b.load_state_dict(a.state_dict())
    assert weights_digest(a) == weights_digest(b)
    with torch.no_grad():
        b.bias[0] += 1e-6
    assert weights_digest(a) != weights_digest(b)


KILL_SCRIPT = """
import sys, torch
from torch import nn
from robustmix.experiments import run_records
from robustmix.experiments.runner import Records
gen = torch.Generator().manual_seed(0)
x, y = torch.rand(40, 3, generator=gen), torch.randint(0, 4, (40,), generator=gen)
torch.manual_seed(1)
model = nn.Linear(3, 4)
def compute(xb, yb, idx):
    import time; time.sleep(0.02)
    with torch.no_grad():
        return [{"logits": v} for v in model(xb).tolist()]
run_records(Records(sys.argv[1], progress=False), compute, x, y, kind="toy", models={"m": model}, batch_size=3)
"""


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_killed_at_random_points_resumes_to_the_uninterrupted_result(tmp_path, seed):
    """kill -9 a run at a random moment (possibly several times), resume, compare with a run never killed."""
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ref = tmp_path / "ref.jsonl"
    subprocess.run([sys.executable, str(script), str(ref)], check=True, env=env)
    path = tmp_path / "killed.jsonl"
    gen = torch.Generator().manual_seed(seed)
    for _ in range(2):
        proc = subprocess.Popen([sys.executable, str(script), str(path)], env=env)
        time.sleep(1.0 + float(torch.rand(1, generator=gen)) * 1.0)
        proc.kill()
        proc.wait()
    subprocess.run([sys.executable, str(script), str(path)], check=True, env=env)
    assert read_records(path) == read_records(ref)


def test_refused_cli_run_leaves_the_folder_as_it_was(tmp_path):
    from robustmix.cli import main

    out = tmp_path / "o"
    argv = ["sweep", "-n", "4", "--alphas", "0", "1", "--steps", "1", "--batch-size", "4", "--out", str(out)]
    assert main(argv) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert main(argv[:-2] + ["--eps", "0.2", "--out", str(out)]) == 2  # other settings: refused
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_public_api_validates_its_inputs():
    from robustmix.mixing import MixedClassifier

    g, h = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    from robustmix.attacks import evaluate

    # inputs are checked where they enter (evaluate, attacks, certify, the CLI), not in every forward pass
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        evaluate(MixedClassifier(g, h, 0.5), torch.rand(2, 4) * 3, torch.tensor([0, 1]), threat=ThreatModel("inf", 0.1))
    with pytest.raises(InputError, match="integer dtype"):
        MixedClassifier(g, h, 0.5, validate_inputs=True)(torch.ones(2, 4, dtype=torch.long))
    assert MixedClassifier(g, h, 0.5)(torch.rand(2, 4) * 3).shape == (2, 3)   # e.g. noisy inputs of a smoothing loop
    with pytest.raises(ConfigError, match="steps"):
        SweepConfig(steps=-1)
    with pytest.raises(ConfigError, match="eps"):
        SweepConfig(threat=ThreatModel("inf", -0.1))


def test_out_of_memory_halves_the_batch_and_results_do_not_depend_on_batch_size(pair, tmp_path, monkeypatch, caplog):
    """A batch too big for the device is retried at half the size; a sweep's records are the same example by
    example at batch sizes 2, 7 and 16-halved-to-4."""
    import logging

    from robustmix.experiments import sweep as sweep_module

    g, h = pair
    x, y = torch.rand(21, 12), torch.randint(0, 4, (21,))
    runs = {}
    for b in (2, 7):
        cfg = SweepConfig(alphas=[0.0, 0.5, 1.0], threat=ThreatModel("inf", 0.2), steps=3, batch_size=b)
        run_sweep(g, h, x, y, cfg, records=Records(tmp_path / f"b{b}.jsonl", progress=False))
        runs[b] = read_records(tmp_path / f"b{b}.jsonl")[1]
    real = sweep_module.sweep_batch

    def small_device(std, rob, xb, *args):
        if len(xb) > 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(std, rob, xb, *args)

    monkeypatch.setattr(sweep_module, "sweep_batch", small_device)
    cfg = SweepConfig(alphas=[0.0, 0.5, 1.0], threat=ThreatModel("inf", 0.2), steps=3, batch_size=16)
    with caplog.at_level(logging.WARNING):
        run_sweep(g, h, x, y, cfg, records=Records(tmp_path / "oom.jsonl", progress=False))
    assert "batch of 16 did not fit in memory" in caplog.text and "batches of 8" in caplog.text
    assert "batches of 4" in caplog.text
    runs["oom"] = read_records(tmp_path / "oom.jsonl")[1]
    assert runs[2] == runs[7] == runs["oom"] and len(runs[2]) == 21


def test_batch_size_auto_says_what_it_chose_and_resumes_at_another_size(pair, tmp_path, caplog):
    """--batch-size auto (the default of sweep and evaluate): the records equal those of a fixed size, a run started
    at one size resumes at another (the batch size does not enter their results), and the log names the size."""
    import logging

    from robustmix.experiments.runner import AUTO_CPU, AUTO_GPU_START, auto_batch_size

    g, h = pair
    x, y = torch.rand(9, 12), torch.randint(0, 4, (9,))
    fixed = SweepConfig(alphas=[0.0, 1.0], threat=ThreatModel("inf", 0.2), steps=2, batch_size=4)
    run_sweep(g, h, x, y, fixed, records=Records(tmp_path / "fixed.jsonl", progress=False))
    auto = SweepConfig(alphas=[0.0, 1.0], threat=ThreatModel("inf", 0.2), steps=2)
    assert auto.batch_size == "auto"
    run_sweep(g, h, x[:5], y[:5], fixed, records=Records(tmp_path / "mixed.jsonl", progress=False))
    with caplog.at_level(logging.INFO):
        run_sweep(g, h, x, y, auto, records=Records(tmp_path / "mixed.jsonl", progress=False))   # resumes: 4 left
    assert "auto chose 4 examples per batch on cpu" in caplog.text
    assert read_records(tmp_path / "fixed.jsonl")[1] == read_records(tmp_path / "mixed.jsonl")[1]
    assert auto_batch_size("auto", torch.device("cuda"), 50_000) == AUTO_GPU_START
    assert auto_batch_size("auto", torch.device("cpu"), 50_000) == AUTO_CPU
    assert auto_batch_size(7, torch.device("cuda"), 50_000) == 7


def test_batch_size_auto_is_refused_where_the_batch_enters_the_results():
    from robustmix.experiments.attack_eval import AttackConfig

    with pytest.raises(ConfigError, match="--batch-size must be an integer >= 1, got 'auto'"):
        AttackConfig(batch_size="auto")


def test_one_example_that_does_not_fit_is_a_clear_error(tmp_path):
    from robustmix.errors import RunError

    def compute(xb, yb, idx):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: not enough memory")

    with pytest.raises(RunError, match="one example does not fit in memory"):
        run_records(Records(tmp_path / "r.jsonl", progress=False), compute, torch.rand(3, 2),
                    torch.zeros(3, dtype=torch.long), kind="toy", batch_size=2)


def test_ctrl_c_says_whether_anything_was_saved(tmp_path, monkeypatch, capsys):
    """Ctrl-C before the first batch: nothing to resume, and the message says so; after a batch: how many records
    a rerun resumes from."""
    from robustmix.cli import main
    from robustmix.experiments import sweep as sweep_module

    real, calls = sweep_module.sweep_batch, {"n": 0}

    def interrupted_at(k):
        def batch(*args):
            calls["n"] += 1
            if calls["n"] > k:
                raise KeyboardInterrupt
            return real(*args)
        return batch

    argv = ["sweep", "-n", "6", "--alphas", "0", "1", "--steps", "1", "--batch-size", "3"]
    monkeypatch.setattr(sweep_module, "sweep_batch", interrupted_at(0))
    assert main(argv + ["--out", str(tmp_path / "a")]) == 130
    assert "no example was finished yet, so nothing was saved" in capsys.readouterr().err
    calls["n"] = 0
    monkeypatch.setattr(sweep_module, "sweep_batch", interrupted_at(1))
    assert main(argv + ["--out", str(tmp_path / "b")]) == 130
    assert "3 example record(s) are kept in" in capsys.readouterr().err
