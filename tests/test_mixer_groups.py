"""The mixers' option groups (NonlinearMap, MixingArchitecture, AdaptiveTraining, ValidationAttack, MapSearch):
each value checked once, in its group; the old keywords still work for one release, with a DeprecationWarning and
bit-identical results; a group mixed with its own old keywords, or a keyword the function never took, is a
TypeError; saved mixers load as before."""

import ast
import contextlib
import dataclasses
import json
import math
import warnings
from pathlib import Path

import pytest
import torch

from robustmix import ThreatModel
from robustmix.errors import ConfigError
from robustmix.fitting import (FIRST_RECIPE, AdaptiveTraining, MapSearch, ValidationAttack, cached_validation_logits,
                               calibrate_nonlinear, collect_logits, train_mixing_net, trained_adaptive_mixer)
from robustmix.mixing import (AdaptiveMixedClassifier, MixingArchitecture, MixingNet, NonlinearMap,
                              NonlinearMixedClassifier, build_mixing_net, nonlinear_mix)
from robustmix.mixing.nonlinear import mix_checked

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["src/robustmix/fitting/adaptive.py", "src/robustmix/fitting/mixednuts.py", "src/robustmix/mixing/adaptive.py",
           "src/robustmix/mixing/nonlinear.py", "src/robustmix/models/mixers.py"]


@contextlib.contextmanager
def no_deprecation():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        yield


def _tiny_cnns():
    from robustmix.models import SmallCNN

    torch.manual_seed(0)
    return SmallCNN(width=4, hidden=8), SmallCNN(width=4, hidden=8)


