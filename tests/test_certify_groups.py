"""The certify functions take option groups (Smoothing, Sequential, Inputs); the keywords they used to take still
work for one release, with a DeprecationWarning and bit-identical results; a group mixed with its own old keywords,
or a keyword no version took, is a TypeError; each group checks its values once."""

import ast
import dataclasses
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from robustmix import Smoothing
from robustmix.certify import Inputs, Sequential, certify_mixture, certify_selection
from robustmix.certify.mixture import CS_FIRST_LOOK, FIRST_LOOK, Estimator, estimate_top_bound
from robustmix.certify.selection import check_selector, selection_counts, selection_from_counts
from robustmix.certify.smoothing import NoiseSamples, smoothing_pass
from robustmix.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

CERTIFY = Path(__file__).resolve().parent.parent / "src" / "robustmix" / "certify"


def _tiny():
    torch.manual_seed(0)
    h = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    g = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    return g, h, torch.rand(6, 1, 2, 2) * 2


def _same(a, b):
    """Equal certificates (to_dict), tuples of tensors or arrays: every value and type, bit for bit."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return type(a) is type(b) and a == b


def _deprecated(call):
    """call()'s result, asserting that it warned DeprecationWarning from this file (the caller's line)."""
    with pytest.warns(DeprecationWarning, match="deprecated") as record:
        out = call()
    assert all(w.filename == __file__ for w in record if issubclass(w.category, DeprecationWarning)), \
        [w.filename for w in record]
    return out


# --- the old keywords: a DeprecationWarning and the same result -----------------------------------------------

MIXTURE_CASES = {
    "fixed": (dict(sigma=0.3, num_samples=700, n0=30, delta=0.01, batch_size=77, seed=3, indices=[5, 1, 2, 9, 4, 7],
                   input_range=None),
              dict(smoothing=Smoothing(0.3, 700, 30, 0.01, 77), inputs=Inputs([5, 1, 2, 9, 4, 7], 3, None))),
    "betting": (dict(sigma=0.3, num_samples=600, n0=30, estimator="betting", input_range=None),
                dict(smoothing=Smoothing(0.3, 600, 30), estimator="betting", inputs=Inputs(input_range=None))),
    "sequential": (dict(sigma=0.3, num_samples=1500, n0=30, sequential=True, radii=[0.5, 0.25], input_range=None),
                   dict(smoothing=Smoothing(0.3, 1500, 30), sequential=Sequential(radii=[0.25, 0.5]),
                        inputs=Inputs(input_range=None))),
    "doubling-looks": (dict(sigma=0.3, num_samples=1500, n0=30, estimator="bernstein", sequential=True, tolerance=0.05,
                            sequential_rule="doubling-looks", input_range=None),
                       dict(smoothing=Smoothing(0.3, 1500, 30), estimator="bernstein", inputs=Inputs(input_range=None),
                            sequential=Sequential("doubling-looks", 0.05))),
    "sequential=False": (dict(sigma=0.3, num_samples=500, n0=20, sequential=False, tolerance=0.2, input_range=None),
                         dict(smoothing=Smoothing(0.3, 500, 20), inputs=Inputs(input_range=None))),
}


@pytest.mark.parametrize("case", sorted(MIXTURE_CASES))
def test_certify_mixture_old_keywords_warn_and_give_the_same_certificate(case):
    g, h, x = _tiny()
    old, new = MIXTURE_CASES[case]
    alphas = [0.4, 0.8, 1.0]
    before = _deprecated(lambda: certify_mixture(g, h, x, alphas=alphas, **old))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        after = certify_mixture(g, h, x, alphas=alphas, **new)
    assert _same(before.to_dict(), after.to_dict())
    assert after.sequential == ("sequential" in new)


def test_certify_selection_old_keywords_warn_and_give_the_same_certificate():
    g, h, x = _tiny()
    old = dict(sigma=0.3, num_samples=500, n0=20, delta=0.01, seed=2, indices=[3, 4, 5, 6, 7, 8], batch_size=50,
               input_range=None)
    before = _deprecated(lambda: certify_selection(g, h, x, thresholds=[0.3, 0.6], **old))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        after = certify_selection(g, h, x, thresholds=[0.3, 0.6], smoothing=Smoothing(0.3, 500, 20, 0.01, 50),
                                  inputs=Inputs([3, 4, 5, 6, 7, 8], seed=2, input_range=None))
    assert _same(before.to_dict(), after.to_dict())


def _votes(n_samples=3000):
    rng = np.random.default_rng(3)
    p = np.repeat([1.0, 0.98, 0.9, 0.75, 0.4], 10)
    cum = np.cumsum(rng.random((len(p), n_samples)) < p[:, None], 1)

    def draw(active, start, stop):
        return cum[active, stop - 1] - (cum[active, start - 1] if start else 0), None

    return draw, torch.zeros(len(p), dtype=torch.long)


@pytest.mark.parametrize("old, group", [
    (dict(sequential=False), None),
    (dict(sequential=True, radii=[0.25, 0.5], rule="doubling-looks"), Sequential("doubling-looks", 0.1, (0.25, 0.5))),
    (dict(sequential=True, tolerance=math.inf, radii=[0.5], first_look=8, growth=1.25, futility=0.2),
     Sequential(tolerance=math.inf, radii=[0.5], first_look=8, growth=1.25, futility=0.2)),
    (dict(sequential=True, rule="doubling-looks", first_look=100, optimism=0.5),
     Sequential("doubling-looks", 0.1, first_look=100, optimism=0.5)),
])
def test_estimate_top_bound_old_keywords_warn_and_give_the_same_bounds(old, group):
    """The replay of the benchmarks (bench_sequential.py): tolerance's old default there was 0.1."""
    draw, top = _votes()
    alphas = torch.tensor([0.8, 1.0], dtype=torch.float64)
    before = _deprecated(lambda: estimate_top_bound(draw, top, Estimator.CLOPPER_PEARSON, sigma=0.5, c=3,
                                                    num_samples=3000, alphas=alphas, delta=0.001, **old))
    after = estimate_top_bound(draw, top, Estimator.CLOPPER_PEARSON, smoothing=Smoothing(0.5, 3000, delta=0.001),
                               alphas=alphas, c=3, sequential=group)
    assert _same(before, after)


