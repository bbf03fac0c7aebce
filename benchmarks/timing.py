"""The timing rule the benchmark scripts share (imported as ``timing``: each script runs from this folder)."""

from __future__ import annotations

import statistics
import time


def median_seconds(fn, runs: int, warmup: int = 0) -> float:
    """Median wall time of ``runs`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
