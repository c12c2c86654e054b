"""AutoAttack (the ``pyautoattack`` package) against any model, the mixture included.

AutoAttack's own sanity checks (softmax-like outputs, zero gradients,
randomness, dynamic defenses, Square beating the white-box attacks) are
caught from both ``warnings`` and its logger and returned in the result, and
re-logged as robustmix warnings, so they reach the user instead of vanishing.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from pathlib import Path

import torch

from .._validation import check_input, check_positive_int
from ..errors import AttackError, ConfigError
from .._config import refuse_unknown
from ..groups import ThreatModel, from_keywords
from .pgd import check_seed, legacy_threat

logger = logging.getLogger(__name__)

_NORMS = {2.0: "L2", math.inf: "Linf"}
VERSIONS = ("standard", "plus", "rand", "custom")
STANDARD_ATTACKS = ("apgd-ce", "apgd-t", "fab-t", "square")


@dataclasses.dataclass
class AutoAttackResult:
    x_adv: torch.Tensor
    robust: torch.Tensor              # bool (n,): still correctly classified after every attack
    accuracy_by_attack: dict          # cumulative accuracy after each attack ('clean' first)
    warnings: list[str]

    @property
    def robust_accuracy(self) -> float:
        return float(self.robust.float().mean())


class _Collector(logging.Handler):
    """Keeps the messages of AutoAttack's logger at or above ``level``."""

    def __init__(self, level):
        super().__init__(level)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@dataclasses.dataclass(frozen=True)
class AutoAttackSuite:
    """Which AutoAttack runs, and how it is seeded.  Checked once, here.

    ``version``: "standard" (APGD-CE, APGD-T, FAB-T, Square), "plus", "rand" (EOT versions for randomized
    defenses) or "custom" with ``attacks`` (e.g. ``("square",)`` for a black-box check against gradient
    masking).  With "standard", ``attacks`` may pick a subset of its members (run in the given order), each with
    the standard version's settings.  ``square_queries`` overrides Square's query budget (None: the version's
    own, 5,000 in the standard version); ``seed`` seeds AutoAttack.
    """

    version: str = "standard"
    attacks: tuple[str, ...] | None = None
    square_queries: int | None = None
    seed: int = 0

    def __post_init__(self):
        if self.version not in VERSIONS:
            raise ConfigError(f"unknown AutoAttack version {self.version!r}: use one of {', '.join(VERSIONS)}")
        attacks = self.attacks
        if attacks is not None:
            attacks = (attacks,) if isinstance(attacks, str) else tuple(attacks)
            if not all(isinstance(a, str) for a in attacks):
                raise ConfigError(f"AutoAttack's attacks must be names such as 'apgd-ce', got {list(attacks)!r}")
            object.__setattr__(self, "attacks", attacks)
        if self.version == "custom" and not attacks:
            raise ConfigError("version='custom' needs attacks=[...], e.g. ['square'] or ['apgd-ce', 'apgd-t']")
        if self.version == "standard" and attacks is not None:
            unknown = [a for a in attacks if a not in STANDARD_ATTACKS]
            if unknown or not attacks:
                raise ConfigError(f"version='standard' runs a subset of {', '.join(STANDARD_ATTACKS)} with the "
                                  f"standard settings; got attacks={list(attacks)!r}")
        if self.square_queries is not None:
            check_positive_int(self.square_queries, name="square_queries")
        check_seed(self.seed)


_SUITE = tuple(f.name for f in dataclasses.fields(AutoAttackSuite))


def run_autoattack(model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel | None = None,
                   norm: str | float | None = None, *, suite: AutoAttackSuite | None = None, batch_size: int = 250,
                   state_path=None, **deprecated) -> AutoAttackResult:
    """Run AutoAttack (``suite``, default :class:`AutoAttackSuite`: standard, seed 0) on ``model`` (logits or
    log-probabilities out) within ``threat`` and return per-example robustness.

    ``batch_size``: examples per AutoAttack batch; ``state_path`` lets AutoAttack resume an interrupted
    evaluation.  The returned points are checked to lie in the threat model (:class:`AttackError` otherwise).

    Deprecated, for one release (DeprecationWarning): eps and ``norm`` in ``threat``'s place
    (``run_autoattack(model, x, y, eps, norm, ...)``) and the keywords ``version``, ``attacks``, ``seed``,
    ``square_queries``.
    """
    from pyautoattack import AutoAttack

    threat, old = legacy_threat(threat, norm, deprecated, "run_autoattack")
    old_suite = {k: deprecated.pop(k) for k in _SUITE if k in deprecated}
    refuse_unknown(deprecated, "run_autoattack")
    threat = from_keywords(ThreatModel, threat, old, "run_autoattack")
    suite = from_keywords(AutoAttackSuite, suite, old_suite, "run_autoattack") or AutoAttackSuite()
    check_input(x)
    check_positive_int(batch_size, name="batch_size")
    eps, p, version, attacks = threat.eps, threat.p, suite.version, suite.attacks
    device = x.device
    adversary = AutoAttack(model, attacks=list(attacks) if version == "custom" else None, device=device, eps=eps,
                           norm=_NORMS[p], seed=suite.seed, version=version)
    if version == "standard" and attacks is not None:
        adversary.attacks_to_run = list(attacks)
    if suite.square_queries is not None:
        adversary.square.n_queries = int(suite.square_queries)
    with torch.no_grad():
        n_classes = model(x[:1]).shape[-1]
    # targeted attacks use the top (c - 1) other classes at most
    adversary.apgd_targeted.n_target_classes = min(adversary.apgd_targeted.n_target_classes, n_classes - 1)
    adversary.fab.n_target_classes = min(adversary.fab.n_target_classes, n_classes - 1)
    aa_logger = logging.getLogger("auto-attack")
    collector, acc_lines = _Collector(logging.WARNING), _Collector(logging.DEBUG)
    old_level, old_propagate = aa_logger.level, aa_logger.propagate
    aa_logger.addHandler(collector)
    aa_logger.addHandler(acc_lines)
    aa_logger.setLevel(logging.DEBUG)
    aa_logger.propagate = False  # its chatter is collected here; checks are re-logged below
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            x_adv, y_adv = adversary.run_standard_evaluation(
                x, y, batch_size=batch_size, state_path=Path(state_path) if state_path else None)
    finally:
        aa_logger.removeHandler(collector)
        aa_logger.removeHandler(acc_lines)
        aa_logger.setLevel(old_level)
        aa_logger.propagate = old_propagate
    messages = list(dict.fromkeys([str(w.message) for w in caught] + collector.messages))
    for msg in messages:
        logger.warning("AutoAttack check: %s", msg)
    robust = (y_adv == y).cpu()
    by_attack = {}
    for line in acc_lines.messages:
        if line.startswith("initial accuracy:"):
            by_attack["clean"] = float(line.split(":")[1].strip().rstrip("%")) / 100
        elif line.startswith("robust accuracy after "):
            name, value = line[len("robust accuracy after "):].split(":", 1)
            by_attack[name.strip().lower()] = float(value.split("%")[0].strip()) / 100
    # the evaluation must stay in the threat model: check it rather than trust it
    delta = (x_adv - x).flatten(1)
    size = torch.linalg.vector_norm(delta, ord=p, dim=1)
    if (size > eps * (1 + 1e-4) + 1e-6).any() or x_adv.min() < 0 or x_adv.max() > 1:
        raise AttackError("AutoAttack returned points outside the threat model; please report this")
    return AutoAttackResult(x_adv.detach(), robust, by_attack, messages)