def test_sampling_helpers_old_keywords_warn_and_give_the_same_counts():
    """smoothing_pass, selection_counts (sigma positional, as experiments/certified_front.py calls it) and
    selection_from_counts."""
    g, h, x = _tiny()
    track = torch.tensor([0, 1, 2, 0, 1, 2])
    before = _deprecated(lambda: smoothing_pass(h, x, 0.3, seed=1, indices=list(range(6)), stream=2, start=10,
                                                stop=1300, batch_size=99, track=track))
    after = smoothing_pass(h, x, 0.3, NoiseSamples(1, range(6), 2, 10, 1300), batch_size=99, track=track)
    assert _same(before, after)
    selector, thr, _ = check_selector("entropy", [0.3, 0.6], x, 3)
    counts = _deprecated(lambda: selection_counts(h, x, 0.3, selector, thr, num_samples=400, n0=20, seed=1,
                                                  indices=list(range(6)), batch_size=64))
    smoothing = Smoothing(0.3, 400, 20, 0.01, batch_size=64)
    assert _same(counts, selection_counts(h, x, smoothing, selector, thr, seed=1, indices=list(range(6))))
    before = _deprecated(lambda: selection_from_counts(*counts, g(x).argmax(1), thr, sigma=0.3, delta=0.01, n0=20,
                                                       num_samples=400, selector="entropy"))
    after = selection_from_counts(*counts, g(x).argmax(1), thr, smoothing=smoothing, selector="entropy")
    assert _same(before.to_dict(), after.to_dict())


# --- TypeError: a group with its own old keywords, or keywords no version took --------------------------------

