"""Typed all the way down: a summary's fields are values or small frozen records, read back typed and checked.

ALLOWED lists the fields still declared as a bare ``dict`` or ``list`` (or with ``Any`` inside), each with the reason.
The list must shrink, never grow: a new field gets a declared type (a value, an :class:`~robustmix.results.Interval`,
a :class:`~robustmix.results.Record`, or a list / keyed map of those), not a place here.
"""

import dataclasses
import json
import types
import typing
from pathlib import Path

import pytest

from robustmix.errors import ConfigError
from robustmix.results import KINDS, Interval, Record, Summary, SweepSummary, Value, load_summary
from robustmix.results.values import field_types

ROOT = Path(__file__).resolve().parent.parent

ALLOWED = {
    "MixerChoice.mixing_net": "the mixing network's own configuration (MixingNet.config(), robustmix.mixing)",
    "ParetoCalibration.nonlinear": "the MixedNUTS fits as robustmix.fitting.mixednuts's to_dict() writes them",
}


def _bare(tp) -> bool:
    """A dict or list whose contents are not declared: bare, ``Any``, or holding such a type."""
    if tp in (dict, list) or tp is typing.Any:
        return True
    return any(_bare(a) for a in typing.get_args(tp))


def _records(tp):
    """The typed values with fields of their own (records, summaries, ...) a declared type holds (in a union, a
    list or a keyed map)."""
    if isinstance(tp, type) and issubclass(tp, Value) and dataclasses.is_dataclass(tp):
        yield tp
    for a in typing.get_args(tp):
        yield from _records(a)


def _fields():
    """(owner.field, declared type) for every field of every summary kind and of every record inside them."""
    seen, todo, out = set(), [Summary, *KINDS.values()], []
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        own = {f.name for f in dataclasses.fields(cls)} if cls is Summary else set(vars(cls).get("__annotations__", {}))
        for name, tp in field_types(cls).items():
            if name in own:
                out.append((f"{cls.__name__}.{name}", tp))
            todo += _records(tp)
    return out


def test_no_summary_field_is_a_bare_dict_or_list():
    bare = sorted(name for name, tp in _fields() if _bare(tp) and name not in ALLOWED)
    assert not bare, ("declare these fields' shape (a value, Interval, a Record in results/, or list[...] / "
                      f"dict[str, ...] of those) instead of a bare dict or list: {bare}")


def test_the_allow_list_holds_only_fields_that_are_still_bare():
    fields = dict(_fields())
    stale = sorted(name for name in ALLOWED if name not in fields or not _bare(fields[name]))
    assert not stale, f"typed now (or gone): remove from ALLOWED in tests/test_results_typed.py: {stale}"


def _stored():
    return sorted((ROOT / "results").rglob("summary.json"))


def _conforms(value, tp) -> bool:
    """Whether a loaded value is of its declared type, all the way down."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    if origin is dict:
        return type(value) is dict and all(_conforms(v, args[1]) for v in value.values())
    if tp is typing.Any:
        return True
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) or value is None
    if tp is type(None):
        return value is None
    if isinstance(tp, type) and issubclass(tp, Record):
        return isinstance(value, tp) and all(_conforms(getattr(value, k), t) for k, t in field_types(tp).items())
    return isinstance(value, tp)


@pytest.mark.parametrize("path", _stored(), ids=lambda p: str(p.parent.relative_to(ROOT / "results")))
def test_every_stored_summary_loads_typed_and_writes_back_the_same_json(path):
    stored = json.loads(path.read_text())
    typed = load_summary(path)
    bad = [name for name, tp in field_types(type(typed)).items() if not _conforms(getattr(typed, name), tp)]
    assert not bad, f"fields not read back as their declared types: {bad}"
    written = typed.to_dict()
    # an older file gains only the fields added since (with their defaults) and today's schema version
    assert {k: v for k, v in written.items() if k in stored and k != "schema_version"} == \
        {k: v for k, v in stored.items() if k != "schema_version"}
    assert set(written) - set(stored) <= {"schema_version"} | {f.name for f in dataclasses.fields(typed)}


def test_a_wrong_value_deep_inside_is_refused_with_its_place():
    good = {"kind": "sweep", "schema_version": 2, "alphas": [0.0, 1.0], "n": 10,
            "accuracy": {"mix": [0.1, 0.5]}, "ci95": {"mix": [[0.0, 0.4], [0.2, 0.8]]}, "table1": {}}
    s = SweepSummary.from_dict(good)
    assert s.ci95["mix"][1] == Interval(0.2, 0.8) and s.to_dict() == {**good, "command": "", "settings": {}}
    with pytest.raises(ConfigError, match=r"not a valid sweep summary \(ci95\.mix\[1\] is \[0\.2\], not an "
                                          r"interval \[lo, hi\]\); rerun"):
        SweepSummary.from_dict({**good, "ci95": {"mix": [[0.0, 0.4], [0.2]]}})
    with pytest.raises(ConfigError, match=r"table1\.g has unknown fields \['gap'\]"):
        SweepSummary.from_dict({**good, "table1": {"g": {"gap": 0.5}}})


def test_records_read_and_compare_like_the_json_they_are_stored_as():
    s = SweepSummary.from_dict({"alphas": [0.0], "n": 4, "accuracy": {"clean": [1.0]}, "ci95": {"clean": [[0.4, 1.0]]},
                                "table1": {"g": {"clean_correct": None, "clean_correct_n": 0}}})
    row = s.table1["g"]
    assert row.clean_correct is None and row.adv_correct is None             # given as null, and absent: both None
    assert "clean_correct" in row and "adv_correct" not in row and row["clean_correct_n"] == 0
    assert row == {"clean_correct": None, "clean_correct_n": 0} and row.to_json() == row   # absent stays absent
    lo, hi = s.ci95["clean"][0]
    assert (lo, hi) == (0.4, 1.0) and s.ci95["clean"][0] == [0.4, 1.0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.clean_correct = 0.5
