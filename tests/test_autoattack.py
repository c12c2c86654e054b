import torch

from robustmix import MixedClassifier, ThreatModel
from robustmix.attacks import AutoAttackSuite, MaskingCheck, run_autoattack


def test_autoattack_on_the_mixture_surfaces_warnings(pair, caplog):
    g, h = pair

    class Softmaxed(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x).softmax(-1)

    x = torch.rand(24, 1, 3, 4)
    with torch.no_grad():
        y = MixedClassifier(g, h, 0.6)(x).argmax(1)
    threat = ThreatModel("inf", 0.05)
    res = run_autoattack(Softmaxed(g), x, y, threat, suite=AutoAttackSuite("custom", ["apgd-ce"]), batch_size=24)
    assert any("probability" in w for w in res.warnings)
    assert any("AutoAttack check" in r.message for r in caplog.records)
    mixed = MixedClassifier(g, h, 0.6)
    res = run_autoattack(mixed, x, y, threat, suite=AutoAttackSuite("custom", ["apgd-ce", "square"]), batch_size=24)
    assert res.robust.shape == (24,) and 0 <= res.robust_accuracy <= 1
    assert set(res.accuracy_by_attack) >= {"clean", "apgd-ce"}
    assert (res.x_adv - x).abs().max() <= 0.05 + 1e-6


def test_square_exposes_gradient_masking(pair):
    from robustmix.attacks import gradient_masking_check

    g, _ = pair

    class Rounded(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            xq = x + (torch.round(x * 2) / 2 - x).detach()  # straight-through: gradients of g at a rounded point
            return self.m(xq.detach()) + 0 * xq.sum()

    x = torch.rand(20, 1, 3, 4)
    with torch.no_grad():
        y = g(x).argmax(1)
    threat, check = ThreatModel("inf", 0.3), MaskingCheck(pgd_steps=20, square_queries=100)
    honest = gradient_masking_check(g, x, y, threat, check=check)
    assert not honest.masked
    masked = gradient_masking_check(Rounded(g), x, y, threat, check=check)
    assert masked.masked and masked.square_accuracy < masked.pgd_accuracy
