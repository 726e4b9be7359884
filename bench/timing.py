"""Shared by the bench scripts: the median wall time of a call."""

from __future__ import annotations

import statistics
import time


def median_time(fn, repeats: int, warmup: int = 0) -> float:
    """Median seconds of `repeats` calls of fn() after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
