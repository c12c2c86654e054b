"""The summary contract: one dataclass per kind with a versioned JSON schema, and the sections it renders.

Every summary serialises to a JSON object ``{"kind": ..., "schema_version": ..., <fields>}`` and is rebuilt with
:meth:`Summary.from_dict`, which refuses another kind, a newer schema or unknown fields with a message that says how
to regenerate the file.  Reports and the command line read fields by name.  All accuracies are fractions in
[0, 1] and every one that comes from examples carries its two-sided 95% Clopper-Pearson interval and n.
The kinds live in the family modules beside this one (attacks, certify, mixers, pipelines); each registers itself
in :data:`KINDS` when its class is defined.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from .._binomial import binomial_ci
from .._io import read_json, write_json
from ..errors import ConfigError
from .values import Record, Value, decode, field_types, record, to_json

SCHEMA_VERSION = 2        # 2: every summary may carry the command line that produced it (``command``)
KINDS: dict[str, type] = {}


def rate_ci(fraction: float, n: int) -> list[float]:
    return list(binomial_ci(round(fraction * n), n))


def _setting_text(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclasses.dataclass
class Section:
    """One part of a report: a title, a paragraph, tables (rows of strings, the first a header) and figure files."""

    title: str
    text: str
    tables: list = dataclasses.field(default_factory=list)
    figures: list = dataclasses.field(default_factory=list)


def figure_dir(out_dir) -> Path | None:
    return None if out_dir is None else Path(out_dir) / "figures"


def with_command(text: str, command: str) -> str:
    return text + (f" Command: `{command}`." if command else "")


@record
class DataSplit(Record):
    """One split of the user's data a run used: the rule that made it, n, the examples of each class, and each
    example's origin (a file relative to the folder, or a row of the file's x)."""

    rule: str
    n: int
    class_counts: list[int]
    items: list[str | int]


@record
class DataSource(Record):
    """The user's own data (--data) a run used: where it came from, its format, image shape and classes (folder
    names; none for files), and the splits it drew on."""

    path: str
    format: str
    shape: list[int]
    num_classes: int
    classes: list[str]
    splits: dict[str, DataSplit]


@dataclasses.dataclass
class Summary(Value):
    """Base class: JSON round trip with kind and schema checks, and a report section of its own (:meth:`render`).

    Every field holds its declared type: JSON given to the constructor (by :meth:`from_dict` or a caller) or
    assigned later becomes typed values on the way in, checked key by key."""

    KIND: ClassVar[str] = ""
    command: str = dataclasses.field(default="", kw_only=True)   # the command line that produced it
    data: DataSource | None = dataclasses.field(default=None, kw_only=True)   # --data: what the run used

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.KIND:
            KINDS[cls.KIND] = cls

    def __setattr__(self, name, value):
        tp = field_types(type(self)).get(name)
        super().__setattr__(name, value if tp is None else decode(tp, value, name))

    def to_json(self) -> dict:
        return self.to_dict()

    @classmethod
    def from_json(cls, data, where: str = ""):
        return data if isinstance(data, cls) else cls.from_dict(data)

    def to_dict(self) -> dict:
        out = {"kind": self.KIND, "schema_version": SCHEMA_VERSION,
               **{f.name: to_json(getattr(self, f.name)) for f in dataclasses.fields(self)}}
        if out.get("data") is None:
            out.pop("data", None)
        return out

    def settings_sections(self) -> list[Section]:
        """The options the run was made with, defaults included (the command line shows only what was typed):
        models, data, threat model, budgets, seed."""
        settings = getattr(self, "settings", None)
        if not settings:
            return []
        rows = [["setting", "value"]]
        for key, value in settings.items():
            if key in ("out", "fresh") or value is None or isinstance(value, Mapping):
                continue
            if isinstance(value, (list, tuple)):
                if len(value) > 24:
                    continue
                value = " ".join(_setting_text(v) for v in value)
            rows.append([key, _setting_text(value)])
        if len(rows) == 1:
            return []
        return [Section("Settings", "The options this run was made with, defaults included (settings.json holds "
                                    "them all).", [rows])]

    def data_sections(self) -> list[Section]:
        """The report's account of the user's own data (--data): where it came from, its classes, and per split the
        rule that made it and the examples of each class used; none for the named data sets."""
        d = self.data
        if not d:
            return []
        k, names, splits = d.num_classes, d.classes, d.splits
        text = (f"Images from `{d.path}` ({d.format}, shape {'x'.join(map(str, d.shape))}, "
                f"{k} classes" + ("; class k is the k-th folder name in sorted order" if names else "") + "). "
                + " ".join(f"{s}: {v.n} examples, {v.rule}." for s, v in splits.items())
                + " summary.json lists every example's file (or row of x) under data.splits.")
        if k > 100:
            return [Section("Data", text + (" Classes: " + ", ".join(f"{i} {c}" for i, c in enumerate(names)) + "."
                                            if names else ""))]
        rows = [["class"] + (["name"] if names else []) + [f"{s} examples" for s in splits]]
        rows += [[str(i)] + ([names[i]] if names else []) +
                 [str(v.class_counts[i]) if i < len(v.class_counts) else "0" for v in splits.values()]
                 for i in range(k)]
        return [Section("Data", text, [rows])]

    @classmethod
    def from_dict(cls, data: dict):
        if not isinstance(data, dict):
            raise ConfigError(f"a {cls.KIND} summary must be a JSON object")
        kind, version = data.get("kind", cls.KIND), data.get("schema_version", SCHEMA_VERSION)
        if kind != cls.KIND:
            raise ConfigError(f"expected a {cls.KIND} summary, got kind {kind!r}")
        check_version(version)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        body = {k: v for k, v in data.items() if k not in ("kind", "schema_version")}
        unknown, missing = set(body) - set(fields), {n for n, f in fields.items() if n not in body and
                                                      f.default is dataclasses.MISSING and
                                                      f.default_factory is dataclasses.MISSING}
        if unknown or missing:
            raise ConfigError(f"not a valid {cls.KIND} summary (unknown fields {sorted(unknown)}, missing "
                              f"{sorted(missing)}); rerun the command that wrote it")
        try:
            return cls(**body)
        except ConfigError as exc:
            raise ConfigError(f"not a valid {cls.KIND} summary ({exc}); rerun the command that wrote it") from None

    def save(self, path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path):
        return cls.from_dict(read_json(path, what=f"{cls.KIND} summary"))

    def render(self, out_dir=None) -> list[Section]:
        """This summary's report sections; with ``out_dir`` its figures are drawn under ``out_dir/figures``."""
        raise NotImplementedError

    def summary_line(self) -> str:
        """One line for the console: the result that matters, with n and its 95% interval."""
        return ""


