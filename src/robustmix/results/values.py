"""Typed values inside summaries, and the one codec between them and the JSON of ``summary.json``.

A summary's fields are plain values (numbers, strings, lists and keyed maps of them) or small frozen values:
:class:`Interval` (stored as ``[lo, hi]``) and :class:`Record` subclasses (stored as JSON objects, one key per
field).  :func:`decode` reads JSON into a field's declared type, checking every key and value on the way, and
:func:`to_json` writes the typed value back as the same JSON.  Numbers may be ``null`` wherever a float is
declared: that is how the JSON files write NaN and infinities.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, Union

from ..errors import ConfigError

# a frozen record: fields by keyword, equality by JSON form (Value.__eq__)
record = dataclasses.dataclass(frozen=True, eq=False, kw_only=True)


class _Absent:
    def __repr__(self) -> str:
        return "absent"


ABSENT = _Absent()


def optional(**kwargs):
    """A record field whose key the JSON may leave out (older files, or runs that did not compute it): it reads None
    then, and is left out again when the record is written (a None given explicitly is written as null)."""
    return dataclasses.field(default=ABSENT, **kwargs)


class Value:
    """A typed value stored as plain JSON: :meth:`to_json` writes it, :meth:`from_json` reads and checks it.

    A value equals its JSON form as well (``interval == [lo, hi]``), so code written against ``summary.json`` keeps
    working on typed summaries."""

    def to_json(self):
        raise NotImplementedError

    @classmethod
    def from_json(cls, data, where: str = ""):
        raise NotImplementedError

    def __eq__(self, other):
        if isinstance(other, Value):
            return type(self) is type(other) and self.to_json() == other.to_json()
        if isinstance(other, (dict, list, tuple)):
            return self.to_json() == (list(other) if isinstance(other, tuple) else other)
        return NotImplemented

    __hash__ = None


@dataclasses.dataclass(frozen=True, eq=False)
class Interval(Value):
    """A two-sided 95% confidence interval of a fraction, stored as ``[lo, hi]``; ``lo, hi = ci`` and ``ci[0]``
    work as on the stored list."""

    lo: float | None
    hi: float | None

    def to_json(self) -> list:
        return [self.lo, self.hi]

    @classmethod
    def from_json(cls, data, where: str = "") -> Interval:
        if isinstance(data, cls):
            return data
        if not (isinstance(data, (list, tuple)) and len(data) == 2 and all(_is_number(v) or v is None for v in data)):
            raise ConfigError(f"{where or 'an interval'} is {data!r}, not an interval [lo, hi]")
        return cls(*data)

    def __iter__(self):
        return iter((self.lo, self.hi))

    def __getitem__(self, i):
        return (self.lo, self.hi)[i]

    def __len__(self) -> int:
        return 2


class Empty(Value):
    """A JSON object with nothing in it (``{}``), where a step had nothing to report; it is false, like ``{}``."""

    def to_json(self) -> dict:
        return {}

    @classmethod
    def from_json(cls, data, where: str = "") -> Empty:
        if isinstance(data, cls):
            return data
        if data != {}:
            raise ConfigError(f"{where or 'an empty record'} is {data!r}, not {{}}")
        return cls()

    def __bool__(self) -> bool:
        return False


class Record(Value):
    """A frozen dataclass (made with :data:`record`) stored as a JSON object, one key per field; a field made with
    :func:`optional` that was not given is None and stays out of the JSON.  It reads like that object too:
    ``point["clean"]``, ``point.get("alpha")``, ``"alpha" in point``; typed code reads attributes."""

    def __post_init__(self):
        absent = frozenset(f.name for f in dataclasses.fields(self) if getattr(self, f.name) is ABSENT)
        for name in absent:
            object.__setattr__(self, name, None)
        object.__setattr__(self, "_absent", absent)

    def to_json(self) -> dict:
        return {f.name: to_json(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name in self}

    @classmethod
    def from_json(cls, data, where: str = "") -> Record:
        where = where or cls.__name__
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise ConfigError(f"{where} is {type(data).__name__}, not a JSON object")
        check_keys(cls, data, where)
        return cls(**{k: decode(hint, data[k], f"{where}.{k}") for k, hint in field_types(cls).items() if k in data})

    def __contains__(self, key) -> bool:
        return key in field_types(type(self)) and key not in self._absent

    def __getitem__(self, key):
        if key not in self:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key, default=None):
        return getattr(self, key) if key in self else default


@functools.cache
def field_types(cls) -> dict[str, Any]:
    """The declared type of each of a dataclass's init fields (annotations resolved in its module)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def check_keys(cls, data: dict, where: str) -> None:
    """Refuse keys ``cls`` has no field for and required fields ``data`` lacks."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    missing = sorted(n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
    if unknown or missing:
        raise ConfigError(f"{where} has unknown fields {unknown} and lacks {missing}")


class Settings(Value, Mapping):
    """The settings a run was made with: its command's options by name (groups flattened, as ``settings.json``
    holds them) plus what the run adds (e.g. ``samples_per_image``).  Each value is an option value: a number,
    string, bool or None, a list of them, or one nested configuration of such values (a mixing network's).

    Read like the JSON object it is stored as (``settings["eps"]``, ``settings.get("sigma")``); the command layer
    rebuilds the typed config from it (``robustmix.commands.common.config_from_settings``).  Frozen once made."""

    def __init__(self, values: Mapping | None = None):
        object.__setattr__(self, "_values", dict(values or {}))

    def __setattr__(self, name, value):
        raise AttributeError("Settings are frozen; make new ones with Settings({**old, key: value})")

    def __getitem__(self, key):
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Settings({self._values!r})"

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self._values.items()}

    @classmethod
    def from_json(cls, data, where: str = "") -> Settings:
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where or 'settings'} is {type(data).__name__}, not a JSON object of option values")
        for key, value in data.items():
            if not isinstance(key, str) or not _option_value(value, nested=True):
                raise ConfigError(f"{where or 'settings'}.{key} is {value!r}, not an option value (a number, string, "
                                  "bool, None or a list of them)")
        return cls(data)


def _option_value(value, nested: bool = False) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_option_value(v) or (isinstance(v, (list, tuple)) and all(_option_value(w) for w in v))
                   for v in value)
    return nested and isinstance(value, Mapping) and all(isinstance(k, str) and _option_value(v, nested=True)
                                                         for k, v in value.items())


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


SCALARS = {float: lambda v: _is_number(v) or v is None, int: lambda v: isinstance(v, int) and not isinstance(v, bool),
           bool: lambda v: isinstance(v, bool), str: lambda v: isinstance(v, str), type(None): lambda v: v is None}


def decode(tp, value, where: str):
    """``value`` (JSON, or already typed) as declared type ``tp``; a ConfigError naming ``where`` when it is not one."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return decode(option, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where} is {value!r}, none of {tp}")
    if isinstance(tp, type) and issubclass(tp, Value):
        return tp.from_json(value, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} is {type(value).__name__}, not a list")
        return [decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} is {type(value).__name__}, not a JSON object")
        return {k: decode(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp in (dict, list):        # a field still without a declared shape (tests/test_results_typed.py lists them)
        if not isinstance(value, tp):
            raise ConfigError(f"{where} is {type(value).__name__}, not a {'JSON object' if tp is dict else 'list'}")
        return value
    if tp not in SCALARS:
        raise TypeError(f"{where}: no codec for the declared type {tp!r} (declare a value, a Value or a list / dict "
                        "of those)")
    if not SCALARS[tp](value):
        raise ConfigError(f"{where} is {value!r}, not a {tp.__name__}")
    return value


def to_json(value):
    """A typed value (or a list, map or plain value holding typed ones) as plain JSON, the form :func:`decode`
    reads."""
    if isinstance(value, Value):
        return value.to_json()
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value
