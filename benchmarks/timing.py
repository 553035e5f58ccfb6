"""What the benchmarks share for timing (run them as scripts: ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import time
from typing import Callable


def best_of(repeats: int, job: Callable[[], object]) -> float:
    """The fastest of ``repeats`` runs of ``job``, in seconds: the run least disturbed by other work."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        job()
        times.append(time.perf_counter() - began)
    return min(times)
