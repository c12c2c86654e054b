"""Plots and reports, read from summaries and records."""

from .plots import fmt_pct, plot_certified, plot_sweep, plot_tradeoff
from .report import terminal_summary, write_report

__all__ = ["plot_sweep", "plot_tradeoff", "plot_certified", "fmt_pct", "write_report", "terminal_summary"]
