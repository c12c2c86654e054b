import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


class Linear2Logits(torch.nn.Module):
    """Flatten + linear layer: logits with closed-form input gradients."""

    def __init__(self, d=12, c=4, seed=0, scale=1.0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.lin = torch.nn.Linear(d, c)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(c, d, generator=gen) * scale)
            self.lin.bias.copy_(torch.randn(c, generator=gen))
        self.num_classes = c

    def forward(self, x):
        return self.lin(x.flatten(1))


@pytest.fixture
def pair():
    return Linear2Logits(seed=0), Linear2Logits(seed=1)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models and many small tensor ops: a second thread only adds synchronisation (and stalls on a busy
    machine).  Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
