"""One plot style for every report figure: colour-blind-safe colours, readable sizes, no overlaps.

matplotlib is imported only when a figure is made, so rendering or re-rendering a report never
needs it. Figures are built without pyplot (no display backend, nothing left open).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any

__all__ = ["palette", "style_rc", "use_style", "new_figure", "figure_png", "plain_text", "DPI", "MARKERS"]

DPI = 150
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")  # lines differ by shape too, not only colour


def palette(n: int = 10) -> list[tuple[float, float, float]]:
    """``n`` distinguishable colours: seaborn's colour-blind-safe palette (10), then husl beyond that."""
    import seaborn as sns

    name = "colorblind" if n <= 10 else "husl"
    return [tuple(float(c) for c in colour) for colour in sns.color_palette(name, n)]


def style_rc() -> dict[str, Any]:
    """matplotlib rcParams of the report style (usable with ``rcParams.update`` in a notebook)."""
    from cycler import cycler

    return {
        "figure.constrained_layout.use": True,  # labels and legends never overlap
        "figure.facecolor": "white",
        "savefig.facecolor": "white",
        "savefig.dpi": DPI,
        "font.size": 10,
        "axes.titlesize": 11,
        "axes.labelsize": 10,
        "xtick.labelsize": 9,
        "ytick.labelsize": 9,
        "legend.fontsize": 9,
        "legend.frameon": False,
        "axes.prop_cycle": cycler(color=palette(10)),
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.color": "#e5e5e5",
        "grid.linewidth": 0.8,
        "axes.axisbelow": True,
        "lines.linewidth": 1.8,
        "image.interpolation": "nearest",
    }


@contextlib.contextmanager
def use_style() -> Iterator[None]:
    """Context manager applying the report style; the previous settings come back on exit."""
    import matplotlib

    with matplotlib.rc_context(style_rc()):
        yield


def new_figure(width: float = 6.4, height: float = 3.6) -> Any:
    """A constrained-layout matplotlib Figure (inches) on its own Agg canvas, in the report style."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with use_style():
        fig = Figure(figsize=(max(width, 2.0), max(height, 1.5)), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Any, dpi: int = DPI) -> bytes:
    """A matplotlib figure as PNG bytes (tight bounding box, white background, DPI recorded)."""
    buffer = io.BytesIO()
    with use_style():
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return buffer.getvalue()


def plain_text(text: Any) -> str:
    """User or model text drawn literally: a ``$`` must not switch matplotlib into math mode."""
    return str(text).replace("$", r"\$")