def _params(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_no_function_takes_more_than_eight_named_parameters():
    over = []
    for rel in MODULES:
        for node in ast.walk(ast.parse((ROOT / rel).read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
                names = names[1:] if names[:1] in (["self"], ["cls"]) else names
                if len(names) > 8:
                    over.append(f"{rel}:{node.lineno} {node.name} ({len(names)})")
    assert not over


# --- NonlinearMap, NonlinearMixedClassifier, nonlinear_mix, mix_checked ----------------------------------------

@pytest.mark.parametrize("kwargs,word", [({"scale": 0}, "scale"), ({"scale": "x"}, "scale"), ({"power": -1}, "power"),
                                         ({"bias": math.inf}, "bias"), ({"top_k": 1}, "top_k"),
                                         ({"top_k": True}, "top_k"), ({"std_map": "hardmax"}, "std_map")])
def test_nonlinear_map_checks_each_value_once(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        NonlinearMap(**kwargs)


def test_nonlinear_map_normalises_and_is_frozen():
    m = NonlinearMap(scale=2, power=1, bias=-1, top_k=3, std_map="OneHot")
    assert (m.scale, m.power, m.bias, m.top_k, m.std_map) == (2.0, 1.0, -1.0, 3, "onehot")
    assert isinstance(m.scale, float) and hash(m) == hash(NonlinearMap(2.0, 1.0, -1.0, 3, "onehot"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.scale = 3.0
    with pytest.raises(ConfigError, match="top_k=3 exceeds the number of classes"):
        m.check_classes(2)
    assert m.check_classes(None) is m and m.check_classes(3) is m


def test_nonlinear_mixer_old_keywords_warn_and_give_the_same_mixer(pair):
    g, h = pair
    x = torch.rand(7, 12)
    settings = dict(scale=2.0, power=0.5, bias=-0.3, top_k=3, std_map="onehot")
    with no_deprecation():
        new = NonlinearMixedClassifier(g, h, 0.7, NonlinearMap(**settings))
    with pytest.warns(DeprecationWarning, match=r"NonlinearMixedClassifier\(scale=.*NonlinearMap\("):
        old = NonlinearMixedClassifier(g, h, alpha=0.7, **settings)
    assert torch.equal(new(x), old(x)) and new.config() == old.config()
    assert all(torch.equal(a, b) for a, b in zip(new.state_dict().values(), old.state_dict().values()))
    for name in ("mix-T1", "mix-T0.25", "mix-smooth-power"):
        assert torch.equal(new.attack_surrogates()[name](x), old.attack_surrogates()[name](x))
    with pytest.raises(TypeError, match="not both"):
        NonlinearMixedClassifier(g, h, 0.7, NonlinearMap(), scale=2.0)
    with pytest.raises(TypeError, match="'scal'"):
        NonlinearMixedClassifier(g, h, 0.7, scal=2.0)
    with pytest.raises(TypeError, match="logit_map must be a NonlinearMap"):
        NonlinearMixedClassifier(g, h, 0.7, 2.0)                      # the old positional scale
    with pytest.warns(DeprecationWarning), pytest.raises(ConfigError, match="power"):
        NonlinearMixedClassifier(g, h, 0.7, power=0)                  # the group's one check, old keywords too


def test_nonlinear_mix_and_mix_checked_old_keywords(pair):
    gen = torch.Generator().manual_seed(1)
    zg, zh = torch.randn(5, 6, generator=gen, dtype=torch.float64), torch.randn(5, 6, generator=gen, dtype=torch.float64)
    settings = dict(scale=1.5, power=2.0, bias=0.2, top_k=4, std_map="softmax")
    with no_deprecation():
        new = nonlinear_mix(zg, zh, 0.4, NonlinearMap(**settings), std_temperature=0.5)
        checked = mix_checked(zg, zh, torch.tensor(0.4, dtype=torch.float64), NonlinearMap(**settings),
                              std_temperature=0.5)
    with pytest.warns(DeprecationWarning, match="nonlinear_mix"):
        old = nonlinear_mix(zg, zh, 0.4, std_temperature=0.5, **settings)
    with pytest.warns(DeprecationWarning, match="mix_checked"):
        old_checked = mix_checked(zg, zh, torch.tensor(0.4, dtype=torch.float64), std_temperature=0.5, **settings)
    assert torch.equal(new, old) and torch.equal(checked, old_checked) and torch.equal(new, checked)
    with pytest.raises(TypeError, match="not both"):
        nonlinear_mix(zg, zh, 0.4, NonlinearMap(), bias=0.1)
    with pytest.raises(TypeError, match="'smoth'"):
        nonlinear_mix(zg, zh, 0.4, smoth=0.1)
    with pytest.raises(ConfigError, match="top_k=7 exceeds"):
        nonlinear_mix(zg, zh, 0.4, NonlinearMap(top_k=7))


def test_a_saved_nonlinear_mixer_loads_without_warnings_and_computes_its_card():
    """Cards keep the flat settings (alpha, scale, power, bias, top_k, std_map): one written before the groups
    existed loads as it did and its output is the map its card names."""
    from robustmix.models import load

    path = ROOT / "results" / "evaluate-linf-nonlinear" / "mixer.safetensors"
    if not path.is_file():
        pytest.skip("no stored nonlinear mixer")
    card = json.loads(path.with_suffix(".json").read_text())["arch_kwargs"]
    with no_deprecation():
        mixer = load(str(path))
    assert mixer.config() == {k: card[k] for k in ("mixer", "alpha", "scale", "power", "bias", "top_k", "std_map")}
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = nonlinear_mix(mixer.std_model(x), mixer.rob_model(x), card["alpha"],
                            NonlinearMap(*(card[k] for k in ("scale", "power", "bias", "top_k", "std_map"))))
        assert torch.equal(mixer(x), ref)


def test_from_config_rebuilds_and_refuses_unknown_settings(pair):
    g, h = pair
    m = NonlinearMixedClassifier(g, h, 0.3, NonlinearMap(scale=4.0, top_k=2))
    with no_deprecation():
        again = NonlinearMixedClassifier.from_config(g, h, m.config())
    assert again.config() == m.config() and again.logit_map == m.logit_map
    with pytest.raises(TypeError, match="temperature"):   # the registry reports a TypeError as a card that does not fit
        NonlinearMixedClassifier.from_config(g, h, {**m.config(), "temperature": 2.0})


# --- MixingArchitecture, build_mixing_net --------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,word", [({"features": "g"}, "feature set"), ({"net": "cnn"}, "mixing network"),
                                         ({"count": 0}, "count"), ({"hidden": 0}, "hidden"), ({"depth": -1}, "depth"),
                                         ({"width": 1.5}, "width"), ({"blocks": -1}, "blocks"),
                                         ({"alpha_range": (0.8, 0.2)}, "alpha_range")])
def test_mixing_architecture_checks_each_value_once(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        MixingArchitecture(**kwargs)


def test_build_mixing_net_old_keywords():
    g, h = _tiny_cnns()
    x = torch.rand(2, 1, 28, 28)
    settings = dict(features="both", net="residual", count=1, hidden=8, depth=1, width=4, blocks=2)
    torch.manual_seed(3)
    with no_deprecation():
        new, new_layers = build_mixing_net(g, h, x, MixingArchitecture(**settings))
    torch.manual_seed(3)
    with pytest.warns(DeprecationWarning, match=r"build_mixing_net\(features="):
        old, old_layers = build_mixing_net(g, h, x, **settings)
    assert new.config() == old.config() and new_layers == old_layers and torch.equal(_params(new), _params(old))
    with pytest.raises(TypeError, match="not both"):
        build_mixing_net(g, h, x, MixingArchitecture(), net="mlp")
    with pytest.raises(TypeError, match="'alpha_range'"):   # a field of the group, never a keyword of build_mixing_net
        build_mixing_net(g, h, x, alpha_range=(0.0, 0.5))
    assert MixingArchitecture(alpha_range=[0, 1]).alpha_range == (0.0, 1.0)


# --- AdaptiveTraining, train_mixing_net, trained_adaptive_mixer ------------------------------------------------

@pytest.mark.parametrize("kwargs,word", [({"epochs": 0}, "epochs"), ({"attack_steps": 1.0}, "attack_steps"),
                                         ({"batch_size": -2}, "batch_size"), ({"lr": 0}, "lr"),
                                         ({"lr": math.nan}, "lr"), ({"seed": "0"}, "seed"),
                                         ({"train_attack": "fgsm"}, "train_attack"),
                                         ({"attack_method": "cw"}, "attack_method"), ({"bce_weight": -1}, "bce_weight"),
                                         ({"ce_weight": math.inf}, "ce_weight"), ({"progress": "no"}, "progress")])
def test_adaptive_training_checks_each_value_once(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        AdaptiveTraining(**kwargs)


def test_train_mixing_net_old_keywords(tmp_path, pair):
    g, h = pair
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(24, 12, generator=gen)
    y = g(x).argmax(1)
    recipe = dict(epochs=2, attack_steps=2, batch_size=16, lr=1e-2, seed=3, bce_weight=0.5, ce_weight=2.0,
                  train_attack="composite+gate", attack_method="apgd", progress=False)

    def run(folder, *args, **kwargs):
        torch.manual_seed(1)
        mixer = AdaptiveMixedClassifier(g, h, MixingNet(8, hidden=8))
        hist = train_mixing_net(mixer, x, y, *args, state_path=tmp_path / folder, **kwargs)
        state = torch.load(tmp_path / folder, weights_only=True)
        return [{k: v for k, v in e.items() if k != "seconds"} for e in hist], _params(mixer), state["settings"]

    with no_deprecation():
        new = run("new", ThreatModel("2", 0.3), AdaptiveTraining(**recipe))
    with pytest.warns(DeprecationWarning) as caught:
        old = run("old", eps=0.3, norm="2", **recipe)
    assert {str(w.message).split("(")[0] for w in caught} == {"train_mixing_net"}
    assert new[0] == old[0] and torch.equal(new[1], old[1]) and new[2] == old[2]
    mixer = AdaptiveMixedClassifier(g, h, MixingNet(8, hidden=8))
    with pytest.raises(TypeError, match="ThreatModel.*not both"):
        train_mixing_net(mixer, x, y, ThreatModel("inf", 0.1), eps=0.1)
    with pytest.raises(TypeError, match="AdaptiveTraining.*not both"):
        train_mixing_net(mixer, x, y, ThreatModel("inf", 0.1), AdaptiveTraining(), epochs=2)
    with pytest.raises(TypeError, match="'features'"):
        train_mixing_net(mixer, x, y, ThreatModel("inf", 0.1), features="h")
    with pytest.raises(TypeError, match="threat=ThreatModel"):
        train_mixing_net(mixer, x, y, norm="inf")
    with pytest.raises(TypeError, match="training must be a AdaptiveTraining"):
        train_mixing_net(mixer, x, y, ThreatModel("inf", 0.1), {"epochs": 1})
    with pytest.warns(DeprecationWarning), pytest.raises(ConfigError, match="--eps"):
        train_mixing_net(mixer, x, y, eps=-1)


def test_trained_adaptive_mixer_old_keywords(tmp_path):
    g, h = _tiny_cnns()
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(8, 1, 28, 28, generator=gen), torch.randint(0, 10, (8,), generator=gen)

    def meta(folder):
        from safetensors import safe_open

        with safe_open(str(tmp_path / f"{folder}.mixing-net.safetensors"), "pt") as f:
            return f.metadata()

    torch.manual_seed(2)
    with no_deprecation():
        new = trained_adaptive_mixer(tmp_path / "new", g, h, x, y, ThreatModel("inf", 0.1),
                                     AdaptiveTraining(epochs=1, attack_steps=1, batch_size=8, seed=1,
                                                      train_attack="composite+gate", progress=False),
                                     MixingArchitecture(features="h", net="residual", alpha_range=(0.1, 0.9)))
    torch.manual_seed(2)
    with pytest.warns(DeprecationWarning):
        old = trained_adaptive_mixer(tmp_path / "old", g, h, x, y, eps=0.1, norm="inf", epochs=1, attack_steps=1,
                                     batch_size=8, seed=1, train_attack="composite+gate", progress=False,
                                     features="h", net="residual", alpha_range=(0.1, 0.9))
    assert torch.equal(new(x), old(x)) and meta("new") == meta("old") and new.config() == old.config()
    # the recipe's fields an old call leaves out keep FIRST_RECIPE's values, and the warning names them
    torch.manual_seed(2)
    with no_deprecation():
        first = trained_adaptive_mixer(tmp_path / "first", g, h, x, y, ThreatModel("inf", 0.1),
                                       dataclasses.replace(FIRST_RECIPE, epochs=1, batch_size=4, progress=False))
    torch.manual_seed(2)
    with pytest.warns(DeprecationWarning) as caught:
        first_old = trained_adaptive_mixer(tmp_path / "first-old", g, h, x, y, eps=0.1, epochs=1, batch_size=4,
                                           progress=False)
    assert any("AdaptiveTraining(epochs=..., attack_steps=..., batch_size=..., train_attack=..., progress=...)"
               in str(w.message) for w in caught)
    assert torch.equal(first(x), first_old(x)) and meta("first") == meta("first-old")
    recorded = json.loads(meta("first")["training"])
    assert recorded["attack_steps"] == 10 and recorded["train_attack"] == "composite" and recorded["epochs"] == 1
    with pytest.raises(TypeError, match="MixingArchitecture.*not both"):
        trained_adaptive_mixer(tmp_path / "x", g, h, x, y, ThreatModel("inf", 0.1), arch=MixingArchitecture(),
                               features="h")
    with pytest.raises(TypeError, match="'bce_weight'"):   # a field of AdaptiveTraining, never a keyword here
        trained_adaptive_mixer(tmp_path / "x", g, h, x, y, ThreatModel("inf", 0.1), bce_weight=0.5)


# --- ValidationAttack, collect_logits, cached_validation_logits ------------------------------------------------

@pytest.mark.parametrize("kwargs,word", [({"steps": -1}, "steps"), ({"restarts": 0}, "restarts"),
                                         ({"seed": 0.5}, "seed"), ({"batch_size": 0}, "batch_size"),
                                         ({"loss": "dlr"}, "loss")])
def test_validation_attack_checks_each_value_once(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        ValidationAttack(**kwargs)


def test_collect_and_cached_logits_old_keywords(tmp_path, pair, monkeypatch):
    import robustmix.fitting.mixednuts as mn

    g, h = pair
    x = torch.rand(10, 12, generator=torch.Generator().manual_seed(0))
    y = h(x).argmax(1)
    with no_deprecation():
        new = collect_logits(g, h, x, y, ThreatModel("inf", 0.2), ValidationAttack(steps=3, restarts=2, seed=4,
                                                                                     batch_size=3, loss="margin"))
    with pytest.warns(DeprecationWarning, match="collect_logits"):
        old = collect_logits(g, h, x, y, eps=0.2, norm="inf", steps=3, restarts=2, seed=4, batch_size=3, loss="margin")
    assert torch.equal(new.rob_adv, old.rob_adv) and new.attack == old.attack
    with pytest.raises(TypeError, match="ValidationAttack.*not both"):
        collect_logits(g, h, x, y, ThreatModel("inf", 0.2), ValidationAttack(), steps=3)
    with pytest.raises(TypeError, match="'features'"):
        collect_logits(g, h, x, y, eps=0.2, features="h")

    with pytest.warns(DeprecationWarning, match="cached_validation_logits"):
        old = cached_validation_logits(tmp_path / "old.safetensors", g, h, x, y, eps=0.2, norm="2", steps=3, seed=1,
                                       batch_size=4)
    written = json.loads((tmp_path / "old.json").read_text())["settings"]
    assert written == {"eps": 0.2, "norm": "2", "steps": 3, "n": 10}   # the file format of before
    monkeypatch.setattr(mn, "collect_logits", lambda *a, **k: pytest.fail("attacked again"))
    with no_deprecation():   # a file written the old way is read back by the new call
        again = cached_validation_logits(tmp_path / "old.safetensors", g, h, x, y, ThreatModel("2", 0.2),
                                         ValidationAttack(steps=3, seed=1, batch_size=4))
    assert torch.equal(again.rob_adv, old.rob_adv)
    with pytest.raises(TypeError, match="'restarts'"):   # never a keyword of cached_validation_logits
        cached_validation_logits(tmp_path / "old.safetensors", g, h, x, y, eps=0.2, restarts=2)
    monkeypatch.undo()
    other = cached_validation_logits(tmp_path / "old.safetensors", g, h, x, y, ThreatModel("2", 0.2),
                                     ValidationAttack(steps=3, restarts=2))   # other restarts: attacked again
    assert json.loads((tmp_path / "old.json").read_text())["settings"]["restarts"] == 2 and other.rob_adv.shape == (10, 4)


# --- MapSearch, calibrate_nonlinear ----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,word", [({"objective": "accuracy"}, "objective"), ({"refine": -1}, "refine"),
                                         ({"grid": {"scale": [1.0]}}, "grid"),
                                         ({"grid": {"scale": [0.0], "power": [1.0], "bias": [0.0]}}, "scale"),
                                         ({"grid": {"scale": [1.0], "power": [], "bias": [0.0]}}, "empty"),
                                         ({"top_k": 1}, "top_k"), ({"std_map": "hard"}, "std_map")])
def test_map_search_checks_each_value_once(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        MapSearch(**kwargs)


def test_calibrate_nonlinear_old_keywords():
    gen = torch.Generator().manual_seed(0)
    n, c = 30, 4
    y = torch.randint(0, c, (n,), generator=gen)
    g = torch.randn(n, c, generator=gen, dtype=torch.float64)
    hc = torch.randn(n, c, generator=gen, dtype=torch.float64) + 3 * torch.nn.functional.one_hot(y, c)
    ha = hc - torch.rand(n, c, generator=gen, dtype=torch.float64)
    grid = {"scale": [0.5, 2.0], "power": [1.0, 2.0], "bias": [-0.5, 0.0]}
    search = dict(grid=grid, refine=1, std_map="onehot", top_k=3, objective="mixednuts")
    with no_deprecation():
        new = calibrate_nonlinear(g, hc, ha, y, percentile=70, search=MapSearch(**search))
    with pytest.warns(DeprecationWarning, match="calibrate_nonlinear"):
        old = calibrate_nonlinear(g, hc, ha, y, percentile=70, **search)
    drop = ("seconds",)
    assert {k: v for k, v in new.to_dict().items() if k not in drop} == \
        {k: v for k, v in old.to_dict().items() if k not in drop}
    assert new.logit_map == NonlinearMap(new.scale, new.power, new.bias, 3, "onehot")
    with pytest.raises(TypeError, match="MapSearch.*not both"):
        calibrate_nonlinear(g, hc, ha, y, search=MapSearch(), refine=False)
    with pytest.raises(TypeError, match="'scale'"):
        calibrate_nonlinear(g, hc, ha, y, scale=1.0)
    with pytest.raises(ConfigError, match="top_k=5 exceeds"):
        calibrate_nonlinear(g, hc, ha, y, search=MapSearch(top_k=5))
    assert hash(MapSearch(grid=grid)) == hash(MapSearch(grid=grid)) and MapSearch(refine=True).rounds == 2
