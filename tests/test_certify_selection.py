"""certify_selection (ACES): exact coverage on a toy with closed-form smoothed probabilities, no flips inside
certified radii, the composite's clean output, and bad input refused before any sampling."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

from robustmix import Smoothing
from robustmix.certify import ABSTAIN, Inputs, certify_selection
from robustmix.certify.selection import entropy
from robustmix.errors import ConfigError, InputError, ModelError

from .test_certify_bounds import Linear, _max_violations


pytestmark = pytest.mark.usefixtures("one_thread")


def _select_probability(h, margin, sigma, threshold):
    """P(entropy of softmax(h(x + xi)) <= threshold) in closed form: the logit gap s = scale * margin is normal,
    and the entropy of (0, s) is at most the threshold exactly where |s| >= s_t."""
    def excess(s):
        return float(entropy(torch.tensor([[0.0, s]]))) - threshold
    s_t = 0.0 if threshold >= math.log(2) else brentq(excess, 0.0, 60.0)
    a, sd = s_t / h.scale, sigma * float(h.w.norm())
    return torch.special.ndtr((margin - a) / sd) + torch.special.ndtr((-margin - a) / sd)


THRESHOLDS = [0.1, 0.3, 0.5]
TOY = dict(inputs=Inputs(input_range=None))     # the toys' inputs are Gaussian, on all of R^d (not images in [0, 1])


def test_all_bounds_hold_together_at_the_stated_rate():
    """1,500 inputs at delta = 0.2: H's bound and the k selector bounds fail together at most delta of the time."""
    h = Linear([0.8, -0.6], b=0.1)
    torch.manual_seed(1)
    g = torch.nn.Linear(2, 2)
    x = torch.randn(1500, 2, generator=torch.Generator().manual_seed(2)) * 0.8
    sigma, delta = 0.4, 0.2
    cert = certify_selection(g, h, x, thresholds=THRESHOLDS, smoothing=Smoothing(sigma, 800, 30, delta), **TOY)
    m = h.margin(x)
    p1 = h.smoothed(m, sigma, "hard")
    p_top = torch.where(cert.top_class == 1, p1, 1 - p1)
    q = torch.stack([_select_probability(h, m, sigma, t) for t in THRESHOLDS])
    failed = (cert.p_lower > p_top) | (cert.select_lower > q).any(0)
    assert int(failed.sum()) <= _max_violations(delta, len(x))
    # and the bounds are not vacuous: most confident inputs are certified at the loosest threshold
    assert (cert.radius[-1] > 0).double().mean() > 0.5


def test_no_flips_inside_certified_radii_exact_worst_case():
    """Both smoothed probabilities depend on x through the margin only and fall as it nears 0: the worst point
    of the ball moves the margin by r |w| toward 0; there H keeps c_A and the selector keeps sending x to h."""
    h = Linear([0.8, -0.6], b=0.1)
    torch.manual_seed(3)
    g = torch.nn.Linear(2, 2)
    x = torch.randn(400, 2, generator=torch.Generator().manual_seed(4)) * 0.8
    sigma = 0.4
    cert = certify_selection(g, h, x, thresholds=THRESHOLDS, smoothing=Smoothing(sigma, 3000, delta=1e-4), **TOY)
    assert (cert.radius > 0).sum() > 300
    m = h.margin(x)
    sign = torch.where(cert.top_class == 1, 1.0, -1.0).double()
    for j, t in enumerate(THRESHOLDS):
        ok = cert.radius[j] > 0
        worst = m - sign * cert.radius[j] * float(h.w.norm())
        p1 = h.smoothed(worst, sigma, "hard")
        p_top = torch.where(cert.top_class == 1, p1, 1 - p1)
        assert (p_top > 0.5)[ok].all()
        assert (_select_probability(h, worst, sigma, t) > 0.5)[ok].all()
        assert (cert.prediction[j][ok] == cert.top_class[ok]).all()
        assert (cert.prediction[j][~ok] == ABSTAIN).all()


class Constant(torch.nn.Module):
    def __init__(self, value, shape=(1,)):
        super().__init__()
        self.value, self.shape = value, shape

    def forward(self, x):
        return torch.full((len(x), *self.shape[1:]) if len(self.shape) > 1 else (len(x),), self.value)


