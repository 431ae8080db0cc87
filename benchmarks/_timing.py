"""The one way the benchmark scripts time a step: the best of a few runs, wall seconds."""
from __future__ import annotations

import time


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)
