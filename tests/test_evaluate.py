import copy
import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import binom, binomtest

from robustmix import MixedClassifier, ThreatModel
from robustmix.attacks import PGD, APGDSettings, DiagnosticChecks, Ensemble, WorstCaseResult, evaluate
from robustmix.attacks.apgd import apgd, checkpoints, example_keys, keyed_start, keyed_uniform
from robustmix.attacks.evaluate import accuracy_interval, attack_members
from robustmix.errors import ConfigError, InputError

from .conftest import Linear2Logits


pytestmark = pytest.mark.usefixtures("one_thread")


def _margin64(out, y):
    out = out.double()
    true = out.gather(1, y[:, None])[:, 0]
    other = out.scatter(1, y[:, None], -math.inf).amax(1)
    return true - other


# ---------------------------------------------------------------- the interval

@pytest.mark.parametrize("k,n", [(0, 10), (10, 10), (3, 10), (57, 100), (1, 1)])
def test_interval_is_scipys_exact_clopper_pearson(k, n):
    lo, hi = accuracy_interval(k, n)
    ref = binomtest(k, n).proportion_ci(0.95, method="exact")
    assert lo == pytest.approx(ref.low, abs=1e-12) and hi == pytest.approx(ref.high, abs=1e-12)


def test_interval_covers_at_least_95_percent_for_every_p():
    n = 25
    bounds = [accuracy_interval(k, n) for k in range(n + 1)]
    for p in np.linspace(0.001, 0.999, 199):
        cover = sum(binom.pmf(k, n, p) for k, (lo, hi) in enumerate(bounds) if lo <= p <= hi)
        assert cover >= 0.95 - 1e-9, p


# ---------------------------------------------------------------- building blocks

def test_apgd_checkpoints_follow_the_paper():
    # p: 0, .22, .41, .57, .70, .80, .87, .93, .99 (then past 1)
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


def test_keyed_noise_is_batch_independent_and_uniform():
    idx = torch.arange(50)
    keys = example_keys(3, idx, 7)
    u = keyed_uniform(keys, (4, 5))
    assert u.shape == (50, 4, 5) and 0 < u.min() and u.max() < 1
    assert abs(float(u.mean()) - 0.5) < 0.03
    assert torch.equal(keyed_uniform(example_keys(3, idx[[7, 2]], 7), (4, 5)), u[[7, 2]])
    assert not torch.equal(keyed_uniform(example_keys(4, idx, 7), (4, 5)), u)
    x = torch.full((50, 1, 4, 5), 0.5)
    start = keyed_start(x, 0.1, 2.0, keys)
    assert torch.allclose(torch.linalg.vector_norm((start - x).flatten(1), dim=1), torch.full((50,), 0.1))


def test_apgd_raises_the_loss():
    model = Linear2Logits(seed=3)
    x = torch.rand(16, 1, 3, 4, generator=torch.Generator().manual_seed(0))
    y = model(x).argmax(1)
    x_adv = apgd(model, x, y, ThreatModel("inf", 0.05), settings=APGDSettings(steps=20))
    ce = torch.nn.functional.cross_entropy
    with torch.no_grad():
        assert (ce(model(x_adv), y, reduction="none") > ce(model(x), y, reduction="none")).all()
    assert (x_adv - x).abs().max() <= 0.05 + 1e-6


