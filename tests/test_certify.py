import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from robustmix.certify import (SOFTMAX_L2_FACTOR, MonteCarloSmoothed, SmoothedClassifier, certified_accuracy,
                               conv2d_spectral_norm, lemma1_certified, lipschitz_radius, network_lipschitz,
                               probability_lipschitz, smoothed_lipschitz, smoothing_radius)
from robustmix.certify.smoothing import ABSTAIN
from robustmix.errors import ConfigError, InputError, ModelError
from robustmix.models import create_model


def ref_thm1(p, lip, a):
    """Float64 loop: Theorem 1 exactly as printed in the paper."""
    y = int(np.argmax(p))
    if a < 0.5:
        return 0.0
    r = min((a * (p[y] - p[i]) + a - 1) / (a * (lip[y] + lip[i])) for i in range(len(p)) if i != y)
    return max(r, 0.0)


def ref_thm2(p, sigma, a):
    y = int(np.argmax(p))
    y2 = max((i for i in range(len(p)) if i != y), key=lambda i: p[i])
    if a < 0.5:
        return 0.0
    with np.errstate(divide="ignore"):
        r = sigma / 2 * (norm.ppf(a * p[y]) - norm.ppf(a * p[y2] + 1 - a))
    return max(float(np.nan_to_num(r, nan=0.0, neginf=0.0, posinf=0.0)), 0.0)


def test_theorems_match_float64_reference():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(40, 6, generator=gen, dtype=torch.float64) * 3
    probs = logits.softmax(-1)
    lip = torch.rand(6, generator=gen, dtype=torch.float64) + 0.5
    alphas = torch.tensor([0.0, 0.3, 0.5, 0.6, 0.8, 0.95, 1.0], dtype=torch.float64)
    r1 = lipschitz_radius(probs, lip, alphas)
    r2 = smoothing_radius(probs, 0.37, alphas)
    assert r1.shape == r2.shape == (7, 40)
    for k, a in enumerate(alphas.tolist()):
        for j in range(40):
            assert r1[k, j].item() == pytest.approx(ref_thm1(probs[j].numpy(), lip.numpy(), a), abs=1e-12)
            assert r2[k, j].item() == pytest.approx(ref_thm2(probs[j].numpy(), 0.37, a), abs=1e-9)
    torch.testing.assert_close(lipschitz_radius(probs, 2.0, 0.8), lipschitz_radius(probs, torch.full((6,), 2.0), [0.8])[0])


def test_radii_are_zero_not_negative_and_label_aware():
    probs = torch.tensor([[0.34, 0.33, 0.33], [1.0, 0.0, 0.0], [0.2, 0.8, 0.0]], dtype=torch.float64)
    r = smoothing_radius(probs, 0.5, torch.linspace(0, 1, 11))
    assert torch.isfinite(r).all() and (r >= 0).all()
    assert (r[:5] == 0).all()  # alpha < 1/2 certifies nothing
    labels = torch.tensor([0, 0, 0])
    r = lipschitz_radius(probs, 1.0, 0.9, labels=labels)
    assert r[2] == 0 and r[1] > 0
    with pytest.raises(InputError):
        lipschitz_radius(torch.randn(3, 4) * 5, 1.0, 0.9)
    with pytest.raises(ConfigError):
        lipschitz_radius(probs, -1.0, 0.9)


def test_alpha_one_recovers_the_standard_lipschitz_radius():
    probs = torch.tensor([[0.7, 0.2, 0.1]], dtype=torch.float64)
    assert lipschitz_radius(probs, 0.5, 1.0).item() == pytest.approx((0.7 - 0.2) / 1.0)
    # threshold: no radius for alpha <= 1 / (1 + h_y - h_i)
    assert lipschitz_radius(probs, 0.5, 1 / 1.5).item() == pytest.approx(0.0, abs=1e-12)


def test_lemma1_margin_rule_and_tightness():
    assert bool(lemma1_certified(torch.tensor([0.5]), 0.7))
    assert not bool(lemma1_certified(torch.tensor([0.4]), 0.7))   # margin needed: 0.3/0.7 = 0.4286
    assert not bool(lemma1_certified(torch.tensor([1.0]), 0.4))   # alpha < 1/2
    # tightness: with h's gap just below the margin, some g in [0, 1] flips the mixture
    a, gap = 0.7, 0.42
    h = torch.tensor([0.5 + gap / 2, 0.5 - gap / 2])
    g = torch.tensor([0.0, 1.0])
    mix = (1 - a) * g + a * h
    assert mix.argmax() == 1


