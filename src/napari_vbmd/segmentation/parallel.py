"""Work that is independent slice by slice, spread over CPU threads (numpy, scipy.ndimage and ONNX
Runtime release the GIL in their loops). ``threads`` is the user's ``--threads``; None means every
CPU the machine has, as torch's and ONNX Runtime's own defaults do."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np


def workers(threads: int | None) -> int:
    return max(1, int(threads) if threads else (os.cpu_count() or 1))


def run_chunks(fn: Callable[[int, int], None], n: int, threads: int | None, min_chunk: int = 8,
               step: int | None = None) -> None:
    """``fn(start, stop)`` over consecutive chunks covering [0, n), one chunk per thread (chunks of
    at least ``min_chunk``), each thread's chunk given in pieces of at most ``step`` when one is set
    (to bound memory); exceptions reach the caller."""
    def span(lo: int, hi: int) -> None:
        for start in range(lo, hi, step or max(1, hi - lo)):
            fn(start, min(hi, start + step) if step else hi)

    k = min(workers(threads), max(1, n // min_chunk))
    if k <= 1:
        span(0, n)
        return
    bounds = np.linspace(0, n, k + 1).round().astype(int)
    with ThreadPoolExecutor(k) as pool:
        list(pool.map(lambda i: span(int(bounds[i]), int(bounds[i + 1])), range(k)))