def test_mixed_classifier_surrogates_are_tempered_mixtures():
    g, h = Linear2Logits(seed=0), Linear2Logits(seed=1)
    mix = MixedClassifier(g, h, 0.7)
    sur = mix.attack_surrogates()
    assert list(sur) == ["mix-T1", "mix-T4", "mix-T16", "h"]
    assert sur["mix-T1"] is mix and sur["h"] is h
    x = torch.rand(5, 1, 3, 4)
    with torch.no_grad():
        zg, zh = g(x).double(), h(x).double()
        ref = torch.log(0.3 * torch.softmax(zg / 4, 1) + 0.7 * torch.softmax(zh, 1))
        assert torch.allclose(sur["mix-T4"](x).double(), ref, atol=1e-5)
    assert attack_members(mix) == ["aa-apgd-ce", "aa-apgd-t", "aa-fab-t", "apgd-ce@mix-T1", "apgd-dlr@mix-T1",
                                   "apgd-ce@mix-T4", "apgd-dlr@mix-T4", "apgd-ce@mix-T16", "apgd-dlr@mix-T16",
                                   "apgd-ce@h", "apgd-dlr@h", "apgd-ce@g", "apgd-dlr@g", "aa-square"]
    assert attack_members(g) == ["aa-apgd-ce", "aa-apgd-t", "aa-fab-t", "apgd-ce@model", "apgd-dlr@model",
                                 "aa-square"]


# ---------------------------------------------------------------- bookkeeping

