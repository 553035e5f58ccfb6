"""Human labels: a label sheet to fill in, its import back, agreement between labellers and validity.

The round trip:

1. :func:`export_label_sheet` writes into a folder ``labels.csv`` (image_id, one empty column per
   attribute), ``sheet.html`` (a self-contained contact sheet: every image with its id, the allowed
   values and the instructions) and ``label_sheet.json`` (what was exported: attributes, allowed
   values, each image's sheet id with its id in the corpus, file and file hash, the corpus). The sheet
   never shows the prompt (nor the profession, descriptor or generator): a labeller who knows an image
   was asked to be "a nurse" is primed to see what the prompt says. Nor does it show the image's own id
   or file name: an audit image's id is "<prompt hash>#i" and its files are numbered in generation
   order, both of which tell which images share a prompt. Each image gets a random opaque id instead
   (``img-`` and 8 hex digits), mapped back to the image in ``label_sheet.json``, which stays with
   whoever runs the audit. The images appear in a seeded shuffled order, so that images of one prompt do
   not come in a block. The labels are *perceived* attributes (how the person appears), never identity,
   and "undetermined" is an allowed answer.
2. Each labeller fills in a copy, saved under their name (``labels_alice.csv``) or with a
   ``labeller`` column.
3. :func:`import_labels` reads the sheets into the tidy annotations table (annotator
   ``human:<name>``, the images under their ids in the corpus), checking every cell; each problem names
   the file and line. It also reads back the table it returns, saved as CSV (what ``synthscope audit
   import-labels --out human.csv`` writes and an audit spec's ``labels_csv`` names).
4. :func:`agreement` gives Cohen's kappa for every pair of annotators and Fleiss' kappa and
   Krippendorff's alpha (nominal) across all of them; :func:`confusion` compares an annotator with known
   truth (e.g. the ground truth of exported real portraits) with a Wilson interval on its accuracy.
"""

from __future__ import annotations

import base64
import csv
import difflib
import io
import math
import random
import secrets
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment

from synthscope.generators.corpus import CorpusError, read_corpus
from synthscope.errors import UserError
from synthscope.generators.attributes import ATTRIBUTE_VALUES, attribute_question
from synthscope.runtime import atomic_write_bytes, atomic_write_json, read_json, sha256_file
from synthscope.grouped import Column, Schema
from synthscope.stats import cohen_kappa, fleiss_kappa_of_ratings, is_missing, krippendorff_alpha_nominal

from .annotators import TABLE_COLUMNS, annotation_table, corpus_metadata, load_image
from .metrics import ABSTAIN, HUMAN_PREFIX, MAJORITY_ANNOTATOR, confusion
from .spec import PROBE_ATTRIBUTES

SHEET_CSV = "labels.csv"
SHEET_HTML = "sheet.html"
SHEET_JSON = "label_sheet.json"
SHEET_FORMAT = "synthscope-label-sheet/2"
SHEET_FORMATS = (SHEET_FORMAT, "synthscope-label-sheet/1")  # /1: sheets that showed the corpus's own ids
SHEET_ID_PREFIX = "img-"
LABELLER_COLUMNS = ("labeller", "labeler", "annotator")
THUMBNAIL_PX = 160  # displayed size of each image on the sheet
MAX_EMBED_PX = 256  # larger images are downscaled for the sheet (the corpus is untouched)
MAX_ERRORS_SHOWN = 50


