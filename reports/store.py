"""A report on disk: ``index.html`` beside ``report.json``, ``tables/*.csv`` and ``figures/*.png``.

``report.json`` plus those files hold everything the page shows, so :func:`rerender` can rebuild
the page from them alone (after a template fix, or from a notebook that edited the JSON), and a
notebook can reuse the exact numbers: ``pd.read_csv(dir / "tables/x.csv")``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from synthscope.errors import UserError
from synthscope.runtime import atomic_write_bytes

from .model import Figure, Gallery, GalleryImage, Metric, Report, Section, Table, Text
from .render import SCHEMA, render_report

__all__ = ["write_report", "load_report", "rerender", "read_table", "ReportFormatError"]

INDEX = "index.html"
DOCUMENT = "report.json"


def write_report(report: Report, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``index.html``, ``report.json``, ``tables/*.csv`` and ``figures/*.png`` to ``out_dir``;
    returns the path of ``index.html``. Files are written atomically and the page last, so a page on
    disk always has its data beside it."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"report folder {str(out)!r} exists and is not a folder")
    rendered = render_report(report)
    for relative, png in rendered.images.items():
        atomic_write_bytes(out / relative, png)
    for relative, frame in rendered.tables.items():
        # repr-precision floats: read back with float_precision="round_trip" they are bit-identical
        atomic_write_bytes(out / relative, frame.to_csv(index=False, lineterminator="\n").encode("utf-8"))
    document = json.dumps(rendered.document, indent=2, ensure_ascii=False, allow_nan=False)
    atomic_write_bytes(out / DOCUMENT, (document + "\n").encode("utf-8"))
    index = out / INDEX
    atomic_write_bytes(index, rendered.html.encode("utf-8"))  # last: a page on disk has its data beside it
    return index


# -- reading back ----------------------------------------------------------------------------------

class ReportFormatError(UserError):
    """``report.json`` or a file it names is missing or malformed (the message names which)."""


def _inside(base: Path, relative: Any, what: str) -> Path:
    """``base / relative``, refusing names that leave the report folder (report.json is untrusted)."""
    if not isinstance(relative, str) or not relative:
        raise ReportFormatError(f"{what}: missing file name in {DOCUMENT}")
    path = (base / relative).resolve()
    if not path.is_relative_to(base.resolve()):
        raise ReportFormatError(f"{what}: file {relative!r} lies outside the report folder")
    if not path.is_file():
        raise ReportFormatError(f"{what}: file {relative!r} is missing from {str(base)!r}")
    return path


_TEXT_DTYPES = {"object", "str", "string", "category"}
# pandas < 3 parses floats approximately unless asked; pandas 3 is exact by default (and warns if asked)
_ROUND_TRIP: dict[str, str] = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}


def read_table(path: str | os.PathLike[str], columns: list[dict[str, str]] | None = None) -> pd.DataFrame:
    """A table CSV as the report wrote it; with the ``columns`` record of ``report.json`` the column
    names and dtypes are restored exactly (floats bit-identical, text never guessed as numbers)."""
    names = [c["name"] for c in columns] if columns else None
    dtypes = {c["name"]: c.get("dtype", "") for c in columns} if columns else {}
    text_columns = {name: str for name, dtype in dtypes.items() if dtype in _TEXT_DTYPES}
    if names is not None and not names:
        return pd.DataFrame()
    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=text_columns or None,
                            **_ROUND_TRIP)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as error:
        reason = " ".join(str(error).split())[:200]
        raise ReportFormatError(f"table {str(path)!r} is not a readable CSV table ({type(error).__name__}: "
                                f"{reason})") from None
    if names is not None:
        if len(frame.columns) != len(names):
            raise ReportFormatError(f"table {str(path)!r}: {len(frame.columns)} columns, "
                                    f"{DOCUMENT} lists {len(names)}")
        frame.columns = names  # pandas renames empty or repeated headers; the record has the originals
    for name, dtype in dtypes.items():
        if dtype and dtype not in ("object", "str") and str(frame[name].dtype) != dtype:
            try:
                frame[name] = frame[name].astype(dtype)
            except (TypeError, ValueError):
                pass  # a dtype this pandas cannot rebuild from text: keep what read_csv inferred
    return frame


def _metric(doc: dict[str, Any]) -> Metric:
    return Metric(label=doc["label"], value=doc.get("value"), ci_low=doc.get("ci_low"),
                  ci_high=doc.get("ci_high"), unit=doc.get("unit", ""), note=doc.get("note", ""),
                  fmt=doc.get("fmt"), ci_level=doc.get("ci_level", 0.95))


def _block(doc: dict[str, Any], base: Path) -> Any:
    kind = doc.get("type")
    title = doc.get("title", "")
    if kind == "metric":
        return _metric(doc)
    if kind == "text":
        return Text(doc.get("text", ""), doc.get("kind", "plain"))
    if kind == "table":
        path = _inside(base, doc.get("file"), f"table {title!r}")
        return Table(title=title, dataframe=read_table(path, doc.get("columns")), caption=doc.get("caption", ""),
                     formats=doc.get("formats") or {}, max_rows=doc.get("max_rows", 30), name=doc.get("name"))
    if kind == "figure":
        path = _inside(base, doc.get("file"), f"figure {title!r}")
        return Figure(title=title, png=path, caption=doc.get("caption", ""), alt=doc.get("alt", ""),
                      name=doc.get("name"))
    if kind == "gallery":
        images = [GalleryImage(_inside(base, item.get("file"), f"gallery {title!r}"), item.get("label", ""))
                  for item in doc.get("images", [])]
        return Gallery(title=title, images=images, caption=doc.get("caption", ""),
                       display_size=doc.get("display_size", 96), name=doc.get("name"))
    raise ReportFormatError(f"unknown block type {kind!r} in {DOCUMENT}")


def _section(doc: dict[str, Any], base: Path) -> Section:
    return Section(id=doc.get("id", ""), title=doc.get("title", ""), intro=doc.get("intro", ""),
                   blocks=[_block(b, base) for b in doc.get("blocks", [])], caveats=doc.get("caveats", []),
                   subsections=[_section(s, base) for s in doc.get("subsections", [])])


def load_report(report_dir: str | os.PathLike[str]) -> Report:
    """The :class:`Report` saved in ``report_dir`` (its ``report.json`` and the files it names)."""
    base = Path(report_dir)
    path = base / DOCUMENT
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportFormatError(f"{str(path)!r} not found: is {str(base)!r} a report folder?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReportFormatError(f"{str(path)!r} is not readable JSON ({error})") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise ReportFormatError(f"{str(path)!r} is not a synthscope report (expected schema {SCHEMA!r})")
    try:
        return Report(
            title=document.get("title", ""), subtitle=document.get("subtitle", ""),
            created_at=document.get("created_at", ""), summary=document.get("summary", []),
            highlights=[_metric(m) for m in document.get("highlights", [])],
            sections=[_section(s, base) for s in document.get("sections", [])],
            provenance=document.get("provenance", {}), caveats=document.get("caveats", []),
            default_caveats=bool(document.get("default_caveats", True)),
        )
    except (KeyError, TypeError, AttributeError) as error:
        raise ReportFormatError(f"{str(path)!r} is malformed ({type(error).__name__}: {error})") from None


def rerender(report_dir: str | os.PathLike[str]) -> Path:
    """Rebuild ``report_dir/index.html`` from the saved JSON, CSV and PNG files only; returns its path.

    The data files are read, never rewritten, so re-rendering cannot change a saved result.
    """
    base = Path(report_dir)
    report = load_report(base)
    index = base / INDEX
    atomic_write_bytes(index, render_report(report).html.encode("utf-8"))
    return index