class _Recorder(torch.nn.Module):
    """Wraps a model and keeps every input it is called on."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.inner(x)


class _Ramp(torch.nn.Module):
    """3 classes; class 0 wins with margin 1 + 5 x_0 (always > 0), so nothing is ever broken."""

    def forward(self, x):
        z0 = 1 + 5 * x[:, 0]
        return torch.stack([z0, torch.zeros_like(z0), torch.zeros_like(z0)], 1)


class _Valley(torch.nn.Module):
    """Cross-entropy on class 0 peaks where x_0 = c: a source that walks x_0 towards c and oscillates."""

    def __init__(self, c):
        super().__init__()
        self.register_buffer("c", c)

    def forward(self, x):
        z0 = 10 * (x[:, 0] - self.c) ** 2
        return torch.stack([z0, torch.zeros_like(z0), torch.zeros_like(z0)], 1)


class _WithSurrogates(torch.nn.Module):
    def __init__(self, judge, surrogates):
        super().__init__()
        self.judge = judge
        self._surrogates = surrogates

    def forward(self, x):
        return self.judge(x)

    def attack_surrogates(self):
        return dict(self._surrogates)


def test_margin_is_the_minimum_over_every_iterate_not_the_last():
    gen = torch.Generator().manual_seed(0)
    x = 0.3 + 0.4 * torch.rand(6, 2, generator=gen)
    eps = 0.1
    judge = _Recorder(_Ramp())
    model = _WithSurrogates(judge, {"valley": _Valley(x[:, 0] + 0.5 * eps)})
    y = torch.zeros(6, dtype=torch.int64)
    res = evaluate(model, x, y, threat=ThreatModel("inf", eps), ensemble=Ensemble(attacks=["apgd-ce@valley"], steps=30))
    assert res.robust.all()
    seen = torch.stack(judge.seen[1:])                   # (steps, n, 2); [0] is the clean pass
    assert len(seen) == 30
    with torch.no_grad():
        ref = torch.stack([_margin64(_Ramp()(s.double()), y) for s in seen])
    ref_min = torch.minimum(ref.min(0).values, _margin64(_Ramp()(x.double()), y))
    assert (ref[-1] > ref_min + 1e-3).all()              # the last iterate is worse than an earlier one
    assert torch.allclose(res.margin, ref_min, atol=1e-5)
    assert torch.allclose(_margin64(_Ramp()(res.x_adv.double()), y), ref_min, atol=1e-5)
    assert set(res.found_by) == {"apgd-ce@valley"}
    assert (res.x_adv - x).abs().max() <= eps + 1e-6


def test_every_candidate_is_judged_on_the_true_model():
    class Constant(torch.nn.Module):
        def forward(self, x):
            return torch.tensor([3.0, 0.0, 0.0, 0.0]) + 0 * x.flatten(1)[:, :4]

    liar = Linear2Logits(seed=5, scale=10.0)               # easily fooled, but it does not decide
    x = torch.rand(10, 1, 3, 4, generator=torch.Generator().manual_seed(1))
    y = torch.zeros(10, dtype=torch.int64)
    with torch.no_grad():
        fooled = liar(apgd(liar, x, y, ThreatModel("inf", 0.3), settings=APGDSettings(steps=10))).argmax(1) != 0
    assert fooled.sum() >= 5                               # the surrogate's own outputs claim errors
    res = evaluate(_WithSurrogates(Constant(), {"liar": liar}), x, y, threat=ThreatModel("inf", 0.3),
                   ensemble=Ensemble(attacks="apgd-*", steps=10))
    assert res.robust.all() and res.accuracy == 1.0
    assert torch.allclose(res.margin, torch.full((10,), 3.0, dtype=torch.float64))


class _Counting(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.batches = inner, []

    def forward(self, x):
        self.batches.append(x.detach().clone())
        return self.inner(x)


def test_later_members_only_attack_unbroken_examples():
    core = Linear2Logits(seed=2)
    second = _Counting(core)
    model = _WithSurrogates(core, {"first": core, "second": second})
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(40, 1, 3, 4, generator=gen)
    with torch.no_grad():
        y = core(x).argmax(1)
    y[:3] = (y[:3] + 1) % 4                                 # three misclassified clean
    res = evaluate(model, x, y, threat=ThreatModel("inf", 0.08),
                   ensemble=Ensemble(attacks=["apgd-ce@first", "apgd-ce@second"], steps=10))
    first, later = res.per_attack
    assert first.ran_on == 37 and 0 < first.broke < 37
    assert later.ran_on == 37 - first.broke
    broken_first = [i for i, f in enumerate(res.found_by) if f == "apgd-ce@first" and not res.robust[i]]
    survivors = sorted(set(range(3, 40)) - set(broken_first))
    start = second.batches[0]
    assert len(start) == later.ran_on
    # each row the second member saw lies within eps of exactly one original example: a survivor
    dist = (start.flatten(1)[:, None, :] - x.flatten(1)[None]).abs().amax(-1)
    assert sorted((dist <= 0.08 + 1e-6).nonzero()[:, 1].tolist()) == survivors
    assert all(len(b) <= later.ran_on for b in second.batches)
    assert res.found_by[:3] == ["clean"] * 3 and not res.clean_correct[:3].any()
    assert int(res.robust.sum()) == 37 - first.broke - later.broke


def test_results_do_not_depend_on_batching_or_order():
    g, h = Linear2Logits(seed=0), Linear2Logits(seed=1)
    mix = MixedClassifier(g, h, 0.6)
    x = torch.rand(12, 1, 3, 4, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        y = mix(x).argmax(1)
    threat, ensemble = ThreatModel("inf", 0.1), Ensemble(attacks="apgd-*", steps=10)
    whole = evaluate(mix, x, y, threat=threat, ensemble=ensemble)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(5))
    shuffled = evaluate(mix, x[perm], y[perm], threat=threat, indices=perm,
                        ensemble=Ensemble(attacks="apgd-*", steps=10, batch_size=5))
    assert torch.equal(shuffled.robust, whole.robust[perm])
    assert torch.allclose(shuffled.margin, whole.margin[perm], atol=1e-5)
    assert [whole.found_by[i] for i in perm.tolist()] == shuffled.found_by
    parts = [evaluate(mix, x[a:b], y[a:b], threat=threat, ensemble=ensemble, indices=range(a, b))
             for a, b in ((0, 5), (5, 12))]
    joined = WorstCaseResult.concat(parts)
    assert torch.equal(joined.robust, whole.robust) and joined.found_by == whole.found_by
    assert torch.allclose(joined.margin, whole.margin, atol=1e-5) and torch.equal(joined.indices, torch.arange(12))
    assert [(a.name, a.ran_on, a.broke) for a in joined.per_attack] == \
        [(a.name, a.ran_on, a.broke) for a in whole.per_attack]


# ---------------------------------------------------------------- gradient masking

class _HardOneHotMixer(torch.nn.Module):
    """log((1 - a) onehot(argmax g(x)) + a softmax(h(x))): g's argmax kills every gradient through g."""

    def __init__(self, g, h, alpha):
        super().__init__()
        self.std_model, self.rob_model, self.alpha = g, h, alpha

    def forward(self, x):
        zg = self.std_model(x)
        hard = torch.nn.functional.one_hot(zg.argmax(1), zg.shape[1]).to(x.dtype)
        return torch.log((1 - self.alpha) * hard + self.alpha * torch.softmax(self.rob_model(x), 1))

    def attack_surrogates(self):
        soft = _SoftMixer(self.std_model, self.rob_model, self.alpha, 4.0)
        return {"soft-T4": soft, "h": self.rob_model}


