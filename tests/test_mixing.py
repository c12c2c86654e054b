import math

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import robustmix as rm
from robustmix.errors import ConfigError, InputError, ModelError
from robustmix.mixing import FormulationMixture, h_smo1, h_smo2, h_smo3, mix_log_probs, trust_term
from robustmix.mixing.functional import class_gradients

from .conftest import Linear2Logits


def ref_mix(g, h, a):
    """Float64 reference of eq. (4), written directly as log of a sum."""
    g, h = np.asarray(g, np.float64), np.asarray(h, np.float64)
    sg = np.exp(g - g.max(-1, keepdims=True)); sg /= sg.sum(-1, keepdims=True)
    sh = np.exp(h - h.max(-1, keepdims=True)); sh /= sh.sum(-1, keepdims=True)
    with np.errstate(divide="ignore"):
        return np.log((1 - a) * sg + a * sh)


def test_matches_float64_reference(pair):
    x = torch.rand(16, 12, dtype=torch.float64)
    g, h = pair
    g, h = g.double(), h.double()
    for a in (0.0, 0.2, 0.5, 0.77, 1.0):
        out = rm.MixedClassifier(g, h, a)(x)
        ref = ref_mix(g(x).numpy(), h(x).numpy(), a)
        finite = np.isfinite(ref)
        np.testing.assert_allclose(out.numpy()[finite], ref[finite], rtol=1e-10, atol=1e-12)


def test_limits_and_bounds(pair):
    g, h = pair
    x = torch.rand(32, 12)
    gl, hl = g(x), h(x)
    torch.testing.assert_close(rm.MixedClassifier(g, h, 0.0)(x), torch.log_softmax(gl, -1))
    torch.testing.assert_close(rm.MixedClassifier(g, h, 1.0)(x), torch.log_softmax(hl, -1))
    assert torch.equal(rm.MixedClassifier(g, h, 0.0)(x).argmax(1), gl.argmax(1))
    assert torch.equal(rm.MixedClassifier(g, h, 1.0)(x).argmax(1), hl.argmax(1))
    p = rm.MixedClassifier(g, h, 0.3)(x).exp()
    pg, ph = gl.softmax(-1), hl.softmax(-1)
    assert torch.all(p >= torch.minimum(pg, ph) - 1e-6) and torch.all(p <= torch.maximum(pg, ph) + 1e-6)
    torch.testing.assert_close(p.sum(-1), torch.ones(32))


logit_arrays = arrays(np.float32, (3, 5), elements=st.one_of(
    st.floats(-1e4, 1e4, width=32), st.sampled_from([-1e4, 1e4, 0.0])))


@settings(max_examples=60, deadline=None)
@given(g=logit_arrays, h=logit_arrays, a=st.one_of(st.floats(0, 1), st.sampled_from([0.0, 1.0, 0.5])))
# alpha a hair below 1 (1 in float32): g's term must survive where h's probabilities underflow
@example(g=np.zeros((3, 5), np.float32), h=np.full((3, 5), -1e4, np.float32) * (1 - np.eye(3, 5, dtype=np.float32)),
         a=1 - 2.0 ** -53)
def test_property_random_and_extreme_logits(g, h, a):
    g, h = torch.from_numpy(g), torch.from_numpy(h)
    out = mix_log_probs(g, h, a)
    assert torch.isfinite(out).all()
    assert torch.allclose(out.double().exp().sum(-1), torch.ones(3, dtype=torch.float64), atol=1e-4)
    pg, ph = g.double().softmax(-1), h.double().softmax(-1)
    p = out.double().exp()
    assert torch.all(p >= torch.minimum(pg, ph) - 1e-5) and torch.all(p <= torch.maximum(pg, ph) + 1e-5)
    ref = ref_mix(g.numpy(), h.numpy(), a)
    finite = ref > -50  # where the float64 log of a sum is itself reliable
    np.testing.assert_allclose(out.numpy()[finite], ref[finite], atol=2e-3, rtol=1e-4)