class _Binary(torch.nn.Module):
    """Linear binary classifier on R^d: logits (0, w.x + b) scaled to act as hard votes."""

    def __init__(self, w, b, hard=True):
        super().__init__()
        self.w, self.b, self.hard = w, b, hard

    def forward(self, x):
        s = x.flatten(1) @ self.w + self.b
        s = s * 1e4 if self.hard else s
        return torch.stack([torch.zeros_like(s), s], 1)


def test_theorem2_closed_form_for_linear_classifier():
    w, b, sigma = torch.tensor([0.6, -0.8, 0.0]), 0.05 - 0.6 * 0.5 + 0.8 * 0.5, 0.5
    base = _Binary(w, b)
    x = torch.tensor([[0.3, 0.0, 0.2], [0.0, -0.4, 0.1], [0.1, 0.1, 0.1]]) + 0.5  # inputs in [0, 1]
    exact_dist = (x @ w + b).abs() / w.norm()
    exact_p = torch.from_numpy(norm.cdf(((x @ w + b) / (sigma * w.norm())).numpy()))
    probs = torch.stack([1 - exact_p, exact_p], 1)
    torch.testing.assert_close(smoothing_radius(probs, sigma, 1.0), exact_dist.double())
    gaps = []
    for n in (1_000, 10_000, 100_000):
        est = SmoothedClassifier(base, sigma, num_samples=n, batch_size=5000).sample(x)
        lo, hi = est.bounds(1e-3, "hard")
        pred = est.counts.argmax(1)
        from robustmix.certify import smoothing_radius_from_bounds
        r = smoothing_radius_from_bounds(lo.gather(1, pred[:, None])[:, 0], hi, pred, sigma, 1.0)
        assert (r <= exact_dist.double() + 1e-9).all()
        gaps.append(float((exact_dist.double() - r).abs().max()))
    assert gaps[-1] < gaps[0] and gaps[-1] < 0.05


def test_sound_bounds_cover_the_true_probability():
    w, b, sigma = torch.tensor([1.0, 1.0]), -0.2, 0.25
    base = _Binary(w, b, hard=True)
    x = torch.rand(40, 2) * 0.4
    exact_p = torch.from_numpy(norm.cdf(((x @ w + b) / (sigma * w.norm())).numpy()))
    est = SmoothedClassifier(base, sigma, num_samples=2000, batch_size=2000, seed=3).sample(x)
    for estimator in ("soft", "hard"):
        lo, hi = est.bounds(0.01, estimator)
        assert ((lo[:, 1] <= exact_p + 1e-9) & (exact_p <= hi[:, 1] + 1e-9)).all()


def test_sampling_does_not_depend_on_batch_size():
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x = torch.rand(3, 1, 2, 2)
    a = SmoothedClassifier(base, 0.3, num_samples=1200, batch_size=7).sample(x, indices=[5, 6, 7])
    b = SmoothedClassifier(base, 0.3, num_samples=1200, batch_size=1200).sample(x[1:], indices=[6, 7])
    assert torch.equal(a.counts[1:], b.counts)
    torch.testing.assert_close(a.mean[1:], b.mean)


def test_monte_carlo_smoothed_fixed_noise_is_deterministic():
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x = torch.rand(5, 1, 2, 2)
    fixed = MonteCarloSmoothed(base, 0.3, num_samples=8, seed=1, fixed_noise=True)
    fresh = MonteCarloSmoothed(base, 0.3, num_samples=8, seed=1)
    assert torch.equal(fixed(x), fixed(x))
    assert torch.equal(fresh(x), fixed(x)) and not torch.equal(fresh(x), fixed(x))
    assert torch.allclose(fixed(x).exp().sum(-1), torch.ones(5))
    with pytest.raises(ConfigError, match="seed"):
        MonteCarloSmoothed(base, 0.3, fixed_noise=True)


def test_cohen_certify_and_predict_on_linear_classifier():
    w, b, sigma = torch.tensor([1.0, 0.0]), 0.0, 0.5
    base = _Binary(w, b)
    x = torch.tensor([[0.8, 0.0], [0.01, 0.3], [-0.6, 0.0]])
    smoothed = SmoothedClassifier(base, sigma, batch_size=10_000, input_range=None)   # a toy input on all of R^d
    pred, radius = smoothed.cohen_certify(x, n0=100, n=20_000, delta=0.001)
    exact = (x @ w).abs()
    assert pred.tolist()[0] == 1 and pred.tolist()[2] == 0 and pred.tolist()[1] in (ABSTAIN, 1)
    assert (radius <= exact.double() + 1e-9).all() and radius[0] > 0.5 * exact[0]
    assert smoothed.cohen_predict(x[:1], n=1000).tolist() == [1]


