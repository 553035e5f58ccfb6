"""Turning a :class:`~synthscope.reports.model.Report` into a page, a JSON document and data files.

One walk over the report gives all three, so that the file names the page links to, the names in
``report.json`` and the files written are the same by construction. The page is rendered with
Jinja2, autoescape on, from ``templates/report.html.j2``; the CSS is inlined from
``templates/report.css``, images become ``data:`` URIs, and a Content-Security-Policy forbids any
script or network request, so the page is one offline file.
"""

from __future__ import annotations

import base64
import json
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from .formatting import format_column, metric_parts
from .model import Figure, Gallery, Metric, Report, Section, Table, Text, png_size

__all__ = ["render_report", "Rendered", "slugify", "SCHEMA", "TEMPLATE_DIR"]

SCHEMA = "synthscope.report/1"
TEMPLATE_DIR = Path(__file__).parent / "templates"
RESERVED_ANCHORS = {"top", "main", "contents", "summary", "caveats", "provenance"}
CSS_PIXELS_PER_INCH = 96


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,  # every title, prompt, label and cell is data, never markup
        undefined=jinja2.StrictUndefined,  # a typo in the template fails loudly instead of printing ""
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["sentence"] = _sentence
    environment.filters["when"] = _when
    return environment


def _when(text: str) -> str:
    """An ISO timestamp as people read it (``2025-03-01 14:05 UTC``); anything else unchanged."""
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return text
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%d %H:%M")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _sentence(text: str) -> str:
    """A caption title ends with a full stop, so the caption that follows reads as a new sentence."""
    text = text.rstrip()
    return text if not text or text[-1] in ".!?:…" else text + "."


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("synthscope")
    except Exception:  # running from a source tree that is not installed
        return "unknown"