def test_a_selector_module_decides_who_answers():
    h = Linear([0.8, -0.6], b=0.1)
    torch.manual_seed(5)
    g = torch.nn.Linear(2, 2)
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(6))
    always = certify_selection(g, h, x, thresholds=[0.5], smoothing=Smoothing(0.4, 500), selector=Constant(1.0),
                               **TOY)
    never = certify_selection(g, h, x, thresholds=[0.5], smoothing=Smoothing(0.4, 500),
                              selector=Constant(0.0, (1, 1)), **TOY)
    assert always.selected.all() and not never.selected.any()
    assert (never.radius == 0).all() and torch.equal(never.clean_prediction[0], g(x).argmax(1))
    # always h: the composite is Cohen's H, certified at H's own radius capped by the selector's (all votes)
    ok = always.p_lower > 0.5
    assert torch.equal(always.prediction[0][ok], always.top_class[ok])
    q = always.select_lower[0]
    assert torch.allclose(q, torch.full_like(q, (1e-3 / 2) ** (1 / 500)), rtol=1e-6)


def test_results_do_not_depend_on_the_batch_size():
    h = Linear([0.8, -0.6], b=0.1)
    g = torch.nn.Linear(2, 2)
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(7))
    a = certify_selection(g, h, x, thresholds=THRESHOLDS, smoothing=Smoothing(0.4, 700, 20, batch_size=1000), **TOY)
    b = certify_selection(g, h, x, thresholds=THRESHOLDS, smoothing=Smoothing(0.4, 700, 20, batch_size=33), **TOY)
    assert torch.equal(a.radius, b.radius) and torch.equal(a.clean_prediction, b.clean_prediction)


class Counting(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(thresholds=[]), ConfigError, "empty"),
    (dict(thresholds=[0.2, 0.8]), ConfigError, "outside the entropy selector's range [0, 0.6931]"),
    (dict(thresholds=[-0.1]), ConfigError, "outside"),
    (dict(thresholds=["x"]), ConfigError, "numbers"),
    (dict(selector=lambda z: z[:, 0]), ConfigError, "torch.nn.Module"),
    (dict(selector="margin"), ConfigError, "unknown selector"),
    (dict(selector=Constant(0.5, (1, 2))), ModelError, "one value per input"),
    (dict(selector=Constant(3.0)), ModelError, "[0, 1]"),
    (dict(selector=Constant(0.5), thresholds=[1.5]), ConfigError, "range [0, 1]"),
    (dict(smoothing=dict(sigma=0.0)), ConfigError, "sigma"),
    (dict(smoothing=dict(sigma=-1.0)), ConfigError, "sigma"),
    (dict(smoothing=dict(sigma=None)), ConfigError, "needs a noise level"),
    (dict(smoothing=dict(num_samples=50, n0=100)), ConfigError, "num_samples must be an integer >= n0"),
    (dict(smoothing=dict(delta=1.5)), ConfigError, "delta"),
    (dict(inputs=dict(indices=[0, 1])), InputError, "indices"),
])
def test_bad_input_is_refused_in_one_line_before_any_sampling(kwargs, error, words):
    h = Counting(Linear([0.8, -0.6]))
    g = torch.nn.Linear(2, 2)
    x = torch.randn(4, 2)
    smoothing = {**dict(sigma=0.4, num_samples=200, n0=20), **kwargs.pop("smoothing", {})}
    inputs = {**dict(input_range=None), **kwargs.pop("inputs", {})}
    with pytest.raises(error) as info:
        certify_selection(g, h, x, **{"thresholds": [0.3], **kwargs}, smoothing=Smoothing(**smoothing),
                          inputs=Inputs(**inputs))
    assert words in str(info.value) and "\n" not in str(info.value)
    assert h.calls <= 2          # at most the probes on a few clean inputs: no noise was drawn


def test_models_of_different_tasks_are_refused():
    h = Linear([0.8, -0.6])
    g = torch.nn.Linear(2, 3)
    with pytest.raises(ModelError, match="classes"):
        certify_selection(g, h, torch.randn(4, 2), thresholds=[0.3], smoothing=Smoothing(0.4, 200, 20), **TOY)


def test_selector_probability_reference_is_right():
    """The closed form used above, against plain Monte Carlo."""
    h = Linear([0.8, -0.6], b=0.1)
    rng = np.random.default_rng(0)
    x = torch.tensor([[0.3, 0.1]])
    noise = torch.from_numpy(rng.standard_normal((200_000, 2))).float() * 0.4
    mc = float((entropy(h(x + noise)) <= 0.3).double().mean())
    exact = float(_select_probability(h, h.margin(x), 0.4, 0.3)[0])
    assert abs(mc - exact) < 4 * math.sqrt(exact * (1 - exact) / 200_000)
