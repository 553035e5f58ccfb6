"""Two plots that most report sections need, in the report style.

- :func:`interval_plot` — estimates with confidence intervals, one row each (proportions per group,
  a metric per generator), with an optional reference line (parity, a labour statistic).
- :func:`line_plot` — a quantity along a sweep (JPEG quality, blur, training steps), one line per
  series, optional interval bands.

Both return a matplotlib Figure; wrap it with :meth:`Figure.from_matplotlib` to put it in a report.
Axis labels are required, because a number without its unit is not a result.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from synthscope.errors import UserError

from .style import MARKERS, new_figure, palette, plain_text, use_style

__all__ = ["interval_plot", "line_plot"]


def _wrap(label: Any, width: int = 28) -> str:
    return textwrap.fill(plain_text(label), width=width, max_lines=3, placeholder="…")


def _check_label(text: str, what: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"{what} is required: say what is plotted and in which unit")


def interval_plot(labels: Sequence[Any], values: Sequence[float], lows: Sequence[float] | None = None,
                  highs: Sequence[float] | None = None, *, xlabel: str, title: str = "",
                  reference: float | Sequence[float] | None = None, reference_label: str = "reference",
                  xlim: tuple[float, float] | None = None) -> Any:
    """Horizontal dot-and-whisker plot: ``values[i]`` with interval ``[lows[i], highs[i]]`` per label.

    ``reference`` draws a dashed line (one value for all rows, or one per row as open diamonds).
    """
    _check_label(xlabel, "xlabel")
    values_arr = np.asarray(values, dtype=float)
    n = len(labels)
    if values_arr.shape != (n,):
        raise UserError(f"interval_plot: {n} labels but {values_arr.size} values")
    if (lows is None) != (highs is None):
        raise UserError("interval_plot: give both lows and highs, or neither")
    with use_style():
        fig = new_figure(6.4, max(1.8, 0.42 * n + 1.1))
        ax = fig.add_subplot()
        y = np.arange(n)[::-1]  # first label on top, as it is read
        colour = palette(3)
        if lows is not None and highs is not None:
            low_arr, high_arr = np.asarray(lows, dtype=float), np.asarray(highs, dtype=float)
            if low_arr.shape != (n,) or high_arr.shape != (n,):
                raise UserError("interval_plot: lows and highs need one value per label")
            ax.hlines(y, low_arr, high_arr, color=colour[0], linewidth=2.2, label="95 % interval")
        ax.plot(values_arr, y, "o", color=colour[0], markersize=6, label="estimate", zorder=3)
        if reference is not None:
            ref = np.asarray(reference, dtype=float)
            if ref.ndim == 0:
                ax.axvline(float(ref), color=colour[1], linestyle="--", linewidth=1.4, label=plain_text(reference_label))
            elif ref.shape == (n,):
                ax.plot(ref, y, "D", markerfacecolor="white", color=colour[1], markersize=6,
                        label=plain_text(reference_label), zorder=4)
            else:
                raise UserError("interval_plot: reference must be one number or one per label")
        ax.set_yticks(y, [_wrap(label) for label in labels])
        ax.set_ylim(-0.6, n - 0.4)
        ax.set_xlabel(plain_text(xlabel))
        if xlim is not None:
            ax.set_xlim(*xlim)
        if title:
            ax.set_title(plain_text(title), loc="left")
        ax.grid(axis="y", visible=False)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18 if n < 6 else -0.08), ncols=3)
    return fig


def line_plot(x: Sequence[float], series: Mapping[str, Sequence[float]], *, xlabel: str, ylabel: str,
              title: str = "", bands: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
              xticks: Sequence[Any] | None = None, ylim: tuple[float, float] | None = None) -> Any:
    """One line (with markers, so it reads in black and white) per named series along ``x``.

    ``bands`` maps a series name to ``(low, high)`` arrays shaded around its line.
    """
    _check_label(xlabel, "xlabel")
    _check_label(ylabel, "ylabel")
    x_arr = np.asarray(x, dtype=float)
    with use_style():
        fig = new_figure(6.4, 3.6)
        ax = fig.add_subplot()
        colours = palette(max(len(series), 1))
        for index, (name, ys) in enumerate(series.items()):
            y_arr = np.asarray(ys, dtype=float)
            if y_arr.shape != x_arr.shape:
                raise UserError(f"line_plot: series {name!r} has {y_arr.size} values for {x_arr.size} x values")
            colour = colours[index]
            ax.plot(x_arr, y_arr, marker=MARKERS[index % len(MARKERS)], color=colour, label=plain_text(name))
            if bands and name in bands:
                low, high = (np.asarray(b, dtype=float) for b in bands[name])
                ax.fill_between(x_arr, low, high, color=colour, alpha=0.18, linewidth=0)
        ax.set_xlabel(plain_text(xlabel))
        ax.set_ylabel(plain_text(ylabel))
        if xticks is not None:
            ax.set_xticks(x_arr, [plain_text(t) for t in xticks])
        if ylim is not None:
            ax.set_ylim(*ylim)
        if title:
            ax.set_title(plain_text(title), loc="left")
        if len(series) > 1:
            ax.legend(loc="best")
    return fig
