import json

import pytest

from robustmix import Smoothing, ThreatModel

from robustmix.experiments.runner import Records
import torch

from robustmix.errors import ConfigError
from robustmix.experiments import (CertifyConfig, SweepConfig, TradeoffConfig, certified_curve,
                                   match_clean_accuracy, naive_sweep, read_records, run_certify, run_sweep,
                                   run_tradeoff)
from robustmix.experiments import sweep as sweep_module
from robustmix.results import SweepSummary
from robustmix.experiments.tradeoff_choice import best_tradeoff_alpha, gap_closed, kept



@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(23, 12, generator=gen)
    y = torch.randint(0, 4, (23,), generator=gen)
    return x, y


def test_engine_equals_naive_per_alpha_loop(pair, data):
    g, h = pair
    x, y = data
    cfg = SweepConfig(alphas=[0.0, 0.3, 0.5, 0.7, 1.0], threat=ThreatModel("inf", 0.15), steps=5, batch_size=6)
    fast = run_sweep(g, h, x, y, cfg, records=Records(progress=False))
    slow = naive_sweep(g, h, x, y, cfg)
    assert fast.accuracy == slow.accuracy
    assert fast.accuracy["clean"][0] == pytest.approx(float((g(x).argmax(1) == y).float().mean()))


def test_resume_after_crash_gives_identical_records(pair, data, tmp_path, monkeypatch):
    g, h = pair
    x, y = data
    cfg = SweepConfig(alphas=[0.0, 0.5, 1.0], threat=ThreatModel("inf", 0.1), steps=3, batch_size=5)
    ref = run_sweep(g, h, x, y, cfg, records=Records(tmp_path / "ref.jsonl", progress=False))

    real = sweep_module.sweep_batch
    calls = {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("injected crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "sweep_batch", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(g, h, x, y, cfg, records=Records(tmp_path / "run.jsonl", progress=False))
    # simulate a torn write of a partial line as well
    with open(tmp_path / "run.jsonl", "a") as fh:
        fh.write('{"index": 99, "lab')
    monkeypatch.setattr(sweep_module, "sweep_batch", real)
    resumed = run_sweep(g, h, x, y, cfg, records=Records(tmp_path / "run.jsonl", progress=False))
    assert resumed == ref
    _, a = read_records(tmp_path / "ref.jsonl")
    _, b = read_records(tmp_path / "run.jsonl")
    assert a == b and len(b) == len(x)


def test_table1_gaps(pair, data):
    g, h = pair
    x, y = data
    res = run_sweep(g, h, x, y, SweepConfig(alphas=[0.5], steps=2, attacks=("std", "rob")), records=Records(progress=False))
    probs = g(x).softmax(-1).topk(2).values
    gaps = probs[:, 0] - probs[:, 1]
    correct = g(x).argmax(1) == y
    assert res.table1["g"]["clean_correct"] == pytest.approx(float(gaps[correct].mean()), abs=1e-5)
    assert res.table1["g"]["clean_incorrect"] == pytest.approx(float(gaps[~correct].mean()), abs=1e-5)


def test_tradeoff_endpoints_are_the_base_models(pair, data, tmp_path):
    g, h = pair
    x, y = data
    cfg = TradeoffConfig(trusts=["one", "grad_std"], gammas=[0.0, 1.0, float("inf")], steps=2, batch_size=10)
    res = run_tradeoff(g, h, x, y, cfg, records=Records(tmp_path / "t.jsonl", progress=False))
    acc_g = float((g(x).argmax(1) == y).float().mean())
    acc_h = float((h(x).argmax(1) == y).float().mean())
    for curve in res.curves.values():
        assert curve["clean"][0] == pytest.approx(acc_g) and curve["clean"][-1] == pytest.approx(acc_h)
    again = run_tradeoff(g, h, x, y, cfg, records=Records(tmp_path / "t.jsonl", progress=False))
    assert again == res


def test_certify_records_and_curves(pair, tmp_path):
    g, h = pair
    x = torch.rand(12, 1, 3, 4)
    y = torch.randint(0, 4, (12,))
    cfg = CertifyConfig(Smoothing(0.25, 200, batch_size=200))
    recs = run_certify(g, h, x, y, cfg, records=Records(tmp_path / "c.jsonl", progress=False))
    again = run_certify(g, h, x, y, cfg, records=Records(tmp_path / "c.jsonl", progress=False))
    assert recs == again and len(recs) == 12
    curve = certified_curve(recs, [0.5, 1.0], [0.0, 0.1, 0.2], theorem=2, sigma=0.25)
    assert len(curve["certified"]) == 2 and all(0 <= v <= 1 for row in curve["certified"] for v in row)
    sound = certified_curve(recs, [1.0], [0.0], theorem=2, sigma=0.25, sound=True)
    assert sound["certified"][0][0] <= curve["certified"][1][0]
    a = match_clean_accuracy(recs, curve["clean"][1])
    assert 0.5 <= a <= 1.0


def test_tradeoff_choice_helpers():
    summary = SweepSummary(alphas=[0.0, 0.5, 0.6, 1.0], n=10, accuracy={"mix": [0.0, 0.3, 0.5, 0.6]}, ci95={},
                           table1={})
    assert best_tradeoff_alpha(summary, keep=0.8) == 0.6
    assert gap_closed(0.9, 0.92, 0.82) == pytest.approx(0.8)
    assert kept(0.5, 0.6) == pytest.approx(5 / 6)


def test_shared_samples_give_the_same_certificates_in_one_pass(pair):
    """share_samples: the point estimate and union bounds come from the tight certificate's own draws."""
    import math

    from robustmix.certify.stats import hoeffding_halfwidth

    g, h = pair
    x, y = torch.rand(6, 1, 3, 4), torch.randint(0, 4, (6,))
    base = dict(smoothing=Smoothing(0.25, 300, 50, batch_size=300), sound_alphas=[0.5, 1.0])
    two = run_certify(g, h, x, y, CertifyConfig(**base), records=Records(progress=False))
    one = run_certify(g, h, x, y, CertifyConfig(**base, share_samples=True), records=Records(progress=False))
    width = hoeffding_halfwidth(350, 0.001 / (2 * 4))
    for a, b in zip(two, one):
        assert a["sound"] == b["sound"]                        # the certificates themselves are unchanged
        for p, lo, hi in zip(b["h_probs"], b["h_lower"], b["h_upper"]):
            assert lo <= p <= hi and math.isclose(hi - lo, min(p + width, 1) - max(p - width, 0), abs_tol=1e-12)
        assert max(abs(u - v) for u, v in zip(a["h_probs"], b["h_probs"])) < 0.2   # two estimates of one mean
    with pytest.raises(ConfigError, match="share_samples"):
        CertifyConfig(Smoothing(0.25), share_samples=True)


def test_pareto_trains_the_recipe_it_is_given_and_repeats_each_headline_evaluation(pair, tmp_path):
    """The adaptive row follows calibrate's recipe flags; headline points carry AutoAttack alone and the cost."""
    from safetensors import safe_open

    from robustmix.experiments.calibrate import AdaptiveRecipe
    from robustmix.experiments.pareto import ParetoSettings, run_pareto

    g, h = pair
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(24, 1, 3, 4, generator=gen), torch.randint(0, 4, (24,), generator=gen)
    splits = {"train": (x[:8], y[:8]), "val": (x[8:16], y[8:16]), "test": (x[16:], y[16:])}
    s = ParetoSettings(n_curve=4, n_headline=4, n_val=8, n_train=8, alphas=[0.0, 1.0], percentiles=[90.0],
                       percentile=90.0, curve_steps=1, calib_steps=1, adaptive_epochs=1, adaptive_attack_steps=1,
                       batch_size=8, square_queries=50, adaptive=AdaptiveRecipe(mixing_net="mlp",
                                                                                train_attack="composite+gate"))
    res = run_pareto(g, h, splits, s, tmp_path, progress=False)
    with safe_open(str(tmp_path / "adaptive.mixing-net.safetensors"), "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["training"])["train_attack"] == "composite+gate" and '"class": "MixingNet"' in meta["mixer"]
    cost = {p["name"]: p["forward_passes"] for p in res.headline}
    assert cost == {"g": 1, "h": 1, "linear": 2, "nonlinear": 2, "adaptive": 3}
    assert all(p["autoattack"]["n"] == 4 and isinstance(p["autoattack_flags"], list) for p in res.headline)
    text = res.render()[0]
    assert text.tables[0][0][3] == "AutoAttack alone (%)" and "3 forward passes per prediction" in text.tables[0][-1][5]


def test_attacked_accuracy_never_counts_an_example_wrong_on_its_clean_input():
    """An example misclassified clean is not robust, whatever the attack's input does (sweep, trade-off, attack)."""
    from robustmix.experiments.attack_eval import AttackConfig, summarize_attack
    from robustmix.experiments.tradeoff import summarize_tradeoff

    # example 0: wrong clean, 'right' under every attack; example 1: right everywhere
    recs = [{"index": 0, "label": 1, "clean": [0, 1], "std": [1, 1], "rob": [1, 1], "mix": [1, 1],
             "g_clean": [0, 0.5], "g_adv": [1, 0.5], "h_clean": [1, 0.5], "h_adv": [1, 0.5]},
            {"index": 1, "label": 2, "clean": [2, 2], "std": [2, 2], "rob": [2, 2], "mix": [2, 2],
             "g_clean": [2, 0.5], "g_adv": [2, 0.5], "h_clean": [2, 0.5], "h_adv": [2, 0.5]}]
    s = sweep_module.summarize(recs, [0.0, 1.0])
    assert s.accuracy["clean"] == [0.5, 1.0]
    for key in ("std", "rob", "mix"):
        assert s.accuracy[key] == [0.5, 1.0]
    assert s.table1["g"]["adv_accuracy"] == 0.5 and s.table1["h"]["adv_accuracy"] == 1.0

    cfg = TradeoffConfig(gammas=[1.0], steps=1)
    curves = lambda c, a: {"curves": {name: [[c, a]] for name in cfg.curves()}}
    t = summarize_tradeoff([{"label": 1, **curves(0, 1)}, {"label": 1, **curves(1, 1)}], cfg)
    assert all(c["attacked"] == [0.5] and c["clean"] == [0.5] for c in t.curves.values())

    a = summarize_attack([{"clean": False, "pgd": True}, {"clean": True, "pgd": True}], 0.5,
                         AttackConfig(autoattack="none"))
    assert a.accuracy == {"clean": 0.5, "pgd": 0.5}


def test_sweep_columns_at_most_clean_per_example(pair, data):
    g, h = pair
    x, y = data
    res = run_sweep(g, h, x, y, SweepConfig(alphas=[0.0, 0.5, 1.0], threat=ThreatModel("inf", 0.5), steps=2), records=Records(progress=False))
    for key in ("std", "rob", "mix"):
        assert all(a <= c for a, c in zip(res.accuracy[key], res.accuracy["clean"]))


def test_sweep_cli_attacked_columns_never_exceed_clean(tmp_path):
    """robustmix sweep -n 8 (a newcomer's first run): STD / ROB / MIX at most clean, alpha by alpha."""
    from robustmix.cli import main

    assert main(["sweep", "-n", "8", "--alphas", "0", "0.5", "1", "--steps", "3", "--out", str(tmp_path)]) == 0
    acc = json.loads((tmp_path / "summary.json").read_text())["accuracy"]
    for key in ("std", "rob", "mix"):
        assert all(a <= c for a, c in zip(acc[key], acc["clean"])), (key, acc)


def test_sweep_and_tradeoff_refuse_a_broken_model_before_any_attack(pair, data):
    from robustmix.errors import ModelError

    g, h = pair
    x, y = data

    class Probs(torch.nn.Module):
        def forward(self, xb):
            return h(xb).softmax(-1)

    with pytest.raises(ModelError, match="model h returns probabilities"):
        run_sweep(g, Probs(), x, y, SweepConfig(alphas=[0.5], steps=1), records=Records(progress=False))
    with pytest.raises(ModelError, match="model h returns probabilities"):
        run_tradeoff(g, Probs(), x, y, TradeoffConfig(gammas=[1.0], steps=1), records=Records(progress=False))


def test_demo_in_two_processes_gives_the_same_numbers_as_in_one(tmp_path):
    """The overlapped demo (a second process for the worst case on h and the certificates) changes no number."""
    from robustmix.experiments.demo import DemoSettings, run_demo

    tiny = DemoSettings(n_sweep=6, alphas=[0.0, 0.6, 1.0], steps=2, n_tradeoff=4, tradeoff_steps=1,
                        tradeoff_trusts=["one"], tradeoff_gammas=[0.0, 1.0], n_autoattack=4,
                        autoattack_attacks=["aa-apgd-ce"], autoattack_steps=2, n_certify=4, certify_samples=100)
    one = run_demo(tmp_path / "one", tiny, progress=False, overlap=False).to_dict()
    two = run_demo(tmp_path / "two", tiny, progress=False, overlap=True).to_dict()
    assert (tmp_path / "two" / "records" / "evaluate-h.jsonl").is_file()

    def leaves(d, path=""):   # every number but run times; floats to 5 significant digits (thread counts differ)
        if isinstance(d, dict):
            return [leaf for k, v in sorted(d.items()) if k not in ("timings_s", "seconds")
                    for leaf in leaves(v, f"{path}/{k}")]
        if isinstance(d, list):
            return [leaf for i, v in enumerate(d) for leaf in leaves(v, f"{path}/{i}")]
        return [(path, f"{d:.5g}" if isinstance(d, float) else d)]

    assert leaves(one) == leaves(two)


def test_norm_spellings_are_one_run_and_one_report_name():
    """--norm linf and --norm inf (l2 and 2) are the same settings, so a rerun resumes instead of being refused."""
    from robustmix.experiments.attack_eval import AttackConfig
    from robustmix.experiments.evaluate_run import EvaluateConfig

    from robustmix import ThreatModel

    for cls in (SweepConfig, TradeoffConfig, AttackConfig, EvaluateConfig):
        assert cls(threat=ThreatModel("linf")).threat == cls(threat=ThreatModel("inf")).threat
        assert cls(threat=ThreatModel("L2", 0.5)).to_dict()["norm"] == cls(threat=ThreatModel(2, 0.5)).to_dict()["norm"] == "2"
        with pytest.deprecated_call():   # the old keywords, for one release
            assert cls(norm="linf", eps=0.1).threat == ThreatModel("inf", 0.1)