@pytest.mark.parametrize("a", [0.0, 1.0, 0.5])
def test_finite_gradients_at_edges_and_extreme_logits(a):
    g, h = Linear2Logits(seed=0, scale=1e4), Linear2Logits(seed=1, scale=1e4)
    x = torch.rand(8, 12, requires_grad=True)
    out = rm.MixedClassifier(g, h, a)(x)
    assert out.abs().max() > 1e3  # logits really are extreme
    loss = torch.nn.functional.cross_entropy(out, torch.arange(8) % 4)
    (grad,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(out).all() and torch.isfinite(grad).all()


def test_vectorized_alpha_equals_loop_and_runs_each_model_once(pair):
    g, h = pair
    calls = {"g": 0, "h": 0}
    g.register_forward_hook(lambda *_: calls.__setitem__("g", calls["g"] + 1))
    h.register_forward_hook(lambda *_: calls.__setitem__("h", calls["h"] + 1))
    alphas = torch.linspace(0, 1, 11)
    x = torch.rand(10, 12)
    out = rm.MixedClassifier(g, h, alphas)(x)
    assert out.shape == (11, 10, 4) and calls == {"g": 1, "h": 1}
    for i, a in enumerate(alphas.tolist()):
        torch.testing.assert_close(out[i], rm.MixedClassifier(g, h, a)(x))


def test_components_without_second_pass(pair):
    g, h = pair
    m = rm.MixedClassifier(g, h, 0.6)
    x = torch.rand(5, 12)
    res = m.forward_with_components(x)
    torch.testing.assert_close(res.log_probs, m(x))
    torch.testing.assert_close(res.std_logits, g(x))
    torch.testing.assert_close(res.rob_logits, h(x))


def test_frozen_eval_buffers_and_dtype(pair):
    g, h = pair
    g.train()
    m = rm.MixedClassifier(g, h, 0.25)
    assert not g.training and not any(p.requires_grad for p in m.parameters())
    m.train()
    assert m.training and not m.std_model.training and not m.rob_model.training
    assert "alpha" in dict(m.named_buffers())
    m64 = m.double()
    out = m64(torch.rand(3, 12, dtype=torch.float64))
    assert out.dtype == torch.float64
    m.set_alpha([0.1, 0.9])
    assert m(torch.rand(2, 12, dtype=torch.float64)).shape == (2, 2, 4)


def test_gamma_alpha_reparameterization(pair):
    assert rm.alpha_from_gamma(1.0) == 0.5 and rm.alpha_from_gamma(math.inf) == 1.0
    assert rm.gamma_from_alpha(0.5) == pytest.approx(1.0) and rm.gamma_from_alpha(1.0) == math.inf
    for gamma in (0.0, 0.3, 2.0, 17.0):
        assert rm.gamma_from_alpha(rm.alpha_from_gamma(gamma)) == pytest.approx(gamma)
    g, h = pair
    m = rm.MixedClassifier.from_gamma(g, h, 3.0)
    assert float(m.alpha) == pytest.approx(0.75) and m.gamma == pytest.approx(3.0)


def test_eq3_with_unit_trust_equals_eq4(pair):
    g, h = pair
    x = torch.rand(20, 12, dtype=torch.float64)
    gl, hl = g.double()(x), h.double()(x)
    for gamma in (0.0, 0.4, 1.0, 5.0, math.inf):
        a = rm.alpha_from_gamma(gamma)
        torch.testing.assert_close(h_smo3(gl, hl, gamma, 1.0, "probs"), mix_log_probs(gl, hl, a))
        fm = FormulationMixture(g, h, gamma, formulation=3, trust="one", space="probs")
        torch.testing.assert_close(fm(x), rm.MixedClassifier(g, h, a)(x))


def test_formulas_match_direct_float64():
    gen = torch.Generator().manual_seed(3)
    gl, hl = torch.randn(6, 5, generator=gen, dtype=torch.float64), torch.randn(6, 5, generator=gen, dtype=torch.float64)
    r = torch.rand(6, 5, generator=gen, dtype=torch.float64) * 3
    gamma = 0.7
    sg, sh = gl.softmax(-1), hl.softmax(-1)
    torch.testing.assert_close(h_smo1(gl, hl, gamma, r, "logits"), gl + gamma * r * hl)
    torch.testing.assert_close(h_smo1(gl, hl, gamma, r, "probs"), torch.log(sg + gamma * r * sh))
    torch.testing.assert_close(h_smo2(gl, hl, gamma, r, "logits"), (gl + gamma * r * hl) / (1 + gamma * r))
    torch.testing.assert_close(h_smo3(gl, hl, gamma, r, "probs"), torch.log((sg + gamma * r * sh) / (1 + gamma * r)))


@pytest.mark.parametrize("p,dual", [(math.inf, 1), (2, 2), (1, math.inf)])
def test_trust_terms_closed_form_for_linear_models(pair, p, dual):
    g, h = pair
    x = torch.rand(7, 12)
    wg, wh = g.lin.weight.detach(), h.lin.weight.detach()
    norm_g = torch.linalg.vector_norm(wg, ord=dual, dim=1)
    norm_h = torch.linalg.vector_norm(wh, ord=dual, dim=1)
    _, _, r = trust_term("grad_std", g, h, x, p=p, space="logits")
    torch.testing.assert_close(r, norm_g.expand(7, 4))
    _, _, r = trust_term("grad_ratio", g, h, x, p=p, space="logits")
    torch.testing.assert_close(r, (norm_g / norm_h).expand(7, 4))
    _, _, r = trust_term("grad_max_std", g, h, x, p=p, space="logits")
    torch.testing.assert_close(r[:, 0], norm_g[g(x).argmax(1)])
    # probabilities: grad s_i = s_i (e_i - s)^T W, closed form per sample
    _, _, r = trust_term("grad_std", g, h, x, p=p, space="probs")
    s = g(x).softmax(-1)
    jac = s[:, :, None] * (torch.eye(4)[None] - s[:, None, :]) @ wg  # (n, c, d)
    torch.testing.assert_close(r, torch.linalg.vector_norm(jac, ord=dual, dim=-1))


def test_class_gradients_match_brute_force_jacobian():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(12, 4))
    x = torch.rand(5, 1, 4, 4)
    out, jac = class_gradients(model, x, create_graph=False)
    full = torch.autograd.functional.jacobian(model, x)  # (n, c, n, 1, 4, 4)
    ref = torch.stack([full[k, :, k].reshape(4, -1) for k in range(5)], 1)
    torch.testing.assert_close(jac, ref)


