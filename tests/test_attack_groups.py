"""The attacks' option groups: each value checked once, in its group; the old keywords still work for one release.

Every public attack function takes ``threat=ThreatModel(norm, eps)`` and its own groups instead of a dozen
keywords; the old keywords (and the old positional eps, norm) give the same results with a DeprecationWarning
that points at the caller, a group mixed with its own old keywords is a TypeError, and so is an unknown keyword.
"""

import ast
import math
import warnings
from pathlib import Path

import pytest
import torch

from robustmix import MixedClassifier, ThreatModel
from robustmix.attacks import (APGDSettings, AutoAttackSuite, DiagnosticChecks, Ensemble, MaskingCheck, PGDBudget,
                               evaluate, gradient_masking_check, run_autoattack)
from robustmix.attacks.apgd import apgd, example_keys
from robustmix.errors import ConfigError
from robustmix.training.recipes import accuracy, robust_accuracy

from .conftest import Linear2Logits

pytestmark = pytest.mark.usefixtures("one_thread")

SRC = Path(__file__).resolve().parent.parent / "src" / "robustmix"


@pytest.fixture
def data():
    g, h = Linear2Logits(seed=0), Linear2Logits(seed=1)
    mix = MixedClassifier(g, h, 0.6)
    x = torch.rand(10, 1, 3, 4, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        y = mix(x).argmax(1)
    return mix, x, y


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _deprecated(call):
    """call()'s result, and the DeprecationWarnings it gave (each must point at this file, the caller)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = call()
    dep = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert dep, "the old keywords gave no DeprecationWarning"
    assert all(w.filename == __file__ for w in dep), [(w.filename, str(w.message)) for w in dep]
    return out, [str(w.message) for w in dep]


def _quiet(call):
    """call()'s result; the new form gives no DeprecationWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        return call()


# ---------------------------------------------------------------- at most 8 named parameters

MY_FILES = ["attacks/evaluate.py", "attacks/autoattack.py", "attacks/apgd.py", "attacks/masking.py", "attacks/pgd.py",
            "attacks/__init__.py"]


def _named(fn: ast.FunctionDef) -> list[str]:
    a = fn.args
    names = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]
    return names[1:] if names[:1] in (["self"], ["cls"]) else names


