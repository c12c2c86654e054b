"""The benchmark harness counts passes correctly and its interleaved medians measure ratios."""

import importlib.util
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "harness.py"
_spec = importlib.util.spec_from_file_location("bench_harness", _PATH)
harness = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("bench_harness", harness)
_spec.loader.exec_module(harness)


class Pair(torch.nn.Module):
    """g and h summed: one call is one forward of each."""

    def __init__(self, g, h):
        super().__init__()
        self.g, self.h = g, h

    def forward(self, x):
        return self.g(x) + self.h(x)


def _models():
    torch.manual_seed(0)
    return torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)


def test_counts_forward_rows_and_calls():
    g, h = _models()
    with harness.PassCounter({"g": g, "h": h}) as c:
        with torch.no_grad():
            g(torch.rand(4, 5))
            Pair(g, h)(torch.rand(7, 5))
    assert c.passes.forward == {"g": 11, "h": 7}
    assert c.passes.forward_calls == {"g": 2, "h": 1}
    assert not c.passes.backward


def test_counts_backward_by_kind():
    g, h = _models()
    x = torch.rand(6, 5, requires_grad=True)
    y = torch.zeros(6, dtype=torch.long)

    def run():
        torch.autograd.grad(F.cross_entropy(Pair(g, h)(x), y), x)   # input gradient through both (attack step)
        F.cross_entropy(g(x.detach()[:2]), y[:2]).backward()         # parameters only (training step)

    p = harness.count_passes(run, {"g": g, "h": h})
    assert p.forward == {"g": 8, "h": 6}
    assert p.backward == {("g", "input"): 6, ("h", "input"): 6, ("g", "params"): 2}
    assert p.backward_calls[("g", "params")] == 1
    # hooks are gone afterwards
    g(torch.rand(1, 5))
    assert harness.count_passes(lambda: None, {"g": g}).forward == {}


def test_same_model_twice_is_refused():
    g, _ = _models()
    with pytest.raises(ValueError, match="same object"):
        harness.PassCounter({"g": g, "again": g})


def test_work_and_floor_price_counted_passes():
    p = harness.Passes()
    p.forward.update({"g": 10, "h": 10})
    p.backward.update({("g", "input"): 10})
    q = harness.Passes()
    q.forward.update({"g": 10})
    costs = {("g", "fwd"): 1.0, ("h", "fwd"): 3.0, ("g", "input"): 2.0}
    assert harness.work(p, costs) == pytest.approx(60.0)
    assert harness.floor(p, q, costs) == pytest.approx(6.0)
    assert (p - q).forward["g"] == 0 and (p + q).forward["g"] == 20
    with pytest.raises(KeyError, match="params"):
        harness.work(harness.Passes(backward={("g", "params"): 1}), costs)


def test_interleaved_rounds_and_median_ratio():
    order = []

    def sleeper(name, seconds):
        def run():
            order.append(name)
            time.sleep(seconds)
        return run

    g, h = _models()
    rounds = harness.interleave({"a": sleeper("a", 0.004), "b": sleeper("b", 0.008), "c": sleeper("c", 0.004)},
                                rounds=5, warmup=1, count={"g": g})
    assert order == ["a", "b", "c"] * 6                       # warm-up round, then A, B, C round by round
    assert len(rounds) == 5 and set(rounds.passes) == {"a", "b", "c"}
    r = rounds.ratio("b", "a")
    assert 1.6 < r.median < 2.6
    assert r.lo <= r.q1 <= r.median <= r.q3 <= r.hi and r.n == 5
    assert 0.8 < rounds.ratio("b", ["a", "c"]).median < 1.3
    assert "(" in harness.fmt(r, 2.0)


def test_unit_costs_from_unit_variants():
    g, _ = _models()
    x = torch.rand(32, 5)
    rounds = harness.interleave(harness.unit_variants({"g": g}, x, params=True), rounds=3)
    costs = harness.unit_costs(rounds, ["g"], rows=len(x))
    assert set(costs) == {("g", "fwd"), ("g", "input"), ("g", "params")}
    assert costs["g", "fwd"] > 0
