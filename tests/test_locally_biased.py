import math

import torch

from robustmix.mixing import FormulationMixture, KNNOracle, LocallyBiasedSmoothing


def test_knn_oracle_matches_brute_force():
    gen = torch.Generator().manual_seed(0)
    tx, ty = torch.rand(300, 1, 3, 3, generator=gen), torch.randint(0, 3, (300,), generator=gen)
    q = torch.rand(20, 1, 3, 3, generator=gen)
    oracle = KNNOracle(tx, ty, k=5, num_classes=3, chunk_size=64)
    votes = oracle(q)
    d = ((q.flatten(1)[:, None] - tx.flatten(1)[None]) ** 2).sum(-1)
    nn_idx = d.argsort(1)[:, :5]
    ref = torch.stack([torch.bincount(ty[i], minlength=3) for i in nn_idx]).float() / 5
    torch.testing.assert_close(votes, ref)


def test_binary_locally_biased_smoothing_closed_form():
    w, b = torch.tensor([1.0, -2.0, 0.5]), 0.1
    score = torch.nn.Linear(3, 1)
    with torch.no_grad():
        score.weight.copy_(w[None]); score.bias.fill_(b)
    tx = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    ty = torch.tensor([0, 1])
    oracle = KNNOracle(tx, ty, k=1)
    lbs = LocallyBiasedSmoothing(score, oracle, gamma=0.3, p=math.inf)
    x = torch.tensor([[0.1, 0.1, 0.1], [0.9, 0.8, 1.0]])
    direction = torch.tensor([-1.0, 1.0])
    expected = x @ w + b + 0.3 * direction * w.abs().sum()  # ||w||_1 is the dual of l_inf
    torch.testing.assert_close(lbs(x), expected)
    assert torch.equal(lbs.predict(x), (expected > 0).long())


def test_multiclass_extension_with_knn_oracle(pair):
    g, _ = pair
    gen = torch.Generator().manual_seed(1)
    tx, ty = torch.rand(50, 12, generator=gen), torch.randint(0, 4, (50,), generator=gen)
    oracle = KNNOracle(tx, ty, k=3, num_classes=4)
    fm = FormulationMixture(g, oracle, 0.5, formulation=1, trust="grad_std", space="logits", p=2)
    x = torch.rand(6, 12)
    norm = torch.linalg.vector_norm(g.lin.weight, ord=2, dim=1)
    torch.testing.assert_close(fm(x), g(x) + 0.5 * norm * oracle(x))