def test_no_attack_function_takes_more_than_eight_named_parameters():
    wide = []
    for rel in MY_FILES:
        for node in ast.walk(ast.parse((SRC / rel).read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and len(_named(node)) > 8:
                wide.append(f"{rel}:{node.lineno} {node.name}")
    recipes = ast.parse((SRC / "training" / "recipes.py").read_text())
    fn = next(n for n in ast.walk(recipes) if isinstance(n, ast.FunctionDef) and n.name == "robust_accuracy")
    if len(_named(fn)) > 8:
        wide.append("training/recipes.py robust_accuracy")
    assert wide == []


# ---------------------------------------------------------------- the groups check themselves

@pytest.mark.parametrize("build,match", [
    (lambda: ThreatModel("inf", 0.0), "eps must be a finite number > 0"),
    (lambda: ThreatModel("inf", math.nan), "eps"),
    (lambda: ThreatModel("1", 0.1), "l_inf or the l_2 ball"),
    (lambda: PGDBudget(steps=-1), "steps"),
    (lambda: PGDBudget(restarts=0), "restarts"),
    (lambda: PGDBudget(seed="0"), "seed must be an integer or None"),
    (lambda: APGDSettings(steps=0), "steps"),
    (lambda: APGDSettings(loss="margin"), "unknown APGD loss"),
    (lambda: APGDSettings(rho=1.5), "rho"),
    (lambda: APGDSettings(momentum=-0.1), "momentum"),
    (lambda: AutoAttackSuite("fast"), "unknown AutoAttack version"),
    (lambda: AutoAttackSuite("custom"), "needs attacks"),
    (lambda: AutoAttackSuite("standard", ["apgd-ce", "pgd"]), "subset of"),
    (lambda: AutoAttackSuite(square_queries=0), "square_queries"),
    (lambda: AutoAttackSuite(seed=None), "seed must be an integer"),
    (lambda: MaskingCheck(pgd_steps=0), "pgd_steps"),
    (lambda: MaskingCheck(tolerance=-1), "tolerance"),
    (lambda: Ensemble(steps=0), "steps"),
    (lambda: Ensemble(progress="yes"), "progress"),
    (lambda: DiagnosticChecks(n=0), "n must be"),
])
def test_each_group_refuses_a_bad_value(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def test_groups_keep_one_spelling_and_are_hashable():
    assert AutoAttackSuite("custom", ["square"]) == AutoAttackSuite("custom", ("square",))
    assert AutoAttackSuite("custom", "square").attacks == ("square",)
    assert Ensemble(attacks=["aa-*", "apgd-*"]).attacks == ("aa-*", "apgd-*")
    assert Ensemble(attacks="aa-*").attacks == ("aa-*",)
    assert len({Ensemble(attacks=["aa-*"]), Ensemble(attacks=("aa-*",)), DiagnosticChecks(), PGDBudget(),
                APGDSettings(), MaskingCheck()}) == 5


@pytest.mark.parametrize("kwargs,match", [
    (dict(eps=0.0), "--eps must be a finite number > 0"),
    (dict(eps=-1), "--eps must be"),
    (dict(eps=0.1, norm="L3"), "unknown norm"),
    (dict(eps=0.1, norm="L1"), "l_inf or the l_2 ball"),
])
def test_a_bad_eps_or_norm_is_one_config_error_from_threat_model(data, kwargs, match):
    """Through the old keywords too: ThreatModel checks, the functions do not check again."""
    mix, x, y = data
    calls = [lambda: evaluate(mix, x, y, **kwargs),
             lambda: apgd(mix, x, y, kwargs["eps"], kwargs.get("norm", "inf")),
             lambda: run_autoattack(mix, x, y, **kwargs),
             lambda: gradient_masking_check(mix, x, y, **kwargs)]
    if kwargs["eps"] != 0:       # robust_accuracy's old eps=0 is the accuracy without attack (below)
        calls.append(lambda: robust_accuracy(mix, x, y, **kwargs))
    for call in calls:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            with pytest.raises(ConfigError, match=match) as info:
                call()
        assert any(entry.name == "__post_init__" and "groups.py" in str(entry.path) for entry in info.traceback)


# ---------------------------------------------------------------- evaluate

def test_evaluate_old_keywords_warn_and_give_identical_results(data):
    mix, x, y = data
    idx = torch.arange(10) + 5
    new = _quiet(lambda: evaluate(mix, x, y, threat=ThreatModel("2", 0.3), indices=idx,
                                  ensemble=Ensemble(attacks="apgd-*", steps=6, restarts=2, seed=3, batch_size=4),
                                  diagnostics=DiagnosticChecks(n=5, steps=4)))
    old, messages = _deprecated(lambda: evaluate(mix, x, y, norm="L2", eps=0.3, indices=idx, attacks="apgd-*",
                                                 steps=6, restarts=2, seed=3, batch_size=4, diagnostics=True,
                                                 diagnostic_n=5, diagnostic_steps=4))
    assert any("ThreatModel(" in m for m in messages) and any("Ensemble(" in m for m in messages)
    assert any("DiagnosticChecks(" in m for m in messages)
    for field in ("robust", "margin", "found_by", "x_adv", "settings", "clean_correct", "indices"):
        assert _same(getattr(old, field), getattr(new, field)), field
    assert [(a.name, a.ran_on, a.broke) for a in old.per_attack] == [(a.name, a.ran_on, a.broke) for a in new.per_attack]
    assert old.diagnostics.accuracy_by_eps == new.diagnostics.accuracy_by_eps
    assert old.diagnostics.subset_n == new.diagnostics.subset_n == 5
    # the old defaults: no diagnostics, and diagnostic_n alone ran none
    plain, _ = _deprecated(lambda: evaluate(mix, x, y, eps=0.3, norm="2", attacks="apgd-ce@h", steps=2,
                                            diagnostic_n=3))
    assert plain.diagnostics is None


def test_evaluate_refuses_a_group_with_its_own_old_keywords_and_unknown_ones(data):
    mix, x, y = data
    threat, ensemble = ThreatModel("inf", 0.1), Ensemble(attacks="apgd-ce@h", steps=2)
    with pytest.raises(TypeError, match="ThreatModel"):
        evaluate(mix, x, y, threat=threat, eps=0.2, ensemble=ensemble)
    with pytest.raises(TypeError, match="Ensemble"):
        evaluate(mix, x, y, threat=threat, ensemble=ensemble, steps=3)
    with pytest.raises(TypeError, match="DiagnosticChecks"):
        evaluate(mix, x, y, threat=threat, ensemble=ensemble, diagnostics=DiagnosticChecks(), diagnostic_n=3)
    with pytest.raises(TypeError, match="unexpected keyword argument.*'stepz'"):
        evaluate(mix, x, y, threat=threat, ensemble=ensemble, stepz=3)
    with pytest.raises(TypeError, match="needs threat=ThreatModel"):
        evaluate(mix, x, y, ensemble=ensemble)
    with pytest.raises(TypeError, match="needs threat=ThreatModel"):
        evaluate(mix, x, y, norm="inf", ensemble=ensemble)      # the old eps had no default either
    with pytest.raises(ConfigError, match="threat must be a ThreatModel"):
        evaluate(mix, x, y, threat=0.1, ensemble=ensemble)
    with pytest.raises(ConfigError, match="diagnostics must be a DiagnosticChecks"):
        evaluate(mix, x, y, threat=threat, ensemble=ensemble, diagnostics=5)
    # another group's old keyword beside a group is still the deprecated form of that other group
    res, _ = _deprecated(lambda: evaluate(mix, x, y, threat=threat, attacks="apgd-ce@h", steps=2))
    assert res.settings["steps"] == 2


# ---------------------------------------------------------------- apgd

def test_apgd_old_arguments_warn_and_give_identical_results(data):
    mix, x, y = data
    keys = example_keys(3, torch.arange(10), 5)
    new = _quiet(lambda: apgd(mix, x, y, ThreatModel("inf", 0.05), settings=APGDSettings(steps=7, loss="dlr"),
                              keys=keys))
    old, messages = _deprecated(lambda: apgd(mix, x, y, 0.05, math.inf, steps=7, loss="dlr", keys=keys))
    assert torch.equal(old, new) and any("APGDSettings(" in m for m in messages)
    by_keyword, _ = _deprecated(lambda: apgd(mix, x, y, eps=0.05, p="inf", steps=7, loss="dlr", keys=keys))
    assert torch.equal(by_keyword, new)
    with pytest.raises(TypeError, match="ThreatModel"):
        apgd(mix, x, y, ThreatModel("inf", 0.05), math.inf)
    with pytest.raises(TypeError, match="APGDSettings"):
        apgd(mix, x, y, ThreatModel("inf", 0.05), settings=APGDSettings(), steps=3)
    with pytest.raises(TypeError, match="multiple values for argument 'eps'"):
        apgd(mix, x, y, 0.05, math.inf, eps=0.1)
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        apgd(mix, x, y, ThreatModel("inf", 0.05), restarts=2)
    with pytest.raises(TypeError, match="needs threat"):
        apgd(mix, x, y)


# ---------------------------------------------------------------- run_autoattack

def test_run_autoattack_old_arguments_warn_and_give_identical_results(data):
    mix, x, y = data
    new = _quiet(lambda: run_autoattack(mix, x, y, ThreatModel("inf", 0.05), batch_size=5,
                                        suite=AutoAttackSuite("custom", ["apgd-ce"], seed=2)))
    old, messages = _deprecated(lambda: run_autoattack(mix, x, y, 0.05, "Linf", version="custom", attacks=["apgd-ce"],
                                                       seed=2, batch_size=5))
    assert any("AutoAttackSuite(" in m for m in messages)
    assert torch.equal(old.x_adv, new.x_adv) and torch.equal(old.robust, new.robust)
    assert old.accuracy_by_attack == new.accuracy_by_attack
    with pytest.raises(TypeError, match="ThreatModel"):
        run_autoattack(mix, x, y, ThreatModel("inf", 0.05), norm="inf")
    with pytest.raises(TypeError, match="AutoAttackSuite"):
        run_autoattack(mix, x, y, ThreatModel("inf", 0.05), suite=AutoAttackSuite(), seed=1)
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        run_autoattack(mix, x, y, ThreatModel("inf", 0.05), steps=3)


# ---------------------------------------------------------------- gradient_masking_check

def test_gradient_masking_check_old_arguments_warn_and_give_identical_results(data):
    mix, x, y = data
    check = MaskingCheck(pgd_steps=5, square_queries=20, seed=1)
    new = _quiet(lambda: gradient_masking_check(mix, x, y, ThreatModel("inf", 0.1), check=check))
    old, messages = _deprecated(lambda: gradient_masking_check(mix, x, y, 0.1, "inf", pgd_steps=5, square_queries=20,
                                                               seed=1))
    assert old == new and any("MaskingCheck(" in m for m in messages)
    with pytest.raises(TypeError, match="MaskingCheck"):
        gradient_masking_check(mix, x, y, ThreatModel("inf", 0.1), check=check, tolerance=2)
    with pytest.raises(TypeError, match="ThreatModel"):
        gradient_masking_check(mix, x, y, ThreatModel("inf", 0.1), eps=0.2)


# ---------------------------------------------------------------- robust_accuracy

def test_robust_accuracy_old_arguments_warn_and_give_identical_results(data):
    mix, x, y = data
    new = _quiet(lambda: robust_accuracy(mix, x, y, ThreatModel("2", 0.3), pgd=PGDBudget(steps=5, restarts=2, seed=3),
                                         batch_size=3))
    old, messages = _deprecated(lambda: robust_accuracy(mix, x, y, 0.3, "2", steps=5, restarts=2, seed=3,
                                                        batch_size=3))
    assert old == new and any("PGDBudget(" in m for m in messages)
    # the old eps=0: the accuracy without attack, as before (ThreatModel itself refuses a zero radius)
    clean, messages = _deprecated(lambda: robust_accuracy(mix, x, y, 0.0))
    assert clean == accuracy(mix, x, y) and "accuracy(model, x, y)" in messages[0]
    with pytest.raises(TypeError, match="PGDBudget"):
        robust_accuracy(mix, x, y, ThreatModel("2", 0.3), pgd=PGDBudget(), steps=5)
    with pytest.raises(TypeError, match="ThreatModel"):
        robust_accuracy(mix, x, y, ThreatModel("2", 0.3), "2")
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        robust_accuracy(mix, x, y, ThreatModel("2", 0.3), loss="ce")
