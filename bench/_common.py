"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import time
from collections.abc import Callable


def rate(fn: Callable[[], object], *, min_seconds: float = 1.0, repeats: int = 3) -> float:
    """Calls per second of ``fn``: the best of ``repeats`` runs, each at least ``min_seconds`` long."""
    best = 0.0
    for _ in range(repeats):
        calls = 0
        start = time.perf_counter()
        elapsed = 0.0
        while elapsed < min_seconds:
            for _ in range(100):
                fn()
            calls += 100
            elapsed = time.perf_counter() - start
        best = max(best, calls / elapsed)
    return best
