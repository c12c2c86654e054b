"""The logit-ball certificate: sound against attacks and brute force, never below Theorem 1."""

import copy
import math

import pytest
import torch
from deel import torchlip
from torch import nn

from robustmix.certify import (SOFTMAX_L2_FACTOR, lemma1_certified, lipschitz_radius, logit_ball_gap,
                               logit_ball_radius, network_lipschitz, pairwise_logit_lipschitz)
from robustmix.errors import ConfigError, InputError
from robustmix.mixing.functional import mix_log_probs

ALPHAS = torch.tensor([0.5, 0.6, 0.7, 0.8, 0.9, 1.0], dtype=torch.float64)


def _orthogonal(rows, cols, gen):
    q, _ = torch.linalg.qr(torch.randn(max(rows, cols), min(rows, cols), generator=gen, dtype=torch.float64))
    return q if rows >= cols else q.T


def _tiny_lipschitz_net(seed=0, d=8, hidden=16, c=4):
    """A 1-Lipschitz MLP (orthogonal dense layers, GroupSort2) in float64."""
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(d, hidden), torchlip.GroupSort2(), nn.Linear(hidden, c)).double()
    with torch.no_grad():
        net[0].weight.copy_(_orthogonal(hidden, d, gen))
        net[2].weight.copy_(_orthogonal(c, hidden, gen))
        net[0].bias.normal_(0, 0.1, generator=gen)
        net[2].bias.zero_()
    return net


def _sensitive_g(seed=1, d=8, c=4):
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(d, 32), nn.ReLU(), nn.Linear(32, c)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 3.0, generator=gen)
    return net


def _pgd_flip(g, h, alpha, x, label, radius, steps=40, restarts=5, seed=0):
    """l2 PGD on the mixture's margin, each point in its own ball; True where some restart changes the argmax."""
    gen = torch.Generator().manual_seed(seed)
    flipped = torch.zeros(len(x), dtype=torch.bool)
    radius = radius[:, None]
    onehot = torch.nn.functional.one_hot(label, 4).bool()
    for _ in range(restarts):
        delta = torch.randn(x.shape, generator=gen, dtype=x.dtype)
        delta = delta / delta.norm(dim=1, keepdim=True) * radius * torch.rand(len(x), 1, generator=gen, dtype=x.dtype)
        for _ in range(steps):
            delta.requires_grad_(True)
            out = mix_log_probs(g(x + delta), h(x + delta), alpha)
            loss = (out.masked_fill(onehot, -math.inf).amax(1) - out[onehot]).sum()
            grad, = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                delta = delta + 0.1 * radius * grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-30)
                delta = delta * (radius / delta.norm(dim=1, keepdim=True).clamp_min(1e-30)).clamp(max=1.0)
        with torch.no_grad():
            flipped |= mix_log_probs(g(x + delta), h(x + delta), alpha).argmax(1) != label
    return flipped


@pytest.mark.parametrize("alpha", [0.6, 0.8, 1.0])
def test_certified_points_survive_pgd_on_the_mixture(alpha):
    torch.manual_seed(0)
    h, g = _tiny_lipschitz_net(), _sensitive_g()
    x = torch.randn(300, 8, dtype=torch.float64) * 2
    pairs = pairwise_logit_lipschitz(h, (8,))
    with torch.no_grad():
        z = h(x)
    r = logit_ball_radius(z, pairs, alpha)
    idx = (r > 0).nonzero()[:, 0][:120]
    assert len(idx) >= 60
    label = z.argmax(1)[idx]
    assert not _pgd_flip(g, h, alpha, x[idx], label, r[idx]).any()
    # the same attack does find flips at three times the radius, so it is not toothless
    assert _pgd_flip(g, h, alpha, x[idx], label, 3 * r[idx] + 0.5).sum() >= 5


def test_gap_bound_holds_against_brute_force_in_the_logit_ball():
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(40, 5, generator=gen, dtype=torch.float64) * 2
    y = z.argmax(1)
    for rho in (0.1, 0.5, 1.5):
        bound = logit_ball_gap(z, 1.0, rho)                               # L = 1: logits move by at most rho
        # random points on the sphere, plus the pairwise worst directions
        d = torch.randn(4000, 40, 5, generator=gen, dtype=torch.float64)
        d = d / d.norm(dim=-1, keepdim=True) * rho
        e = torch.eye(5, dtype=torch.float64)
        pair = (e[None, :, :] - e[y][:, None, :]) / math.sqrt(2) * rho    # (40, 5, 5): z_i up, z_y down
        d = torch.cat([d, pair.permute(1, 0, 2)])
        # and gradient descent on the gap itself
        dg = (torch.randn(40, 5, generator=gen, dtype=torch.float64) * 0.01).requires_grad_(True)
        for _ in range(200):
            p = torch.softmax(z + dg, 1)
            gap = p.gather(1, y[:, None])[:, 0] - p.scatter(1, y[:, None], -1.0).amax(1)
            grad, = torch.autograd.grad(gap.sum(), dg)
            with torch.no_grad():
                dg -= 0.05 * grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-30)
                dg *= (rho / dg.norm(dim=1, keepdim=True)).clamp(max=1.0)
        d = torch.cat([d, dg.detach()[None]])
        p = torch.softmax(z[None] + d, -1)
        top = p.gather(-1, y[None, :, None].expand(len(d), -1, 1))[..., 0]
        other = p.scatter(-1, y[None, :, None].expand(len(d), -1, 1), -1.0).amax(-1)
        worst = (top - other).amin(0)
        assert (worst >= bound - 1e-12).all()


