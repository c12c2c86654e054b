"""The adaptive mixer from the command line: its recipe flags, and bad mixers refused in one line with exit 2."""

import json

import pytest

from robustmix.cli import main


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    from robustmix.data import load_dataset
    from robustmix.errors import DataNotFoundError

    try:
        load_dataset("fashion-mnist", "test", allow_download=False)
    except DataNotFoundError:
        pytest.skip("Fashion-MNIST not available offline")
    out = tmp_path_factory.mktemp("cal") / "adaptive"
    argv = ["--threads", "1", "calibrate", "--mixer", "adaptive", "--adaptive-features", "h", "--mixing-net",
            "residual", "--adaptive-epochs", "1", "--target", "0.85", "-n", "8", "--steps", "2", "--confirm-steps",
            "2", "--out", str(out)]
    assert main(argv) == 0
    return out, argv


def test_calibrate_trains_the_chosen_recipe(calibrated):
    from robustmix.mixing import AdaptiveMixedClassifier, ResidualMixingNet
    from robustmix.models import load

    out, _ = calibrated
    mixer = load(out / "mixer.safetensors")
    assert isinstance(mixer, AdaptiveMixedClassifier) and isinstance(mixer.mixing_net, ResidualMixingNet)
    assert mixer.feature_layers == {"std": [], "rob": ["features.8", "features"]}
    assert mixer.mixing_net.map_channels == [64, 64]        # read from h by the probe forward
    settings = json.loads((out / "calibration.json").read_text())["settings"]
    assert (settings["train_attack"], settings["adaptive_features"], settings["mixing_net"]) == \
        ("composite+gate", "h", "residual")
    test = json.loads((out / "calibration.json").read_text())["test"]
    assert test["forward_passes"] == 3 and test["autoattack"]["n"] == 8 and "suspected" in test["diagnostics"]
    report = (out / "report.md").read_text()
    assert "mixing network (residual, reading h)" in report and "Cost: 3 forward passes per prediction" in report


def test_another_recipe_into_the_same_folder_is_refused_and_nothing_is_lost(calibrated, capsys):
    out, argv = calibrated
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main([a if a != "residual" else "mlp" for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a mixing network of other mixer settings" in err[0]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_an_adaptive_mixers_saved_inputs_verify_and_other_weights_are_refused(calibrated, tmp_path, capsys):
    import torch

    from robustmix.results import load_summary

    out, _ = calibrated
    model, adv = str(out / "mixer.safetensors"), tmp_path / "adv.pt"
    assert main(["--threads", "1", "evaluate", "--model", model, "-n", "4", "--attacks", "apgd-ce@mix-T1",
                 "apgd-ce@mix-gate-T8", "--steps", "2", "--no-diagnostics", "--save-adversarial", str(adv),
                 "--out", str(tmp_path / "ev")]) == 0
    claimed = load_summary(tmp_path / "ev" / "summary.json")
    assert (claimed.forward_passes_per_prediction, claimed.mixing_network_passes) == (2, 1)
    saved = torch.load(adv, weights_only=True)
    assert saved["model"]["model"] == model and len(saved["indices"]) == 4
    assert main(["--threads", "1", "verify", str(adv), "--out", str(tmp_path / "v")]) == 0
    v = load_summary(tmp_path / "v" / "summary.json")
    assert v.accuracy == claimed.accuracy and v.disagreements == 0
    capsys.readouterr()
    # the same file against h alone (swapped weights): one line, exit 2
    assert main(["--threads", "1", "verify", str(adv), "--model", "fmnist-at-linf-cnn", "--out",
                 str(tmp_path / "v2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other weights" in err[0]


@pytest.mark.parametrize("edit, words", [
    (lambda kw: kw["feature_layers"].update(rob=["features.12"]), "names 'features.12', which is not a layer"),
    (lambda kw: kw["mixing_net"].update(map_channels=[64, 32]), "does not fit architecture 'mixed-adaptive'"),
])
def test_a_mixer_checkpoint_with_bad_layers_or_shapes_exits_2(calibrated, tmp_path, capsys, edit, words):
    import shutil

    out, _ = calibrated
    for name in ("mixer.safetensors", "mixer.json"):
        shutil.copy(out / name, tmp_path / name)
    card = json.loads((tmp_path / "mixer.json").read_text())
    edit(card["arch_kwargs"])
    (tmp_path / "mixer.json").write_text(json.dumps(card))
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tmp_path / "mixer.safetensors"), "-n", "2", "--attacks", "apgd-ce@h",
                 "--steps", "1", "--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert words in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "ev").exists()


def test_calibrate_help_does_not_claim_the_adaptive_mixer_helps(capsys):
    with pytest.raises(SystemExit):
        main(["calibrate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "it does not beat the linear mixer on Fashion-MNIST" in text and "scripts/adaptive_ablation.py" in text
    assert "--mixing-net {mlp,residual}" in text and "(default: residual)" in text
    for flag in ("--adaptive-features {logits,h,both}", "--mixing-net {mlp,residual}",
                 "--train-attack {composite+gate,composite,none}"):
        assert flag in text


def test_flag_vocabularies_match_the_library():
    import typing

    from robustmix.experiments.calibrate import AdaptiveRecipe
    from robustmix.fitting.adaptive import TRAIN_ATTACKS
    from robustmix.mixing import FEATURE_SETS
    from robustmix.mixing.adaptive import NETS

    hints = typing.get_type_hints(AdaptiveRecipe)
    choices = {name: list(typing.get_args(hints[name])) for name in ("adaptive_features", "mixing_net",
                                                                     "train_attack")}
    assert choices == {"adaptive_features": list(FEATURE_SETS), "mixing_net": list(NETS),
                       "train_attack": list(TRAIN_ATTACKS)}
