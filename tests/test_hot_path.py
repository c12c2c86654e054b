"""Mixers' forward does no data-dependent host synchronisation: it compiles as one graph and runs on noisy inputs."""

import pytest
import torch

from robustmix import Smoothing
from robustmix.certify import certify_mixture
from robustmix.errors import InputError
from robustmix.mixing import (AdaptiveMixedClassifier, MixedClassifier, NonlinearMap, NonlinearMixedClassifier,
                              default_mixing_net)
from robustmix.models import load


@pytest.fixture(scope="module")
def pair():
    return load("fmnist-std-cnn"), load("fmnist-at-linf-cnn")


def _mixers(g, h):
    return {"linear": MixedClassifier(g, h, 0.6),
            "nonlinear": NonlinearMixedClassifier(g, h, alpha=0.6,
                                                  logit_map=NonlinearMap(scale=2.0, power=1.5, bias=0.1)),
            "adaptive": AdaptiveMixedClassifier(g, h, default_mixing_net(g, h, torch.rand(1, 1, 28, 28)),
                                                feature_layers=None)}


@pytest.mark.parametrize("name", ["linear", "nonlinear", "adaptive"])
def test_mixer_compiles_as_one_graph(pair, name):
    torch._dynamo.reset()
    mixer = _mixers(*pair)[name].eval()
    x = torch.rand(4, 1, 28, 28)
    compiled = torch.compile(mixer, fullgraph=True, backend="eager")   # fullgraph: any graph break is an error
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), mixer(x))


def test_mixer_as_the_base_of_a_users_smoothing_loop(pair):
    mixer = MixedClassifier(*pair, 0.6)
    x = torch.rand(3, 1, 28, 28)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():   # Gaussian noise leaves [0, 1] by design; the mixer must take it
        votes = sum(torch.nn.functional.one_hot(mixer(x + 0.5 * torch.randn(x.shape, generator=gen)).argmax(1), 10)
                    for _ in range(20))
    assert votes.sum() == 60


def test_opt_in_input_check_still_refuses_bad_inputs(pair):
    with pytest.raises(InputError, match="values in"):
        MixedClassifier(*pair, 0.6, validate_inputs=True)(torch.rand(2, 1, 28, 28) * 255)


def test_certify_mixture_refuses_8_bit_images(pair):
    g, h = pair
    x = torch.randint(0, 256, (2, 1, 28, 28)).float()
    with pytest.raises(InputError, match="x / 255"):
        certify_mixture(g, h, x, alphas=[0.5], smoothing=Smoothing(sigma=0.5, num_samples=200))
