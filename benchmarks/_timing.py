"""Interleaved timing shared by the benchmark scripts (machines are noisy: compare within one run)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence


def interleaved_medians(runs: Sequence[Callable[[], object]], repeats: int, warmup: int = 3) -> list[float]:
    """Median wall time of each callable, run in rotating order (ABC, BCA, CAB, ...) ``repeats`` times."""
    for _ in range(warmup):
        for run in runs:
            run()
    times: list[list[float]] = [[] for _ in runs]
    n = len(runs)
    for i in range(repeats):
        for j in range(n):
            k = (i + j) % n  # rotate which side goes first so none always runs on a warmer cache
            start = time.perf_counter()
            runs[k]()
            times[k].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]
