"""Experiments: alpha sweeps, trade-off curves of eq. (1)-(3), certified curves; all through one resumable runner."""

from .certified import CertifyConfig, certified_curve, match_clean_accuracy, radii_from_records, run_certify
from ..results import (AttackSummary, CalibrationSummary, CertifySummary, Summary, SweepSummary, TradeoffSummary,
                      binomial_ci)
from .runner import Records, read_records, run_records
from .sweep import SweepConfig, naive_sweep, run_sweep, summarize
from .tradeoff import TradeoffConfig, run_tradeoff, summarize_tradeoff

__all__ = ["CertifyConfig", "certified_curve", "match_clean_accuracy", "radii_from_records", "run_certify",
           "AttackSummary", "CalibrationSummary", "CertifySummary", "Summary", "SweepSummary", "TradeoffSummary",
           "binomial_ci", "Records", "read_records", "run_records", "SweepConfig", "naive_sweep", "run_sweep", "summarize",
           "TradeoffConfig", "run_tradeoff", "summarize_tradeoff"]
