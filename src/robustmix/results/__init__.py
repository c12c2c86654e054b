"""Typed results: one dataclass per summary kind, with a versioned JSON schema, that renders its own report sections.

The contract (:class:`Summary`, :class:`Section`, the schema rules and the registry of kinds) is in ``base``; the
kinds are grouped by family: ``attacks`` (sweep, tradeoff, attack, evaluate, verify), ``certify`` (certify, fig3,
lipschitz-certified, certify-front), ``mixers`` (calibration, pareto) and ``pipelines`` (demo).  ``values`` holds
the typed values inside summaries (:class:`Interval`, :class:`Record`) and the codec between them and the JSON;
``format`` and ``plots`` are the leaves summaries format numbers and draw figures with.  :mod:`robustmix.reports`
assembles pages from the sections and sits above this package.
"""

from .._binomial import binomial_ci
from .attacks import (AttackRun, AttackSummary, AutoAttackAlone, Claims, Diagnostics, EvaluateSummary, GapRow,
                      SweepSummary, TradeoffCurve, TradeoffSummary, VerifySummary)
from .base import (KINDS, SCHEMA_VERSION, DataSource, DataSplit, Section, Summary, check_version, figure_dir,
                   load_summary, norm_name, rate_ci, summary_from_dict, upgrade_legacy, with_command)
from .certify import (Best, CertifiedCurves, CertifyFrontSummary, CertifySummary, Curve, CurvePair, Fig3Certified,
                      Fig3Summary, FrontPoint, LipschitzCertifiedSummary, LipschitzFig3, SmoothedFig3, VerdictRow,
                      certify_estimator)
from .format import at_radius, fmt_ci, fmt_pct
from .mixers import (FIRST_ADAPTIVE_RECIPE, CalibrationSummary, MatchedRow, MixerChoice, MixerPoint,
                     ParetoCalibration, ParetoSummary, SplitResult)
from .pipelines import DemoHeadline, DemoSummary, WorstCase
from .values import Empty, Interval, Record, Settings, Value, to_json

_with_command = with_command   # the name the guide's example in docs/architecture.md uses

__all__ = [
    "Summary", "Section", "KINDS", "SCHEMA_VERSION", "check_version", "summary_from_dict", "upgrade_legacy",
    "load_summary", "rate_ci", "binomial_ci", "figure_dir", "with_command", "norm_name", "DataSource", "DataSplit",
    "fmt_pct", "fmt_ci", "at_radius", "Value", "Record", "Interval", "Empty", "Settings", "to_json",
    "SweepSummary", "TradeoffSummary", "AttackSummary", "EvaluateSummary", "VerifySummary",
    "GapRow", "TradeoffCurve", "AttackRun", "Diagnostics", "AutoAttackAlone", "Claims",
    "CertifySummary", "Fig3Summary", "LipschitzCertifiedSummary", "CertifyFrontSummary", "certify_estimator",
    "Curve", "CertifiedCurves", "CurvePair", "SmoothedFig3", "LipschitzFig3", "Fig3Certified", "FrontPoint", "Best",
    "VerdictRow",
    "CalibrationSummary", "ParetoSummary", "FIRST_ADAPTIVE_RECIPE", "SplitResult", "MixerChoice", "MixerPoint",
    "MatchedRow", "ParetoCalibration", "DemoSummary", "DemoHeadline", "WorstCase",
]
