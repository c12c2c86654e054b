"""Options of a config dataclass: one place for a setting's default, type, help text and command-line flag.

A field made with :func:`option` is a setting a user may give (on the command line or in a YAML file);
its metadata says how.  The command line (``robustmix.cli``) is generated from these fields, so a
default is written once, here, and every ``--help`` shows it.  Fields made with plain
``dataclasses.field`` (or a bare default) are internal knobs: they keep their defaults on the CLI.
"""

from __future__ import annotations

import dataclasses
import typing


def option(default=None, help: str = "", *, factory=None, flags: tuple = (), of=None, choices=None,
           positional: bool = False, metavar: str | None = None, shown: str | None = None, required: bool = False):
    """A user-facing setting.

    ``help`` says what it does (the default is appended by the CLI; ``shown`` replaces how the default
    is printed); ``flags`` are the command-line spellings (default ``--name-with-dashes``); ``of`` is the
    element type of a list; ``choices`` the allowed values; ``positional`` makes it a positional argument;
    ``required`` makes the command line insist on it (the field's own default stays None for the API).
    """
    if not help:
        raise TypeError("an option needs a help text")
    meta = {"help": help, "flags": tuple(flags), "of": of, "choices": choices, "positional": positional,
            "metavar": metavar, "shown": shown, "required": required}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"option": meta})
    return dataclasses.field(default=default, metadata={"option": meta})


def option_of(cls, name: str):
    """The option ``name`` of the config dataclass ``cls`` again, for another config (one default, one help)."""
    f = cls.__dataclass_fields__[name]
    if f.default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=f.default_factory, metadata=f.metadata)
    return dataclasses.field(default=f.default, metadata=f.metadata)


def options(cls) -> list[tuple[dataclasses.Field, dict, type]]:
    """The user-facing fields of a config dataclass: (field, option metadata, resolved type), in field order."""
    hints = typing.get_type_hints(cls)
    return [(f, f.metadata["option"], hints[f.name]) for f in dataclasses.fields(cls) if "option" in f.metadata]


def default_of(f: dataclasses.Field):
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def subset(config, cls, **overrides):
    """An instance of the dataclass ``cls`` built from the same-named fields of ``config`` (plus ``overrides``)."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    return cls(**{**{k: getattr(config, k) for k in names if hasattr(config, k)}, **overrides})


class Checked:
    """Mixin for config dataclasses built from several groups: ``__post_init__`` runs every group's ``check``.

    Each class in the MRO may define ``check(self)`` (or, for a plain config dataclass used as a group,
    ``__post_init__``); they run base first, each once, and may normalise values in place.
    """

    def __post_init__(self):
        for cls in reversed(type(self).__mro__):
            for name in ("__post_init__", "check"):
                method = vars(cls).get(name)
                if method is not None and cls is not Checked:
                    method(self)