@pytest.mark.parametrize("kwargs", [
    dict(smoothing=Smoothing(0.3, 200, 10), sigma=0.3),
    dict(smoothing=Smoothing(0.3, 200, 10), num_samples=300),
    dict(inputs=Inputs(input_range=None), seed=1),
    dict(inputs=Inputs(input_range=None), input_range=None),
    dict(sequential=Sequential(tolerance=0.2), tolerance=0.2),
    dict(sequential=Sequential(), sequential_rule="doubling-looks"),
    dict(sigmaa=0.3),
    dict(smoothing=Smoothing(0.3, 200, 10), rule="doubling-looks"),   # estimate_top_bound's keyword, not this one's
])
def test_certify_mixture_refuses_mixed_or_unknown_keywords(kwargs):
    g, h, x = _tiny()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(TypeError, match="certify_mixture()"):
            certify_mixture(g, h, x, alphas=[1.0], **kwargs)


@pytest.mark.parametrize("kwargs", [
    dict(smoothing=Smoothing(0.3, 200, 10), delta=0.01),
    dict(inputs=Inputs(input_range=None), indices=[0, 1, 2, 3, 4, 5]),
    dict(smoothing=Smoothing(0.3, 200, 10), sequential=True),   # certify_selection never sampled sequentially
])
def test_certify_selection_refuses_mixed_or_unknown_keywords(kwargs):
    g, h, x = _tiny()
    with pytest.raises(TypeError, match="certify_selection()"):
        certify_selection(g, h, x, thresholds=[0.5], **kwargs)


def test_helpers_refuse_mixed_or_unknown_keywords():
    g, h, x = _tiny()
    draw, top = _votes()
    alphas = torch.tensor([1.0], dtype=torch.float64)
    with pytest.raises(TypeError, match="estimate_top_bound"):
        estimate_top_bound(draw, top, Estimator.CLOPPER_PEARSON, smoothing=Smoothing(0.5, 3000), alphas=alphas, c=3,
                           delta=0.01)
    with pytest.raises(TypeError, match="estimate_top_bound"):
        estimate_top_bound(draw, top, Estimator.CLOPPER_PEARSON, smoothing=Smoothing(0.5, 3000), alphas=alphas, c=3,
                           sequential=Sequential(), radii=[0.5])
    with pytest.raises(TypeError, match="smoothing_pass"):
        smoothing_pass(h, x, 0.3, NoiseSamples(0, range(6), 0, 0, 10), batch_size=10, seed=0)
    with pytest.raises(TypeError, match="smoothing_pass"):
        smoothing_pass(h, x, 0.3, NoiseSamples(0, range(6), 0, 0, 10), batch_size=10, seeds=0)
    selector, thr, _ = check_selector("entropy", [0.5], x, 3)
    with pytest.raises(TypeError, match="selection_counts"):
        selection_counts(h, x, Smoothing(0.3, 100, 10), selector, thr, num_samples=100)
    with pytest.raises(TypeError, match="selection_from_counts"):
        selection_from_counts(torch.ones(6, 3), torch.ones(6, 3), torch.ones(6, 1), torch.zeros(6), thr,
                              smoothing=Smoothing(0.3, 100, 10), selector="entropy", n0=10)


# --- each group checks its values once ---------------------------------------------------------------------------

@pytest.mark.parametrize("entry", ["certify_mixture", "certify_selection"])
@pytest.mark.parametrize("bad", [dict(sigma=0.0), dict(sigma=-1.0), dict(sigma=math.nan), dict(delta=0.0),
                                 dict(delta=1.5)])
def test_a_bad_sigma_or_delta_raises_one_config_error_from_smoothing(entry, bad):
    """Old keywords or the group: the same single ConfigError, raised by Smoothing itself (not re-checked)."""
    g, h, x = _tiny()
    with pytest.raises(ConfigError) as direct:
        Smoothing(**{"sigma": 0.3, **bad})
    call = (lambda **kw: certify_mixture(g, h, x, alphas=[1.0], **kw)) if entry == "certify_mixture" else \
        (lambda **kw: certify_selection(g, h, x, thresholds=[0.5], **kw))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(ConfigError) as old:
            call(**{"sigma": 0.3, **bad}, input_range=None)
    assert str(old.value) == str(direct.value) and "\n" not in str(old.value)
    assert old.traceback[-1].path.name == "groups.py"                        # raised in Smoothing.__post_init__
    assert old.value.__cause__ is None and old.value.__context__ is None     # one error, not a re-raised one


