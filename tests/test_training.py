import pytest
import torch

from robustmix import ThreatModel
from robustmix.errors import ConfigError
from robustmix.models import create_model
from robustmix.training import RECIPES, TrainConfig, accuracy, robust_accuracy, train
from robustmix.training import recipes as recipes_module


def toy_data(n=96, seed=0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=gen)
    x = torch.rand(n, 1, 28, 28, generator=gen) * 0.3
    x[torch.arange(n), 0, y * 2, :] = 1.0  # a bright row per class: learnable
    return x, y


def small(recipe):
    return create_model("lipschitz-cnn" if recipe == "lipschitz" else "cnn-small",
                        **({"width": 4, "hidden": 16} if recipe != "lipschitz" else {"width": 4, "hidden": 16}))


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_trains(recipe):
    torch.manual_seed(0)
    x, y = toy_data()
    cfg = TrainConfig(recipe, epochs=3, batch_size=32, lr=0.01 if recipe == "lipschitz" else 0.05, attack_steps=2,
                      optimizer="adam" if recipe == "lipschitz" else "sgd", threat=ThreatModel("inf", 0.05))
    model, history = train(small(recipe), x, y, cfg, progress=False)
    assert len(history) == 3 and history[-1]["loss"] < history[0]["loss"]
    assert not model.training


def test_seeded_and_resumable(tmp_path, monkeypatch):
    x, y = toy_data()
    cfg = TrainConfig("pgd", epochs=3, batch_size=32, attack_steps=2, threat=ThreatModel("inf", 0.05))
    torch.manual_seed(0)
    ref, _ = train(small("pgd"), x, y, cfg, progress=False)

    real = recipes_module._save_state
    calls = {"n": 0}

    def crash_after_two(*args, **kwargs):
        real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("injected")

    monkeypatch.setattr(recipes_module, "_save_state", crash_after_two)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train(small("pgd"), x, y, cfg, state_path=tmp_path / "s.pt", progress=False)
    monkeypatch.setattr(recipes_module, "_save_state", real)
    torch.manual_seed(123)  # a different init: everything must come from the saved state
    resumed, history = train(small("pgd"), x, y, cfg, state_path=tmp_path / "s.pt", progress=False)
    assert len(history) == 3
    for a, b in zip(ref.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_metrics_and_config_validation():
    x, y = toy_data(40)
    model = small("standard")
    assert 0 <= accuracy(model, x, y) <= 1
    with pytest.deprecated_call(match="use accuracy"):   # the old eps = 0 (no attack): deprecated, still right
        assert robust_accuracy(model, x, y, 0.0) == accuracy(model, x, y)
    with pytest.raises(ConfigError):
        TrainConfig("magic")
    with pytest.raises(ConfigError):
        TrainConfig("pgd", threat=ThreatModel("inf", -1))
    with pytest.deprecated_call():   # the old keywords, for one release
        assert TrainConfig("pgd", eps=0.2).threat == ThreatModel("inf", 0.2)
    assert TrainConfig.from_dict({"recipe": "pgd", "eps": 1.5, "norm": "2"}).to_dict()["eps"] == 1.5