class LabelImportError(UserError):
    """Problems in completed label sheets; ``errors`` lists each as "file:line: problem"."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        shown = self.errors[:MAX_ERRORS_SHOWN]
        more = len(self.errors) - len(shown)
        text = f"{len(self.errors)} problem(s) in the label sheets:\n" + "\n".join(shown)
        super().__init__(text + (f"\n... and {more} more" if more > 0 else ""))


def _check_choices(attributes: Sequence[str],
                   value_choices: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    """attribute -> allowed values (text, trimmed, unique case-insensitively, abstention label excluded)."""
    given = dict(value_choices) if value_choices is not None else {}
    defaults = ATTRIBUTE_VALUES
    out: dict[str, tuple[str, ...]] = {}
    if not attributes:
        raise UserError("give at least one attribute to label")
    for attribute in attributes:
        if attribute in given:
            raw = given[attribute]
        elif attribute in defaults:
            raw = defaults[attribute]
        else:
            raise UserError(f"no allowed values for attribute {attribute!r}: pass value_choices="
                             f"{{{attribute!r}: [...]}} (defaults exist for {', '.join(defaults)})")
        values: list[str] = []
        seen: set[str] = set()
        for value in ([raw] if isinstance(raw, str) else raw):
            text = str(value).strip()
            if not text:
                raise UserError(f"allowed values of {attribute!r} include an empty value")
            if text.casefold() == ABSTAIN.casefold() or text.casefold() in seen:
                continue  # the abstention label is always allowed; duplicates collapse
            seen.add(text.casefold())
            values.append(text)
        if len(values) < 2:
            raise UserError(f"attribute {attribute!r} needs at least two allowed values, got {values}")
        out[str(attribute)] = tuple(values)
    return out


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------

_SHEET_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem; color: #222; }
h1 { font-size: 1.4rem; }
.instructions { background: #f6f6f2; border-left: 4px solid #777; padding: .6rem 1rem; max-width: 60rem; }
.instructions li { margin: .25rem 0; }
table.choices { border-collapse: collapse; margin: .5rem 0; }
table.choices td, table.choices th { border: 1px solid #ccc; padding: .2rem .5rem; text-align: left; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax({{ thumb + 20 }}px, 1fr)); gap: .8rem;
        margin-top: 1rem; }
figure { margin: 0; border: 1px solid #ccc; border-radius: 4px; padding: .5rem; break-inside: avoid; }
figure img { width: {{ thumb }}px; height: {{ thumb }}px; object-fit: contain; background: #eee; display: block; }
img.pixelated { image-rendering: pixelated; image-rendering: crisp-edges; }
figcaption { font-size: .8rem; margin-top: .3rem; }
figcaption code { word-break: break-all; font-size: .85rem; }
.number { color: #666; }
.values { margin: .2rem 0 0; padding: 0; list-style: none; color: #444; }
.swatch { display: inline-block; width: .9em; height: .9em; border: 1px solid #888; vertical-align: middle; }
@media print { body { margin: 0; } figure { page-break-inside: avoid; } }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<section class="instructions">
<p>For each image below, fill in its row of <code>labels.csv</code> (rows are in the same order as the
numbers here; find an image by its <strong>image id</strong>).</p>
<ul>
<li>These are <strong>perceived</strong> attributes: write how the person in the picture <em>appears</em> to
you. They are not anyone's identity: the images are synthetic, and gender, age or skin tone cannot be known
from a picture.</li>
<li><strong>&ldquo;{{ abstain }}&rdquo; is an allowed answer</strong>: write it whenever you cannot tell
(no person visible, ambiguous, unclear image). Leave a cell empty only for an image you did not label.</li>
<li>Use only the allowed values below (upper or lower case does not matter). Judge each image on its own;
you are deliberately not told what the images were asked to show.</li>
<li>Save your copy under your own name (e.g. <code>labels_alice.csv</code>), or fill a
<code>labeller</code> column, and return it.</li>
</ul>
<table class="choices">
<tr><th>column</th><th>what to write</th><th>allowed values</th></tr>
{% for a in attributes %}
<tr><td><code>{{ a.name }}</code></td><td>{{ a.question }}</td>
<td>{% for v in a.choices %}
{% if v.colour %}<span class="swatch" style="background: {{ v.colour }}"></span> {% endif %}
<code>{{ v.text }}</code>, {% endfor %}
<code>{{ abstain }}</code></td></tr>
{% endfor %}
</table>
<p class="number">{{ items | length }} image(s){% if sample %}, a random sample (seed {{ seed }}){% endif %}.</p>
</section>
<div class="grid">
{% for item in items %}
<figure>
<img src="{{ item.src }}" alt="image {{ item.image_id }}"{% if item.pixelated %} class="pixelated"{% endif %}>
<figcaption><span class="number">#{{ loop.index }}</span> <code>{{ item.image_id }}</code>
<ul class="values">
{% for a in attributes %}
<li><code>{{ a.name }}</code>: {{ a.choices | map(attribute="text") | join(" / ") }} / {{ abstain }}</li>
{% endfor %}</ul>
</figcaption>
</figure>
{% endfor %}
</div>
</body>
</html>
"""


def _environment() -> Environment:
    # Autoescape on: image ids, file names and values come from users and models; they are data.
    return Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)


def _thumbnail(image, max_px: int) -> tuple[str, bool]:
    """A (C, H, W) float image as a PNG data URI (downscaled to ``max_px`` when larger), and whether it
    is small enough to be shown upscaled with crisp pixels."""
    import torch.nn.functional as F

    from synthscope.images import to_pil

    _, h, w = image.shape
    if max(h, w) > max_px:
        scale = max_px / max(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), max(h, w) < THUMBNAIL_PX