def test_a_missing_sigma_is_refused_by_smoothing():
    g, h, x = _tiny()
    for call in (lambda: certify_mixture(g, h, x, alphas=[1.0], inputs=Inputs(input_range=None)),
                 lambda: certify_mixture(g, h, x, alphas=[1.0], smoothing=Smoothing(), inputs=Inputs(input_range=None)),
                 lambda: certify_selection(g, h, x, thresholds=[0.5], inputs=Inputs(input_range=None))):
        with pytest.raises(ConfigError, match=r"give Smoothing\(sigma=\.\.\.\)"):
            call()


def test_groups_must_be_groups():
    g, h, x = _tiny()
    with pytest.raises(ConfigError, match=r"smoothing must be Smoothing\(\.\.\.\)"):
        certify_mixture(g, h, x, alphas=[1.0], smoothing={"sigma": 0.3})
    with pytest.raises(ConfigError, match=r"sequential must be Sequential\(\.\.\.\) or None"):
        certify_mixture(g, h, x, alphas=[1.0], smoothing=Smoothing(0.3), sequential="confidence-sequence")
    with pytest.raises(ConfigError, match=r"inputs must be Inputs\(\.\.\.\)"):
        certify_selection(g, h, x, thresholds=[0.5], smoothing=Smoothing(0.3), inputs=(0.0, 1.0))


def test_sequential_resolves_its_defaults_once_and_is_a_value():
    assert Sequential().tolerance == 0.1 and Sequential().first_look == CS_FIRST_LOOK
    assert Sequential(None).rule == "confidence-sequence"
    assert Sequential("doubling-looks").first_look == FIRST_LOOK
    s = Sequential(radii=[1.0, 0.25, 0.5])
    assert s.radii == (0.25, 0.5, 1.0) and s.tolerance == math.inf
    assert s == Sequential(radii=(0.25, 0.5, 1.0)) and hash(s) == hash(Sequential(radii=[0.25, 0.5, 1.0]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.tolerance = 0.2
    with pytest.raises(ConfigError, match="give radii"):
        Sequential(tolerance=math.inf)


def test_old_sequential_keywords_without_the_flag_are_checked_as_before():
    """sequential=False (or no flag) with radii was refused, a bad tolerance too; the rule was ignored."""
    g, h, x = _tiny()
    opts = dict(alphas=[1.0], smoothing=Smoothing(0.3, 200, 10), inputs=Inputs(input_range=None))
    with pytest.warns(DeprecationWarning):
        with pytest.raises(ConfigError, match=r"sequential=Sequential\(radii=\.\.\.\)"):
            certify_mixture(g, h, x, radii=[0.5], **opts)
    with pytest.warns(DeprecationWarning):
        with pytest.raises(ConfigError, match="tolerance"):
            certify_mixture(g, h, x, sequential=False, tolerance=-1.0, **opts)
    with pytest.warns(DeprecationWarning):
        cert = certify_mixture(g, h, x, sequential_rule="doubling-looks", **opts)
    assert not cert.sequential and cert.sequential_rule is None


def test_inputs_normalise_indices_seed_and_range():
    inputs = Inputs(torch.tensor([4, 2, 9]), np.int64(7), (0, 1))
    assert inputs.indices == (4, 2, 9) and inputs.seed == 7 and inputs.input_range == (0.0, 1.0)
    assert inputs.dataset_indices(3) == [4, 2, 9] and Inputs().dataset_indices(2) == [0, 1]
    with pytest.raises(ConfigError, match="seed"):
        Inputs(seed=True)
    with pytest.raises(ConfigError, match="input_range"):
        Inputs(input_range=(1, 0))
    with pytest.raises(ConfigError, match="no samples to draw"):
        NoiseSamples(0, [0], 0, 5, 5)


# --- no certify function takes more than 8 named parameters --------------------------------------------------

def test_no_certify_function_takes_more_than_eight_named_parameters():
    """Positional and keyword-only parameters, self/cls not counted (a ``**deprecated`` catch-all is not named)."""
    long = []
    for path in sorted(CERTIFY.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]
                names = names[1:] if names[:1] in (["self"], ["cls"]) else names
                if len(names) > 8:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({len(names)})")
    assert not long, "take an option group instead of long keyword lists:\n" + "\n".join(long)