def test_gap_bound_is_exact_for_two_classes():
    z = torch.tensor([[2.0, -1.0], [0.3, 0.1]], dtype=torch.float64)
    rho = 0.7
    moved = z + torch.tensor([-1.0, 1.0], dtype=torch.float64) * rho / math.sqrt(2)
    p = torch.softmax(moved, 1)
    torch.testing.assert_close(logit_ball_gap(z, 1.0, rho), p[:, 0] - p[:, 1])


def test_radius_never_below_theorem1_and_matches_the_margin_at_alpha_one():
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(1000, 10, generator=gen, dtype=torch.float64) * 3
    for lip in (0.5, 1.0, 4.0):
        new = logit_ball_radius(z, lip, ALPHAS)
        old = lipschitz_radius(torch.softmax(z, 1), SOFTMAX_L2_FACTOR * lip, ALPHAS)
        assert (new >= old - 1e-9).all()
        assert (new[1:-1] > 1.2 * old[1:-1]).double().mean() > 0.5          # and usually well above it
        top2 = z.topk(2, 1).values
        torch.testing.assert_close(new[-1], (top2[:, 0] - top2[:, 1]) / (math.sqrt(2) * lip), rtol=1e-12, atol=0)
        assert (new[0] == 0).all()                                          # alpha = 1/2 needs h_y - h_i >= 1
    both = logit_ball_radius(z, 1.0, ALPHAS, theorem1=True)
    torch.testing.assert_close(both, logit_ball_radius(z, 1.0, ALPHAS))


def test_radius_and_gap_agree_through_lemma1():
    gen = torch.Generator().manual_seed(7)
    z = torch.randn(200, 6, generator=gen, dtype=torch.float64) * 3
    pairs = torch.rand(6, 6, generator=gen, dtype=torch.float64) + 0.5
    r = logit_ball_radius(z, pairs, ALPHAS)                                  # (k, n)
    grid = torch.linspace(0, 3, 61, dtype=torch.float64)
    cert = lemma1_certified(logit_ball_gap(z, pairs, grid), ALPHAS)         # (k, m, n)
    inside = grid[None, :, None] <= r[:, None, :] * (1 - 1e-9)
    outside = grid[None, :, None] > r[:, None, :] * (1 + 1e-9) + 1e-12
    certified_somewhere = (r > 0)[:, None, :]
    assert (cert | ~inside | ~certified_somewhere).all()
    assert not (cert & outside).any()


def test_pairwise_bounds_hold_and_refine_the_vector_bound():
    h = _tiny_lipschitz_net(seed=2)
    pairs = pairwise_logit_lipschitz(h, (8,))
    whole = math.sqrt(2) * network_lipschitz(h, (8,))
    assert (pairs <= whole + 1e-12).all() and (pairs.diagonal() == 0).all()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 8, generator=gen, dtype=torch.float64)
    x2 = x + torch.randn(2000, 8, generator=gen, dtype=torch.float64) * 0.3
    with torch.no_grad():
        dz = h(x2) - h(x)
    diff = (dz[:, :, None] - dz[:, None, :]).abs()                          # |change of z_j - z_k|
    assert (diff <= pairs[None] * (x2 - x).norm(dim=1)[:, None, None] + 1e-12).all()
    scaled = copy.deepcopy(h)
    with torch.no_grad():
        scaled[2].weight[0] *= 0.25                                          # rows no longer orthonormal
    assert pairwise_logit_lipschitz(scaled, (8,))[1, 2] < pairs[1, 2] + 1e-12
    assert pairwise_logit_lipschitz(scaled, (8,))[0, 1] < whole * (1 - 1e-3)


def test_zero_where_uncertified_and_bad_input_is_refused():
    z = torch.tensor([[3.0, 0.0, 0.0], [0.1, 0.0, 0.0]], dtype=torch.float64)
    r = logit_ball_radius(z, 1.0, [0.4, 0.8, 1.0], labels=torch.tensor([0, 1]))
    assert (r[0] == 0).all() and (r[1:, 1] == 0).all() and (r[1:, 0] > 0).all()
    assert logit_ball_radius(z, 1.0, 0.9).shape == (2,)
    with pytest.raises(InputError, match="logits"):
        logit_ball_radius(torch.zeros(3), 1.0, 0.9)
    with pytest.raises(InputError, match="finite"):
        logit_ball_gap(torch.full((1, 3), math.nan), 1.0, 0.1)
    with pytest.raises(ConfigError, match="Lipschitz"):
        logit_ball_radius(z, -1.0, 0.9)
    with pytest.raises(ConfigError, match="Lipschitz"):
        logit_ball_radius(z, torch.ones(2, 2), 0.9)
    with pytest.raises(ConfigError, match="radius"):
        logit_ball_gap(z, 1.0, -0.1)
    with pytest.raises(ConfigError):
        logit_ball_radius(z, 1.0, 1.5)
