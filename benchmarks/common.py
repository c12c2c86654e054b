"""Kept for scripts that import ``setup`` and ``timeit`` from here: both now live in :mod:`harness`."""

from harness import setup, timeit  # noqa: F401
