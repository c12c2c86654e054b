"""Settings of a config dataclass: one place for a setting's default, type, help text and command-line flag.

A field made with :func:`option` is a setting a user may give (on the command line or in a YAML file); its
metadata says how.  A field made with :func:`group` holds an option group (a dataclass such as
:class:`robustmix.groups.ThreatModel`) whose own options become flags of their own name, as tyro flattens nested
dataclasses: ``--norm``, ``--eps``.  The command line (``robustmix.cli``) is generated from these fields, so a
default is written once and every ``--help`` shows it.  Fields made with plain ``dataclasses.field`` (or a bare
default) are internal knobs: they keep their defaults on the command line.

A group checks its own values in its ``__post_init__``; a command or config checks only what ties groups
together, in its own ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
import warnings

HOW = frozenset({"factory", "flags", "of", "choices", "positional", "metavar", "shown", "required"})


def option(default=None, help: str = "", **how):
    """A user-facing setting.

    ``help`` says what it does (the default is appended by the CLI).  ``how`` may give: ``flags``, the command-line
    spellings (default ``--name-with-dashes``); ``of``, the element type of a list; ``choices``, the allowed values
    (default: a ``Literal`` type's); ``positional``; ``metavar``; ``shown``, how the default is printed; ``required``
    (the command line insists; the field's own default stays for the API); ``factory`` for a mutable default.
    """
    if not help:
        raise TypeError("an option needs a help text")
    unknown = set(how) - HOW
    if unknown:
        raise TypeError(f"option() got unknown setting(s) {sorted(unknown)}; use {sorted(HOW)}")
    meta = {"help": help, "flags": tuple(how.get("flags", ())), "of": how.get("of"), "choices": how.get("choices"),
            "positional": how.get("positional", False), "metavar": how.get("metavar"), "shown": how.get("shown"),
            "required": how.get("required", False)}
    if how.get("factory") is not None:
        return dataclasses.field(default_factory=how["factory"], metadata={"option": meta})
    return dataclasses.field(default=default, metadata={"option": meta})


def group(cls, *, help: dict | None = None, only: tuple | None = None, **defaults):
    """A field holding the option group ``cls`` (a dataclass), with this config's own ``defaults`` and ``help``
    texts for some of its options; ``only`` keeps just these of its options as flags (the others keep defaults)."""
    meta = {"group": {"help": dict(help or {}), "only": tuple(only) if only else None, "defaults": dict(defaults)}}
    return dataclasses.field(default_factory=functools.partial(cls, **defaults), metadata=meta)


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One flag of a command: ``path`` of field names from the command to the option (a group's options sit one
    level down), the dataclass field, its option metadata (help possibly overridden), its type and default."""

    path: tuple
    field: dataclasses.Field
    meta: dict
    type: object
    default: object

    @property
    def name(self) -> str:
        return self.path[-1]


def is_group(f: dataclasses.Field) -> bool:
    return "group" in f.metadata


def leaves(cls, path: tuple = (), overrides: dict | None = None) -> list[Leaf]:
    """Every user-facing option of the config dataclass ``cls``, groups flattened, in field order."""
    hints = typing.get_type_hints(cls)
    overrides = overrides or {"help": {}, "only": None, "defaults": {}}
    out = []
    for f in dataclasses.fields(cls):
        if overrides["only"] is not None and f.name not in overrides["only"] and not is_group(f):
            continue
        if is_group(f):
            inner = f.metadata["group"]
            out += leaves(group_type(hints[f.name]), path + (f.name,), inner)
        elif "option" in f.metadata:
            meta = dict(f.metadata["option"])
            meta["help"] = overrides["help"].get(f.name, meta["help"])
            default = overrides["defaults"].get(f.name, default_of(f))
            out.append(Leaf(path + (f.name,), f, meta, hints[f.name], default))
    return out


def internal_defaults(cls, defaults: dict | None = None) -> dict:
    """{name: default} of the fields of ``cls`` and its groups that are not options (robustmix's own knobs, which
    settings.json lists beside the options)."""
    hints, defaults, out = typing.get_type_hints(cls), defaults or {}, {}
    for f in dataclasses.fields(cls):
        if is_group(f):
            out.update(internal_defaults(group_type(hints[f.name]), f.metadata["group"]["defaults"]))
        elif "option" not in f.metadata and not f.name.startswith("_"):
            out[f.name] = defaults.get(f.name, default_of(f))
    return out


def group_type(hint):
    """The dataclass of a group field's annotation (``ThreatModel`` or ``ThreatModel | None``)."""
    if dataclasses.is_dataclass(hint):
        return hint
    args = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
    if len(args) != 1:
        raise TypeError(f"a group field must be annotated with one dataclass, got {hint!r}")
    return args[0]


def check_literals(config) -> None:
    """Refuse a value outside its field's ``Literal[...]`` choices, naming the flag and the choices."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if typing.get_origin(a) is typing.Literal] or \
            ([hint] if typing.get_origin(hint) is typing.Literal else [])
        if args and getattr(config, f.name) not in typing.get_args(args[0]) and getattr(config, f.name) is not None:
            from .errors import ConfigError

            raise ConfigError(f"--{f.name.replace('_', '-')} must be one of "
                              f"{', '.join(map(str, typing.get_args(args[0])))}, got {getattr(config, f.name)!r}")


def default_of(f: dataclasses.Field):
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def build(cls, given: dict, defaults: dict | None = None, only: tuple | None = None):
    """An instance of the config dataclass ``cls`` from ``given`` option values (by name; names are unique within a
    command): each group is made once, from its defaults in this config and the values given for it, so it checks
    itself once."""
    hints, defaults, kwargs = typing.get_type_hints(cls), defaults or {}, {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if is_group(f):
            inner = f.metadata["group"]
            kwargs[f.name] = build(group_type(hints[f.name]), given, inner["defaults"], inner["only"])
        elif "option" in f.metadata and f.name in given and (only is None or f.name in only):
            kwargs[f.name] = given[f.name]
        elif f.name in defaults:
            kwargs[f.name] = defaults[f.name]
    return cls(**kwargs)


def flat(config, only: tuple | None = None) -> dict:
    """A config's values by name, groups flattened (the settings a records header and settings.json hold); a group
    field's options left out with ``group(only=...)`` are left out here too."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if is_group(f) and dataclasses.is_dataclass(value):
            out.update(flat(value, f.metadata["group"]["only"]))
        elif not f.name.startswith("_") and (only is None or f.name in only):
            out[f.name] = value
    return out


def accepts_old_keywords(cls):
    """Class decorator: a config whose settings moved into groups still takes them as keywords (``eps=0.1`` for
    ``threat=ThreatModel(eps=0.1)``) for one release, with a DeprecationWarning (:func:`robustmix.groups.from_keywords`)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: group_type(hints[f.name]) for f in dataclasses.fields(cls) if is_group(f)}
    own = {f.name for f in dataclasses.fields(cls)}
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        for name, sub in fields.items():
            old = {k: kwargs.pop(k) for k in [k for k in kwargs if k not in own and
                                              k in {g.name for g in dataclasses.fields(sub)}]}
            if old:
                kwargs[name] = from_keywords(sub, kwargs.get(name), old, cls.__name__)
        init(self, *args, **kwargs)

    cls.__init__ = __init__
    return cls


def refuse_unknown(deprecated: dict, caller: str, known=()) -> None:
    """TypeError, worded as Python's own, for the keywords in ``deprecated`` that ``caller`` never took (``known``:
    the old keywords it still accepts)."""
    unknown = sorted(set(deprecated) - set(known))
    if unknown:
        raise TypeError(f"{caller}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}")


def from_keywords(group: type, given, old: dict, caller: str, stacklevel: int = 3):
    """The group a function was given, or one built from the keywords it used to take (deprecated).

    ``old``: the deprecated keywords the caller received (``{}`` when none).  Mixing a group with its own old
    keywords is refused; old keywords alone still work for one release with a DeprecationWarning.
    """
    if not old:
        return given
    refuse_unknown(old, caller, {f.name for f in dataclasses.fields(group)})
    if given is not None:
        raise TypeError(f"{caller}(): give {group.__name__}(...) or its fields ({', '.join(sorted(old))}), not both")
    warnings.warn(f"{caller}({', '.join(f'{k}=' for k in old)}...) is deprecated and will be removed in the next "
                  f"release; pass {group.__name__}({', '.join(f'{k}=...' for k in old)}) instead",
                  DeprecationWarning, stacklevel=stacklevel)
    return group(**old)


def split_keywords(deprecated: dict, caller: str, *groups: tuple) -> list[dict]:
    """The deprecated keywords a function received, split by the group each belongs to (``groups``: the old
    keyword names of each); TypeError for a keyword the function never took."""
    refuse_unknown(deprecated, caller, set().union(*groups))
    return [{k: v for k, v in deprecated.items() if k in names} for names in groups]


def require_group(value, group: type, caller: str, name: str):
    """``value`` when it is a ``group``; TypeError naming the argument otherwise (e.g. a dict passed for a group)."""
    if not isinstance(value, group):
        raise TypeError(f"{caller}(): {name} must be a {group.__name__}, got {type(value).__name__}")
    return value
