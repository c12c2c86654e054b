"""Slow checks on the shipped zoo: card numbers reproduced, certificates sound. Run: pytest -m slow"""

import pytest
import torch

from robustmix import MixedClassifier
from robustmix.attacks import PGD, run_autoattack
from robustmix.certify import (MonteCarloSmoothed, SmoothedClassifier, lipschitz_radius, probability_lipschitz)
from robustmix.data import load_dataset
from robustmix.models import ZOO_NAMES, card, list_models, load
from robustmix.training import THREATS, accuracy, robust_accuracy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def test_set():
    return load_dataset("fashion-mnist", "test", allow_download=False)


def _require(name):
    if name not in list_models(pretrained=True):
        pytest.skip(f"{name} is not in this checkout")


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_card_accuracies_are_reproduced(name, test_set):
    _require(name)
    x, y = test_set
    c, model = card(name), load(name)
    assert accuracy(model, x, y) == pytest.approx(c.metrics["clean"]["accuracy"], abs=2e-4)
    for norm, eps in THREATS.get(name, []):
        tag = f"{'linf' if norm == 'inf' else 'l2'}-{eps}"
        m = c.metrics[f"pgd20-{tag}"]
        n = m["n"]
        got = robust_accuracy(model, x[:n], y[:n], eps, norm, steps=20)
        assert got == pytest.approx(m["accuracy"], abs=0.005)
        aa = c.metrics.get(f"autoattack-{tag}")
        if aa:
            sub = 100
            res = run_autoattack(model, x[:sub], y[:sub], eps, norm, version="standard", seed=0, batch_size=sub)
            stored = torch.zeros(sub, dtype=torch.bool)
            stored[[i for i in aa["robust_indices"] if i < sub]] = True
            assert (res.robust == stored).float().mean() >= 0.95


def _violations(mixed, x, labels, radii, norm, restarts=3, steps=40):
    bad = 0
    for i in range(len(x)):
        attack = PGD(mixed, 0.99 * float(radii[i]), norm, steps=steps, restarts=restarts, seed=i)
        xa = attack(x[i:i + 1], labels[i:i + 1])
        with torch.no_grad():
            bad += int(mixed(xa).argmax(1).item() != labels[i].item())
    return bad


def test_lipschitz_certificates_are_sound(test_set):
    _require("fmnist-lipschitz")
    _require("fmnist-std-cnn")
    x, y = test_set
    g, h = load("fmnist-std-cnn"), load("fmnist-lipschitz")
    lip = probability_lipschitz(h, 2)
    for alpha in (0.7, 1.0):
        mixed = MixedClassifier(g, h, alpha)
        with torch.no_grad():
            probs = h(x[:600]).softmax(-1)
        r = lipschitz_radius(probs, lip, alpha, labels=y[:600])
        idx = (r > 0).nonzero()[:, 0][:200]
        assert len(idx) == 200
        pred = probs.argmax(1)[idx]
        assert _violations(mixed, x[idx], pred, r[idx], 2) == 0
        # AutoAttack (L2) at the smallest certified radius of the batch
        eps = 0.99 * float(r[idx].min())
        res = run_autoattack(mixed, x[idx], pred, eps, 2, version="custom", attacks=["apgd-ce", "apgd-t"], seed=0,
                             batch_size=200)
        assert bool(res.robust.all())


def test_smoothing_certificates_are_sound(test_set):
    _require("fmnist-noise-0.50-cnn")
    x, y = test_set
    g, base = load("fmnist-std-cnn"), load("fmnist-noise-0.50-cnn")
    sigma, alpha = 0.5, 0.8
    est = SmoothedClassifier(base, sigma, num_samples=2000, batch_size=2000).sample(x[:300])
    lo, hi = est.bounds(0.001)
    pred = est.mean.argmax(1)
    from robustmix.certify import smoothing_radius_from_bounds

    r = smoothing_radius_from_bounds(lo.gather(1, pred[:, None])[:, 0], hi, pred, sigma, alpha, labels=y[:300])
    idx = (r > 0).nonzero()[:, 0][:200]
    assert len(idx) >= 150
    attacked = MixedClassifier(g, MonteCarloSmoothed(base, sigma, num_samples=32, seed=0), alpha)
    checker = SmoothedClassifier(base, sigma, num_samples=4000, batch_size=4000, seed=7)
    bad = 0
    for i in idx.tolist():
        xa = PGD(attacked, 0.99 * float(r[i]), 2, steps=20, restarts=1, seed=i)(x[i:i + 1], pred[i:i + 1])
        h_adv = checker.sample(xa, indices=[i]).mean
        with torch.no_grad():
            g_adv = g(xa).softmax(-1).double()
        mix = (1 - alpha) * g_adv + alpha * h_adv
        bad += int(mix.argmax(1).item() != pred[i].item())
    assert bad == 0
