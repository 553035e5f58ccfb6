"""The report's data model: a few generic blocks that any module can fill.

A :class:`Report` is a title, a plain-words summary, a list of :class:`Section` objects, a provenance
dictionary and caveats. A section holds blocks — :class:`Text`, :class:`Metric`, :class:`Table`,
:class:`Figure`, :class:`Gallery` — and may nest subsections. Generators, detectors and audits hand the
report sections (directly, or through anything with a ``report_section()`` method, see
:class:`SectionProvider`); this module knows nothing of their internals.

Everything textual is data: it is escaped when rendered, never interpreted as markup. Images are kept
as PNG bytes (paths and arrays are read and validated when the block is made, so a bad file fails
early with its name in the message, and a report never depends on files that may move later).

Rendering and storing are kept apart, in :mod:`.render` and :mod:`.store`, which read this model;
this module imports neither (``write_report(report, out)``, ``load_report(folder)``).
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, Union, runtime_checkable

import numpy as np
import pandas as pd

from synthscope.errors import UserError
from synthscope.jsondata import json_data

__all__ = [
    "Text", "Metric", "Table", "Figure", "Gallery", "GalleryImage", "Section", "SectionProvider",
    "Report", "Block", "DEFAULT_CAVEATS", "to_png_bytes",
]

# Caveats that hold for every synthscope report; sections add their own (e.g. audits: perceived
# attributes are not identity).
DEFAULT_CAVEATS: tuple[str, ...] = (
    "Every number here is an estimate from a finite sample. Where a range in brackets follows a "
    "value, it is a confidence interval; a narrow interval is not proof that the measurement itself "
    "is valid.",
    "Results describe the models, data and settings listed under Provenance. They may not carry over "
    "to other models, other prompts or images from other sources.",
)

MAX_IMAGE_PIXELS = 40_000_000  # an embedded image larger than this is a mistake, or a decompression bomb
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

ImageSource = Union[bytes, str, "os.PathLike[str]", np.ndarray, Any]


# -- images ----------------------------------------------------------------------------------------

def _array_to_png(array: Any, what: str) -> bytes:
    """An image array (H, W), (H, W, C) or channel-first (C, H, W) as PNG bytes.

    Floats are taken to be in 0..1 (clipped), integers in 0..255. Tensors are accepted by duck typing
    (``detach().cpu().numpy()``) so that reports need not import torch.
    """
    from PIL import Image

    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # channel-first, as torch keeps images
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)) or array.size == 0:
        raise UserError(f"{what}: expected an image array (H, W), (H, W, 3|4) or (C, H, W), "
                         f"got shape {array.shape}")
    if array.shape[0] * array.shape[1] > MAX_IMAGE_PIXELS:
        raise UserError(f"{what}: image of {array.shape[1]}x{array.shape[0]} pixels is too large to embed")
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise UserError(f"{what}: image array contains NaN or infinite values")
        array = np.round(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.integer):
        array = np.clip(array, 0, 255).astype(np.uint8)
    else:
        raise UserError(f"{what}: unsupported image dtype {array.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    return buffer.getvalue()


def to_png_bytes(source: ImageSource, what: str = "image") -> bytes:
    """PNG bytes from PNG/JPEG/... bytes, a file path, or an image array (see :func:`_array_to_png`).

    PNG input is kept byte for byte (after a check that it decodes); other formats are decoded and
    re-encoded as PNG. ``what`` names the image in error messages.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), what
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = f"{what} {str(path)!r}"
        try:
            data = path.read_bytes()
        except OSError as error:
            raise UserError(f"{name}: cannot read the file ({error.strerror or error})") from None
    else:
        return _array_to_png(source, what)
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise UserError(f"{name}: image of {width}x{height} pixels is too large to embed")
            image.load()  # decodes fully: a truncated file fails here, not in the reader's browser
            if image.format == "PNG" and data.startswith(PNG_SIGNATURE):
                return data
            if image.mode not in ("1", "L", "LA", "RGB", "RGBA", "I;16"):
                image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            return buffer.getvalue()
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise UserError(f"{name}: not a readable image ({error})") from None


