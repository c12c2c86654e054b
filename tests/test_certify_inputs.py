"""What the certify entry points refuse before any noise is drawn (inputs outside their range, broken models), the
clean prediction of the certified mixture, and the sequential rule's constants as the docstring states them."""

import re

import pytest
import torch

from robustmix import Smoothing
from robustmix.certify import Inputs, SmoothedClassifier, certify_mixture, certify_selection
from robustmix.certify import mixture as mixture_module
from robustmix.errors import ConfigError, InputError, ModelError


class Counting(torch.nn.Module):
    """A tiny image classifier that counts its forward passes (so a test can see that no noise was drawn)."""

    def __init__(self, nan: bool = False, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        self.nan, self.calls = nan, 0

    def forward(self, x):
        self.calls += 1
        out = self.net(x)
        return out * float("nan") if self.nan else out


def _images(n=3):
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(0))


SMALL = Smoothing(0.5, 50, 10)
ENTRY_POINTS = {   # ``input_range`` goes into Inputs for the certify functions, to the constructor for the classifier
    "certify_mixture": lambda h, x, **kw: certify_mixture(Counting(seed=1), h, x, alphas=[0.8, 1.0], smoothing=SMALL,
                                                          inputs=Inputs(**kw)),
    "certify_selection": lambda h, x, **kw: certify_selection(Counting(seed=1), h, x, thresholds=[0.5],
                                                              smoothing=SMALL, inputs=Inputs(**kw)),
    "SmoothedClassifier": lambda h, x, **kw: SmoothedClassifier(h, 0.5, num_samples=50, **kw).sample(x),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_inputs_outside_0_1_are_refused_in_one_line_with_the_fix(entry):
    h = Counting()
    with pytest.raises(InputError) as info:
        ENTRY_POINTS[entry](h, _images() * 255)          # floats up to 255, not whole numbers
    msg = str(info.value)
    assert "outside input_range=(0, 1)" in msg and "x / 255" in msg and "input_range=None" in msg
    assert "\n" not in msg and h.calls == 0
    with pytest.raises(InputError, match="outside input_range"):
        ENTRY_POINTS[entry](h, _images() - 0.5)
    with pytest.raises(InputError, match=r"x\.float\(\) / 255"):
        ENTRY_POINTS[entry](h, (_images() * 255).to(torch.uint8))
    assert h.calls == 0


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_input_range_none_takes_inputs_on_all_of_rd_and_a_range_can_be_given(entry):
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(1)) * 3
    ENTRY_POINTS[entry](Counting(), x, input_range=None)
    ENTRY_POINTS[entry](Counting(), x.clamp(-1, 1), input_range=(-1, 1))
    with pytest.raises(ConfigError, match=r"input_range must be \(low, high\)"):
        ENTRY_POINTS[entry](Counting(), _images(), input_range=(1, 0))
    with pytest.raises(ConfigError, match="input_range"):
        ENTRY_POINTS[entry](Counting(), _images(), input_range=0.5)


@pytest.mark.parametrize("entry", ["certify_mixture", "certify_selection"])
def test_a_model_with_nan_outputs_is_refused_before_any_noise(entry):
    h = Counting(nan=True)
    with pytest.raises(ModelError) as info:
        ENTRY_POINTS[entry](h, _images())
    assert "model h returns NaN" in str(info.value) and "\n" not in str(info.value)
    assert h.calls == 1                                  # the probe on the first inputs, nothing more
    with pytest.raises(ModelError, match="model g returns NaN"):
        certify_mixture(Counting(nan=True), Counting(), _images(), alphas=[1.0], smoothing=SMALL)


def test_clean_prediction_is_the_certified_mixtures_output():
    """Where the mixture certifies, its clean prediction is the certified class; elsewhere the hard-vote mixture's
    point estimate; at alpha = 0 that is g alone."""
    g, h = Counting(seed=1), Counting(seed=2)
    with torch.no_grad():
        h.net[1].weight.mul_(20)                          # a confident h, so that some inputs are certified
    x = torch.rand(40, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    cert = certify_mixture(g, h, x, alphas=[0.0, 0.8, 1.0], smoothing=Smoothing(0.1, 200, 20))
    certified = cert.prediction >= 0
    assert certified.any() and (~certified).any()
    assert torch.equal(cert.clean_prediction[certified], cert.prediction[certified])
    assert torch.equal(cert.clean_prediction[0], g(x).argmax(1))
    assert certify_mixture(None, h, x[:2], alphas=[1.0], smoothing=Smoothing(0.1, 50, 10)).clean_prediction is None


def test_the_docstring_states_the_sequential_rules_constants_of_the_code():
    doc = mixture_module.__doc__
    stated = dict(re.findall(r"\b((?:CS_)?[A-Z][A-Z_]+) = ([0-9.]+)", doc))
    for name in ("CS_FIRST_LOOK", "CS_GROWTH", "CS_FUTILITY", "CS_CAP_SHARE", "FIRST_LOOK", "OPTIMISM"):
        assert name in stated, f"the module docstring does not state {name}"
        assert float(stated[name]) == getattr(mixture_module, name), (name, stated[name])
    growth = round(100 * (mixture_module.CS_GROWTH - 1))
    assert f"every {growth}% more" in doc
