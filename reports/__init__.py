"""synthscope.reports — self-contained HTML reports, with their data as JSON, CSV and PNG beside them.

Build a :class:`Report` from :class:`Section` objects holding generic blocks (:class:`Text`,
:class:`Metric`, :class:`Table`, :class:`Figure`, :class:`Gallery`); anything with a
``report_section()`` method (a :class:`SectionProvider`) can be added directly. Then::

    write_report(report, "runs/x/report")  # index.html + report.json + tables/*.csv + figures/*.png
    rerender("runs/x/report")              # rebuild index.html from those files alone

This package knows nothing of generators, detectors or audits: they hand it sections.
"""

import os
from pathlib import Path

from .formatting import format_metric, format_number
from .model import (
    DEFAULT_CAVEATS,
    Figure,
    Gallery,
    GalleryImage,
    Metric,
    Report,
    Section,
    SectionProvider,
    Table,
    Text,
    to_png_bytes,
)
from .provenance import collect_provenance, file_sha256
from .render import render_report
from .store import ReportFormatError, load_report, read_table, rerender, write_report

__all__ = [
    "Report", "Section", "SectionProvider", "Text", "Metric", "Table", "Figure", "Gallery", "GalleryImage",
    "DEFAULT_CAVEATS", "collect_provenance", "file_sha256", "rerender", "write_report", "load_report", "render_report", "read_table",
    "ReportFormatError", "format_metric", "format_number", "to_png_bytes", "demo_report",
]


def demo_report(out_dir: str | os.PathLike[str]) -> Path:
    """Write the demo report (every block type, invented numbers) to ``out_dir``; see :mod:`.demo`."""
    from .demo import (
        demo_report as _demo,  # lazy: the demo draws plots, which needs matplotlib
    )

    return _demo(out_dir)