def png_size(data: bytes) -> tuple[int, int, float | None]:
    """Width, height and (if recorded) horizontal DPI of PNG bytes."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        dpi = image.info.get("dpi")
        return image.size[0], image.size[1], (float(dpi[0]) if dpi and dpi[0] else None)


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"{what}: expected text, got {type(value).__name__}")
    return value


def _number(value: Any, what: str) -> float | int | None:
    """A plain Python number (numpy scalars unwrapped); NaN becomes None (shown as "n/a")."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{what}: expected a number, got {type(value).__name__}")
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


# -- blocks ----------------------------------------------------------------------------------------

@dataclass
class Text:
    """Plain text: paragraphs separated by blank lines. ``kind="note"`` shows it as a highlighted aside."""

    text: str
    kind: str = "plain"

    def __post_init__(self) -> None:
        self.text = _text(self.text, "Text")
        if self.kind not in ("plain", "note"):
            raise UserError(f"Text kind must be 'plain' or 'note', got {self.kind!r}")


@dataclass
class Metric:
    """One headline number, optionally with a confidence interval, shown as a card.

    Rendered as ``0.87 [0.82, 0.91]`` (value, then the interval in brackets); ``fmt`` is a Python
    format spec (``".3f"``, ``".1%"``) applied to the value and both bounds, otherwise the number of
    decimals follows the magnitude. The unrounded numbers are kept in ``report.json``.
    """

    label: str
    value: float | int | None
    ci_low: float | int | None = None
    ci_high: float | int | None = None
    unit: str = ""
    note: str = ""
    fmt: str | None = None
    ci_level: float = 0.95

    def __post_init__(self) -> None:
        self.label = _text(self.label, "Metric label")
        self.value = _number(self.value, f"Metric {self.label!r} value")
        self.ci_low = _number(self.ci_low, f"Metric {self.label!r} ci_low")
        self.ci_high = _number(self.ci_high, f"Metric {self.label!r} ci_high")
        self.unit = _text(self.unit, "Metric unit")
        self.note = _text(self.note, "Metric note")
        if (self.ci_low is None) != (self.ci_high is None):
            raise UserError(f"Metric {self.label!r}: give both ci_low and ci_high, or neither")
        if self.ci_low is not None and self.ci_high is not None and self.ci_low > self.ci_high:
            raise UserError(f"Metric {self.label!r}: ci_low {self.ci_low} is above ci_high {self.ci_high}")
        if not 0 < float(self.ci_level) < 1:
            raise UserError(f"Metric {self.label!r}: ci_level must be in (0, 1), got {self.ci_level}")
        if self.fmt is not None:
            try:
                format(1.5, self.fmt)
            except (ValueError, TypeError):
                raise UserError(f"Metric {self.label!r}: invalid format spec {self.fmt!r}") from None

    @property
    def has_ci(self) -> bool:
        return self.ci_low is not None and self.ci_high is not None



@dataclass
class Table:
    """A pandas DataFrame shown as an HTML table and saved in full as ``tables/<name>.csv``.

    ``formats`` maps column names to Python format specs (``".3f"``, ``".1%"``); other float columns
    get decimals from their magnitude. Only the first ``max_rows`` rows are shown in the page, with a
    note pointing at the CSV. A non-default index becomes ordinary columns, and column names become
    strings, so the page and the CSV always show the same columns.
    """

    title: str
    dataframe: pd.DataFrame
    caption: str = ""
    formats: dict[str, str] = field(default_factory=dict)
    max_rows: int = 30
    name: str | None = None

    def __post_init__(self) -> None:
        self.title = _text(self.title, "Table title")
        self.caption = _text(self.caption, "Table caption")
        if not isinstance(self.dataframe, pd.DataFrame):
            raise TypeError(f"Table {self.title!r}: expected a pandas DataFrame, "
                            f"got {type(self.dataframe).__name__}")
        frame = self.dataframe.copy()
        index = frame.index
        if index.nlevels == 1 and index.name is None and pd.api.types.is_integer_dtype(index.dtype):
            frame = frame.reset_index(drop=True)  # row positions (e.g. after filtering) carry no data
        else:
            frame = frame.reset_index()  # a named or labelled index is data: keep it as columns
        if isinstance(frame.columns, pd.MultiIndex):
            frame.columns = [" / ".join(str(level) for level in col if str(level)) for col in frame.columns]
        frame.columns = [str(column) for column in frame.columns]
        duplicated = sorted(set(frame.columns[frame.columns.duplicated()]))
        if duplicated:
            raise UserError(f"Table {self.title!r}: duplicate column names {duplicated} "
                             "(the CSV could not be read back)")
        self.dataframe = frame
        self.formats = {str(key): spec for key, spec in dict(self.formats or {}).items()}
        unknown = sorted(set(self.formats) - set(frame.columns))
        if unknown:
            raise UserError(f"Table {self.title!r}: formats name unknown columns {unknown}")
        for column, spec in self.formats.items():
            if not isinstance(spec, str):
                raise TypeError(f"Table {self.title!r}: format for {column!r} must be a format spec string")
        if int(self.max_rows) < 1:
            raise UserError(f"Table {self.title!r}: max_rows must be at least 1")
        self.max_rows = int(self.max_rows)