def _has_labels(path: Path) -> bool:
    """Whether a labels.csv already holds any label (so it is not overwritten)."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, ValueError, pd.errors.ParserError):
        return True  # unreadable: keep it, it may be someone's work
    columns = [c for c in table.columns if c not in ("image_id", "file")]
    return bool(len(table) and columns and (table[columns].apply(lambda s: s.str.strip()) != "").any().any())


def export_label_sheet(corpus_dir: Path | str, out_dir: Path | str, attributes: Sequence[str] = PROBE_ATTRIBUTES,
                       value_choices: Mapping[str, Sequence[str]] | None = None, sample: int | None = None,
                       seed: int = 0, title: str | None = None, force: bool = False) -> Path:
    """Write a label sheet for the images of a corpus into ``out_dir``; returns ``out_dir``.

    Files: ``labels.csv`` (image_id and one empty column per attribute), ``sheet.html`` (a
    self-contained contact sheet with the images embedded as PNG data URIs, small ones upscaled with
    crisp pixels; ids, allowed values and instructions), ``label_sheet.json`` (attributes, allowed
    values, the images: sheet id, id in the corpus, file and file hash; the corpus, seed). The sheet
    names each image by a random opaque id, never by its id in the corpus or its file name (both tell
    which images share a prompt). A corpus none of whose images can be read is an error, and nothing is
    written. ``value_choices``: attribute ->
    allowed values (default: the portraits world's values for gender, skin_tone, age and profession);
    "undetermined" is always allowed. ``sample``: a random sample of that many images (seeded). The
    images come in a seeded shuffled order and no prompt or prompt metadata is shown (it would prime
    the labeller). A ``labels.csv`` that already holds labels is not overwritten unless ``force``.
    """
    choices = _check_choices(list(attributes), value_choices)
    clash = [a for a in choices if a in ("image_id", "file", *LABELLER_COLUMNS)]
    if clash:
        raise UserError(f"attribute name(s) {', '.join(clash)} clash with the sheet's own columns")
    if sample is not None and int(sample) < 1:
        raise UserError(f"sample must be at least 1 image, got {sample}")
    out = Path(out_dir)
    if (out / SHEET_CSV).is_file() and not force and _has_labels(out / SHEET_CSV):
        raise FileExistsError(f"{out / SHEET_CSV} already holds labels; export to another folder, or force to "
                              f"overwrite it")
    corpus = read_corpus(corpus_dir)
    meta = corpus_metadata(corpus)
    order = list(range(len(meta)))
    random.Random(seed).shuffle(order)  # shuffled even without sampling: no blocks of one prompt
    if sample is not None:
        order = order[:int(sample)]

    items, records, skipped = [], [], []
    sheet_ids = _opaque_ids(len(order))
    for i in order:
        image_id, file = str(meta["image_id"].iloc[i]), str(meta["file"].iloc[i])
        try:
            src, pixelated = _thumbnail(load_image(corpus, i), MAX_EMBED_PX)
        except (CorpusError, ValueError) as error:  # an unreadable image cannot be labelled: leave it out
            skipped.append({"file": file, "reason": str(error)})
            continue
        sheet_id = sheet_ids[len(records)]
        items.append({"image_id": sheet_id, "src": src, "pixelated": pixelated})
        records.append({"sheet_id": sheet_id, "image_id": image_id, "file": file,
                        "sha256": sha256_file(corpus.root / file)})
    if skipped:
        warnings.warn(f"{len(skipped)} image(s) could not be read and are not on the sheet (first: "
                      f"{skipped[0]['file']}: {skipped[0]['reason']})", stacklevel=2)
    if not records:
        first = f" (first: {skipped[0]['file']}: {skipped[0]['reason']})" if skipped else ""
        raise UserError(f"{corpus.root}: no image could be read, so there is nothing to label{first}; "
                         f"no sheet written")

    palette = _skin_palette()
    shown = [{"name": a, "question": attribute_question(a),
              "choices": [{"text": v, "colour": palette.get(v) if a == "skin_tone" else None} for v in values]}
             for a, values in choices.items()]
    html = _environment().from_string(_SHEET_TEMPLATE).render(
        title=title or f"Label sheet: perceived attributes ({len(items)} images)", attributes=shown, items=items,
        abstain=ABSTAIN, thumb=THUMBNAIL_PX, sample=sample, seed=seed)

    # No file column: files are numbered in generation order, which groups the images of a prompt.
    sheet = pd.DataFrame({"image_id": [r["sheet_id"] for r in records], **{a: [""] * len(records) for a in choices}})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / SHEET_CSV, sheet.to_csv(index=False).encode("utf-8"))
    atomic_write_bytes(out / SHEET_HTML, html.encode("utf-8"))
    atomic_write_json(out / SHEET_JSON, {
        "format": SHEET_FORMAT, "corpus": str(Path(corpus_dir).absolute()), "attributes": list(choices),
        "value_choices": {a: list(v) for a, v in choices.items()}, "abstain_label": ABSTAIN, "sample": sample,
        "seed": seed, "n_images": len(records), "images": records, "skipped": skipped,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "note": "perceived attributes, not identity; prompts, image ids and file names deliberately not shown "
                "to labellers (images[].sheet_id is the id on the sheet, images[].image_id the image's id in the "
                "corpus); keep this file from the labellers"})
    return out


def _opaque_ids(n: int) -> list[str]:
    """``n`` distinct random ids ("img-" and 8 hex digits): they say nothing about the image."""
    ids: dict[str, None] = {}
    while len(ids) < n:
        ids.setdefault(SHEET_ID_PREFIX + secrets.token_hex(4))
    return list(ids)


def _skin_palette() -> dict[str, str]:
    """Reference colours of the 6-step skin-tone scale, shown beside the values (not a judgement aid for
    any one image: lighting and rendering change how a skin colour looks)."""
    try:
        from synthscope.generators.portraits import SKIN_PALETTE
    except ImportError:
        return {}
    return {str(k): f"rgb({r}, {g}, {b})" for k, (r, g, b) in SKIN_PALETTE.items()}


# --------------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------------


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, cells) of a CSV written by a spreadsheet (BOM, "," ";" or tab)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise LabelImportError([f"{path}:1: not UTF-8 text ({error}); save the sheet as CSV UTF-8"]) from None
    first = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=first.count) if first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        raise LabelImportError([f"{path}:1: empty file; expected a header with image_id and attribute columns"])
    rows = []
    for cells in reader:
        rows.append((reader.line_num, cells))
    return [h.strip() for h in header], rows


def _labeller_from_file(path: Path) -> str:
    """``labels_alice.csv`` -> "alice"; any other file name without its extension."""
    stem = path.stem
    for prefix in ("labels_", "labels-"):
        if stem.lower().startswith(prefix) and len(stem) > len(prefix):
            return stem[len(prefix):]
    return stem


class LabelSheetError(UserError):
    """A ``label_sheet.json`` that is missing, unreadable or not what :func:`export_label_sheet` writes."""


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "text", bool: "true/false", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)


def read_label_sheet(sheet_dir: Path | str) -> dict[str, Any]:
    """The ``label_sheet.json`` of a sheet folder, checked; any problem is one :class:`LabelSheetError`
    naming the file and what is wrong. Every image record has ``sheet_id`` (the id on the sheet) and
    ``image_id`` (its id in the corpus); in sheets of the first format, which showed the corpus's own
    ids, the two are the same."""
    folder = Path(sheet_dir)
    path = folder / SHEET_JSON
    if not path.is_file():
        raise LabelSheetError(f"{folder}: no {SHEET_JSON}; give the folder 'synthscope audit label-sheet' wrote")
    try:
        data = read_json(path)
    except ValueError as error:  # read_json names the file
        raise LabelSheetError(str(error)) from None

    def bad(problem: str) -> LabelSheetError:
        return LabelSheetError(f"{path}: {problem} (export the sheet again, or restore the file "
                               "'synthscope audit label-sheet' wrote)")

    if not isinstance(data, dict):
        raise bad(f"expected a JSON object, got {_json_type(data)}")
    if data.get("format") not in SHEET_FORMATS:
        raise bad(f"not a synthscope label sheet (format {data.get('format')!r}, expected {SHEET_FORMAT!r})")
    for key in ("corpus", "value_choices", "images"):
        if key not in data:
            raise bad(f"missing {key!r}")
    if not isinstance(data["corpus"], str):
        raise bad(f"'corpus' must be text (the corpus folder), got {_json_type(data['corpus'])}")
    choices = data["value_choices"]
    if not isinstance(choices, dict) or not choices:
        raise bad(f"'value_choices' must be an object (attribute -> list of allowed values), got "
                  f"{_json_type(choices) if choices != {} else 'an empty object'}")
    for attribute, values in choices.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise bad(f"'value_choices.{attribute}' must be a list of text values, got {_json_type(values)}")
    images = data["images"]
    if not isinstance(images, list):
        raise bad(f"'images' must be a list, got {_json_type(images)}")
    first_format = data["format"] != SHEET_FORMAT
    checked: list[dict[str, Any]] = []
    sheet_seen: dict[str, int] = {}
    image_seen: dict[str, int] = {}
    for i, record in enumerate(images):
        if not isinstance(record, dict):
            raise bad(f"images[{i}] must be an object, got {_json_type(record)}")
        for key in ("image_id",) if first_format else ("sheet_id", "image_id"):
            if key not in record:
                raise bad(f"images[{i}]: missing {key!r}")
            if not isinstance(record[key], str) or not record[key].strip():
                raise bad(f"images[{i}]: {key!r} must be text, got {_json_type(record[key])} {record[key]!r}")
        if not isinstance(record.get("file", ""), str):
            raise bad(f"images[{i}]: 'file' must be text, got {_json_type(record['file'])}")
        record = {"file": "", **record, **({"sheet_id": record["image_id"]} if first_format else {})}
        for key, seen in (("sheet_id", sheet_seen), ("image_id", image_seen)):
            if record[key] in seen:
                raise bad(f"images[{i}]: {key} {record[key]!r} appears twice (also images[{seen[record[key]]}])")
            seen[record[key]] = i
        checked.append(record)
    return {**data, "images": checked}


def import_labels(csv_paths: Path | str | Sequence[Path | str], sheet_dir: Path | str | None = None,
                  corpus_dir: Path | str | None = None, value_choices: Mapping[str, Sequence[str]] | None = None,
                  attributes: Sequence[str] | None = None) -> pd.DataFrame:
    """Read completed label sheets (one per labeller) into the tidy annotations table.

    ``sheet_dir``: the folder :func:`export_label_sheet` wrote; it gives the allowed values, the sheet's
    ids and the image each stands for, and the corpus. ``corpus_dir`` (default: the sheet's corpus, if
    it still exists) gives the prompt metadata of each image. ``value_choices`` overrides the allowed
    values (default: the sheet's, else the portraits world's); ``attributes`` limits the columns read.

    Two kinds of file are read. A completed sheet: image_id and one column per attribute; with a
    ``sheet_dir`` its ids are the sheet's (mapped back to the images), without one they are the corpus's
    own. The labeller is a ``labeller`` column where filled in, else the file name without extension and
    without a ``labels_`` prefix (``labels_alice.csv`` -> alice); the annotator is ``human:<labeller>``.
    Or the table this function returns, saved as CSV (image_id as in the corpus, annotator
    ``human:<labeller>``, attribute, value; other columns are ignored): what ``synthscope audit
    import-labels --out`` writes, read back by an audit spec's ``labels_csv``.

    Values match the allowed ones case-insensitively after trimming, and are stored in their canonical
    spelling; "undetermined" is an abstention. An empty cell means
    "not labelled": no row, counted in ``table.attrs["n_unlabelled"]`` ({annotator: {attribute: n}}).
    Every problem (unknown image id, value not allowed, an image labelled twice by one labeller, no
    image_id column) is collected and raised as one :class:`LabelImportError` naming file and line; a
    broken ``label_sheet.json`` is one :class:`LabelSheetError`.
    """
    paths = [Path(csv_paths)] if isinstance(csv_paths, (str, Path)) else [Path(p) for p in csv_paths]
    if not paths:
        raise UserError("give at least one completed label sheet (CSV)")
    sheet = read_label_sheet(sheet_dir) if sheet_dir is not None else None
    if value_choices is None and sheet is not None:
        value_choices = sheet["value_choices"]
    wanted = list(attributes) if attributes is not None else (
        list(value_choices) if value_choices is not None else list(ATTRIBUTE_VALUES))
    choices = _check_choices(wanted, value_choices)
    lookup = {a: {v.casefold(): v for v in (*values, ABSTAIN)} for a, values in choices.items()}
    attribute_names = {a.casefold(): a for a in choices}

    corpus_path = Path(corpus_dir) if corpus_dir is not None else (
        Path(sheet["corpus"]) if sheet is not None and Path(sheet["corpus"]).is_dir() else None)
    meta = corpus_metadata(read_corpus(corpus_path)) if corpus_path is not None else None
    # Ids in a completed sheet -> the image's id in the corpus; ``known`` are the corpus ids a saved
    # table may name. None: nothing to check against.
    sheet_files: dict[str, str] = {}
    if sheet is not None:
        to_image: dict[str, str] | None = {r["sheet_id"]: r["image_id"] for r in sheet["images"]}
        sheet_files = {r["image_id"]: r["file"] for r in sheet["images"]}
        known: set[str] | None = set(to_image.values())
        where = "the label sheet"
    elif meta is not None:
        known, where = set(meta["image_id"]), "the corpus"
        to_image = {i: i for i in known}
    else:
        to_image, known, where = None, None, ""

    errors: list[str] = []
    records: list[dict[str, Any]] = []
    first_seen: dict[tuple[str, str], str] = {}
    label_seen: dict[tuple[str, str, str], str] = {}
    unlabelled: dict[str, dict[str, int]] = {}

    def cell(cells: list[str], index: int | None) -> str:
        return cells[index].strip() if index is not None and index < len(cells) else ""

    def add(location: str, image_id: str, annotator: str, attribute: str, raw: str, file: str) -> None:
        if not raw:
            counts = unlabelled.setdefault(annotator, {})
            counts[attribute] = counts.get(attribute, 0) + 1
            return
        value = lookup[attribute].get(raw.casefold())
        if value is None:
            allowed = [*choices[attribute], ABSTAIN]
            close = difflib.get_close_matches(raw.casefold(), [v.casefold() for v in allowed], n=1)
            hint = f"; did you mean {lookup[attribute][close[0]]!r}?" if close else ""
            errors.append(f"{location}: {attribute} value {raw!r} is not allowed (allowed: "
                          f"{', '.join(allowed)}){hint}")
            return
        key = (annotator, image_id, attribute)
        if key in label_seen:
            errors.append(f"{location}: image {image_id!r} already has a {attribute} label from "
                          f"{annotator!r} ({label_seen[key]})")
            return
        label_seen[key] = location
        records.append({"image_id": image_id, "annotator": annotator, "attribute": attribute, "value": value,
                        "file": sheet_files.get(image_id) or file})

    for path in paths:
        if not path.is_file():
            errors.append(f"{path}:0: no such file")
            continue
        try:
            header, rows = _read_rows(path)
        except LabelImportError as error:
            errors.extend(error.errors)
            continue
        lowered = [h.casefold() for h in header]
        if "image_id" not in lowered:
            errors.append(f"{path}:1: no 'image_id' column (found: {', '.join(header) or 'nothing'})")
            continue
        id_col = lowered.index("image_id")
        file_col = lowered.index("file") if "file" in lowered else None
        if {"annotator", "attribute", "value"} <= set(lowered):  # a saved table of imported labels
            _read_saved_labels(path, rows, lowered, id_col, file_col, known, where, attribute_names, cell, add,
                               errors)
            continue
        labeller_col = next((lowered.index(c) for c in LABELLER_COLUMNS if c in lowered), None)
        columns = {a: lowered.index(a.casefold()) for a in choices if a.casefold() in lowered}
        if not columns:
            errors.append(f"{path}:1: no attribute column; expected one of {', '.join(choices)} "
                          f"(found: {', '.join(header)})")
            continue
        ignored = [h for i, h in enumerate(header) if h and i not in (id_col, file_col, labeller_col)
                   and i not in columns.values()]
        if ignored:
            warnings.warn(f"{path}: ignoring column(s) {', '.join(ignored)} (not attributes being imported: "
                          f"{', '.join(choices)})", stacklevel=2)

        n_rows = n_unknown = 0
        for line, cells in rows:
            if not any(c.strip() for c in cells):
                continue  # blank line
            n_rows += 1
            raw_id = cell(cells, id_col)
            if not raw_id:
                errors.append(f"{path}:{line}: empty image_id")
                continue
            if to_image is not None and raw_id not in to_image:
                n_unknown += 1
                close = difflib.get_close_matches(raw_id, list(to_image), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                errors.append(f"{path}:{line}: unknown image id {raw_id!r}: not in {where}{hint}")
                continue
            image_id = to_image[raw_id] if to_image is not None else raw_id
            labeller = cell(cells, labeller_col) or _labeller_from_file(path)
            annotator = HUMAN_PREFIX + labeller
            location = f"{path}:{line}"
            if (annotator, image_id) in first_seen:
                errors.append(f"{location}: duplicate row: image {raw_id!r} was already labelled by {labeller!r} "
                              f"at {first_seen[(annotator, image_id)]}")
                continue
            first_seen[(annotator, image_id)] = location
            for attribute, index in columns.items():
                add(location, image_id, annotator, attribute, cell(cells, index), cell(cells, file_col))
        if sheet is None and n_rows and n_unknown == n_rows:
            errors.append(f"{path}: none of its image ids is in {where}. A completed label sheet names the images "
                          f"by the sheet's own ids: import it with 'synthscope audit import-labels SHEET_DIR "
                          f"{path.name} ... --out human.csv' (SHEET_DIR: the folder 'audit label-sheet' wrote) "
                          f"and give that file instead")
    if errors:
        raise LabelImportError(errors)

    table = pd.DataFrame(records, columns=["image_id", "annotator", "attribute", "value", "file"])
    table["confidence"] = np.nan  # a person's label has no probability
    table["predicted"] = table["value"]
    if meta is not None:
        table = table.merge(meta.rename(columns={"file": "_corpus_file"}), on="image_id", how="left")
        table["file"] = table["file"].where(table["file"] != "", table["_corpus_file"].fillna(""))
    else:
        for column in ("prompt", "profession", "descriptor"):
            table[column] = ""
        table["template"] = np.nan
        table["guidance"] = np.nan
    table = annotation_table(table)
    table.attrs["n_unlabelled"] = unlabelled
    return table


def _read_saved_labels(path: Path, rows: list[tuple[int, list[str]]], lowered: list[str], id_col: int,
                       file_col: int | None, known: set[str] | None, where: str, attribute_names: dict[str, str],
                       cell: Any, add: Any, errors: list[str]) -> None:
    """Rows of a saved table of imported labels (image_id as in the corpus, annotator, attribute, value)."""
    a_col, t_col, v_col = (lowered.index(c) for c in ("annotator", "attribute", "value"))
    skipped: set[str] = set()
    for line, cells in rows:
        if not any(c.strip() for c in cells):
            continue
        location = f"{path}:{line}"
        image_id, annotator = cell(cells, id_col), cell(cells, a_col)
        if not image_id:
            errors.append(f"{location}: empty image_id")
            continue
        if known is not None and image_id not in known:
            close = difflib.get_close_matches(image_id, list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            errors.append(f"{location}: unknown image id {image_id!r}: not in {where}{hint}")
            continue
        if not annotator.startswith(HUMAN_PREFIX) or annotator == HUMAN_PREFIX:
            errors.append(f"{location}: annotator {annotator!r} is not a labeller (human:<name>); only human "
                          f"labels are read back from a saved table")
            continue
        attribute = attribute_names.get(cell(cells, t_col).casefold())
        if attribute is None:
            skipped.add(cell(cells, t_col))
            continue
        add(location, image_id, annotator, attribute, cell(cells, v_col), cell(cells, file_col))
    if skipped:
        warnings.warn(f"{path}: ignoring labels of {', '.join(sorted(map(repr, skipped)))} (not attributes being "
                      f"imported: {', '.join(attribute_names.values())})", stacklevel=3)


# --------------------------------------------------------------------------------------------
# Agreement
# --------------------------------------------------------------------------------------------


# The agreement table's declared columns. A measure over all annotators (Fleiss' kappa, Krippendorff's
# alpha) has no pair: its annotator_a and annotator_b are missing (NaN), not placeholder text, in a
# fresh table and read back alike; in CSV they are empty cells either way.
AGREEMENT_SCHEMA = Schema((
    Column("attribute", "text", "the attribute labelled"),
    Column("measure", "text", "cohen_kappa, fleiss_kappa or krippendorff_alpha"),
    Column("annotator_a", "optional_text", "first annotator of the pair (Cohen's kappa); missing otherwise"),
    Column("annotator_b", "optional_text", "second annotator of the pair (Cohen's kappa); missing otherwise"),
    Column("n_annotators", "int", "annotators the measure compares"),
    Column("n_shared", "int", "images the measure used"),
    Column("observed_agreement", "float", "share of those images (of pairs of labels, for Krippendorff's "
                                          "alpha) on which the labels are equal; NaN with no images"),
    Column("value", "float", "the measure; NaN where undefined"),
))
AGREEMENT_COLUMNS = tuple(AGREEMENT_SCHEMA.names)


def agreement(annotations: pd.DataFrame, attribute: str, annotators: Sequence[str] | None = None,
              include_abstentions: bool = True) -> pd.DataFrame:
    """How far annotators agree on one attribute, on the images they share.

    Rows (columns and types :data:`AGREEMENT_SCHEMA`), each measure from :mod:`synthscope.stats`:
    ``cohen_kappa`` for every pair of annotators (on the images both labelled), ``fleiss_kappa`` across all
    annotators on the images every one of them labelled, and ``krippendorff_alpha`` (nominal) on every
    image at least two of them labelled (it allows missing labels). ``n_shared`` is the number of images
    the measure used; ``observed_agreement`` the share of those images (pairs, for Krippendorff's
    alpha: of all pairs) on which the labels are equal. ``annotators`` selects and orders annotators
    (default: all in the table). "undetermined" is a category like any other unless
    ``include_abstentions=False``, which drops abstentions before comparing. Values are NaN where a
    measure is undefined (no shared images, or a single category throughout).
    """
    table = annotations[annotations["attribute"] == attribute]
    table = table[table["value"].notna()].assign(value=lambda t: t["value"].astype(str))
    if not include_abstentions:
        table = table[table["value"].str.casefold() != ABSTAIN.casefold()]
    names = list(annotators) if annotators is not None else list(dict.fromkeys(table["annotator"]))
    table = table[table["annotator"].isin(names)]
    doubled = table.duplicated(["image_id", "annotator"])
    if doubled.any():
        row = table[doubled].iloc[0]
        raise UserError(f"image {row['image_id']!r} has two {attribute} labels from {row['annotator']!r}")
    wide = table.pivot(index="image_id", columns="annotator", values="value").reindex(columns=names)
    rows = []

    def row(measure: str, a: str | None, b: str | None, k: int, n: int, observed: float,
            value: float) -> dict[str, Any]:
        return dict(zip(AGREEMENT_COLUMNS, (attribute, measure, a, b, k, n, observed, value)))

    for a, b in combinations(names, 2):
        pair = wide[[a, b]].dropna()
        observed = float((pair[a] == pair[b]).mean()) if len(pair) else math.nan
        rows.append(row("cohen_kappa", a, b, 2, len(pair), observed, cohen_kappa(pair[a], pair[b])))

    full = wide.dropna()
    fleiss, observed = math.nan, math.nan
    if len(names) >= 2 and len(full):
        fleiss = fleiss_kappa_of_ratings(full.to_numpy())
        observed = float((full.nunique(axis=1) == 1).mean())  # images on which everyone agrees
    rows.append(row("fleiss_kappa", None, None, len(names), len(full), observed, fleiss))

    pairable = wide[wide.notna().sum(axis=1) >= 2]
    units = pairable.to_numpy(dtype=object).tolist()
    agree = total = 0.0
    for unit in units:
        values = [v for v in unit if not is_missing(v)]
        m = len(values)
        total += m * (m - 1)
        agree += sum(values.count(v) * (values.count(v) - 1) for v in set(values))
    rows.append(row("krippendorff_alpha", None, None, len(names), len(pairable),
                    agree / total if total else math.nan, krippendorff_alpha_nominal(units)))
    return AGREEMENT_SCHEMA.coerce(pd.DataFrame(rows, columns=list(AGREEMENT_COLUMNS)))


def read_agreement(source: str | Path | io.StringIO) -> pd.DataFrame:
    """An agreement table written as CSV (e.g. an audit's labeller_agreement.csv), with the declared
    types of :data:`AGREEMENT_SCHEMA`: the same frame :func:`agreement` gives."""
    return AGREEMENT_SCHEMA.read_csv(source)


def labeller_agreement(labels: pd.DataFrame, include_abstentions: bool = True) -> pd.DataFrame:
    """:func:`agreement` between the labellers (annotators ``human:<name>``) for every attribute they
    labelled, stacked (:data:`AGREEMENT_COLUMNS`); empty with fewer than two labellers."""
    human = labels[labels["annotator"].astype(str).str.startswith(HUMAN_PREFIX)]
    parts = [agreement(human, attribute, include_abstentions=include_abstentions)
             for attribute in dict.fromkeys(human["attribute"])] if human["annotator"].nunique() > 1 else []
    return AGREEMENT_SCHEMA.coerce(pd.concat(parts, ignore_index=True) if parts
                                   else pd.DataFrame(columns=list(AGREEMENT_COLUMNS)))


def majority_labels(labels: pd.DataFrame, name: str = MAJORITY_ANNOTATOR) -> pd.DataFrame:
    """The labellers' majority as one more annotator (``name``): per image and attribute, the value most
    of the labellers who labelled it gave; a tie is "undetermined" (and "undetermined" is a value like
    any other: it wins where most labellers gave it). Rows in :data:`TABLE_COLUMNS` form, with each
    image's prompt metadata; only annotators ``human:<name>`` vote."""
    human = labels[labels["annotator"].astype(str).str.startswith(HUMAN_PREFIX)]
    keys = ["image_id", "attribute"]
    counts = human.groupby([*keys, "value"], sort=False).size().rename("votes").reset_index()
    top = counts[counts["votes"] == counts.groupby(keys)["votes"].transform("max")]
    tied = top.groupby(keys)["value"].transform("size") > 1
    top = top.assign(value=top["value"].where(~tied, ABSTAIN)).drop_duplicates(keys)
    meta = human.drop_duplicates(keys).drop(columns=["annotator", "value", "predicted", "confidence"],
                                            errors="ignore")
    majority = meta.merge(top[[*keys, "value"]], on=keys, how="inner")
    majority = majority.assign(annotator=name, predicted=majority["value"], confidence=np.nan)
    for column in TABLE_COLUMNS:
        if column not in majority:
            majority[column] = np.nan
    return annotation_table(majority)


# --------------------------------------------------------------------------------------------
# Validity against known truth
# --------------------------------------------------------------------------------------------


def truth_from_corpus(corpus_dir: Path | str, attributes: Sequence[str] = PROBE_ATTRIBUTES) -> pd.DataFrame:
    """Known truth from a corpus manifest (e.g. real portraits exported with ``synthscope data export``):
    image_id and each of ``attributes`` the manifest has (empty cells are unknown)."""
    corpus = read_corpus(corpus_dir)
    meta = corpus_metadata(corpus)
    present = [a for a in attributes if a in corpus.manifest.columns]
    if not present:
        raise UserError(f"{corpus.root}: the manifest has none of the truth columns {', '.join(attributes)}")
    truth = corpus.manifest[present].reset_index(drop=True).astype(str)
    truth.insert(0, "image_id", meta["image_id"])
    return truth


VALIDITY_COLUMNS = ("annotator", "attribute", "n", "n_correct", "n_abstained", "accuracy", "accuracy_ci_low",
                    "accuracy_ci_high")


def labeller_validity(labels: pd.DataFrame, corpus_dir: Path | str, confidence: float = 0.95) -> pd.DataFrame:
    """Every labeller against the truth a corpus knows, one row per labeller and attribute
    (:data:`VALIDITY_COLUMNS`, from :meth:`Confusion.summary`).

    Truth is a manifest column named after the attribute on rows whose ``source`` is "real" (e.g. the
    portraits ``synthscope data export`` writes, with their true attributes); a generated image's
    manifest says what was asked for, which is not truth. Empty when the corpus knows no truth for the
    labelled attributes."""
    corpus = read_corpus(corpus_dir)
    manifest = corpus.manifest.reset_index(drop=True)
    real = manifest["source"].astype(str).str.strip().str.casefold() == "real"
    attributes = [a for a in dict.fromkeys(labels["attribute"]) if a in manifest.columns]
    rows = []
    if real.any() and attributes:
        truth = manifest.loc[real, attributes].astype(str)
        truth.insert(0, "image_id", corpus_metadata(corpus)["image_id"][real].to_numpy())
        for attribute in attributes:
            for annotator in dict.fromkeys(labels.loc[labels["attribute"] == attribute, "annotator"]):
                result = confusion(labels, truth, attribute, annotator=annotator, confidence=confidence)
                if result.n:
                    rows.append({k: result.summary()[k] for k in VALIDITY_COLUMNS})
    return pd.DataFrame(rows, columns=list(VALIDITY_COLUMNS))
