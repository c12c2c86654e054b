import os
import subprocess
import sys
from pathlib import Path

import pytest

from robustmix.cli import EXAMPLES, main


@pytest.mark.parametrize("command", sorted(EXAMPLES))
def test_help_has_examples(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "examples:" in capsys.readouterr().out


@pytest.mark.parametrize("argv,needle", [
    (["sweep", "--rob", "no-such-model", "-n", "5"], "unknown model"),
    (["sweep", "--alphas", "1.5", "-n", "5"], "alpha must lie in [0, 1]"),
    (["sweep", "--eps", "-0.1", "-n", "5"], "eps must be"),
    (["sweep", "--dataset", "cifar10", "--data-root", "/nonexistent", "-n", "5"], "does not exist"),
    (["attack", "--alpha", "-1"], "alpha"),
    (["certify", "-n", "5"], "exactly one of"),
    (["report", "/nonexistent"], "not found"),
])
def test_bad_arguments_one_line_error(argv, needle, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("ROBUSTMIX_NO_DOWNLOAD", "1")
    code = main(argv + (["--out", str(tmp_path)] if argv[0] in ("sweep", "attack", "certify") else []))
    err = capsys.readouterr().err
    assert not Path("/nonexistent").exists()  # a missing data root is never created
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_checkpoint_for_wrong_dataset(tmp_path, capsys, monkeypatch):

    from robustmix.models import ModelCard, create_model, save_checkpoint

    model = create_model("cnn-small", width=4, hidden=8)
    path = save_checkpoint(model, ModelCard(name="m", arch="cnn-small", arch_kwargs={"width": 4, "hidden": 8},
                                            dataset="mnist"), tmp_path / "m.safetensors")
    code = main(["sweep", "--std", str(path), "--rob", str(path), "-n", "4", "--out", str(tmp_path / "o")])
    assert code == 2 and "trained on 'mnist'" in capsys.readouterr().err


def test_console_script_entry_point():
    res = subprocess.run([sys.executable, "-m", "robustmix.cli", "list", "lipschitz*"], capture_output=True, text=True)
    assert res.returncode == 0 and "lipschitz-cnn" in res.stdout


def test_output_piped_into_a_closed_reader_exits_quietly():
    """``robustmix list | head -0``: the reader is gone before the first line; no traceback, exit 141 like SIGPIPE."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}   # a buffered pipe, as in a shell
    proc = subprocess.Popen([sys.executable, "-m", "robustmix.cli", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and "Traceback" not in err and "BrokenPipe" not in err


def test_yaml_config(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("eps: -3\n")
    assert main(["sweep", "--config", str(cfg), "--out", str(tmp_path)]) == 2
    cfg.write_text("bogus_key: 1\n")
    assert main(["sweep", "--config", str(cfg), "--out", str(tmp_path)]) == 2
    assert "unknown setting" in capsys.readouterr().err


# The bad inputs a new user tried (docs/bad-inputs.md lists them with the message each gets).
BAD_INPUTS = [
    (["sweep", "-n", "5", "--batch-size", "0"], "--batch-size must be an integer >= 1 or \"auto\""),
    (["sweep", "-n", "5", "--steps", "-1"], "steps must be an integer >= 1"),
    (["sweep", "-n", "ten"], "invalid int value"),
    (["sweep", "-n", "0"], "--num-examples must be positive"),
    (["sweep", "--norm", "3", "-n", "5"], "unknown norm"),
    (["attack", "--autoattack", "bogus"], "invalid choice"),
    (["train", "--lr", "-1", "--out", "OUT/m"], "lr must be a positive"),
    (["calibrate", "--target", "1.5", "-n", "5"], "--target is an accuracy in [0, 1]"),
    (["calibrate", "--objective", "certified", "--sigma", "0.5", "--radius", "-1", "-n", "5"], "--radius must be"),
    (["certify", "--sigma", "-0.5", "-n", "5"], "sigma must be a positive"),
    (["fig3", "--baseline-sigma", "0.9", "-n", "5"], "--baseline-sigma should be smaller"),
    (["mix", "--alpha", "0.5", "--out", "OUT/m.safetensors", "--export", "OUT"], "is a folder"),
    (["sweep", "-n", "5", "--std", "torch.nn:Identity"], "returns"),
    (["sweep", "-n", "5", "--norm", "1"], "use --norm inf or --norm 2"),
    (["attack", "-n", "5", "--steps", "0", "--autoattack", "none"], "leave nothing to run"),
    (["certify", "--sigma", "0.5", "--n0", "50", "-n", "5"], "--n0 sets the selection samples"),
    (["calibrate", "--target", "0.9", "-n", "5", "--confirm-steps", "0"], "--confirm-steps must be an integer >= 1"),
    (["train", "--recipe", "noise", "--sigma", "0", "--out", "OUT/m.safetensors"], "noise recipe needs --sigma > 0"),
]


@pytest.mark.parametrize("argv,needle", BAD_INPUTS, ids=[" ".join(a[:3]) for a, _ in BAD_INPUTS])
def test_bad_inputs_one_line_no_traceback(argv, needle, capsys, tmp_path):
    argv = [a.replace("OUT", str(tmp_path)) for a in argv]
    if argv[0] in ("sweep", "attack", "certify", "calibrate", "fig3"):
        argv += ["--out", str(tmp_path / "o")]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("text,needle", [
    ("n: ten\n", "invalid int value"), ("n: 20.7\n", "invalid int value"), ("n: true\n", "wrong type"),
    ("eps: [1, 2]\n", "takes one value"), (": : :\n  - [\n", "not a valid YAML"), ("early_stop: 3\n", "true or false"),
])
def test_yaml_values_are_checked_like_flags(text, needle, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    assert main(["sweep", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_binary_config_file(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(bytes(range(256)))
    assert main(["sweep", "--config", str(cfg)]) == 2
    assert "not a valid YAML" in capsys.readouterr().err


def test_typed_flags_win_over_yaml(tmp_path):
    from robustmix.cli import parse_args

    cfg = tmp_path / "c.yaml"
    cfg.write_text("eps: 0.3\nsteps: 7\nalphas: [0, 1]\nearly_stop: true\n")
    args = parse_args(["sweep", "--config", str(cfg), "--eps", "0.05"])
    assert args.eps == 0.05 and args.steps == 7 and args.alphas == [0.0, 1.0] and args.early_stop


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_out_must_be_a_writable_folder(kind, tmp_path, capsys):
    out = tmp_path / "o"
    if kind == "file":
        out.write_text("x")
    else:
        out.mkdir()
        out.chmod(0o500)
        if os.access(out, os.W_OK):  # root ignores permissions
            pytest.skip("running as root: permissions are not enforced")
    assert main(["sweep", "-n", "2", "--out", str(out / "sub" if kind == "unwritable" else out)]) == 2
    assert "--out" in capsys.readouterr().err


def test_data_root_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["sweep", "-n", "2", "--data-root", str(f), "--out", str(tmp_path / "o")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_corrupt_summary_given_to_report(tmp_path, capsys):
    (tmp_path / "summary.json").write_bytes(b"\x00\x01{not json")
    assert main(["report", str(tmp_path)]) == 2
    assert "not a valid robustmix summary" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path):
    from robustmix.errors import ConfigError

    with pytest.raises(ConfigError):
        main(["--debug", "sweep", "-n", "5", "--batch-size", "0", "--out", str(tmp_path)])


@pytest.mark.parametrize("content,needle", [("3\nseven\n", "line 2: 'seven' is not an integer"),
                                            ("3\n10000\n", "line 2: 10000 is outside"),
                                            ("1\n1\n", "lists an index twice"), ("\n", "holds no indices")])
def test_evaluate_indices_file_errors(content, needle, tmp_path, capsys):
    f = tmp_path / "idx.txt"
    f.write_text(content)
    assert main(["evaluate", "--indices", str(f), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv,needle", [(["--eps", "0"], "eps must be a finite number > 0"), (["--norm", "7"], "unknown norm"),
                                         (["--alpha", "2"], "alpha")])
def test_evaluate_bad_settings(argv, needle, tmp_path, capsys):
    assert main(["evaluate", "-n", "4", *argv, "--out", str(tmp_path / "o")]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "o" / "records.jsonl").exists()


def test_evaluate_writes_records_and_resumes(tmp_path, capsys):
    import json

    f = tmp_path / "idx.txt"
    f.write_text("5\n2\n9\n")
    argv = ["evaluate", "--indices", str(f), "--attacks", "apgd-ce@*", "--steps", "3", "--batch-size", "2",
            "--alpha", "0.7", "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["kind"] == "evaluate" and summary["n"] == 3 and len(summary["ci95"]) == 2
    recs = [json.loads(line) for line in (tmp_path / "o" / "records.jsonl").read_text().splitlines()[1:]]
    assert sorted(r["index"] for r in recs) == [2, 5, 9]
    assert main(argv) == 0 and json.loads((tmp_path / "o" / "summary.json").read_text()) == summary
    assert "robust accuracy" in capsys.readouterr().out


def test_certify_sound_uses_the_tight_certificate(tmp_path):
    import json

    out = tmp_path / "o"
    assert main(["certify", "-n", "3", "--rob", "fmnist-noise-0.50-cnn", "--sigma", "0.5", "--samples", "200",
                 "--alphas", "0.8", "1.0", "--sound", "--out", str(out)]) == 0
    recs = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()[1:]]
    assert all(len(r["sound"]["radius"]) == 2 and r["sound"]["estimator"] == "clopper-pearson" for r in recs)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "certify" and list(summary["curves"]) == ["theorem2"]
    assert all("h_lower" not in r and r["sound"]["samples"] == 300 for r in recs)   # one sampling pass, no second


def test_certify_sound_sequential_samples_less(tmp_path, capsys):
    import json

    out = tmp_path / "o"
    assert main(["certify", "-n", "4", "--rob", "fmnist-noise-0.50-cnn", "--sigma", "0.5", "--samples", "1600",
                 "--alphas", "1.0", "--sound", "--sequential", "--radii", "0.25", "0.5", "--out", str(out)]) == 0
    recs = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()[1:]]
    assert all(r["sound"]["samples"] <= 1700 for r in recs) and min(r["sound"]["samples"] for r in recs) < 1700
    shown = capsys.readouterr().out
    assert "noise samples per image" in shown and "@0.25" in shown and "steered by --radii" in shown
    assert main(["certify", "-n", "1", "--sigma", "0.5", "--samples", "200", "--alphas", "1.0", "--sound",
                 "--sequential", "--radii", "2.3", "--out", str(tmp_path / "far")]) == 0
    assert 2.3 in json.loads((tmp_path / "far" / "summary.json").read_text())["grid"]   # reported radii exactly


@pytest.mark.parametrize("extra, words", [
    (["--sequential"], "--sound"),
    (["--sound", "--radii", "0.5"], "--sequential"),
    (["--sound", "--sequential", "--radii", "-0.5"], "radii"),
    (["--sound", "--sequential", "--tolerance", "-1"], "tolerance"),
    (["--sound", "--tolerance", "0.3"], "--sequential"),
    (["--sound", "--sequential", "--tolerance", "inf"], "radii"),
    (["--sound", "--sequential-rule", "doubling-looks"], "--sequential"),
    (["--sound", "--sequential", "--sequential-rule", "fast"], "invalid choice"),
])
def test_certify_sequential_bad_flags(extra, words, tmp_path, capsys):
    argv = ["certify", "-n", "2", "--sigma", "0.5", "--samples", "200", "--out", str(tmp_path / "o"), *extra]
    assert main(argv) == 2
    assert words in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_certify_sequential_rules_both_run(tmp_path):
    import json

    used = {}
    for rule in ("confidence-sequence", "doubling-looks"):
        out = tmp_path / rule
        assert main(["certify", "-n", "3", "--sigma", "0.5", "--samples", "800", "--alphas", "1.0", "--sound",
                     "--sequential", "--sequential-rule", rule, "--radii", "0.5", "--out", str(out)]) == 0
        recs = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()[1:]]
        used[rule] = sum(r["sound"]["samples"] for r in recs)
        assert json.loads((out / "settings.json").read_text())["sequential_rule"] == rule
    assert used["confidence-sequence"] < used["doubling-looks"]


@pytest.mark.parametrize("extra, words", [
    (["--thresholds", "0.1", "2.5"], "outside the entropy selector's range [0, 2.303]"),
    (["--thresholds", "-0.1"], "outside"),
    (["--sigmas", "0.25"], "1 --sigmas"),
    (["--sigmas", "0.25", "0", "0.5"], "sigmas must be positive"),
    (["--samples", "50", "--n0", "100"], "at least --n0"),
    (["--radii", "-0.5"], "radii must be positive"),
    (["--delta", "2"], "delta"),
    (["--alphas", "1.5"], "alpha"),
    (["--std", "no-such-model"], "no-such-model"),
])
def test_certify_front_bad_input_exits_2_before_sampling(extra, words, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["certify-front", "-n", "2", "--samples", "100", "--n0", "10", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert words in err, err
    assert not list(out.glob("*.jsonl"))


@pytest.mark.slow
@pytest.mark.parametrize("mixer", ["linear", "nonlinear", "adaptive"])
def test_calibrate_every_mixer_end_to_end(mixer, tmp_path):
    import json

    from robustmix.models import load

    out = tmp_path / mixer
    assert main(["calibrate", "--mixer", mixer, "--target", "0.85", "-n", "16", "--steps", "3", "--out",
                 str(out)]) == 0
    result = json.loads((out / "calibration.json").read_text())
    assert result["kind"] == "calibration" and result["test"]["n"] == 16
    assert type(load(out / "mixer.safetensors")).__name__.lower().startswith(
        {"linear": "mixed", "nonlinear": "nonlinear", "adaptive": "adaptive"}[mixer])


def test_mix_saves_a_nonlinear_mixer_that_load_restores(tmp_path, capsys):
    import torch

    from robustmix.mixing import NonlinearMap, NonlinearMixedClassifier
    from robustmix.models import load

    out = tmp_path / "nl.safetensors"
    assert main(["mix", "--mixer", "nonlinear", "--alpha", "0.66", "--scale", "18", "--power", "2.5", "--bias",
                 "-0.7", "--out", str(out)]) == 0
    back = load(out)
    ref = NonlinearMixedClassifier(load("fmnist-std-cnn"), load("fmnist-at-linf-cnn"), alpha=0.66,
                                   logit_map=NonlinearMap(scale=18.0, power=2.5, bias=-0.7))
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(back(x), ref(x))
    first = capsys.readouterr().out.splitlines()[0]   # the settings a log shows are the settings saved
    assert "mixer=nonlinear alpha=0.66 scale=18.0 power=2.5 bias=-0.7 " in first
    assert main(["mix", "--alpha", "0.5", "--out", str(out)]) == 2           # an existing file is kept ...
    assert "exists; add --force" in capsys.readouterr().err
    assert main(["mix", "--alpha", "0.5", "--out", str(out), "--force"]) == 0   # ... unless asked
    linear = capsys.readouterr().out.splitlines()[0]
    assert "scale" not in linear and "mixer" not in linear and "alpha=0.5" in linear
    assert main(["mix", "--mixer", "nonlinear", "--alpha", "0.5", "--scale", "-1", "--out", str(out), "--force"]) == 2
    assert "scale" in capsys.readouterr().err


def test_channels_last_runs_the_models_in_that_format_with_the_same_results(tmp_path, monkeypatch):
    """State-dict models load contiguous; --channels-last converts them; the sweep's numbers do not change."""
    import torch

    from robustmix.commands import common
    from robustmix.models import create_model
    from robustmix.results import load_summary

    torch.manual_seed(0)
    torch.save(create_model("cnn-small").state_dict(), tmp_path / "w.pt")
    loaded = []
    real = common.load_model

    def spy(*args, **kwargs):
        loaded.append(real(*args, **kwargs))
        return loaded[-1]

    def conv_formats():
        return {w.is_contiguous(memory_format=torch.channels_last) for m in loaded[-2:] for w in
                (c.weight for c in m.modules() if isinstance(c, torch.nn.Conv2d))}

    monkeypatch.setattr(common, "load_model", spy)
    spec = f"cnn-small@{tmp_path / 'w.pt'}"
    argv = ["sweep", "--std", spec, "--rob", "fmnist-at-linf-cnn", "-n", "12", "--steps", "2", "--alphas", "0", "1"]
    assert main([*argv, "--out", str(tmp_path / "plain")]) == 0
    assert False in conv_formats()
    assert main(["--channels-last", *argv, "--out", str(tmp_path / "cl")]) == 0
    assert conv_formats() == {True}
    plain, cl = (load_summary(tmp_path / k / "summary.json") for k in ("plain", "cl"))
    assert plain.accuracy == cl.accuracy


def test_the_first_line_names_the_users_data_not_the_default_data_set(tmp_path):
    import numpy as np

    from robustmix.cli import describe, make_config, parse_args

    np.savez(tmp_path / "d.npz", x=np.zeros((4, 3, 8, 8), np.uint8), y=np.arange(4))
    line = describe(make_config(parse_args(["sweep", "--data", str(tmp_path / "d.npz"), "--out", str(tmp_path)]))[0])
    assert f"data={tmp_path / 'd.npz'}" in line and "fashion-mnist" not in line
    line = describe(make_config(parse_args(["sweep", "--data", str(tmp_path / "d.npz"), "--dataset", "cifar10",
                                            "--out", str(tmp_path)]))[0])
    assert "dataset=cifar10" in line


def test_list_shows_the_wide_resnet_aliases(capsys):
    assert main(["list", "wrn-*"]) == 0
    out = capsys.readouterr().out
    assert "wrn-28-10" in out and "wide-resnet with depth=28, width=10" in out and "fmnist" not in out
