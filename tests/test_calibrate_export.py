import pytest
import torch

from robustmix import MixedClassifier
from robustmix.errors import ConfigError, ModelError
from robustmix.experiments.calibrate import choose_alpha
from robustmix.results import binomial_ci
from robustmix.experiments.export import export_program, save_mixed
from robustmix.models import ModelCard, create_model, load, save_checkpoint

ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]
CLEAN = [0.95, 0.94, 0.92, 0.88, 0.85]      # falls with alpha
ROBUST = [0.00, 0.10, 0.45, 0.60, 0.62]     # rises with alpha


def test_clean_target_gives_most_robust_alpha_meeting_it():
    c = choose_alpha(ALPHAS, CLEAN, ROBUST, 1000, "clean", 0.90)
    assert c.alpha == 0.5 and c.feasible
    lo, hi = c.validation["clean_ci95"]
    assert lo < 0.92 < hi


def test_robust_target_gives_most_accurate_alpha_meeting_it():
    assert choose_alpha(ALPHAS, CLEAN, ROBUST, 1000, "robust", 0.55).alpha == 0.75
    c = choose_alpha(ALPHAS, CLEAN, ROBUST, 1000, "robust", 0.99)
    assert not c.feasible and c.alpha == 1.0


def test_certified_objective_maximises():
    assert choose_alpha(ALPHAS, CLEAN, [0.1, 0.3, 0.2, 0.25, 0.0], 100, "certified").alpha == 0.25
    with pytest.raises(ConfigError):
        choose_alpha(ALPHAS, CLEAN, ROBUST, 100, "clean")


def test_binomial_ci():
    lo, hi = binomial_ci(50, 100)
    assert lo < 0.5 < hi and hi - lo < 0.25
    assert binomial_ci(0, 10)[0] == 0.0 and binomial_ci(10, 10)[1] == 1.0


def _tiny(tmp_path, name, seed):
    torch.manual_seed(seed)
    model = create_model("cnn-small", width=4, hidden=8)
    path = save_checkpoint(model, ModelCard(name=name, arch="cnn-small", arch_kwargs={"width": 4, "hidden": 8},
                                            dataset="fashion-mnist"), tmp_path / f"{name}.safetensors")
    return load(path)


def test_mixed_checkpoint_and_torchscript_equal_the_original(tmp_path):
    g, h = _tiny(tmp_path, "g", 0), _tiny(tmp_path, "h", 1)
    ref = MixedClassifier(g, h, 0.65)
    path = save_mixed(g, h, 0.65, tmp_path / "mixed.safetensors", dataset="fashion-mnist")
    back = load(path)
    x = torch.rand(5, 1, 28, 28)
    torch.testing.assert_close(back(x), ref(x))
    ts = torch.export.load(str(export_program(back, x, tmp_path / "mixed.pt2"))).module()
    torch.testing.assert_close(ts(torch.rand(3, 1, 28, 28) * 0 + x[:3]), ref(x[:3]))
    with pytest.raises(ModelError, match="card"):
        save_mixed(torch.nn.Linear(2, 2), h, 0.5, tmp_path / "bad", dataset="fashion-mnist")


def test_every_mixer_round_trips_through_one_checkpoint(tmp_path):
    from robustmix.experiments.export import save_mixer
    from robustmix.mixing import AdaptiveMixedClassifier, MixingNet, NonlinearMap, NonlinearMixedClassifier

    g, h = _tiny(tmp_path, "g", 0), _tiny(tmp_path, "h", 1)
    torch.manual_seed(2)
    mixers = [NonlinearMixedClassifier(g, h, alpha=0.7, logit_map=NonlinearMap(scale=2.0, power=0.5, bias=-0.3, top_k=4,
                                                                              std_map="onehot")),
              AdaptiveMixedClassifier(g, h, MixingNet(20, hidden=8), alpha_range=(0.1, 0.9))]
    x = torch.rand(6, 1, 28, 28)
    for i, mixer in enumerate(mixers):
        path = save_mixer(mixer, tmp_path / f"m{i}.safetensors", dataset="fashion-mnist")
        back = load(path)
        assert type(back) is type(mixer) and back.config() == mixer.config()
        torch.testing.assert_close(back(x), mixer(x), rtol=0, atol=0)


def test_card_problems_are_reported(tmp_path, caplog):
    import json

    from robustmix.errors import CheckpointError
    from robustmix.models import load_checkpoint

    model = create_model("cnn-small", width=4, hidden=8)
    path = save_checkpoint(model, ModelCard(name="m", arch="cnn-small", arch_kwargs={"width": 4, "hidden": 8},
                                            dataset="fashion-mnist"), tmp_path / "m.safetensors")
    card = json.loads(path.with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps({**card, "sha256": None}))
    with pytest.raises(CheckpointError, match="has no sha256"):
        load_checkpoint(path)
    path.with_suffix(".json").write_text(json.dumps({**card, "arch_kwargs": {"widht": 4}}))
    with pytest.raises(ModelError, match="does not take the settings"):
        load_checkpoint(path)
    path.with_suffix(".json").unlink()
    load_checkpoint(path)
    assert "no card file beside it" in caplog.text


def test_a_second_calibrate_into_the_same_folder_is_refused_before_any_record(tmp_path, capsys):
    import fcntl

    from robustmix.cli import main

    out = tmp_path / "cal"
    out.mkdir()
    with open(out / ".calibrate.lock", "a+") as held:   # a first run, still working
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["calibrate", "--target", "0.5", "-n", "4", "--steps", "1", "--out", str(out)]) == 2
    assert "another robustmix run is writing to" in capsys.readouterr().err
    assert not list(out.glob("*.jsonl"))
