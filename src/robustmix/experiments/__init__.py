"""Experiments: alpha sweeps, trade-off curves of eq. (1)-(3), certified curves; per-example resumable records."""

from .certified import CertifyConfig, certified_curve, match_clean_accuracy, radii_from_records, run_certify
from .records import RecordStore, read_records
from .sweep import SweepConfig, naive_sweep, run_sweep, summarize
from .tradeoff import TradeoffConfig, run_tradeoff, summarize_tradeoff

__all__ = ["CertifyConfig", "certified_curve", "match_clean_accuracy", "radii_from_records", "run_certify",
           "RecordStore", "read_records", "SweepConfig", "naive_sweep", "run_sweep", "summarize", "TradeoffConfig",
           "run_tradeoff", "summarize_tradeoff"]