class _SoftMixer(torch.nn.Module):
    def __init__(self, g, h, alpha, temperature):
        super().__init__()
        self.std_model, self.rob_model, self.alpha, self.t = g, h, alpha, temperature

    def forward(self, x):
        return torch.log((1 - self.alpha) * torch.softmax(self.std_model(x) / self.t, 1)
                         + self.alpha * torch.softmax(self.rob_model(x), 1))


class _MeanSign(torch.nn.Module):
    """g: class 0 if the mean pixel exceeds 0.5, class 1 below (classes 2, 3 never win)."""

    def forward(self, x):
        t = 40 * (x.flatten(1).mean(1) - 0.5)
        return torch.stack([t, -t, torch.full_like(t, -5), torch.full_like(t, -5)], 1)


class _Balanced(torch.nn.Module):
    """h: linear in the first 10 pixels with weights w_i = -w_{i+5}, so its sign gradients keep the mean."""

    def __init__(self):
        super().__init__()
        w = torch.randn(4, 5, generator=torch.Generator().manual_seed(6))
        self.register_buffer("w", torch.cat([w, -w], 1))

    def forward(self, x):
        return 3 * x.flatten(1)[:, :10] @ self.w.T


def test_ensemble_finds_errors_that_pgd_on_the_true_model_misses():
    gen = torch.Generator().manual_seed(7)
    x = 0.25 + 0.5 * torch.rand(8, 1, 4, 5, generator=gen)
    x = x - x.flatten(1).mean(1).view(-1, 1, 1, 1) + 0.58      # mean 0.58: g's class 0, 0.08 from the flip
    model = _HardOneHotMixer(_MeanSign(), _Balanced(), 0.3)
    y = torch.zeros(8, dtype=torch.int64)
    eps = 0.1                                                  # enough to move the mean by 0.1
    with torch.no_grad():
        assert (model(x).argmax(1) == 0).all()
        x_pgd = PGD(model, eps, steps=50, restarts=2)(x, y)
        assert (model(x_pgd).argmax(1) == y).all()             # plain PGD finds nothing
    res = evaluate(model, x, y, threat=ThreatModel("inf", eps),     # FAB-T left out for time
                   ensemble=Ensemble(attacks=["aa-apgd-*", "apgd-*", "aa-square"], steps=20, square_queries=50),
                   diagnostics=DiagnosticChecks(steps=10))
    assert res.accuracy == 0.0 and res.clean_accuracy == 1.0
    assert all(f.endswith("@soft-T4") for f in res.found_by)
    by_name = {s.name: s for s in res.per_attack}
    assert by_name["aa-apgd-ce"].broke == by_name["aa-apgd-t"].broke == by_name["apgd-ce@model"].broke == 0
    with torch.no_grad():
        assert (model(res.x_adv).argmax(1) != y).all()
    assert (res.x_adv - x).abs().max() <= eps + 1e-6
    diag = res.diagnostics
    assert diag.suspected and diag.eps_not_decreasing and diag.unbounded_not_zero


