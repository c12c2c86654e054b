"""The figures summaries draw live in :mod:`robustmix.results.plots`; this name is that same module (one module
object, so patching a helper here patches the one the summaries call)."""

import sys

from ..results import plots

sys.modules[__name__] = plots
