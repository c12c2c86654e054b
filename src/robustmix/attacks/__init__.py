"""Attacks: FGSM/PGD aimed at any target, and adapters over the AutoAttack package."""

from .pgd import PGD, fgsm, pgd, project, random_start

__all__ = ["PGD", "fgsm", "pgd", "project", "random_start"]