@pytest.mark.parametrize("trust", ["grad_std", "grad_max_std", "grad_ratio"])
@pytest.mark.parametrize("space", ["logits", "probs"])
def test_formulation_mixture_double_backprop_gradcheck(trust, space):
    torch.manual_seed(1)
    g = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)).double()
    h = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)).double()
    fm = FormulationMixture(g, h, 0.8, formulation=3, trust=trust, space=space, p=2)
    x = torch.rand(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fm, (x,), eps=1e-6, atol=1e-5)


def test_formulation_two_is_gradient_normalised(pair):
    g, h = pair
    x = torch.rand(4, 12)
    a = FormulationMixture(g, h, 0.5, formulation=2, space="logits")(x)
    b = FormulationMixture(g, h, 0.5, formulation=3, trust="grad_std", space="logits")(x)
    torch.testing.assert_close(a, b)
    e1 = FormulationMixture(g, h, 0.5, formulation=1, trust="grad_std", space="logits")(x)
    norm = torch.linalg.vector_norm(g.lin.weight, ord=1, dim=1)
    torch.testing.assert_close(e1, g(x) + 0.5 * norm * h(x))


def test_errors(pair):
    g, h = pair
    for bad in (-0.1, 1.5, float("nan"), [[0.5]], []):
        with pytest.raises(ConfigError):
            rm.MixedClassifier(g, h, bad)
    with pytest.raises(ModelError, match="classes"):
        rm.MixedClassifier(g, Linear2Logits(c=5), 0.5)
    m = rm.MixedClassifier(g, h, 0.5, validate_inputs=True)   # opt-in checks; the default forward does not sync
    plain = torch.nn.Linear(12, 5)
    with pytest.raises(ModelError, match="output shape"):
        rm.MixedClassifier(g, plain, 0.5)(torch.rand(2, 12))
    with pytest.raises(InputError, match="rank"):
        m(torch.rand(12))
    with pytest.raises(InputError, match="NaN"):
        m(torch.full((2, 12), float("nan")))
    with pytest.raises(InputError, match="integer"):
        m(torch.ones(2, 12, dtype=torch.long))
    with pytest.raises(ConfigError, match="trust"):
        FormulationMixture(g, h, 1.0, trust="bogus")
    with pytest.raises(ConfigError, match="norm"):
        FormulationMixture(g, h, 1.0, p=3)
    with pytest.raises(ConfigError):
        FormulationMixture(g, h, -1.0)
    assert issubclass(ConfigError, rm.RobustMixError) and issubclass(ConfigError, ValueError)


def test_mixer_refuses_uint8_and_check_refuses_broken_models_and_255_floats(pair):
    g, h = pair
    mixed = rm.MixedClassifier(g, h, 0.5)
    with pytest.raises(InputError, match=r"x.float\(\) / 255"):
        mixed(torch.randint(0, 256, (2, 12), dtype=torch.uint8))
    x = torch.rand(3, 12)
    assert mixed.check(x) is x
    with pytest.raises(InputError, match="values in"):
        mixed.check(x * 255)

    class NaNModel(torch.nn.Module):
        def forward(self, x):
            return torch.full((len(x), 4), float("nan"))

    class Probs(torch.nn.Module):
        def forward(self, x):
            return torch.softmax(g(x), -1)

    with pytest.raises(ModelError, match="NaN"):
        rm.MixedClassifier(g, NaNModel(), 0.5).check(x)
    with pytest.raises(ModelError, match="probabilities"):
        rm.MixedClassifier(Probs(), h, 0.5).check(x)