def check_version(version) -> None:
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ConfigError(f"summary schema version {version!r} is newer than this robustmix understands "
                          f"({SCHEMA_VERSION}); upgrade robustmix or rerun the command")


def summary_from_dict(data) -> Summary:
    """Any stored summary, typed by its ``kind`` (summaries written before kinds existed are recognised too)."""
    if not isinstance(data, dict):
        raise ConfigError("a robustmix summary must be a JSON object")
    if "kind" not in data:
        data = upgrade_legacy(data)
    kind = data.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"unknown summary kind {kind!r}; this robustmix reads "
                          f"{', '.join(sorted(KINDS))}: rerun the command that wrote it")
    return KINDS[kind].from_dict(data)


def upgrade_legacy(data: dict) -> dict:
    """A summary written before summaries carried their kind (robustmix 0.1 folders), in today's schema."""
    data = dict(data)
    if "schema" in data and "curves" in data:                        # scripts/lipschitz_certified.py, schema 1
        version = data.pop("schema")
        return {**data, "kind": "lipschitz-certified", "schema_version": version}
    if "alpha" in data and "clean" in data and "accuracy" not in data:  # attack: accuracies at the top level
        keys = [k for k in ("clean", "pgd", "autoattack") if isinstance(data.get(k), float)]
        n = data["n"]
        return {"kind": "attack", "n": n, "alpha": data["alpha"], "accuracy": {k: data[k] for k in keys},
                "ci95": {k: rate_ci(data[k], n) for k in keys},
                "settings": {k: v for k, v in data.items() if k not in keys + ["n", "alpha"]}}
    if "alphas" in data and "table1" in data:                        # sweep without intervals
        ci = {k: [rate_ci(v, data["n"]) for v in vals] for k, vals in data["accuracy"].items()}
        return {"ci95": ci, **data, "kind": "sweep"}
    if "gammas" in data and "curves" in data:
        return {**data, "kind": "tradeoff"}
    if any(k in data for k in ("sweep", "tradeoff", "headline")):     # the first demo summaries
        return {**data, "kind": "demo"}
    if "certified" in data:                                           # the first fig3 summaries
        return {**data, "kind": "fig3"}
    return data


def load_summary(path) -> Summary:
    return summary_from_dict(read_json(path, what="robustmix summary"))


def norm_name(norm) -> str:
    return "l_inf" if str(norm).lower() in ("inf", "linf", "math.inf") or norm == float("inf") else f"l_{norm}"
