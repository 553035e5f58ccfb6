"""How numbers are written in a report: few, honest decimals, the same for a value and its interval."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from .model import Metric

__all__ = ["auto_decimals", "format_number", "format_metric", "metric_parts", "format_column", "MISSING"]

MISSING = "—"  # an empty table cell: visibly "no value", not a blank that looks like a rendering bug


def _finite(values: Any) -> list[float]:
    result = []
    for value in values:
        if value is None or isinstance(value, (bool, np.bool_)):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            result.append(number)
    return result


def auto_decimals(*values: Any) -> int | None:
    """Decimals for numbers of this magnitude (largest absolute value): 0 from 100, 1 from 10,
    2 from 0.1, 3 from 0.01, 4 below; None means "use scientific notation" (below 1e-4)."""
    finite = [abs(v) for v in _finite(values) if v != 0]
    if not finite:
        return 2
    largest = max(finite)
    for threshold, decimals in ((100, 0), (10, 1), (0.1, 2), (0.01, 3), (1e-4, 4)):
        if largest >= threshold:
            return decimals
    return None


def format_number(value: Any, fmt: str | None = None, decimals: int | None = -1) -> str:
    """One number as text. ``fmt`` (a format spec) wins; otherwise ints are exact (thousands grouped
    from 10,000), floats get ``decimals`` (by default from their own magnitude); None/NaN is "n/a"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, np.generic):
        value = value.item()
    if fmt:
        try:
            return format(value, fmt)
        except (ValueError, TypeError):
            return str(value)
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if decimals == -1:
            decimals = auto_decimals(value)
        if decimals is None:
            return f"{value:.2e}"
        return f"{value:,.{decimals}f}" if abs(value) >= 10_000 else f"{value:.{decimals}f}"
    return str(value)


def metric_parts(metric: Metric) -> tuple[str, str, str]:
    """The value, unit and interval (``"[0.82, 0.91]"`` or ``""``) of a metric, as text."""
    numbers = (metric.value, metric.ci_low, metric.ci_high)
    if metric.fmt is None and all(v is None or isinstance(v, int) for v in numbers):
        value, low, high = (format_number(v) for v in numbers)  # counts stay exact
    else:
        decimals = auto_decimals(*numbers)  # one precision for the value and both bounds
        value, low, high = (format_number(None if v is None else float(v), metric.fmt, decimals)
                            for v in numbers)
    unit = metric.unit if metric.value is not None else ""
    interval = f"[{low}, {high}]" if metric.has_ci else ""
    return value, unit, interval


def format_metric(metric: Metric) -> str:
    """``0.87 [0.82, 0.91]``, or with a unit ``12.3 s [11.0, 13.1]``."""
    return " ".join(part for part in metric_parts(metric) if part)


def format_column(series: pd.Series, fmt: str | None = None) -> list[str]:
    """A table column as text: one format spec (or one number of decimals) for the whole column,
    so that the decimal points line up; missing or empty cells as :data:`MISSING`."""
    values = series.tolist()
    decimals: int | None = -1
    if fmt is None and pd.api.types.is_float_dtype(series.dtype):
        decimals = auto_decimals(*values)
    cells = []
    for value in values:
        if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
            cells.append(MISSING)
        elif isinstance(value, str):
            cells.append(value if value.strip() else MISSING)
        elif isinstance(value, float) and fmt is None:
            cells.append(format_number(value, None, decimals))
        elif isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and fmt is None:
            cells.append(str(int(value)))  # ids, seeds and years: no thousands separators
        else:
            cells.append(format_number(value, fmt))
    return cells
