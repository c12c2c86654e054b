import math

import pytest
import torch

from robustmix import MixedClassifier
from robustmix.attacks import PGD, fgsm
from robustmix.errors import AttackError, ConfigError, InputError
from robustmix.mixing import FormulationMixture

from .conftest import Linear2Logits


class BinaryLinear(torch.nn.Module):
    def __init__(self, w, b):
        super().__init__()
        self.w, self.b = w, b

    def forward(self, x):
        s = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(s), s], 1)


@pytest.mark.parametrize("norm", ["inf", 2])
def test_contract_ball_box_and_zero_eps(norm):
    model = Linear2Logits(d=12, c=4)
    x = torch.rand(32, 1, 3, 4)
    y = torch.randint(0, 4, (32,))
    p = math.inf if norm == "inf" else 2.0
    for eps in (0.05, 0.3, 2.0):
        xa = PGD(model, eps, norm, steps=10, restarts=2)(x, y)
        size = torch.linalg.vector_norm((xa - x).flatten(1), ord=p, dim=1)
        assert (size <= eps + 1e-5).all()
        assert xa.min() >= 0 and xa.max() <= 1
    assert torch.equal(PGD(model, 0.0, norm, steps=10)(x, y), x)


@pytest.mark.parametrize("norm", ["inf", 2])
def test_accuracy_non_increasing_in_eps(norm):
    model = Linear2Logits(d=12, c=4, seed=3)
    x = torch.rand(200, 12) * 0.5 + 0.25
    with torch.no_grad():
        y = model(x).argmax(1)
    accs = []
    for eps in (0.0, 0.01, 0.02, 0.05, 0.1, 0.2):
        xa = PGD(model, eps, norm, steps=30, seed=0)(x, y)
        with torch.no_grad():
            accs.append(float((model(xa).argmax(1) == y).float().mean()))
    assert all(a >= b for a, b in zip(accs, accs[1:]))
    assert accs[0] == 1.0 and accs[-1] < 1.0


@pytest.mark.parametrize("norm,dual", [("inf", 1), (2, 2)])
def test_pgd_reaches_the_analytic_minimal_perturbation(norm, dual):
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(10, generator=gen)
    x = torch.full((20, 10), 0.5) + 0.01 * torch.randn(20, 10, generator=gen)
    b = -(x @ w) + 0.05 * torch.randn(20, generator=gen).sign()  # each point close to the boundary
    for i in range(20):
        model = BinaryLinear(w, b[i])
        xi = x[i:i + 1]
        y = model(xi).argmax(1)
        d_min = float((xi @ w + b[i]).abs() / torch.linalg.vector_norm(w, ord=dual))
        below = PGD(model, 0.98 * d_min, norm, steps=50)(xi, y)
        above = PGD(model, 1.02 * d_min, norm, steps=50)(xi, y)
        assert model(below).argmax(1) == y
        assert model(above).argmax(1) != y


def test_fgsm_is_one_signed_step():
    model = Linear2Logits(d=12, c=4)
    x = torch.rand(5, 12) * 0.5 + 0.25
    y = torch.zeros(5, dtype=torch.long)
    xa = fgsm(model, x, y, 0.1)
    assert torch.allclose((xa - x).abs(), torch.full_like(x, 0.1))


def test_restarts_and_early_stop_keep_misclassified_points():
    model = Linear2Logits(d=12, c=4, seed=5)
    x = torch.rand(64, 12)
    y = torch.randint(0, 4, (64,))
    base = PGD(model, 0.3, "inf", steps=10, seed=1)(x, y)
    more = PGD(model, 0.3, "inf", steps=10, restarts=4, seed=1)(x, y)
    early = PGD(model, 0.3, "inf", steps=10, seed=1, early_stop=True)(x, y)
    with torch.no_grad():
        acc = [float((model(v).argmax(1) == y).float().mean()) for v in (base, more, early)]
    assert acc[1] <= acc[0] and acc[2] == pytest.approx(acc[0], abs=0.05)


def test_per_example_seeds_are_batch_independent():
    model = Linear2Logits(d=12, c=4)
    x = torch.rand(10, 12)
    y = torch.randint(0, 4, (10,))
    attack = PGD(model, 0.1, "inf", steps=3)
    full = attack(x, y, seeds=list(range(100, 110)))
    part = attack(x[4:], y[4:], seeds=list(range(104, 110)))
    torch.testing.assert_close(full[4:], part)


def test_attack_targets_differ_from_evaluated_model(pair):
    g, h = pair
    mixed = MixedClassifier(g, h, 0.7)
    x = torch.rand(16, 12)
    y = torch.randint(0, 4, (16,))
    xa = PGD(g, 0.2, "inf", steps=5)(x, y)  # STD attack, evaluated on the mixture
    assert mixed(xa).shape == (16, 4)
    with pytest.raises(InputError, match="one alpha"):
        PGD(MixedClassifier(g, h, [0.2, 0.4]), 0.1)(x, y)


def test_budget_validation_and_nan_gradients():
    model = Linear2Logits()
    with pytest.raises(ConfigError):
        PGD(model, -0.1)
    with pytest.raises(ConfigError):
        PGD(model, 0.1, norm=3)
    with pytest.raises(ConfigError):
        PGD(model, 0.1, steps=-1)

    class NanGrad(torch.nn.Module):
        def forward(self, x):
            return torch.sqrt(x.flatten(1)[:, :2] - x.flatten(1)[:, :2])  # d/dx sqrt(0) = inf -> NaN

    with pytest.raises(AttackError):
        PGD(NanGrad(), 0.1, steps=2)(torch.rand(3, 4), torch.zeros(3, dtype=torch.long))


def test_formulation_gradients_finite_at_gamma_zero(pair):
    g, h = pair
    x = torch.rand(6, 12)
    y = torch.randint(0, 4, (6,))
    for trust in ("grad_std", "grad_max_std", "grad_ratio"):
        model = FormulationMixture(g, h, 0.0, trust=trust, space="probs")
        xa = PGD(model, 0.1, "inf", steps=3)(x, y)
        assert torch.isfinite(xa).all()