def slugify(text: str, fallback: str = "item", max_length: int = 48) -> str:
    """A lowercase ASCII name made of ``a-z0-9-``: safe as a file name and as a URL fragment."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    slug = slug[:max_length].strip("-")
    return slug or fallback


def _unique(base: str, taken: set[str]) -> str:
    name, counter = base, 2
    while name in taken:
        name = f"{base}-{counter}"
        counter += 1
    taken.add(name)
    return name


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _paragraphs(text: str) -> list[str]:
    return [" ".join(part.split()) for part in re.split(r"\n\s*\n", text) if part.strip()]


def _raw(value: Any) -> str:
    """The exact number, as JSON, for a data-* attribute (a notebook or test can read it back)."""
    return json.dumps(value)


@dataclass
class Rendered:
    """The outputs of one walk over a report: the page, the JSON document and the files to write."""

    html: str
    document: dict[str, Any]
    images: dict[str, bytes] = field(default_factory=dict)  # relative path -> PNG bytes
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # relative path -> full table


class _Walker:
    def __init__(self) -> None:
        self.anchors: set[str] = set(RESERVED_ANCHORS)
        self.table_names: set[str] = set()
        self.figure_names: set[str] = set()  # figure files and gallery folders share figures/
        self.figure_count = 0
        self.table_count = 0
        self.images: dict[str, bytes] = {}
        self.tables: dict[str, pd.DataFrame] = {}

    # -- blocks --

    def metric(self, metric: Metric) -> tuple[dict[str, Any], dict[str, Any]]:
        value, unit, interval = metric_parts(metric)
        level = f"{metric.ci_level * 100:g} %"
        view = {
            "label": metric.label, "value": value, "unit": unit, "interval": interval,
            "level": level, "note": metric.note, "raw": _raw(metric.value),
            "raw_low": _raw(metric.ci_low), "raw_high": _raw(metric.ci_high),
        }
        doc = {
            "type": "metric", "label": metric.label, "value": metric.value, "ci_low": metric.ci_low,
            "ci_high": metric.ci_high, "ci_level": metric.ci_level, "unit": metric.unit,
            "note": metric.note, "fmt": metric.fmt,
        }
        return view, doc

    def table(self, table: Table, anchor: str) -> tuple[dict[str, Any], dict[str, Any]]:
        self.table_count += 1
        name = _unique(slugify(table.name or f"{anchor}-{table.title}", "table"), self.table_names)
        path = f"tables/{name}.csv"
        frame = table.dataframe
        self.tables[path] = frame
        shown = frame.head(table.max_rows)
        columns = []
        cells_by_column = []
        for column in shown.columns:
            series = shown[column]
            numeric = pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)
            columns.append({"name": column, "numeric": numeric})
            cells_by_column.append(format_column(series, table.formats.get(column)))
        rows = [list(row) for row in zip(*cells_by_column)] if cells_by_column else []
        view = {
            "kind": "table", "number": self.table_count, "title": table.title, "caption": table.caption,
            "columns": columns, "rows": rows, "shown": len(shown), "total": len(frame), "file": path,
            "anchor": f"{anchor}-table-{self.table_count}",
        }
        doc = {
            "type": "table", "title": table.title, "caption": table.caption, "name": name, "file": path,
            "formats": dict(table.formats), "max_rows": table.max_rows, "rows": len(frame),
            "columns": [{"name": c, "dtype": str(frame[c].dtype)} for c in frame.columns],
        }
        return view, doc

    def figure(self, figure: Figure, anchor: str) -> tuple[dict[str, Any], dict[str, Any]]:
        self.figure_count += 1
        name = _unique(slugify(figure.name or f"{anchor}-{figure.title}", "figure"), self.figure_names)
        path = f"figures/{name}.png"
        self.images[path] = figure.png
        width, height, dpi = png_size(figure.png)
        if dpi and dpi > CSS_PIXELS_PER_INCH:  # a 150-dpi plot is shown at its printed size, not 1.6x it
            width, height = round(width * CSS_PIXELS_PER_INCH / dpi), round(height * CSS_PIXELS_PER_INCH / dpi)
        view = {
            "kind": "figure", "number": self.figure_count, "title": figure.title, "caption": figure.caption,
            "alt": figure.alt, "src": _data_uri(figure.png), "width": width, "height": height, "file": path,
            "anchor": f"{anchor}-figure-{self.figure_count}",
        }
        doc = {"type": "figure", "title": figure.title, "caption": figure.caption, "alt": figure.alt,
               "name": name, "file": path}
        return view, doc

    def gallery(self, gallery: Gallery, anchor: str) -> tuple[dict[str, Any], dict[str, Any]]:
        self.figure_count += 1
        name = _unique(slugify(gallery.name or f"{anchor}-{gallery.title}", "gallery"), self.figure_names)
        tiles, files = [], []
        for index, item in enumerate(gallery.images):
            path = f"figures/{name}/{index:03d}.png"
            self.images[path] = item.image
            width, height, _ = png_size(item.image)
            size = gallery.display_size
            tiles.append({
                "src": _data_uri(item.image), "label": item.label,
                "width": size, "height": max(1, round(size * height / width)),
                "pixels": f"{width}×{height} px",
            })
            files.append({"file": path, "label": item.label})
        view = {
            "kind": "gallery", "number": self.figure_count, "title": gallery.title,
            "caption": gallery.caption, "tiles": tiles, "anchor": f"{anchor}-figure-{self.figure_count}",
            "folder": f"figures/{name}/",
        }
        doc = {"type": "gallery", "title": gallery.title, "caption": gallery.caption, "name": name,
               "display_size": gallery.display_size, "images": files}
        return view, doc

    # -- sections --

    def section(self, section: Section, level: int) -> tuple[dict[str, Any], dict[str, Any]]:
        anchor = _unique(slugify(section.id or section.title, "section"), self.anchors)
        items: list[dict[str, Any]] = []
        docs: list[dict[str, Any]] = []
        for block in section.blocks:
            if isinstance(block, Metric):
                view, doc = self.metric(block)
                if items and items[-1]["kind"] == "metrics":  # a run of metrics is one row of cards
                    items[-1]["cards"].append(view)
                else:
                    items.append({"kind": "metrics", "cards": [view]})
            elif isinstance(block, Text):
                view = {"kind": "text", "style": block.kind, "paragraphs": _paragraphs(block.text)}
                doc = {"type": "text", "text": block.text, "kind": block.kind}
                items.append(view)
            elif isinstance(block, Table):
                view, doc = self.table(block, anchor)
                items.append(view)
            elif isinstance(block, Figure):
                view, doc = self.figure(block, anchor)
                items.append(view)
            else:
                view, doc = self.gallery(block, anchor)
                items.append(view)
            docs.append(doc)
        children = [self.section(sub, level + 1) for sub in section.subsections]
        view = {
            "anchor": anchor, "title": section.title, "level": min(level, 6),
            "intro": _paragraphs(section.intro), "items": items,
            "subsections": [child[0] for child in children],
        }
        doc = {
            "id": section.id, "title": section.title, "intro": section.intro, "blocks": docs,
            "caveats": list(section.caveats), "subsections": [child[1] for child in children],
        }
        return view, doc


def render_report(report: Report) -> Rendered:
    """Render ``report``: the HTML page, the ``report.json`` document and the files it names."""
    walker = _Walker()
    highlight_views, highlight_docs = [], []
    for metric in report.highlights:
        view, doc = walker.metric(metric)
        highlight_views.append(view)
        highlight_docs.append(doc)
    sections = [walker.section(section, 2) for section in report.sections]
    caveats = [{"text": text, "source": source} for text, source in report.all_caveats()]
    context = {
        "title": report.title,
        "subtitle": report.subtitle,
        "created_at": report.created_at,
        "summary": report.summary,
        "highlights": highlight_views,
        "sections": [view for view, _ in sections],
        "caveats": caveats,
        "provenance": report.provenance,
        "generator": f"synthscope {_version()}",
    }
    html = _environment().get_template("report.html.j2").render(**context)
    document = {
        "schema": SCHEMA,
        "title": report.title,
        "subtitle": report.subtitle,
        "created_at": report.created_at,
        "summary": list(report.summary),
        "highlights": highlight_docs,
        "sections": [doc for _, doc in sections],
        "caveats": list(report.caveats),
        "default_caveats": report.default_caveats,
        "provenance": report.provenance,
    }
    return Rendered(html=html, document=document, images=walker.images, tables=walker.tables)
