"""One exception family for everything robustmix raises on purpose.

Every error subclasses :class:`RobustMixError` and also the built-in type a
caller would expect (``ValueError`` for bad arguments, ``RuntimeError`` for
broken files, ``FileNotFoundError`` for missing data), so ``except ValueError``
keeps working.  Messages say what was wrong and how to fix it.
"""


class RobustMixError(Exception):
    """Base class of all robustmix errors."""


class ConfigError(RobustMixError, ValueError):
    """An argument or setting is invalid (alpha, p, eps, trust term, ...)."""


class InputError(RobustMixError, ValueError):
    """An input tensor has the wrong rank, dtype or non-finite values."""


class ModelError(RobustMixError, ValueError):
    """A model is unsuitable (class counts differ, unknown name, no Lipschitz bound, ...)."""


class CheckpointError(RobustMixError, RuntimeError):
    """A checkpoint or model card is missing, corrupted, truncated or mismatched."""


class DataNotFoundError(RobustMixError, FileNotFoundError):
    """A dataset could not be found in any of the searched places."""


class AttackError(RobustMixError, RuntimeError):
    """An attack cannot be carried out faithfully (e.g. the target's gradient is NaN)."""


class RunError(RobustMixError, RuntimeError):
    """A long run cannot go on faithfully (an experiment returned the wrong records, shards overlap, ...)."""


class VerificationError(RobustMixError, RuntimeError):
    """A saved evaluation does not hold on its model: the model's predictions differ from the file's outcomes
    (``robustmix verify`` exits 3; a malformed file or a wrong model is a :class:`ConfigError`, exit 2)."""
