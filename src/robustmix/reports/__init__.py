"""Reports: summaries' sections assembled into Markdown, a self-contained HTML page and console text.

``report`` assembles pages from :meth:`robustmix.results.Summary.render`; the summaries format their numbers and
draw their figures with :mod:`robustmix.results.format` and :mod:`robustmix.results.plots`, which this package
re-exports (``reports.format``, ``reports.plots``).  Names are imported lazily so importing the package is cheap.
"""

__all__ = ["plot_sweep", "plot_tradeoff", "plot_certified", "fmt_pct", "write_report", "terminal_summary"]


def __getattr__(name):
    if name in ("write_report", "terminal_summary"):
        from . import report

        return getattr(report, name)
    if name in ("plot_sweep", "plot_tradeoff", "plot_certified"):
        from ..results import plots

        return getattr(plots, name)
    if name == "fmt_pct":
        from ..results.format import fmt_pct

        return fmt_pct
    raise AttributeError(name)