def test_diagnostics_stay_quiet_on_an_honest_linear_model():
    model = Linear2Logits(seed=8, scale=3.0)
    x = torch.rand(16, 1, 3, 4, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        y = model(x).argmax(1)
    res = evaluate(model, x, y, threat=ThreatModel("inf", 0.1), ensemble=Ensemble(steps=20, square_queries=50),
                   diagnostics=DiagnosticChecks(steps=20))
    diag = res.diagnostics
    assert diag.square_only == 0 and not diag.unbounded_not_zero
    assert diag.accuracy_by_eps[0] >= diag.accuracy_by_eps[2] and diag.accuracy_by_eps[3] == 0.0


# ---------------------------------------------------------------- result IO

def test_records_and_json_round_trip():
    model = Linear2Logits(seed=0)
    x = torch.rand(6, 1, 3, 4, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    res = evaluate(model, x, y, threat=ThreatModel("inf", 0.05), ensemble=Ensemble(attacks="apgd-ce@model", steps=5),
                   indices=[10, 11, 12, 13, 14, 15])
    recs = res.records()
    assert [r["index"] for r in recs] == [10, 11, 12, 13, 14, 15]
    assert set(recs[0]) == {"index", "label", "clean_correct", "robust", "margin", "found_by"}
    assert [r["robust"] for r in recs] == res.robust.tolist()
    back = WorstCaseResult.from_dict(json.loads(json.dumps(res.to_dict())))
    assert torch.equal(back.robust, res.robust) and torch.allclose(back.margin, res.margin)
    assert back.found_by == res.found_by and back.accuracy_ci == res.accuracy_ci
    assert back.per_attack == res.per_attack and back.settings == res.settings
    with pytest.raises(InputError, match="schema_version"):
        WorstCaseResult.from_dict({**res.to_dict(), "schema_version": 999})
    with pytest.raises(InputError, match="indices"):
        res.records([1, 2])


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("change,error,match", [
    (dict(x=torch.rand(4, 1, 3, 4) + 1), InputError, r"\[0, 1\]"),
    (dict(x=torch.rand(12)), InputError, "rank"),
    (dict(y=torch.zeros(4)), InputError, "integer"),
    (dict(y=torch.zeros(3, dtype=torch.int64)), InputError, "one label per example"),
    (dict(y=torch.tensor([0, 1, 2, 7])), InputError, r"\[0, 4\)"),
    (dict(y=torch.tensor([0, -1, 2, 3])), InputError, r"\[0, 4\)"),
    (dict(indices=[0, 1]), InputError, "indices"),
    (dict(indices=[0.5, 1, 2, 3]), InputError, "indices"),
    (dict(ensemble=Ensemble(attacks=["pgd-xyz"])), ConfigError, "matches no ensemble member"),
])
def test_bad_input_is_refused_with_a_fix(change, error, match):
    args = dict(x=torch.rand(4, 1, 3, 4), y=torch.tensor([0, 1, 2, 3]), threat=ThreatModel("inf", 0.1))
    args.update(change)
    x, y = args.pop("x"), args.pop("y")
    with pytest.raises(error, match=match):
        evaluate(Linear2Logits(), x, y, **args)


@pytest.mark.parametrize("build,match", [
    (lambda: ThreatModel("inf", 0.0), "eps must be a finite number > 0"),
    (lambda: ThreatModel("inf", -0.1), "eps"),
    (lambda: ThreatModel("L3", 0.1), "norm"),
    (lambda: ThreatModel("L1", 0.1), "l_inf or the l_2 ball"),
    (lambda: Ensemble(batch_size=0), "batch_size"),
    (lambda: Ensemble(steps=0), "steps"),
    (lambda: Ensemble(restarts=-1), "restarts"),
    (lambda: Ensemble(square_queries=0), "square_queries"),
    (lambda: Ensemble(seed=1.5), "seed"),
    (lambda: Ensemble(attacks=["apgd-*", 3]), "member name or pattern"),
    (lambda: Ensemble(precision="int8"), "precision must be one of"),
    (lambda: DiagnosticChecks(n=0), "n must be"),
    (lambda: DiagnosticChecks(steps=0), "steps must be"),
])
def test_bad_settings_are_refused_by_their_group(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def test_norm_spellings_and_l2():
    model = Linear2Logits(seed=1)
    x = torch.rand(8, 1, 3, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x).argmax(1)
    for norm in ("inf", "Linf"):
        res = evaluate(model, x, y, threat=ThreatModel(norm, 0.05), ensemble=Ensemble(attacks="apgd-ce*", steps=5))
        assert res.settings["norm"] == "Linf"
    for norm in ("2", "L2"):
        res = evaluate(model, x, y, threat=ThreatModel(norm, 0.3), ensemble=Ensemble(attacks="apgd-*", steps=10))
        assert res.settings["norm"] == "L2"
        assert torch.linalg.vector_norm((res.x_adv - x).flatten(1), dim=1).max() <= 0.3 + 1e-5


# ---------------------------------------------------------------- the zoo

def test_zoo_mixture_worst_case_is_consistent():
    from robustmix.data import load_dataset
    from robustmix.errors import DataNotFoundError
    from robustmix.models import load

    try:
        x, y = load_dataset("fashion-mnist", "test", allow_download=False)
    except DataNotFoundError:
        pytest.skip("Fashion-MNIST not available offline")
    g, h = load("fmnist-std-cnn"), load("fmnist-at-linf-cnn")
    mix = MixedClassifier(g, h, 0.7)
    x, y = x[:6], y[:6]
    res = evaluate(mix, x, y, threat=ThreatModel("inf", 0.1),
                   ensemble=Ensemble(attacks=["apgd-ce@mix-T1", "apgd-ce@mix-T4", "apgd-ce@g"], steps=10))
    with torch.no_grad():
        x_pgd = PGD(mix, 0.1, steps=10)(x, y)
        pgd_ok = mix(x_pgd).argmax(1) == y
        g64, h64 = copy.deepcopy(g).double(), copy.deepcopy(h).double()
        x64 = res.x_adv.double()
        ref = torch.log(0.3 * torch.softmax(g64(x64), 1) + 0.7 * torch.softmax(h64(x64), 1))
    assert res.accuracy <= float(pgd_ok.float().mean())
    assert torch.allclose(res.margin, _margin64(ref, y), atol=1e-4)
    assert (res.x_adv - x).abs().max() <= 0.1 + 1e-6


# ---------------------------------------------------------------- AutoAttack standard beside the ensemble

def test_autoattack_standard_alone_is_reported_beside_the_ensemble():
    gen = torch.Generator().manual_seed(7)
    x = 0.25 + 0.5 * torch.rand(6, 1, 4, 5, generator=gen)
    x = x - x.flatten(1).mean(1).view(-1, 1, 1, 1) + 0.58
    model = _HardOneHotMixer(_MeanSign(), _Balanced(), 0.3)
    y = torch.zeros(6, dtype=torch.int64)
    res = evaluate(model, x, y, threat=ThreatModel("inf", 0.1), ensemble=Ensemble(steps=20, square_queries=100))
    # the surrogate breaks every example; AutoAttack's members never saw them broken, so Square is run on all
    # six afterwards: AutoAttack standard's own accuracy is known exactly, and is never below the ensemble's
    assert res.accuracy == 0.0
    done = res.autoattack_completion
    assert done.ran_on == 6 and res.aa_robust is not None
    assert res.autoattack_accuracy == (6 - done.broke) / 6 >= res.accuracy
    assert [r["aa_robust"] for r in res.records()] == res.aa_robust.tolist()
    back = WorstCaseResult.from_dict(json.loads(json.dumps(res.to_dict())))
    assert torch.equal(back.aa_robust, res.aa_robust) and back.autoattack_completion == done
    joined = WorstCaseResult.concat([res, res])
    assert joined.autoattack_completion.ran_on == 12 and len(joined.aa_robust) == 12
    # without every AutoAttack member there is no AutoAttack-alone figure
    part = evaluate(model, x, y, threat=ThreatModel("inf", 0.1),
                    ensemble=Ensemble(attacks=["aa-apgd-ce", "apgd-ce@soft-T4"], steps=5))
    assert part.aa_robust is None and part.autoattack_completion is None and "aa_robust" not in part.records()[0]


def test_evaluate_summary_records_autoattack_and_forward_passes():
    from robustmix.experiments.evaluate_run import EvaluateConfig, forward_passes, summarize_evaluate
    from robustmix.mixing import AdaptiveMixedClassifier, MixingNet
    from robustmix.results import EvaluateSummary, summary_from_dict

    g, h = Linear2Logits(seed=0), Linear2Logits(seed=1)
    assert forward_passes(g) == (1, 0)
    assert forward_passes(MixedClassifier(g, h, 0.5)) == (2, 0)
    assert forward_passes(AdaptiveMixedClassifier(g, h, MixingNet(8))) == (2, 1)
    batch = {"per_attack": [{"name": "aa-apgd-ce", "ran_on": 4, "broke": 1, "seconds": 0.5}], "diagnostics": None,
             "warnings": ["AutoAttack check: zero gradients"],
             "autoattack_completion": {"name": "aa-square (AutoAttack completion)", "ran_on": 1, "broke": 0,
                                       "seconds": 0.25}}
    recs = [{"clean_correct": True, "robust": r, "margin": 0.1, "found_by": "aa-apgd-ce", "aa_robust": a}
            for r, a in ((True, True), (False, False), (False, True), (True, True))]
    recs[0]["batch"] = batch
    cfg = EvaluateConfig()
    s = summarize_evaluate(recs, cfg, {"std": "g", "rob": "h", "mixer": "adaptive"}, passes=(2, 1))
    assert s.accuracy == 0.5 and s.autoattack["accuracy"] == 0.75 and s.autoattack["n"] == 4
    assert s.autoattack["completion"] == {"ran_on": 1, "broke": 0, "seconds": 0.25}
    assert s.forward_passes_per_prediction == 2 and s.mixing_network_passes == 1
    text = s.render()[0].text
    assert "AutoAttack's own checks flagged: AutoAttack check: zero gradients" in text
    assert "Cost per prediction: 3 forward passes (g and h once each, plus the mixing network once)." in text
    rows = s.render()[0].tables[0]
    assert [r[0] for r in rows[1:]] == ["clean", "AutoAttack standard alone", "worst case over the ensemble"]
    assert "AutoAttack standard alone 75.0" in s.summary_line()
    assert EvaluateSummary.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    # older files (without the new fields) still load, and say nothing about what they did not record
    old = {k: v for k, v in s.to_dict().items()
           if k not in ("autoattack", "forward_passes_per_prediction", "mixing_network_passes")}
    legacy = summary_from_dict(old)
    assert legacy.autoattack is None and legacy.forward_passes_per_prediction is None
    assert "Cost per prediction" not in legacy.render()[0].text
    recs[3].pop("aa_robust")   # a batch from before AutoAttack was completed: no AutoAttack-alone figure
    assert summarize_evaluate(recs, cfg).autoattack is None


def test_saved_inputs_of_one_example_in_two_batch_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    from robustmix.errors import ConfigError
    from robustmix.experiments.evaluate_run import collect_adversarial

    adv = tmp_path / "adversarial"
    adv.mkdir()
    save_file({"x_adv": torch.zeros(2, 3), "indices": torch.tensor([0, 1])}, str(adv / "0.safetensors"))
    save_file({"x_adv": torch.ones(2, 3), "indices": torch.tensor([2, 3])}, str(adv / "2.safetensors"))
    records = tmp_path / "records.jsonl"
    torch.testing.assert_close(collect_adversarial(records, [3, 0]), torch.tensor([[1.0] * 3, [0.0] * 3]))
    save_file({"x_adv": torch.ones(1, 3), "indices": torch.tensor([1])}, str(adv / "1.safetensors"))  # a stale file
    with pytest.raises(ConfigError, match="example 1 has saved inputs in both 0.safetensors and 1.safetensors"):
        collect_adversarial(records, [0, 1, 2, 3])


def test_autoattack_square_check_on_the_whole_run():
    """AutoAttack flags Square lowering its accuracy by > 0.2 points; its members run one at a time here."""
    from robustmix.experiments.evaluate_run import EvaluateConfig, summarize_evaluate

    def run(square_breaks, completion_broke):
        recs = [{"clean_correct": True, "robust": True, "margin": 1.0, "found_by": None, "aa_robust": True}
                for _ in range(1000)]
        for r in recs[:square_breaks]:
            r.update(robust=False, margin=-0.1, found_by="aa-square", aa_robust=False)
        for r in recs[500:500 + completion_broke]:   # broken by robustmix's APGD first, by Square in AA alone
            r.update(robust=False, margin=-0.1, found_by="apgd-ce@h", aa_robust=False)
        recs[0]["batch"] = {"per_attack": [], "diagnostics": None, "warnings": [], "autoattack_completion":
                            {"name": "c", "ran_on": completion_broke, "broke": completion_broke, "seconds": 0.0}}
        return summarize_evaluate(recs, EvaluateConfig())

    assert run(2, 0).warnings == []                              # 0.2 points: at AutoAttack's threshold, no flag
    flagged = run(2, 1).warnings                                 # 0.3 points
    assert len(flagged) == 1 and "decreased the robust accuracy of AutoAttack standard by 0.30%" in flagged[0]
    assert "from 100.00% to 99.70%" in flagged[0] and "AutoAttack's own checks flagged" in run(2, 1).render()[0].text


def test_evaluate_refuses_nan_and_probability_models_instead_of_reporting_zero():
    """evaluate() on a broken model used to report 0.0% robust accuracy; now one line names the problem."""
    from robustmix.attacks import evaluate
    from robustmix.errors import ModelError
    from robustmix.mixing import MixedClassifier

    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))
    nan = torch.nn.Sequential(lin, torch.nn.Dropout(0.0), torch.nn.Identity())
    with torch.no_grad():
        nan[0][1].bias.fill_(float("nan"))
    x, y = torch.rand(6, 12), torch.randint(0, 4, (6,))
    threat, ensemble = ThreatModel("inf", 0.1), Ensemble(attacks=["apgd-ce"], steps=2)
    with pytest.raises(ModelError, match="NaN"):
        evaluate(nan, x, y, threat=threat, ensemble=ensemble)
    probs = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4), torch.nn.Softmax(-1))
    with pytest.raises(ModelError, match="probabilities"):
        evaluate(probs, x, y, threat=threat, ensemble=ensemble)
    good = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))
    with pytest.raises(ModelError, match="h \\(rob|'s h"):   # hidden inside a mixture: its h is probed
        evaluate(MixedClassifier(good, probs, 0.5), x, y, threat=threat, ensemble=ensemble)


def test_low_precision_attack_steps_keep_float32_judgements():
    """precision='bf16': the attacks step under autocast, but clean accuracy, every candidate and the result are
    judged by the float32 model (checked here on the returned worst-case inputs)."""
    from robustmix.attacks import evaluate
    from robustmix.mixing import MixedClassifier

    torch.manual_seed(0)
    g = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))
    h = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))
    model = MixedClassifier(g, h, 0.5)
    x, y = torch.rand(16, 12), torch.randint(0, 4, (16,))
    res = evaluate(model, x, y, threat=ThreatModel("inf", 0.05),
                   ensemble=Ensemble(attacks=["apgd-*"], steps=5, precision="bf16"))
    with torch.no_grad():
        clean = model(x).argmax(1) == y
        judged = model(res.x_adv).argmax(1) == y
    assert torch.equal(res.clean_correct, clean)
    assert torch.equal(res.robust, judged & clean)
    assert res.settings["precision"] == "bf16"
    with pytest.raises(ConfigError, match="precision must be one of"):
        Ensemble(precision="int8")
