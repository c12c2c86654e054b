"""A black-box cross-check for gradient masking (Athalye et al.'s first warning sign).

If a gradient-free attack (AutoAttack's Square) finds adversarial examples that
PGD misses, the model's gradients are not to be trusted (the eq. (1)-(3)
formulations with a K-NN oracle, saturated softmaxes, non-differentiable parts).
"""

from __future__ import annotations

import dataclasses
import logging

import torch

from .._validation import check_positive_int
from .._config import refuse_unknown
from ..groups import ThreatModel, from_keywords
from .autoattack import AutoAttackSuite, run_autoattack
from .pgd import PGD, check_seed, legacy_threat

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class MaskingReport:
    pgd_accuracy: float
    square_accuracy: float
    pgd_only_robust: int        # examples PGD failed on but Square broke
    masked: bool

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class MaskingCheck:
    """The cross-check's budgets: PGD with ``pgd_steps`` steps from each of ``restarts`` random starts, Square with
    ``square_queries`` queries, both seeded by ``seed``; the model is flagged when Square breaks more than
    ``tolerance`` examples that PGD could not.  Checked once, here."""

    pgd_steps: int = 50
    restarts: int = 1
    square_queries: int = 1000
    seed: int = 0
    tolerance: int = 0

    def __post_init__(self):
        check_positive_int(self.pgd_steps, name="pgd_steps")
        check_positive_int(self.restarts, name="restarts")
        check_positive_int(self.square_queries, name="square_queries")
        check_seed(self.seed)
        check_positive_int(self.tolerance, name="tolerance", minimum=0)


_CHECK = tuple(f.name for f in dataclasses.fields(MaskingCheck))


def gradient_masking_check(model, x, y, threat: ThreatModel | None = None, norm: str | float | None = None, *,
                           check: MaskingCheck | None = None, **deprecated) -> MaskingReport:
    """Compare PGD with the black-box Square attack on the same points, within ``threat``.

    ``masked`` is True when Square breaks more than ``check.tolerance`` examples that PGD could not (``check``:
    :class:`MaskingCheck`, default PGD-50 and 1,000 Square queries): the gradient attack is then unreliable on
    this model.

    Deprecated, for one release (DeprecationWarning): eps and ``norm`` in ``threat``'s place
    (``gradient_masking_check(model, x, y, eps, norm, ...)``) and the keywords ``pgd_steps``, ``restarts``,
    ``square_queries``, ``seed``, ``tolerance``.
    """
    threat, old = legacy_threat(threat, norm, deprecated, "gradient_masking_check")
    old_check = {k: deprecated.pop(k) for k in _CHECK if k in deprecated}
    refuse_unknown(deprecated, "gradient_masking_check")
    threat = from_keywords(ThreatModel, threat, old, "gradient_masking_check")
    check = from_keywords(MaskingCheck, check, old_check, "gradient_masking_check") or MaskingCheck()
    x_pgd = PGD(model, threat.eps, threat.norm, steps=check.pgd_steps, restarts=check.restarts, seed=check.seed)(x, y)
    with torch.no_grad():
        pgd_ok = model(x_pgd).argmax(1) == y
    from pyautoattack import AutoAttack  # noqa: F401  (import check before the long run)

    res = run_autoattack(model, x, y, threat, batch_size=len(x),
                         suite=AutoAttackSuite("custom", ("square",), square_queries=check.square_queries,
                                               seed=check.seed))
    square_ok = res.robust.to(pgd_ok.device)
    missed = int((pgd_ok & ~square_ok).sum())
    report = MaskingReport(float(pgd_ok.float().mean()), float(square_ok.float().mean()), missed,
                           missed > check.tolerance)
    if report.masked:
        logger.warning("gradient masking suspected: Square broke %d examples that PGD-%d could not", missed,
                       check.pgd_steps)
    return report
