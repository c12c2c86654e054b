"""A black-box cross-check for gradient masking (Athalye et al.'s first warning sign).

If a gradient-free attack (AutoAttack's Square) finds adversarial examples that
PGD misses, the model's gradients are not to be trusted (the eq. (1)-(3)
formulations with a K-NN oracle, saturated softmaxes, non-differentiable parts).
"""

from __future__ import annotations

import dataclasses
import logging

import torch

from .autoattack import run_autoattack
from .pgd import PGD

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class MaskingReport:
    pgd_accuracy: float
    square_accuracy: float
    pgd_only_robust: int        # examples PGD failed on but Square broke
    masked: bool

    def to_dict(self):
        return dataclasses.asdict(self)


def gradient_masking_check(model, x, y, eps: float, norm="inf", *, pgd_steps: int = 50, restarts: int = 1,
                           square_queries: int = 1000, seed: int = 0, tolerance: int = 0) -> MaskingReport:
    """Compare PGD with the black-box Square attack on the same points.

    ``masked`` is True when Square breaks more than ``tolerance`` examples that PGD
    could not: the gradient attack is then unreliable on this model.
    """
    x_pgd = PGD(model, eps, norm, steps=pgd_steps, restarts=restarts, seed=seed)(x, y)
    with torch.no_grad():
        pgd_ok = model(x_pgd).argmax(1) == y
    from pyautoattack import AutoAttack  # noqa: F401  (import check before the long run)

    res = run_autoattack(model, x, y, eps, norm, version="custom", attacks=["square"], seed=seed,
                         batch_size=len(x), square_queries=square_queries)
    square_ok = res.robust.to(pgd_ok.device)
    missed = int((pgd_ok & ~square_ok).sum())
    report = MaskingReport(float(pgd_ok.float().mean()), float(square_ok.float().mean()), missed, missed > tolerance)
    if report.masked:
        logger.warning("gradient masking suspected: Square broke %d examples that PGD-%d could not", missed, pgd_steps)
    return report
