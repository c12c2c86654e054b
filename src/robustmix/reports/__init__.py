"""Reports: summaries' sections assembled into Markdown, a self-contained HTML page and console text.

``format`` and ``plots`` are leaves (summaries draw their own figures with them); ``report`` assembles pages
from :meth:`robustmix.results.Summary.render`.  Names are imported lazily so the leaves load on their own.
"""

__all__ = ["plot_sweep", "plot_tradeoff", "plot_certified", "fmt_pct", "write_report", "terminal_summary"]


def __getattr__(name):
    if name in ("write_report", "terminal_summary"):
        from . import report

        return getattr(report, name)
    if name in ("plot_sweep", "plot_tradeoff", "plot_certified"):
        from . import plots

        return getattr(plots, name)
    if name == "fmt_pct":
        from .format import fmt_pct

        return fmt_pct
    raise AttributeError(name)