@dataclass
class Figure:
    """A plot or picture, embedded as a PNG (bytes, a file path, or an image array) with a caption.

    ``alt`` describes the picture for screen readers and defaults to the title. Use
    :meth:`from_matplotlib` to turn a matplotlib figure into one.
    """

    title: str
    png: bytes | str | os.PathLike[str] | Any
    caption: str = ""
    alt: str = ""
    name: str | None = None

    def __post_init__(self) -> None:
        self.title = _text(self.title, "Figure title")
        self.caption = _text(self.caption, "Figure caption")
        self.alt = _text(self.alt, "Figure alt") or self.title
        self.png = to_png_bytes(self.png, f"Figure {self.title!r}")

    @classmethod
    def from_matplotlib(cls, fig: Any, title: str, caption: str = "", alt: str = "",
                        name: str | None = None, dpi: int = 150) -> Figure:
        """A Figure from a matplotlib figure (rendered at ``dpi`` with a tight bounding box)."""
        from .style import figure_png

        return cls(title=title, png=figure_png(fig, dpi=dpi), caption=caption, alt=alt, name=name)


@dataclass
class GalleryImage:
    """One tile of a :class:`Gallery`: an image (PNG bytes, path or array) and its label."""

    image: bytes | str | os.PathLike[str] | Any
    label: str = ""

    def __post_init__(self) -> None:
        self.label = _text(self.label, "Gallery label")
        self.image = to_png_bytes(self.image, f"Gallery image {self.label!r}" if self.label else "Gallery image")


@dataclass
class Gallery:
    """A grid of small images (e.g. 16-32 px samples), shown upscaled without smoothing.

    ``images`` takes :class:`GalleryImage` objects, ``(image, label)`` pairs or bare images. Each tile
    is drawn ``display_size`` CSS pixels wide (the height keeps the aspect ratio).
    """

    title: str
    images: list[GalleryImage | tuple[Any, str] | Any] = field(default_factory=list)
    caption: str = ""
    display_size: int = 96
    name: str | None = None

    def __post_init__(self) -> None:
        self.title = _text(self.title, "Gallery title")
        self.caption = _text(self.caption, "Gallery caption")
        tiles = []
        for item in self.images:
            if isinstance(item, GalleryImage):
                tiles.append(item)
            elif isinstance(item, tuple) and len(item) == 2:
                tiles.append(GalleryImage(item[0], item[1]))
            else:
                tiles.append(GalleryImage(item))
        self.images = tiles
        if not 8 <= int(self.display_size) <= 1024:
            raise UserError(f"Gallery {self.title!r}: display_size must be 8..1024 px, got {self.display_size}")
        self.display_size = int(self.display_size)


Block = Union[Text, Metric, Table, Figure, Gallery]
BLOCK_TYPES = (Text, Metric, Table, Figure, Gallery)


@runtime_checkable
class SectionProvider(Protocol):
    """Anything that can describe its results as a report section (a detector evaluation, an audit)."""

    def report_section(self) -> Section: ...


def _as_section(item: Any) -> Section:
    if isinstance(item, Section):
        return item
    if isinstance(item, SectionProvider):
        section = item.report_section()
        if not isinstance(section, Section):
            raise TypeError(f"{type(item).__name__}.report_section() returned "
                            f"{type(section).__name__}, not a Section")
        return section
    raise TypeError(f"expected a Section or an object with report_section(), got {type(item).__name__}")


