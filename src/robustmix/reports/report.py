"""A run's report: its summary's sections as Markdown, a self-contained HTML page (plots embedded) and console text."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from ..results import Section, Summary, summary_from_dict
from .format import markdown_table, text_table

STYLE = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
         "text-align:right}th{background:#f0f0f0}img{max-width:100%;margin:0.5em 0}code{background:#f4f4f4}")


def _typed(summary) -> Summary:
    return summary if isinstance(summary, Summary) else summary_from_dict(summary)


def _html_table(rows) -> str:
    return "<table>" + "".join("<tr>" + "".join(f"<{t}>{html.escape(c)}</{t}>" for c in r) + "</tr>"
                               for t, r in (("th" if i == 0 else "td", r) for i, r in enumerate(rows))) + "</table>"


def _html_text(text: str) -> str:
    """Paragraph text with `code` spans."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def write_report(summary, out_dir, title: str | None = None) -> dict[str, Path]:
    """Write ``report.md`` and ``report.html`` for a summary (typed or its stored dict) into ``out_dir``.

    Returns {"html", "markdown"} plus each figure's PNG by its file stem.
    """
    out_dir, typed = Path(out_dir), _typed(summary)
    title = title or f"robustmix {typed.KIND} report"
    sections: list[Section] = typed.render(out_dir) + typed.data_sections() + typed.settings_sections()
    md, body, figs = [f"# {title}", ""], [f"<h1>{html.escape(title)}</h1>"], {}
    for sec in sections:
        md += [f"## {sec.title}", "", sec.text, ""]
        body += [f"<h2>{html.escape(sec.title)}</h2>", f"<p>{_html_text(sec.text)}</p>"]
        for rows in sec.tables:
            md += [markdown_table(rows), ""]
            body.append(_html_table(rows))
        for fig in map(Path, sec.figures):
            figs[fig.stem] = fig
            md += [f"![{fig.stem}]({fig.relative_to(out_dir).as_posix()})", ""]
            data = base64.b64encode(fig.read_bytes()).decode()
            body.append(f'<img alt="{html.escape(fig.stem)}" src="data:image/png;base64,{data}">')
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>")
    (out_dir / "report.md").write_text("\n".join(md), encoding="utf-8")
    (out_dir / "report.html").write_text(page, encoding="utf-8")
    return {"html": out_dir / "report.html", "markdown": out_dir / "report.md", **figs}


def terminal_summary(summary) -> str:
    """The summary's sections as console text: titles, tables, and the one-line headline."""
    typed = _typed(summary)
    parts = [f"{sec.title}\n" + "\n\n".join(text_table(t) for t in sec.tables) for sec in typed.render() if sec.tables]
    line = typed.summary_line()
    return "\n\n".join(parts + ([line] if line else []))
