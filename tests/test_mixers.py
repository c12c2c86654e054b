"""Nonlinear (MixedNUTS) and adaptive mixers, the mixing-network recipe and the nonlinear calibration."""

import json
import math

import numpy as np
import pytest
import torch
from scipy.special import erf, logsumexp

from robustmix import ThreatModel
from robustmix.errors import CheckpointError, ConfigError, ModelError
from robustmix.fitting import (AdaptiveTraining, MapSearch, NonlinearCalibration, ValidationAttack, calibrate_nonlinear,
                               collect_logits, train_mixing_net)
from robustmix.mixing import (AdaptiveMixedClassifier, FeatureMaps, MixedClassifier, MixingArchitecture, MixingNet,
                              NonlinearMap, NonlinearMixedClassifier, ResidualMixingNet, build_mixing_net,
                              feature_layer_names, mixing_net_from_config)
from robustmix.mixing.nonlinear import nonlinear_map, nonlinear_mix

from .conftest import Linear2Logits


class Const(torch.nn.Module):
    def __init__(self, value, shape="n1"):
        super().__init__()
        self.value, self.shape = value, shape
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, feats):
        n = len(feats)
        out = torch.full((n, 1), float(self.value)) + 0 * self.w + 0 * feats[:, :1]
        return {"n1": out, "n": out[:, 0], "bad": out.expand(n, 2)}[self.shape]


def ref_map(z, scale, power, bias, k=None):
    """M(z) for one row of logits, written plainly in float64 numpy."""
    z = np.asarray(z, dtype=np.float64)
    top = np.sort(z)[::-1][:k] if k else z
    mean = sum(top) / len(top)
    var = sum((t - mean) ** 2 for t in top) / (len(top) - 1)
    out = []
    for zi in z:
        v = (zi - mean) / math.sqrt(var + 1e-8) + bias
        u = 0.5 * v * (1 + erf(v / math.sqrt(2)))
        out.append(scale * np.sign(u) * abs(u) ** power)
    return np.array(out)


def ref_mix(zg, zh, alpha, scale, power, bias, k=None, onehot=False):
    rows = []
    for g_row, h_row in zip(np.asarray(zg, np.float64), np.asarray(zh, np.float64)):
        m = ref_map(h_row, scale, power, bias, k)
        log_q = m - logsumexp(m)
        if onehot:
            log_p = np.where(np.arange(len(g_row)) == np.argmax(g_row), 0.0, -np.inf)
        else:
            log_p = g_row - logsumexp(g_row)
        with np.errstate(divide="ignore"):
            rows.append(np.logaddexp(np.log1p(-alpha) + log_p, np.log(alpha) + log_q))
    return np.array(rows)


SETTINGS = [(0.3, 2.0, 0.5, -1.0, None), (0.7, 0.8, 2.5, 0.3, 3), (0.5, 5.0, 1.0, 0.0, 2), (0.9, 0.2, 0.3, -2.0, 5)]


@pytest.mark.parametrize("alpha,scale,power,bias,k", SETTINGS)
@pytest.mark.parametrize("onehot", [False, True])
def test_nonlinear_mix_matches_float64_reference(alpha, scale, power, bias, k, onehot):
    gen = torch.Generator().manual_seed(3)
    zg, zh = torch.randn(6, 7, generator=gen, dtype=torch.float64) * 3, torch.randn(6, 7, generator=gen,
                                                                                    dtype=torch.float64) * 3
    out = nonlinear_mix(zg, zh, alpha, NonlinearMap(scale, power, bias, k, "onehot" if onehot else "softmax"))
    ref = ref_mix(zg.numpy(), zh.numpy(), alpha, scale, power, bias, k, onehot)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(nonlinear_map(zh, scale, power, bias, k)[0].numpy(),
                               ref_map(zh[0].numpy(), scale, power, bias, k), atol=1e-9)