@dataclass
class Section:
    """A titled part of the report: an intro, blocks in order, caveats, and optional subsections.

    ``id`` becomes the HTML anchor (made URL-safe, and unique within the report); ``caveats`` are
    gathered into the report's caveats section, labelled with this section's title.
    """

    id: str
    title: str
    intro: str = ""
    blocks: list[Block] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)
    subsections: list[Section] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.id = _text(self.id, "Section id")
        self.title = _text(self.title, "Section title")
        self.intro = _text(self.intro, "Section intro")
        self.blocks = list(self.blocks)
        for block in self.blocks:
            if not isinstance(block, BLOCK_TYPES):
                raise TypeError(f"Section {self.title!r}: a block must be Text, Metric, Table, Figure or "
                                f"Gallery, got {type(block).__name__}")
        self.caveats = [_text(c, f"Section {self.title!r} caveat") for c in self.caveats]
        self.subsections = [_as_section(s) for s in self.subsections]

    def add(self, *blocks: Block) -> Section:
        """Append blocks (returns the section, so calls can be chained)."""
        for block in blocks:
            if not isinstance(block, BLOCK_TYPES):
                raise TypeError(f"Section {self.title!r}: cannot add a {type(block).__name__}")
            self.blocks.append(block)
        return self


def _now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@dataclass
class Report:
    """A whole report: what ``write_report`` turns into ``index.html`` plus JSON, CSV and PNG files.

    ``summary`` is a few sentences in plain words shown at the top; ``highlights`` are optional metric
    cards shown with them. ``sections`` take :class:`Section` objects or section providers.
    ``provenance`` (see :func:`~synthscope.reports.collect_provenance`) is stored as JSON data.
    ``caveats`` are report-wide; each section's caveats and (unless ``default_caveats`` is False)
    :data:`DEFAULT_CAVEATS` are added to them in the caveats section.
    """

    title: str
    summary: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    caveats: list[str] = field(default_factory=list)
    subtitle: str = ""
    highlights: list[Metric] = field(default_factory=list)
    default_caveats: bool = True
    created_at: str = field(default_factory=_now_iso)

    def __post_init__(self) -> None:
        self.title = _text(self.title, "Report title")
        self.subtitle = _text(self.subtitle, "Report subtitle")
        if isinstance(self.summary, str):
            self.summary = [self.summary]
        self.summary = [_text(s, "Report summary") for s in self.summary]
        self.sections = [_as_section(s) for s in self.sections]
        if not isinstance(self.provenance, dict):
            raise TypeError(f"Report provenance must be a dict, got {type(self.provenance).__name__}")
        # Stored as JSON data from the start, so the page rendered now and the one re-rendered from
        # report.json show exactly the same values.
        self.provenance = json_data(self.provenance, nonfinite="text", lenient=True)
        self.caveats = [_text(c, "Report caveat") for c in self.caveats]
        self.highlights = list(self.highlights)
        for metric in self.highlights:
            if not isinstance(metric, Metric):
                raise TypeError(f"Report highlights must be Metric objects, got {type(metric).__name__}")
        self.created_at = _text(self.created_at, "Report created_at")

    def add(self, section: Section | SectionProvider) -> Section:
        """Append a section (or a provider's section) and return it."""
        section = _as_section(section)
        self.sections.append(section)
        return section

    def all_caveats(self) -> list[tuple[str, str]]:
        """``(caveat, where from)`` pairs: report-wide, then each section's, then the defaults; no repeats."""
        seen: set[str] = set()
        result: list[tuple[str, str]] = []

        def add(text: str, source: str) -> None:
            key = " ".join(text.split())
            if key and key not in seen:
                seen.add(key)
                result.append((text, source))

        for caveat in self.caveats:
            add(caveat, "")

        def walk(section: Section) -> None:
            for caveat in section.caveats:
                add(caveat, section.title)
            for sub in section.subsections:
                walk(sub)

        for section in self.sections:
            walk(section)
        if self.default_caveats:
            for caveat in DEFAULT_CAVEATS:
                add(caveat, "")
        return result

