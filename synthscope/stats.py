"""Statistics shared by every module: the confidence interval of a proportion."""

from __future__ import annotations

from scipy.stats import binomtest


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float] | tuple[None, None]:
    """Wilson score interval for ``k`` successes in ``n`` trials; ``(None, None)`` when n is 0
    (an interval of nothing is undefined, not zero-width)."""
    if n <= 0:
        return (None, None)
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))
