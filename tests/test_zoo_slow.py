"""Slow checks on the shipped zoo: card numbers reproduced, certificates sound. Run: pytest -m slow"""

import pytest
import torch

from robustmix import MixedClassifier, Smoothing, ThreatModel
from robustmix.attacks import PGD, AutoAttackSuite, PGDBudget, run_autoattack
from robustmix.certify import (MonteCarloSmoothed, SmoothedClassifier, lipschitz_radius, logit_ball_radius,
                               pairwise_logit_lipschitz, probability_lipschitz, smoothing_radius_from_bounds)
from robustmix.data import load_dataset
from robustmix.models import ZOO_NAMES, card, list_models, load
from robustmix.training import THREATS, accuracy, robust_accuracy, threat_tag

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
        tag = threat_tag(norm, eps)
        m = c.metrics[f"pgd20-{tag}"]
        n = m["n"]
        threat = ThreatModel(norm, eps)
        got = robust_accuracy(model, x[:n], y[:n], threat, pgd=PGDBudget(steps=20))
        assert got == pytest.approx(m["accuracy"], abs=0.005)
        aa = c.metrics.get(f"autoattack-{tag}")
        if aa:  # AutoAttack costs ~10 CPU-s per image: recheck the per-example outcomes of the first 40
            sub = 40
            res = run_autoattack(model, x[:sub], y[:sub], threat, suite=AutoAttackSuite(version="standard", seed=0),
                                 batch_size=sub)
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


def _autoattack_by_radius(model, x, labels, radii, norm, attacks, groups=4):
    """AutoAttack takes one eps: attack each radius quartile at 0.99 x its smallest radius."""
    x_adv = x.clone()
    for part in radii.argsort().chunk(groups):
        res = run_autoattack(model, x[part], labels[part], ThreatModel(norm, 0.99 * float(radii[part].min())),
                             suite=AutoAttackSuite(version="custom", attacks=attacks, seed=0), batch_size=len(part))
        x_adv[part] = res.x_adv.to(x_adv)
    return x_adv


def _assert_no_l2_flips(mixed, x, pred, r):
    """Up to 200 certified points (at least 50): PGD and AutoAttack (APGD-CE, APGD-T) inside r change nothing."""
    idx = (r > 0).nonzero()[:, 0][:200]
    assert len(idx) >= 50
    pred = pred[idx]
    assert _violations(mixed, x[idx], pred, r[idx], 2) == 0
    x_adv = _autoattack_by_radius(mixed, x[idx], pred, r[idx].float(), 2, ["apgd-ce", "apgd-t"])
    with torch.no_grad():
        assert torch.equal(mixed(x_adv).argmax(1), pred)


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
        _assert_no_l2_flips(mixed, x, probs.argmax(1), lipschitz_radius(probs, lip, alpha, labels=y[:600]))


def test_logit_ball_certificates_are_sound(test_set):
    """The logit-ball certificate of the shipped 1-Lipschitz h and its mixture: PGD and AutoAttack find no flips."""
    _require("fmnist-lipschitz")
    _require("fmnist-std-cnn")
    x, y = test_set
    g, h = load("fmnist-std-cnn"), load("fmnist-lipschitz")
    pairs = pairwise_logit_lipschitz(h, (1, 28, 28))
    with torch.no_grad():
        logits = h(x[:600]).double()
    for alpha in (0.7, 1.0):
        mixed = MixedClassifier(g, h, alpha)
        _assert_no_l2_flips(mixed, x, logits.argmax(1), logit_ball_radius(logits, pairs, alpha, labels=y[:600]))


