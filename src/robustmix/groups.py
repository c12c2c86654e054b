"""Option groups: settings that travel together, each checked once, in its own ``__post_init__``.

A group is a small dataclass that the library functions take as one argument and a command holds as one field
(the command line flattens its fields into flags, as tyro does: ``--norm``, ``--eps``).  So a value is checked in
one place, whether it comes from a flag, a YAML file or a Python call::

    from robustmix import ThreatModel, evaluate
    evaluate(model, x, y, threat=ThreatModel("inf", 8 / 255))

``ThreatModel`` is the attacker's budget and ``Smoothing`` randomized smoothing's noise and sample budget.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from ._config import from_keywords, option
from ._validation import check_p, check_positive_int, norm_name
from .errors import ConfigError

Norm = Literal["inf", "2"]


@dataclasses.dataclass(frozen=True)
class ThreatModel:
    """The attacker's budget: the l_p ball of radius ``eps`` around each input (inputs live in [0, 1]).

    ``norm`` accepts "inf", "2", 2, ``math.inf``, "linf", "L2", ... and keeps one spelling ("inf" or "2");
    ``eps`` must be a finite number > 0.
    """

    norm: str = option("inf", "attack norm: inf (l_inf) or 2 (l_2)")   # also 'linf', 'L2', 2, math.inf
    eps: float = option(0.1, "attack radius")

    def __post_init__(self):
        try:
            name = norm_name(self.norm)
        except ConfigError:
            name = None
        if name not in ("inf", "2"):
            raise ConfigError(f"unknown norm {self.norm!r}: robustmix attacks the l_inf or the l_2 ball; use --norm inf "
                              "or --norm 2 (also accepted: linf, l2)")
        object.__setattr__(self, "norm", name)
        try:
            eps = float(self.eps)
        except (TypeError, ValueError):
            eps = math.nan
        if isinstance(self.eps, bool) or not (math.isfinite(eps) and eps > 0):
            raise ConfigError(f"--eps must be a finite number > 0 (the attack radius), got {self.eps!r}")
        object.__setattr__(self, "eps", eps)

    @property
    def p(self) -> float:
        """The norm as a number: 2.0 or math.inf."""
        return check_p(self.norm)


@dataclasses.dataclass(frozen=True)
class Smoothing:
    """Randomized smoothing of a base model: Gaussian noise ``sigma`` (None: no smoothing, e.g. a Lipschitz h),
    ``num_samples`` Monte-Carlo samples per input (with a sound certificate: the estimation samples, drawn after
    ``n0`` selection samples), failure probability ``delta``, and ``batch_size`` noise samples per forward pass."""

    sigma: float | None = option(None, "smoothing noise of h (randomized smoothing)")
    num_samples: int = option(10_000, "noise samples per image", flags=("--samples",))
    n0: int = option(100, "selection samples per image, which pick the class; drawn on top of --samples")
    delta: float = option(0.001, "failure probability of the sound bounds")
    batch_size: int = 1000

    def __post_init__(self):
        if self.sigma is not None and not (isinstance(self.sigma, (int, float)) and not isinstance(self.sigma, bool)
                                           and self.sigma > 0 and math.isfinite(self.sigma)):
            raise ConfigError(f"--sigma must be a positive number (the smoothing noise), got {self.sigma!r}")
        check_positive_int(self.num_samples, name="--samples")
        check_positive_int(self.n0, name="--n0")
        check_positive_int(self.batch_size, name="batch_size")
        if not (isinstance(self.delta, (int, float)) and 0 < self.delta < 1):
            raise ConfigError(f"--delta must be a failure probability in (0, 1), got {self.delta!r}")

    def required_sigma(self) -> float:
        """sigma, refused in one line when it is missing (a function that smooths needs it)."""
        if self.sigma is None:
            raise ConfigError("smoothing needs a noise level: give Smoothing(sigma=...) (--sigma on the command line)")
        return float(self.sigma)


def seed_option(default: int = 0):
    """The seed option every experiment config has (one help text)."""
    return option(default, "seed of every random draw (attack starts, noise); each example's draws depend only on "
                           "(seed, its index)")


__all__ = ["Norm", "Smoothing", "ThreatModel", "from_keywords", "seed_option"]
