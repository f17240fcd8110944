"""Timing helpers shared by the benchmark scripts: best-of-N wall clock beside the CPU time
of the same pass (the machine may be shared), and the units they print in."""

from __future__ import annotations

import time

__all__ = ["ms", "rate", "timed"]


def timed(fn, repeats: int) -> tuple[float, float]:
    """Best wall seconds and the CPU seconds of that pass."""
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        result = (time.perf_counter() - wall, time.process_time() - cpu)
        best = min(best, result)
    return best


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:8.1f}/s"


def ms(seconds: float, count: int) -> str:
    return f"{1e3 * seconds / count:6.2f} ms"