def test_smoothing_certificates_are_sound(test_set):
    """Sound (Hoeffding, delta = 0.001) Theorem 2 certificates of the mixture survive PGD and AutoAttack."""
    _require("fmnist-noise-0.50-cnn")
    x, y = test_set
    g, base = load("fmnist-std-cnn"), load("fmnist-noise-0.50-cnn")
    sigma, alpha, n = 0.5, 0.8, 400
    est = SmoothedClassifier(base, sigma, num_samples=1000, batch_size=1000).sample(x[:n])
    lo, hi = est.bounds(0.001)
    pred = est.mean.argmax(1)
    r = smoothing_radius_from_bounds(lo.gather(1, pred[:, None])[:, 0], hi, pred, sigma, alpha, labels=y[:n])
    idx = (r > 0).nonzero()[:, 0][:200]
    assert len(idx) == 200
    xc, pc, rc = x[idx], pred[idx], r[idx].float()
    # PGD, 2 restarts, each point at its own radius, through fresh noise at every step (EOT)
    eot = MixedClassifier(g, MonteCarloSmoothed(base, sigma, num_samples=16, seed=0), alpha)
    pgd_adv = torch.cat([PGD(eot, 0.99 * float(rc[i]), 2, steps=20, restarts=2, seed=i)(xc[i:i + 1], pc[i:i + 1])
                         for i in range(len(idx))])
    # APGD-CE and APGD-DLR through a deterministic surrogate (common random numbers), by radius quartile
    crn = MixedClassifier(g, MonteCarloSmoothed(base, sigma, num_samples=16, seed=0, fixed_noise=True), alpha)
    aa_adv = _autoattack_by_radius(crn, xc, pc, rc, 2, ["apgd-ce", "apgd-dlr"])
    xa, labels = torch.cat([pgd_adv, aa_adv]), pc.repeat(2)
    assert ((xa - xc.repeat(2, 1, 1, 1)).flatten(1).norm(dim=1) <= 0.99 * rc.repeat(2) + 1e-4).all()
    # the verdict: the mixture at each adversarial point, with h estimated afresh (independent noise)
    h_adv = SmoothedClassifier(base, sigma, num_samples=2000, batch_size=2000, seed=7).sample(xa).mean
    with torch.no_grad():
        g_adv = g(xa).softmax(-1).double()
    mixed_pred = ((1 - alpha) * g_adv + alpha * h_adv).argmax(1)
    assert int((mixed_pred != labels).sum()) == 0


def _entropy_ascent(base, sigma, x, radius, steps=20, samples=16, seed=0):
    """l2 PGD inside each point's radius that raises h's mean entropy under noise (to switch the selector off)."""
    from robustmix.certify.selection import entropy

    gen = torch.Generator().manual_seed(seed)
    delta = torch.zeros_like(x)
    step = 2.5 * radius / steps
    for _ in range(steps):
        delta.requires_grad_(True)
        noise = torch.randn((samples, *x.shape), generator=gen) * sigma
        logits = base((x + delta)[None].add(noise).flatten(0, 1))
        loss = entropy(logits).sum()
        grad, = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            g = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            delta = delta + step.view(-1, 1, 1, 1) * g
            norm = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
            delta = delta * (radius / norm).clamp(max=1.0).view(-1, 1, 1, 1)
            delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


def test_selection_certificates_are_sound(test_set):
    """ACES certificates (entropy selector) on the zoo: 200 certified points attacked inside 0.95 x their radius,
    through h (PGD on an EOT surrogate of the smoothed h) and through the selector (raising h's entropy under
    noise); the composite, re-estimated with fresh noise, keeps the certified class at every one."""
    from robustmix.certify import certify_selection
    from robustmix.certify.selection import entropy

    _require("fmnist-noise-0.25-cnn")
    x, y = test_set
    g, base = load("fmnist-std-cnn"), load("fmnist-noise-0.25-cnn")
    sigma, threshold = 0.25, 0.5
    cert = certify_selection(g, base, x[:400], thresholds=[threshold],
                             smoothing=Smoothing(sigma=sigma, num_samples=1000, n0=50))
    idx = (cert.radius[0] > 0).nonzero()[:, 0][:200]
    assert len(idx) == 200
    xc, pc, rc = x[idx], cert.prediction[0][idx], 0.95 * cert.radius[0][idx].float()
    eot = MonteCarloSmoothed(base, sigma, num_samples=16, seed=0)
    via_h = torch.cat([PGD(eot, float(rc[i]), 2, steps=20, restarts=1, seed=i)(xc[i:i + 1], pc[i:i + 1])
                       for i in range(len(idx))])
    via_selector = _entropy_ascent(base, sigma, xc, rc)
    xa, labels = torch.cat([via_h, via_selector]), pc.repeat(2)
    assert ((xa - xc.repeat(2, 1, 1, 1)).flatten(1).norm(dim=1) <= rc.repeat(2) + 1e-4).all()
    # the verdict: the composite at each adversarial point, with fresh noise (2,000 samples)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        verdict = []
        for xi in xa:
            logits = base(xi[None] + sigma * torch.randn((2000, *xi.shape), generator=gen))
            use_h = (entropy(logits) <= threshold).double().mean() > 0.5
            verdict.append(int(logits.argmax(1).bincount(minlength=10).argmax()) if use_h else int(g(xi[None]).argmax()))
    assert int((torch.tensor(verdict) != labels).sum()) == 0
