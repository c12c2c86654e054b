"""Model factories that a careless user might pass (used as module:function specs by the tests)."""

import torch
from torch import nn


class _Flat(nn.Module):
    def __init__(self, tail=None):
        super().__init__()
        self.lin = nn.Linear(28 * 28, 10)
        self.tail = tail

    def forward(self, x):
        z = self.lin(x.flatten(1))
        return z if self.tail is None else self.tail(z)


def nan_outputs():
    m = _Flat()
    with torch.no_grad():
        m.lin.bias.fill_(float("nan"))
    return m


def probabilities():
    return _Flat(lambda z: torch.softmax(z, 1))


def log_probabilities():
    return _Flat(lambda z: torch.log_softmax(z, 1))


def float64_weights():
    return _Flat().double()