def test_smoothed_lipschitz_constant():
    assert smoothed_lipschitz(0.5) == pytest.approx(math.sqrt(2 / math.pi) / 0.5)


def test_softmax_factor_is_the_supremum():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(4000, 5, generator=gen) * 3
    z[:10] = torch.tensor([0.0, 0.0, -50, -50, -50])
    s = z.double().softmax(-1)
    jac = s[:, :, None] * (torch.eye(5, dtype=torch.float64)[None] - s[:, None, :])
    norms = jac.norm(dim=-1)
    assert norms.max() <= SOFTMAX_L2_FACTOR + 1e-12
    assert norms.max() >= SOFTMAX_L2_FACTOR - 1e-6


def _dense_conv_matrix(conv, hw):
    n = conv.in_channels * hw[0] * hw[1]
    eye = torch.eye(n).reshape(n, conv.in_channels, *hw)
    with torch.no_grad():
        out = torch.nn.functional.conv2d(eye, conv.weight, None, conv.stride, conv.padding)
    return out.reshape(n, -1).T.double()


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 1), (1, 0)])
def test_conv_bound_is_sound_and_tight(stride, padding):
    torch.manual_seed(stride + padding)
    conv = torch.nn.Conv2d(2, 3, 3, stride=stride, padding=padding)
    exact = torch.linalg.matrix_norm(_dense_conv_matrix(conv, (6, 6)), ord=2).item()
    bound = conv2d_spectral_norm(conv, (6, 6))
    assert exact <= bound + 1e-9 and bound <= 3 * exact


def test_network_bound_never_exceeded_on_random_pairs_and_gradients():
    torch.manual_seed(0)
    model = create_model("lipschitz-cnn", constrained=False, width=4, hidden=16, logit_scale=3.0)
    for p in model.parameters():
        p.data.normal_(0, 0.3)
    bound = network_lipschitz(model, (1, 28, 28))
    x1, x2 = torch.rand(64, 1, 28, 28), torch.rand(64, 1, 28, 28)
    with torch.no_grad():
        ratio = (model(x1) - model(x2)).norm(dim=1) / (x1 - x2).flatten(1).norm(dim=1)
    assert ratio.max() <= bound
    for x in x1[:4]:
        jac = torch.autograd.functional.jacobian(model, x[None]).reshape(10, -1)
        assert torch.linalg.matrix_norm(jac, ord=2) <= bound
    lips = probability_lipschitz(model, 2)
    assert lips.shape == (10,) and lips[0] == pytest.approx(SOFTMAX_L2_FACTOR * bound)
    assert probability_lipschitz(model, "inf")[0] == pytest.approx(28 * SOFTMAX_L2_FACTOR * bound)


def test_unknown_layers_are_refused():
    with pytest.raises(ModelError):
        probability_lipschitz(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Softplus()), 2, (1, 2, 2))


def test_certified_accuracy_curve():
    radii = torch.tensor([0.0, 0.5, 1.0, 2.0])
    correct = torch.tensor([True, True, False, True])
    acc = certified_accuracy(radii, correct, [0.0, 0.5, 1.5, 3.0])
    torch.testing.assert_close(acc, torch.tensor([0.5, 0.5, 0.25, 0.0], dtype=torch.float64))


def test_certificates_survive_attacks_on_the_mixture():
    """Soundness: PGD with restarts inside 0.99 x the Theorem 1 radius never flips the mixture."""
    from robustmix import MixedClassifier
    from robustmix.attacks import PGD

    torch.manual_seed(0)
    h = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 3))
    with torch.no_grad():
        h[1].weight.mul_(6.0)
    g = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    lip_logits = torch.linalg.matrix_norm(h[1].weight.double(), ord=2).item()
    lip = SOFTMAX_L2_FACTOR * lip_logits
    x = torch.rand(300, 1, 2, 4)
    alpha = 0.8
    mixed = MixedClassifier(g, h, alpha)
    with torch.no_grad():
        probs = h(x).softmax(-1)
        pred = mixed(x).argmax(1)
    r = lipschitz_radius(probs, lip, alpha)
    certified = (r > 0).nonzero()[:, 0]
    assert len(certified) >= 30
    assert torch.equal(pred[certified], probs.argmax(1)[certified])
    violations = 0
    for i in certified.tolist():
        attack = PGD(mixed, 0.99 * r[i].item(), 2, steps=40, restarts=5, seed=i)
        xa = attack(x[i:i + 1], pred[i:i + 1])
        assert (xa - x[i:i + 1]).norm() <= 0.99 * r[i].item() + 1e-6
        with torch.no_grad():
            violations += int(mixed(xa).argmax(1).item() != pred[i].item())
    assert violations == 0