def test_module_alpha_edges_and_config(pair):
    g, h = pair
    x = torch.rand(5, 12)
    m1 = NonlinearMixedClassifier(g, h, alpha=1.0, logit_map=NonlinearMap(scale=2.0, power=1.5, bias=-0.5, top_k=3))
    mapped = torch.log_softmax(nonlinear_map(h(x), 2.0, 1.5, -0.5, 3), 1).float()
    torch.testing.assert_close(m1(x), mapped)
    m0 = NonlinearMixedClassifier(g, h, 0.0, NonlinearMap(scale=2.0, power=1.5, bias=-0.5))
    torch.testing.assert_close(m0(x), torch.log_softmax(g(x), 1), atol=1e-6, rtol=0)
    cfg = m1.config()
    assert cfg == {"mixer": "nonlinear", "alpha": 1.0, "scale": 2.0, "power": 1.5, "bias": -0.5, "top_k": 3,
                   "std_map": "softmax"}
    assert m1.logit_map == NonlinearMap(2.0, 1.5, -0.5, 3, "softmax")
    rebuilt = NonlinearMixedClassifier.from_config(Linear2Logits(seed=0), Linear2Logits(seed=1), cfg)
    rebuilt.load_state_dict(m1.state_dict())
    torch.testing.assert_close(rebuilt(x), m1(x))
    assert not any(p.requires_grad for p in m1.parameters())
    assert m1.std_model is g and m1.rob_model is h


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("power", [0.3, 1.0, 2.0])
@pytest.mark.parametrize("std_map", ["softmax", "onehot"])
def test_finite_values_and_gradients(alpha, power, std_map):
    zg = torch.tensor([[1e4, -1e4, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0], [-1e4, 2.0, 1e4, 1e4]], dtype=torch.float64,
                      requires_grad=True)
    zh = torch.tensor([[-1e4, 1e4, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [5.0, -1e4, 1e4, 3.0]], dtype=torch.float64,
                      requires_grad=True)
    out = nonlinear_mix(zg, zh, alpha, NonlinearMap(scale=3.0, power=power, bias=0.0, std_map=std_map))
    assert not torch.isnan(out).any()
    if alpha > 0 or std_map == "softmax":
        assert torch.isfinite(out).all()
    else:  # g's log one-hot
        assert ((out == 0) | torch.isneginf(out)).all()
    gg, gh = torch.autograd.grad(out[torch.isfinite(out)].sum(), (zg, zh), allow_unused=True,
                                 materialize_grads=True)
    assert torch.isfinite(gg).all() and torch.isfinite(gh).all()


def test_power_below_one_has_finite_gradient_at_zero():
    # bias chosen so that LN + bias = 0 for the middle class: u = 0 exactly there
    z = torch.tensor([[-1.0, 0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    m = nonlinear_map(z, 1.0, 0.5, 0.0)
    assert m[0, 1] == 0
    (grad,) = torch.autograd.grad(m.sum(), z)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_top_k_uses_the_k_largest_logits():
    z = torch.tensor([[10.0, 8.0, -50.0, -70.0]], dtype=torch.float64)
    # with k = 2: mean 9, unbiased var 2 -> LN = (z - 9) / sqrt(2 + 1e-8)
    ln = (z - 9.0) / math.sqrt(2 + 1e-8)
    expected = torch.nn.functional.gelu(ln)
    torch.testing.assert_close(nonlinear_map(z, 1.0, 1.0, 0.0, top_k=2), expected)
    assert not torch.allclose(nonlinear_map(z, 1.0, 1.0, 0.0, top_k=None), expected)


def test_nonlinear_surrogates(pair):
    g, h = pair
    x = torch.rand(4, 12)
    hot = NonlinearMixedClassifier(g, h, 0.4, NonlinearMap(power=0.5, std_map="onehot"))
    sur = hot.attack_surrogates()
    assert set(sur) == {"mix-T1", "mix-T0.25", "mix-T4", "mix-smooth-power", "h"}
    soft = NonlinearMixedClassifier(g, h, 0.4, NonlinearMap(power=0.5, std_map="softmax"))
    torch.testing.assert_close(sur["mix-T1"](x), soft(x))
    torch.testing.assert_close(sur["h"](x), h(x))
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(sur["mix-T0.25"](xg)[:, 0].sum(), xg)
    assert grad.abs().sum() > 0
    assert soft.attack_surrogates()["mix-T1"] is soft


def test_nonlinear_bad_input(pair):
    g, h = pair
    for kwargs, word in [({"scale": 0}, "scale"), ({"scale": -1}, "scale"), ({"power": 0}, "power"),
                         ({"top_k": 1}, "top_k"), ({"std_map": "hardmax"}, "std_map"),
                         ({"bias": float("nan")}, "bias")]:
        with pytest.raises(ConfigError, match=word):
            NonlinearMap(**kwargs)
    with pytest.raises(ConfigError, match="top_k=5 exceeds the number of classes"):   # the models have 4
        NonlinearMixedClassifier(g, h, 0.5, NonlinearMap(top_k=5))
    for alpha in (1.5, -0.1):
        with pytest.raises(ConfigError, match="alpha"):
            NonlinearMixedClassifier(g, h, alpha)


def test_adaptive_equals_linear_mixture_for_constant_net(pair):
    g, h = pair
    x = torch.rand(6, 12)
    for shape in ("n1", "n"):
        am = AdaptiveMixedClassifier(g, h, Const(0.7, shape), alpha_range=(0.2, 0.9))
        a = 0.2 + 0.7 / (1 + math.exp(-0.7))
        torch.testing.assert_close(am.alpha(x), torch.full((6,), a, dtype=torch.float64))
        torch.testing.assert_close(am(x), MixedClassifier(g, h, a)(x), atol=1e-6, rtol=0)
    for lo_hi, a in [((0.0, 0.0), 0.0), ((1.0, 1.0), 1.0)]:
        am = AdaptiveMixedClassifier(g, h, Const(3.0), alpha_range=lo_hi)
        xg = x.clone().requires_grad_(True)
        out = am(xg)
        torch.testing.assert_close(out, MixedClassifier(g, h, a)(x), atol=1e-6, rtol=0)
        (grad,) = torch.autograd.grad(out.sum(), xg)
        assert torch.isfinite(grad).all()


def test_adaptive_gradients_flow_through_alpha(pair):
    g, h = pair
    torch.manual_seed(0)
    net = MixingNet(8, hidden=16)
    am = AdaptiveMixedClassifier(g, h, net, alpha_range=(0.0, 1.0))
    x = torch.rand(5, 12, requires_grad=True)
    (grad_alpha,) = torch.autograd.grad(am.alpha(x).sum(), x)
    assert grad_alpha.abs().sum() > 0
    out = am(x)
    (grad_net,) = torch.autograd.grad(out[:, 1].sum(), net.net[1].weight)
    assert grad_net.abs().sum() > 0
    # the detached-alpha surrogate differs from the model in its input gradient, not its value
    sur = am.attack_surrogates()
    assert set(sur) == {"mix-T1", "mix-T0.25", "mix-T4", "mix-alpha-fixed", "mix-gate-T8", "h"}
    torch.testing.assert_close(sur["mix-alpha-fixed"](x), out)
    g1, = torch.autograd.grad(am(x)[:, 1].sum(), x)
    g2, = torch.autograd.grad(sur["mix-alpha-fixed"](x)[:, 1].sum(), x)
    assert not torch.allclose(g1, g2)
    assert am.config()["mixing_net"] == {"class": "MixingNet", "in_features": 8, "hidden": 16, "depth": 2}


def test_hooks_capture_named_layers():
    from robustmix.models import SmallCNN

    torch.manual_seed(0)
    g, h = SmallCNN(width=4, hidden=8), SmallCNN(width=4, hidden=8)
    layers = {"std": ["features.4"], "rob": ["features.9", "classifier.1"]}
    seen = {}
    h.features[9].register_forward_hook(lambda m, i, o: seen.update(rob9=o.mean((2, 3))))
    am = AdaptiveMixedClassifier(g, h, MixingNet(10 + 10 + 4 + 8 + 8), feature_layers=layers)
    x = torch.rand(3, 1, 28, 28)
    _, _, feats = am.features(x)
    assert feats.shape == (3, 40)
    torch.testing.assert_close(feats[:, 24:32], seen["rob9"])
    assert len(g.features[4]._forward_hooks) == 0  # hooks live only during a forward pass
    assert am(x).shape == (3, 10)
    with pytest.raises(ModelError, match="features.99"):
        AdaptiveMixedClassifier(g, h, MixingNet(20), feature_layers={"std": ["features.99"]})


def _tiny_cnns():
    from robustmix.models import SmallCNN

    torch.manual_seed(0)
    return SmallCNN(width=4, hidden=8), SmallCNN(width=4, hidden=8)


def test_feature_layers_are_read_from_the_models():
    g, h = _tiny_cnns()
    x = torch.rand(2, 1, 28, 28)
    # the end of each of the two deepest resolutions (14x14 before the last pool, 7x7 after it)
    assert feature_layer_names(h, x) == ["features.8", "features"]
    assert feature_layer_names(h, x, count=1) == ["features"]
    with pytest.raises(ConfigError, match="no layer with an"):
        feature_layer_names(Linear2Logits(d=784), x)
    with pytest.raises(ConfigError, match="unknown feature set 'g'"):
        MixingArchitecture(features="g")
    with pytest.raises(ConfigError, match="unknown mixing network 'cnn'"):
        MixingArchitecture(net="cnn")


@pytest.mark.parametrize("features,channels", [("logits", []), ("h", [8, 8]), ("both", [8, 8, 8, 8])])
def test_residual_mixing_net_reads_the_maps_of_each_feature_set(features, channels):
    g, h = _tiny_cnns()
    x = torch.rand(3, 1, 28, 28)
    net, layers = build_mixing_net(g, h, x, MixingArchitecture(features=features, net="residual", width=4))
    assert isinstance(net, ResidualMixingNet) and net.map_channels == channels
    assert bool(layers["std"]) == (features == "both") and bool(layers["rob"]) == (features != "logits")
    am = AdaptiveMixedClassifier(g, h, net, feature_layers=layers)
    _, _, inp = am.features(x)
    assert isinstance(inp, FeatureMaps) and inp.logits.shape == (3, 20)
    assert [tuple(m.shape[1:]) for m in inp.maps] == [(8, 14, 14), (8, 7, 7)] * (len(channels) // 2)
    xg = x.clone().requires_grad_(True)
    out = am(xg)
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    out[:, 0].sum().backward()
    assert xg.grad.abs().sum() > 0
    if channels:   # the maps reach the gate: the branches get gradients
        assert net.branches[0][0].weight.grad.abs().sum() > 0
    # saved and rebuilt from its config (what a checkpoint holds)
    again = mixing_net_from_config(json.loads(json.dumps(net.config())))
    again.load_state_dict(net.state_dict())
    torch.testing.assert_close(AdaptiveMixedClassifier(g, h, again, feature_layers=layers)(x), am(x))


def test_mismatched_mixing_networks_and_layers_fail_in_one_line():
    g, h = _tiny_cnns()
    x = torch.rand(2, 1, 28, 28)
    net, layers = build_mixing_net(g, h, x, MixingArchitecture(features="h", net="residual", width=4))
    with pytest.raises(ModelError, match=r"channels \[8, 8\], got 20 logits and channels \[8, 8, 8, 8\]"):
        AdaptiveMixedClassifier(g, h, net, feature_layers={"std": layers["rob"], "rob": layers["rob"]})(x)
    with pytest.raises(ModelError, match="reads 20 features per input but got"):
        AdaptiveMixedClassifier(g, h, MixingNet(20), feature_layers=layers)(x)
    with pytest.raises(ModelError, match=r"'features\.10'.*valid names include features\.1, "):
        AdaptiveMixedClassifier(g, h, net, feature_layers={"rob": ["features.10"]})
    with pytest.raises(ConfigError, match="only MixingNet, ResidualMixingNet"):
        mixing_net_from_config({"class": "Transformer"})


class _GateOnHsLogit(torch.nn.Module):
    """s = b + (400 / 12)(10 - z_h0): saturated open (s = 40) on the clean inputs below, shut 0.2 away."""

    def __init__(self):
        super().__init__()
        self.b = torch.nn.Parameter(torch.tensor(40.0))

    def forward(self, feats):
        return self.b + (400 / 12) * (10 - feats[:, 4])


def _saturated_gate_case():
    g, h = Linear2Logits(seed=0), Linear2Logits(seed=1)
    with torch.no_grad():
        g.lin.weight.zero_()
        g.lin.bias.copy_(torch.tensor([0.0, 10.0, 0.0, 0.0]))       # g: always class 1 (wrong)
        h.lin.weight.zero_()
        h.lin.weight[0] = -1.0
        h.lin.bias.copy_(torch.tensor([16.0, 0.0, 0.0, 0.0]))       # h: class 0 within any eps <= 0.5
    x = 0.5 + 0.05 * (torch.rand(8, 12, generator=torch.Generator().manual_seed(0)) - 0.5)
    x = x - x.mean(1, keepdim=True) + 0.5
    return AdaptiveMixedClassifier(g, h, _GateOnHsLogit()), x, torch.zeros(8, dtype=torch.int64)


def test_a_saturated_gate_is_attacked_through_the_softened_gate(monkeypatch):
    from robustmix.attacks import Ensemble, evaluate

    mixer, x, y = _saturated_gate_case()
    assert (mixer.alpha(x) > 1 - 1e-12).all() and (mixer(x).argmax(1) == 0).all()
    # the composite's gradient only shows h's slope (the gate's is ~e^-40), so attacks on it go the wrong way;
    # through sigmoid(s / 8) they shut the gate and g's error shows
    res = evaluate(mixer, x, y, threat=ThreatModel("inf", 0.2),
                   ensemble=Ensemble(attacks=("apgd-ce@mix-T1", "apgd-ce@mix-gate-T8"), steps=20))
    broke = {a.name: a.broke for a in res.per_attack}
    assert broke == {"apgd-ce@mix-T1": 0, "apgd-ce@mix-gate-T8": 8} and res.accuracy == 0.0
    threat = ThreatModel("inf", 0.2)

    def recipe(**changes):
        return AdaptiveTraining(attack_steps=10, epochs=1, batch_size=8, lr=1e-12, progress=False, **changes)

    plain = train_mixing_net(mixer, x, y, threat, recipe(train_attack="composite"))
    gated = train_mixing_net(mixer, x, y, threat, recipe(train_attack="composite+gate"))
    assert plain[0]["acc_adv"] == 1.0 and gated[0]["acc_adv"] == 0.0   # training now sees the shut-gate inputs
    assert gated[0]["alpha_adv"] < 1e-6
    clean_only = train_mixing_net(mixer, x, y, threat, recipe(train_attack="none"))
    assert clean_only[0]["acc_adv"] is None and clean_only[0]["alpha_adv"] is None
    with pytest.raises(ConfigError, match="unknown train_attack"):
        recipe(train_attack="fgsm")
    # APGD-CE as the training attack: the same shut-gate inputs through the softened gate, none without it
    import robustmix.fitting.adaptive as fitting

    calls = []

    def spy(source, *args, **kwargs):
        calls.append((type(source).__name__, kwargs["settings"].steps))
        return apgd(source, *args, **kwargs)

    apgd = fitting.apgd
    monkeypatch.setattr(fitting, "apgd", spy)
    apgd_plain = train_mixing_net(mixer, x, y, threat, recipe(train_attack="composite", attack_method="apgd"))
    assert calls == [("AdaptiveMixedClassifier", 11)]    # 10 gradient steps after the random start, like PGD's
    apgd_gated = train_mixing_net(mixer, x, y, threat, recipe(train_attack="composite+gate", attack_method="apgd"))
    assert [c[0] for c in calls[1:]] == ["AdaptiveMixedClassifier", "Surrogate"]
    assert apgd_plain[0]["acc_adv"] == 1.0 and apgd_gated[0]["acc_adv"] == 0.0
    train_mixing_net(mixer, x, y, threat, recipe(train_attack="none", attack_method="apgd"))
    assert len(calls) == 3                                # standard training attacks nothing
    with pytest.raises(ConfigError, match="unknown attack_method 'fgsm': use one of pgd, apgd"):
        recipe(attack_method="fgsm")


def test_a_mixing_net_file_without_recipe_is_read_only_as_the_first_recipe(tmp_path):
    """Files written before the recipe was recorded (the committed pareto runs) hold the first recipe; another
    recipe whose tensors happen to fit is refused, not silently given those weights."""
    from safetensors.torch import load_file, save_file

    from robustmix.fitting import trained_adaptive_mixer

    g, h = _tiny_cnns()
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(8, 1, 28, 28, generator=gen), torch.randint(0, 10, (8,), generator=gen)
    threat, arch = ThreatModel("inf", 0.1), MixingArchitecture(features="logits", net="mlp")

    def recipe(train_attack):
        return AdaptiveTraining(epochs=1, attack_steps=1, batch_size=8, train_attack=train_attack, progress=False)

    first = trained_adaptive_mixer(tmp_path / "ad", g, h, x, y, threat, recipe("composite"), arch)
    path = tmp_path / "ad.mixing-net.safetensors"
    save_file(load_file(path), path)                                     # the same tensors, no metadata
    torch.testing.assert_close(trained_adaptive_mixer(tmp_path / "ad", g, h, x, y, threat, recipe("composite"),
                                                      arch)(x), first(x))
    with pytest.raises(CheckpointError, match="--mixing-net mlp --train-attack composite"):
        trained_adaptive_mixer(tmp_path / "ad", g, h, x, y, threat, recipe("composite+gate"), arch)


def test_trained_mixer_is_kept_and_refused_for_other_settings(tmp_path):
    from robustmix.fitting import trained_adaptive_mixer

    g, h = _tiny_cnns()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (8,), generator=gen)
    threat, arch = ThreatModel("inf", 0.1), MixingArchitecture(features="h", net="residual")

    def recipe(**changes):
        return AdaptiveTraining(epochs=1, attack_steps=1, batch_size=8, progress=False, **changes)

    def trained(folder, training, gate=arch):
        return trained_adaptive_mixer(tmp_path / folder, g, h, x, y, threat, training, gate)

    first = trained("ad", recipe(train_attack="composite+gate"))
    assert first.config()["mixing_net"]["class"] == "ResidualMixingNet"
    again = trained("ad", recipe(train_attack="composite+gate"))
    torch.testing.assert_close(again(x), first(x))
    with pytest.raises(CheckpointError, match=r"other training settings.*'train_attack': \('composite\+gate', 'none'\)"):
        trained("ad", recipe(train_attack="none"))
    with pytest.raises(CheckpointError, match="other mixer settings.*feature_layers"):
        trained("ad", recipe(train_attack="composite+gate"), MixingArchitecture(features="both", net="residual"))
    with pytest.raises(CheckpointError, match=r"other training settings.*'attack_method': \(None, 'apgd'\)"):
        trained("ad", recipe(train_attack="composite+gate", attack_method="apgd"))
    # loss weights other than 1 are recorded too (files written before they could be chosen hold 1)
    with pytest.raises(CheckpointError, match=r"other training settings.*'bce_weight': \(None, 0.5\)"):
        trained("ad", recipe(train_attack="composite+gate", bce_weight=0.5))
    stronger = trained("apgd", recipe(train_attack="composite+gate", attack_method="apgd"))
    state = torch.load(tmp_path / "apgd.train-state.pt", weights_only=True)
    assert state["settings"]["attack_method"] == "apgd" and torch.isfinite(stronger(x)).all()
    # standard training attacks nothing: its files are the same whatever attack_method says
    trained("std", recipe(train_attack="none"))
    trained("std", recipe(train_attack="none", attack_method="apgd"))


def test_adaptive_bad_input(pair):
    g, h = pair
    for rng in [(-0.1, 0.5), (0.2, 1.2), (0.8, 0.2), (0.5,)]:
        with pytest.raises(ConfigError, match="alpha_range"):
            AdaptiveMixedClassifier(g, h, Const(0.0), alpha_range=rng)
    with pytest.raises(ModelError, match=r"\(4,\) or \(4, 1\)"):
        AdaptiveMixedClassifier(g, h, Const(0.0, "bad"))(torch.rand(4, 12))
    with pytest.raises(ModelError, match="mixing_net"):
        AdaptiveMixedClassifier(g, h, lambda f: f)


def test_training_recipe_runs_and_resumes(tmp_path, pair):
    g, h = pair
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(40, 12, generator=gen)
    y = g(x).argmax(1)

    def fresh():
        torch.manual_seed(1)
        return AdaptiveMixedClassifier(g, h, MixingNet(8, hidden=8))

    threat = ThreatModel("inf", 0.1)

    def recipe(epochs, lr=1e-2):
        return AdaptiveTraining(epochs=epochs, attack_steps=2, batch_size=16, lr=lr, seed=0, progress=False)

    state = tmp_path / "mix.pt"
    m = fresh()
    before = [p.detach().clone() for p in m.mixing_net.parameters()]
    g_before = [p.detach().clone() for p in g.parameters()]
    hist = train_mixing_net(m, x, y, threat, recipe(1), state_path=state)
    assert len(hist) == 1 and state.is_file() and math.isfinite(hist[0]["loss"])
    assert 0 <= hist[0]["alpha_clean"] <= 1 and 0 <= hist[0]["alpha_adv"] <= 1
    assert any(not torch.equal(a, b) for a, b in zip(before, m.mixing_net.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(g_before, g.parameters()))
    hist2 = train_mixing_net(m, x, y, threat, recipe(2), state_path=state)  # resumes at epoch 1
    assert [e["epoch"] for e in hist2] == [1, 2] and hist2[0] == hist[0]
    straight = fresh()
    hist_straight = train_mixing_net(straight, x, y, threat, recipe(2))
    for a, b in zip(straight.mixing_net.parameters(), m.mixing_net.parameters()):
        torch.testing.assert_close(a, b)
    assert hist_straight[1]["loss"] == pytest.approx(hist2[1]["loss"])
    with pytest.raises(CheckpointError, match="other settings"):
        train_mixing_net(fresh(), x, y, threat, recipe(3, lr=0.5), state_path=state)


def test_training_interrupted_inside_an_epoch_resumes_to_the_same_network(tmp_path, pair, monkeypatch):
    """A stop loses at most CHECKPOINT_SECONDS of work: the state saved inside an epoch resumes bit for bit."""
    import robustmix.fitting.adaptive as fa

    g, h = pair
    x = torch.rand(40, 12, generator=torch.Generator().manual_seed(0))
    y = g(x).argmax(1)

    def fresh():
        torch.manual_seed(1)
        return AdaptiveMixedClassifier(g, h, MixingNet(8, hidden=8))

    threat = ThreatModel("inf", 0.1)

    def recipe(epochs):
        return AdaptiveTraining(epochs=epochs, attack_steps=2, batch_size=16, lr=1e-2, seed=0, progress=False)

    straight = fresh()
    hist_straight = train_mixing_net(straight, x, y, threat, recipe(2))
    monkeypatch.setattr(fa, "CHECKPOINT_SECONDS", 0.0)          # save after every batch
    real, calls = fa._attacked, []

    def stop_at_the_fifth_batch(*args, **kwargs):                # epoch 2, its second of three batches
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(fa, "_attacked", stop_at_the_fifth_batch)
    state = tmp_path / "s.pt"
    with pytest.raises(KeyboardInterrupt):
        train_mixing_net(fresh(), x, y, threat, recipe(2), state_path=state)
    saved = torch.load(state, weights_only=True)
    assert saved["epoch"] == 1 and saved["partial"]["batch"] == 1
    monkeypatch.setattr(fa, "_attacked", real)
    resumed = fresh()
    hist = train_mixing_net(resumed, x, y, threat, recipe(2), state_path=state)
    for a, b in zip(straight.mixing_net.parameters(), resumed.mixing_net.parameters()):
        assert torch.equal(a, b)
    assert [{k: v for k, v in e.items() if k != "seconds"} for e in hist] == \
        [{k: v for k, v in e.items() if k != "seconds"} for e in hist_straight]
    assert "partial" not in torch.load(state, weights_only=True)   # a finished epoch leaves a clean state
    monkeypatch.setattr(fa, "_attacked", stop_at_the_fifth_batch)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        train_mixing_net(fresh(), x, y, threat, recipe(2), state_path=tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match="inside epoch 2, more than the 1 asked for"):
        train_mixing_net(fresh(), x, y, threat, recipe(1), state_path=tmp_path / "t.pt")   # never half an epoch


def test_training_learns_to_separate_clean_from_attacked(pair):
    g, h = pair
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 12, generator=gen)
    y = h(x).argmax(1)
    torch.manual_seed(0)
    m = AdaptiveMixedClassifier(g, h, MixingNet(8, hidden=16))
    hist = train_mixing_net(m, x, y, ThreatModel("inf", 0.3),
                            AdaptiveTraining(attack_steps=3, epochs=8, batch_size=32, lr=1e-2, ce_weight=0.0,
                                             progress=False))
    assert hist[-1]["alpha_adv"] - hist[-1]["alpha_clean"] > hist[0]["alpha_adv"] - hist[0]["alpha_clean"]
    assert hist[-1]["bce"] < hist[0]["bce"]


def _case():
    """Hand-built validation logits: h correct on 10 attacked examples with distinct margins."""
    c = 3
    # h's attacked logits: class 0 true, class 1 the runner-up; the margin grows with i
    adv = torch.tensor([[1.2 + 0.3 * i, 1.0, 0.0] for i in range(10)], dtype=torch.float64)
    y = torch.zeros(10, dtype=torch.long)
    clean_h = adv.clone()
    clean_g = torch.zeros(10, c, dtype=torch.float64)
    return clean_g, clean_h, adv, y


def test_calibration_picks_the_hand_computed_alpha():
    g, hc, ha, y = _case()
    grid = {"scale": [1.0], "power": [1.0], "bias": [0.0]}
    cal = calibrate_nonlinear(g, hc, ha, y, percentile=80, search=MapSearch(grid=grid, refine=False))
    q = torch.softmax(nonlinear_map(ha, 1.0, 1.0, 0.0), 1)
    margins = np.sort((q[:, 0] - q[:, 1:].amax(1)).numpy())
    # keep >= 80% of 10 examples: quantile 0.2 with method 'lower' is index floor(0.2 * 9) = 1, the 2nd smallest
    c = margins[1]
    assert cal.cutoff == pytest.approx(c)
    assert cal.alpha == pytest.approx(1 / (1 + c))
    assert cal.robust_proxy == pytest.approx(0.9)  # margins[1:] >= c
    # the worst case holds: g one-hot on a wrong class still loses on the kept examples
    mix = (1 - cal.alpha) * torch.tensor([0.0, 1.0, 0.0]) + cal.alpha * q
    assert ((mix[:, 0] >= mix[:, 1:].amax(1) - 1e-12) == torch.as_tensor((q[:, 0] - q[:, 1:].amax(1)).numpy() >= c - 1e-12)).all()
    assert cal.path and all(0.5 <= p["alpha"] <= 1 for p in cal.path)
    again = NonlinearCalibration.from_dict(cal.to_dict())
    assert again == cal
    with pytest.raises(ConfigError, match="percentile"):
        calibrate_nonlinear(g, hc, ha, y, percentile=0, search=MapSearch(grid=grid))


def test_calibration_prefers_the_map_with_better_clean_accuracy():
    # g right everywhere; h wrong on the clean examples with a small gap (3 vs 2.5): a sharper map (big scale)
    # lets h's clean mistakes dominate, so the smallest scale must win on clean accuracy.
    n = 20
    y = torch.zeros(n, dtype=torch.long)
    g = torch.tensor([[1.0, 0.0, 0.0]] * n, dtype=torch.float64)
    hc = torch.tensor([[2.5, 3.0, 0.0]] * n, dtype=torch.float64)
    ha = torch.tensor([[3.0 + 0.1 * i, 0.0, 0.0] for i in range(n)], dtype=torch.float64)
    grid = {"scale": [0.5, 8.0], "power": [1.0], "bias": [0.0]}
    cal = calibrate_nonlinear(g, hc, ha, y, percentile=90, search=MapSearch(grid=grid, refine=False))
    assert cal.scale == 0.5 and cal.clean_acc == 1.0
    by_scale = {r["scale"]: r for r in cal.searched}
    assert by_scale[8.0]["clean_acc"] < 1.0
    refined = calibrate_nonlinear(g, hc, ha, y, percentile=90, search=MapSearch(grid=grid, refine=True))
    assert len(refined.searched) > len(cal.searched) and refined.clean_acc >= cal.clean_acc


def test_calibration_skips_maps_that_break_h():
    # bias -3 pushes every normalised logit below GELU's minimum (-0.75), which reverses h's order: h's
    # attacked-correct examples become wrong, so that map cannot keep them and bias 0 must be chosen
    g, hc, ha, y = _case()
    assert (torch.softmax(nonlinear_map(ha, 1.0, 1.0, -3.0), 1).argmax(1) != 0).all()
    grid = {"scale": [1.0], "power": [1.0], "bias": [-3.0, 0.0]}
    cal = calibrate_nonlinear(g, hc, ha, y, percentile=80, search=MapSearch(grid=grid, refine=False))
    assert cal.bias == 0.0 and cal.robust_proxy >= 0.8
    assert {r["bias"] for r in cal.searched} == {0.0}
    with pytest.raises(ConfigError, match="no map"):
        calibrate_nonlinear(g, hc, ha, y, search=MapSearch(grid={"scale": [1.0], "power": [1.0], "bias": [-3.0]}))


def test_collect_logits_attacks_h_only(pair):
    g, h = pair
    x = torch.rand(10, 12)
    y = h(x).argmax(1)
    out = collect_logits(g, h, x, y, ThreatModel("inf", 0.5), ValidationAttack(steps=5, seed=0, batch_size=4))
    torch.testing.assert_close(out.std_clean, g(x).detach())
    torch.testing.assert_close(out.rob_clean, h(x).detach())
    assert (out.rob_adv.argmax(1) == y).float().mean() < 1.0
    again = collect_logits(g, h, x, y, ThreatModel("inf", 0.5), ValidationAttack(steps=5, seed=0, batch_size=10))
    torch.testing.assert_close(again.rob_adv, out.rob_adv)  # per-example seeds: batching does not matter


class _HookedMLP(torch.nn.Module):
    """A 2-d hidden layer followed by an in-place ReLU, a BatchNorm, and a layer the forward never calls."""

    def __init__(self, d=12, c=4):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(d, 8), torch.nn.ReLU(inplace=True), torch.nn.BatchNorm1d(8),
                                        torch.nn.Linear(8, c))
        self.unused = torch.nn.Linear(8, 8)

    def forward(self, x):
        return self.body(x.flatten(1))


def test_hooked_2d_features_are_copied_and_silent_layers_fail_in_one_line():
    torch.manual_seed(0)
    g, h = _HookedMLP().eval(), _HookedMLP().eval()
    x = torch.rand(5, 12)
    am = AdaptiveMixedClassifier(g, h, MixingNet(4 + 4 + 8), feature_layers={"rob": ["body.0"]})
    _, _, feats = am.features(x)
    torch.testing.assert_close(feats[:, 8:], h.body[0](x))      # before the in-place ReLU, negatives kept
    assert (feats[:, 8:] < 0).any()
    silent = AdaptiveMixedClassifier(g, h, MixingNet(4 + 4 + 8), feature_layers={"rob": ["unused"]})
    with pytest.raises(ModelError, match="rob:unused did not run in the forward pass"):
        silent(x)


def test_gate_training_leaves_the_base_models_batchnorm_alone(tmp_path):
    from robustmix._io import weights_digest

    torch.manual_seed(0)
    g, h = _HookedMLP().eval(), _HookedMLP().eval()
    before = weights_digest(g), weights_digest(h)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 12, generator=gen), torch.randint(0, 4, (16,), generator=gen)
    am = AdaptiveMixedClassifier(g, h, MixingNet(4 + 4 + 8), feature_layers={"rob": ["body.0"]})
    threat = ThreatModel("inf", 0.1)
    train_mixing_net(am, x, y, threat, AdaptiveTraining(epochs=1, attack_steps=1, batch_size=8, progress=False),
                     state_path=tmp_path / "s.pt")
    assert (weights_digest(g), weights_digest(h)) == before and not g.training and not h.training
    # the digest tells apart two mixers that read different layers with the same weights
    other = AdaptiveMixedClassifier(g, h, am.mixing_net, feature_layers={"rob": ["body.1"]})
    assert weights_digest(other) != weights_digest(am)
    # a training state of another mixer (other layers) is refused in one line, not resumed
    with pytest.raises(CheckpointError, match="other settings"):
        train_mixing_net(other, x, y, threat, AdaptiveTraining(epochs=2, attack_steps=1, batch_size=8, progress=False),
                         state_path=tmp_path / "s.pt")


def test_an_exported_hooked_adaptive_mixer_keeps_its_digest_and_cost(tmp_path):
    """verify --model mixed.pt2 needs the exported program's weights digest to equal the module's."""
    from robustmix._io import weights_digest
    from robustmix.experiments.evaluate_run import forward_passes
    from robustmix.experiments.export import export_program
    from robustmix.models.resolve import resolve_model

    from robustmix.mixing import build_mixing_net

    g, h = _tiny_cnns()
    x = torch.rand(3, 1, 28, 28)
    net, layers = build_mixing_net(g, h, x, MixingArchitecture(features="both", net="residual"))
    for am in (AdaptiveMixedClassifier(g, h, MixingNet(10 + 10 + 8), feature_layers={"rob": ["features.9"]}),
               AdaptiveMixedClassifier(g, h, net, (0.1, 0.9), feature_layers=layers)):
        back = resolve_model(str(export_program(am.eval(), x, tmp_path / "am.pt2")))
        torch.testing.assert_close(back(x), am(x))
        torch.testing.assert_close(back(x[:1]), am(x[:1]))             # any batch size
        assert weights_digest(back) == weights_digest(am) and forward_passes(back) == forward_passes(am) == (2, 1)
    other = AdaptiveMixedClassifier(g, h, net, (0.0, 1.0), feature_layers=layers)
    other.load_state_dict(am.state_dict())                            # the range travels with the weights
    assert other._range == (0.1, 0.9)
    torch.testing.assert_close(other(x), am(x))
    linear = MixedClassifier(g, h, 0.3)
    assert weights_digest(resolve_model(str(export_program(linear, x, tmp_path / "m.pt2")))) == weights_digest(linear)
