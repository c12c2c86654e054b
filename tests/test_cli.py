import subprocess
import sys

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
    (["sweep", "--dataset", "cifar10", "--data-root", "/nonexistent", "-n", "5"], "not found"),
    (["attack", "--alpha", "-1"], "alpha"),
    (["certify", "-n", "5"], "exactly one of"),
    (["report", "/nonexistent"], "not found"),
])
def test_bad_arguments_one_line_error(argv, needle, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("ROBUSTMIX_NO_DOWNLOAD", "1")
    code = main(argv + (["--out", str(tmp_path)] if argv[0] in ("sweep", "attack", "certify") else []))
    err = capsys.readouterr().err
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


def test_yaml_config(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("eps: -3\n")
    assert main(["sweep", "--config", str(cfg), "--out", str(tmp_path)]) == 2
    cfg.write_text("bogus_key: 1\n")
    assert main(["sweep", "--config", str(cfg), "--out", str(tmp_path)]) == 2
    assert "unknown setting" in capsys.readouterr().err
