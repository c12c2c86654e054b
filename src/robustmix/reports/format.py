"""Tables as Markdown and console text for the pages reports assemble; the number formatting summaries use is
:mod:`robustmix.results.format`, re-exported here."""

from __future__ import annotations

from ..results.format import at_radius, fmt_ci, fmt_pct

__all__ = ["at_radius", "fmt_ci", "fmt_pct", "markdown_table", "text_table"]


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([fmt(rows[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows[1:]])
