"""What a new user typed: settings from YAML, output files and their formats, model loading messages, a user's own
architecture in a saved mixture, and late failures that must leave nothing half-written."""

import errno
import os
import sys
import warnings
from pathlib import Path

import pytest
import torch

from robustmix.cli import main


def one_line(err: str, needle: str) -> None:
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


# 1, 2: required options and aliases in a --config YAML


def test_required_option_may_come_from_the_yaml_file(tmp_path, capsys):
    cfg = tmp_path / "m.yaml"
    cfg.write_text("alpha: 0.6\n")
    out = tmp_path / "m.pt2"
    assert main(["mix", "--config", str(cfg), "--export", str(out)]) == 0
    assert out.is_file()
    cfg.write_text("mixer: linear\n")
    assert main(["mix", "--config", str(cfg), "--export", str(tmp_path / "n.pt2")]) == 2
    one_line(capsys.readouterr().err, "--alpha is required: type it, or put 'alpha: ...' in the --config YAML file")
    assert main(["train"]) == 2
    one_line(capsys.readouterr().err, "--out is required")


def test_yaml_with_an_option_and_its_alias_is_refused(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("n: 5\nnum-examples: 6\n")
    assert main(["sweep", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    one_line(capsys.readouterr().err, "gives 'n' and 'num-examples', two names of one setting (-n/--num-examples); "
                                      "keep one")
    assert not (tmp_path / "o").exists()


# 3, 4: the suffix decides the format; nothing existing is overwritten without --force; checked before any work


@pytest.mark.parametrize("argv,needle", [
    (["mix", "--alpha", "0.5", "--out", "OUT/x.pt2"], "--out OUT/x.pt2 must end in .safetensors (--out writes a "
     "robustmix checkpoint); .pt2 is a torch.export program: give it to --export"),
    (["mix", "--alpha", "0.5", "--export", "OUT/x.safetensors"], "must end in .pt2"),
    (["mix", "--alpha", "0.5", "--export", "OUT/x"], "e.g. --export OUT/x.pt2"),
    (["mix", "--alpha", "0.5", "--onnx", "OUT/x.pt2"], "--onnx OUT/x.pt2 must end in .onnx"),
    (["calibrate", "--target", "0.9", "--export", "OUT/x.safetensors", "--out", "OUT/o"], "must end in .pt2"),
    (["train", "--out", "OUT/m.pt"], "--out OUT/m.pt must end in .safetensors"),
    (["mix", "--alpha", "0.5", "--out", "/proc/x.safetensors"], "the folder /proc is not writable"),
    (["mix", "--alpha", "0.5", "--export", "/proc/x.pt2"], "the folder /proc is not writable"),
    (["calibrate", "--target", "0.9", "--export", "/proc/x.pt2", "--out", "OUT/o"], "the folder /proc is not writable"),
])
def test_output_files_refused_before_any_work(argv, needle, tmp_path, capsys):
    if "/proc" in " ".join(argv) and not Path("/proc/self").exists():
        pytest.skip("no /proc here")
    argv = [a.replace("OUT", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    one_line(capsys.readouterr().err, needle.replace("OUT", str(tmp_path)))
    assert os.listdir(tmp_path) == []


def test_existing_outputs_need_force(tmp_path, capsys):
    out, export = tmp_path / "m.safetensors", tmp_path / "m.pt2"
    assert main(["mix", "--alpha", "0.5", "--out", str(out), "--export", str(export)]) == 0
    before = {p: p.stat().st_mtime_ns for p in (out, out.with_suffix(".json"), export)}
    assert main(["mix", "--alpha", "0.7", "--export", str(export)]) == 2
    one_line(capsys.readouterr().err, f"--export {export} exists; add --force to overwrite it")
    out.unlink()   # the card alone is an existing output too
    assert main(["mix", "--alpha", "0.7", "--out", str(out)]) == 2
    one_line(capsys.readouterr().err, f"has a card {out.with_suffix('.json')} beside it; add --force")
    assert main(["train", "--out", str(out.with_suffix(".json").with_suffix(".safetensors"))]) == 2
    assert "add --force" in capsys.readouterr().err
    assert main(["calibrate", "--target", "0.9", "--export", str(export), "--out", str(tmp_path / "c")]) == 2
    one_line(capsys.readouterr().err, f"--export {export} exists; add --force")
    assert {p: p.stat().st_mtime_ns for p in (out.with_suffix(".json"), export)} == \
        {p: t for p, t in before.items() if p != out}
    assert main(["mix", "--alpha", "0.7", "--out", str(out), "--export", str(export), "--force"]) == 0
    from robustmix.models import load

    assert float(load(out).alpha) == pytest.approx(0.7)


def test_onnx_without_its_package_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("robustmix.experiments.export.onnx_missing", lambda: ["onnx", "onnxscript"])
    assert main(["mix", "--alpha", "0.5", "--export", str(tmp_path / "m.pt2"), "--onnx", str(tmp_path / "m.onnx")]) == 2
    one_line(capsys.readouterr().err, "--onnx needs the onnx and onnxscript package(s): pip install onnx onnxscript")
    assert os.listdir(tmp_path) == []


# 5, 6: calibrate says what it chose and wrote; exports hold no sample inputs and print no torch warnings


def test_calibrate_reports_its_choice_and_files_and_exports_small(tmp_path, caplog, capsys, monkeypatch):
    import logging
    import zipfile

    export, out = tmp_path / "cal.pt2", tmp_path / "cal"
    confirmed = {"n": 4, "clean": 0.75, "clean_ci95": [0.19, 0.99], "robust": 0.5, "robust_ci95": [0.07, 0.93],
                 "robust_attack": "the test split's worst case (not run here: the choice and its files are tested)"}
    monkeypatch.setattr("robustmix.experiments.calibrate._confirm", lambda *args: confirmed)
    with caplog.at_level(logging.INFO, logger="robustmix"):
        assert main(["calibrate", "-n", "4", "--target", "0.5", "--steps", "1", "--confirm-steps", "1", "--alphas",
                     "0.7", "--export", str(export), "--out", str(out)]) == 0
    line = next(r.getMessage() for r in caplog.records if "calibrate chose" in r.getMessage())
    assert "the linear mixer with alpha = 0.7" in line
    for path in (out / "mixer.safetensors", out / "calibration.json", export):
        assert str(path) in line and path.is_file()
    assert main(["mix", "--alpha", "0.7", "--export", str(tmp_path / "mix.pt2")]) == 0
    names = zipfile.ZipFile(export).namelist()
    samples = [zipfile.ZipFile(export).getinfo(n).file_size for n in names if "sample_inputs" in n]
    assert sum(samples) < 1000       # no example inputs (a slice of the validation split kept all 5,000 images)
    assert abs(export.stat().st_size - (tmp_path / "mix.pt2").stat().st_size) < 10_000


def test_export_and_a_corrupt_program_print_no_torch_noise(tmp_path, capfd):
    export = tmp_path / "m.pt2"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert main(["mix", "--alpha", "0.5", "--export", str(export)]) == 0
    assert not [w for w in seen if "No complete tensor" in str(w.message)]
    capfd.readouterr()
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(export.read_bytes()[: export.stat().st_size // 2])
    assert main(["evaluate", "--model", str(bad), "-n", "2", "--out", str(tmp_path / "e")]) == 2
    err = capfd.readouterr().err
    one_line(err, "is not a readable torch.export program")
    assert "may be truncated or damaged: export it again" in err


# 7: model loading messages


@pytest.mark.parametrize("argv,needle", [
    (["--std", "OUT/missing.safetensors"], "checkpoint OUT/missing.safetensors not found (no file "),
    (["--std", "tests.test_outputs_and_loading:factory_that_raises"],
     "model factory tests.test_outputs_and_loading:factory_that_raises raised ValueError: weights file gone; fix "
     "factory_that_raises() in tests.test_outputs_and_loading"),
])
def test_model_loading_messages(argv, needle, tmp_path, capsys):
    argv = [a.replace("OUT", str(tmp_path)) for a in argv]
    assert main(["sweep", "-n", "2", *argv, "--out", str(tmp_path / "o")]) == 2
    one_line(capsys.readouterr().err, needle.replace("OUT", str(tmp_path)))


def factory_that_raises():
    raise ValueError("weights file gone")


def test_list_with_a_pattern_that_matches_nothing(capsys):
    assert main(["list", "zzz*"]) == 2
    one_line(capsys.readouterr().err, "no model or architecture matches 'zzz*'; 'robustmix list' lists them all")


# 8: a mixture of the user's own registered architecture, loaded again from the command line

USER_MODULE = '''
import torch
from torch import nn
from robustmix.models import ModelCard, load, register_architecture, save_checkpoint


@register_architecture("tiny-cnn", input_shape=(1, 28, 28), description="a tiny model")
def tiny_cnn(hidden: int = 8) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def standard() -> nn.Module:
    torch.manual_seed(0)
    card = ModelCard(name="tiny", arch="tiny-cnn", arch_kwargs={"hidden": 8}, dataset="fashion-mnist")
    return load(save_checkpoint(tiny_cnn(), card, "tiny.safetensors"))
'''


def test_a_mixture_of_a_users_architecture_loads_with_import_code(tmp_path, monkeypatch, capsys):
    import json

    from robustmix.models import registry

    monkeypatch.setattr(registry, "ARCHITECTURES", dict(registry.ARCHITECTURES))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "usermodels_rm.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "usermodels_rm", raising=False)
    assert main(["mix", "--std", "usermodels_rm:standard", "--alpha", "0.5", "--out", "mixed.safetensors"]) == 0
    card = json.loads(Path("mixed.json").read_text())
    assert card["arch_kwargs"]["std"]["source"] == "usermodels_rm:tiny_cnn"
    assert json.loads(Path("tiny.json").read_text())["arch_source"] == "usermodels_rm:tiny_cnn"
    # a new process: the architecture is not registered, the module not imported
    del registry.ARCHITECTURES["tiny-cnn"]
    del sys.modules["usermodels_rm"]
    registry._load_cached.cache_clear()
    capsys.readouterr()
    argv = ["mix", "--std", "mixed.safetensors", "--alpha", "1", "--export", "again.pt2"]
    assert main(argv) == 2
    one_line(capsys.readouterr().err, "needs architecture 'tiny-cnn' from usermodels_rm:tiny_cnn; robustmix imports "
             "that module only when asked: add --import-code (import_code=True in Python), with usermodels_rm "
             "importable (PYTHONPATH=<the folder of usermodels_rm.py>)")
    assert "usermodels_rm" not in sys.modules and not Path("again.pt2").exists()
    assert main(["--import-code", *argv]) == 0
    assert Path("again.pt2").is_file() and "tiny-cnn" in registry.ARCHITECTURES
    monkeypatch.delitem(sys.modules, "usermodels_rm", raising=False)


def test_cards_of_robustmix_architectures_are_unchanged_and_old_cards_load(tmp_path):
    import json

    from robustmix.models import ModelCard, create_model, load, save_checkpoint

    path = save_checkpoint(create_model("cnn-small", width=4, hidden=8), ModelCard(
        name="m", arch="cnn-small", arch_kwargs={"width": 4, "hidden": 8}, dataset="fashion-mnist"),
        tmp_path / "m.safetensors")
    assert "arch_source" not in json.loads(path.with_suffix(".json").read_text())
    assert load(path).card.arch_source is None and load("fmnist-std-cnn").card.arch_source is None


# 9: a late failure leaves only records behind


def _left(folder: Path) -> list[str]:
    """What a failed run left: every name, hidden ones too, except records and the runner's lock files."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and not p.name.endswith((".jsonl", ".jsonl.lock")))


def _fail_on_call(k: int, exc: BaseException, real):
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == k:
            raise exc
        return real(*args, **kwargs)
    return wrapped


def _half_report(real):
    def write_report(summary, out_dir, *args, **kwargs):
        (Path(out_dir) / "report.md").write_text("# half")
        raise OSError(errno.ENOSPC, "No space left on device")
    return write_report


LATE = {
    "evaluate": (["evaluate", "-n", "2", "--batch-size", "1", "--attacks", "apgd-ce@mix-T1", "--steps", "1",
                  "--no-diagnostics"], "robustmix.experiments.evaluate_run.evaluate_batch"),
    "certify": (["certify", "-n", "11", "--sigma", "0.5", "--samples", "30", "--alphas", "1.0"],
                "robustmix.experiments.certified.certify_batch"),
}


@pytest.mark.parametrize("where", ["second batch", "report"])
@pytest.mark.parametrize("command", sorted(LATE))
def test_late_failure_in_a_run_leaves_only_records(command, where, tmp_path, monkeypatch, capsys):
    import robustmix.reports

    argv, batch = LATE[command]
    out = tmp_path / "o"
    if where == "second batch":    # e.g. the model refuses an input of the second batch
        module, name = batch.rsplit(".", 1)
        real = getattr(sys.modules[module], name)
        monkeypatch.setattr(batch, _fail_on_call(2, RuntimeError("the model refused this batch"), real))
        with pytest.raises(RuntimeError, match="refused"):
            main(argv + ["--out", str(out)])
    else:                          # the disk fills while the report is written
        monkeypatch.setattr(robustmix.reports, "write_report", _half_report(robustmix.reports.write_report))
        assert main(argv + ["--out", str(out)]) == 2
        err = capsys.readouterr().err      # the progress bar, then one line
        assert "No space left on device; no output was left half-written" in err.splitlines()[-1]
        assert "Traceback" not in err
    assert (out / "records.jsonl").is_file() and _left(out) == []


def test_late_failure_in_mix_leaves_no_output(tmp_path, monkeypatch, capsys):
    """The disk fills while the export is written, after the checkpoint and its card: neither is left."""
    out, export = tmp_path / "m.safetensors", tmp_path / "m.pt2"
    monkeypatch.setattr(os, "fsync", _fail_on_call(3, OSError(errno.ENOSPC, "No space left on device"), os.fsync))
    assert main(["mix", "--alpha", "0.5", "--out", str(out), "--export", str(export)]) == 2
    one_line(capsys.readouterr().err, "No space left on device")
    assert os.listdir(tmp_path) == []


def test_late_failure_in_train_leaves_no_checkpoint(tmp_path, monkeypatch, capsys):
    """Training done, the weights written, the disk full at the card: no checkpoint without its card is left."""
    monkeypatch.setattr("robustmix.training.zoo.train", lambda model, x, y, cfg, state_path: (model, [{"seconds": 0}]))
    monkeypatch.setattr(os, "fsync", _fail_on_call(2, OSError(errno.ENOSPC, "No space left on device"), os.fsync))
    assert main(["train", "--epochs", "1", "--out", str(tmp_path / "m.safetensors")]) == 2
    one_line(capsys.readouterr().err, "No space left on device")
    assert os.listdir(tmp_path) == []
