"""Timing helpers shared by the benchmarks (not part of the library)."""

import time

import torch


def timeit(fn, repeats: int = 10, warmup: int = 2) -> float:
    """Mean of the faster half of ``repeats`` timed calls (seconds): robust to stray load."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    half = times[: max(1, repeats // 2)]
    return sum(half) / len(half)


def setup(threads: int) -> str:
    torch.set_num_threads(threads)
    return f"torch {torch.__version__}, {threads} threads"
