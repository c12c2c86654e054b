"""Attacks: FGSM/PGD aimed at any target, APGD, adapters over the AutoAttack package, and the worst-case evaluator.

Their settings travel in option groups, each checked once in its own ``__post_init__``: the threat model is
:class:`robustmix.groups.ThreatModel` (re-exported here); :class:`PGDBudget`, :class:`APGDSettings`,
:class:`AutoAttackSuite`, :class:`MaskingCheck`, :class:`Ensemble` and :class:`DiagnosticChecks` are the
attacks' own.
"""

from ..groups import ThreatModel
from .pgd import PGD, PGDBudget, fgsm, pgd, project, random_start, random_start_per_example

__all__ = ["PGD", "PGDBudget", "ThreatModel", "fgsm", "pgd", "project", "random_start", "random_start_per_example"]

from .apgd import APGDSettings  # noqa: E402  (the function stays robustmix.attacks.apgd.apgd: the module's name)

__all__ += ["APGDSettings"]

from .autoattack import AutoAttackResult, AutoAttackSuite, run_autoattack  # noqa: E402

__all__ += ["AutoAttackResult", "AutoAttackSuite", "run_autoattack"]

from .masking import MaskingCheck, MaskingReport, gradient_masking_check  # noqa: E402

__all__ += ["MaskingCheck", "MaskingReport", "gradient_masking_check"]

from .evaluate import DiagnosticChecks, Ensemble, WorstCaseResult, attack_members, evaluate  # noqa: E402

__all__ += ["DiagnosticChecks", "Ensemble", "WorstCaseResult", "attack_members", "evaluate"]

from .saved import SavedEvaluation, read_saved, verify  # noqa: E402

__all__ += ["SavedEvaluation", "read_saved", "verify"]
