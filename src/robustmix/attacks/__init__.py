"""Attacks: FGSM/PGD aimed at any target, and adapters over the AutoAttack package."""

from .pgd import PGD, fgsm, pgd, project, random_start, random_start_per_example

__all__ = ["PGD", "fgsm", "pgd", "project", "random_start", "random_start_per_example"]

from .autoattack import AutoAttackResult, run_autoattack  # noqa: E402

__all__ += ["AutoAttackResult", "run_autoattack"]

from .masking import MaskingReport, gradient_masking_check  # noqa: E402

__all__ += ["MaskingReport", "gradient_masking_check"]

from .evaluate import WorstCaseResult, attack_members, evaluate  # noqa: E402

__all__ += ["WorstCaseResult", "attack_members", "evaluate"]

from .saved import SavedEvaluation, read_saved, verify  # noqa: E402

__all__ += ["SavedEvaluation", "read_saved", "verify"]
