"""The corpus contract: a folder of lossless PNGs, a manifest.csv and a corpus.json.

```
my-corpus/
  images/000000.png …   lossless PNG, as generated
  manifest.csv          one row per image: file, source, labels, prompt, seed, attributes
  corpus.json           provenance: generator, checkpoint hash, config, package versions, times, rows
```

Writing is append-only and atomic per batch: PNGs are written under temporary names and renamed
first, then the manifest is replaced in one ``os.replace``. A crash in between leaves only PNGs that
the manifest does not list; a resumed writer numbers from the manifest and overwrites them. The
manifest is the truth: an image exists in the corpus if and only if manifest.csv lists it.

One writer at a time: a :class:`CorpusWriter` holds an exclusive lock on its folder (the file
``.writer.lock`` in it) from the moment it opens until it is closed or dropped, so a second writer,
in another process or in this one, is refused at once instead of interleaving its rows and images
with the first's. Reading takes no lock.

Several processes write one corpus through parts (see :mod:`synthscope.distributed`): each process
writes a corpus of its own under ``parts/<part>/`` and the main process moves the parts' images and
rows into the corpus with :meth:`CorpusWriter.merge_parts`, committing them with one manifest write.
A merge is idempotent: rows whose key the corpus already lists are not added again, so a merge
interrupted after its commit and run again duplicates nothing.

Any plain folder of images can be read as a corpus too; its manifest is then inferred.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import io
import json
import math
import os
import platform
import re
import shutil
import time
import warnings
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from filelock import FileLock, Timeout
from PIL import Image

from synthscope.errors import UserError
from synthscope.images import from_pil, to_pil_list
from synthscope.jsondata import json_data
from synthscope.runtime import atomic_write_bytes, fsync_dir, package_version

from .folder import (
    DEFAULT_MAX_PIXELS,
    PROGRESS_MIN_FILES,
    UnreadableImageError,
    _decode,
    find_images,
    fit_square,
)
from .imageset import ImageSet

MANIFEST_NAME = "manifest.csv"
PROVENANCE_NAME = "corpus.json"
IMAGES_DIR = "images"
PARTS_DIR = "parts"  # per-process parts of a corpus being written by several processes
LOCK_NAME = ".writer.lock"  # held by the one writer of a folder; left in place (removing it is racy)
STALE_TEMP_SECONDS = 3600  # a temp file this old is left over, whatever process wrote it
CORPUS_FORMAT = "synthscope-corpus"
FORMAT_VERSION = 1

# Keys the writer owns in corpus.json; a caller's provenance may not set them.
RESERVED_PROVENANCE_KEYS = frozenset(
    {"format", "format_version", "created_at", "updated_at", "rows", "package_versions", "resumed"}
)
# Distributions whose versions every corpus records (key -> distribution name).
_VERSIONED = {"synthscope": "synthscope", "torch": "torch", "diffusers": "diffusers",
              "numpy": "numpy", "PIL": "pillow"}
_OWN_IMAGE = re.compile(r"^images/(\d+)\.png$")
_PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16"})
# Temp files of synthscope.runtime.atomic_write_bytes: ".<name>.<pid>.<8 hex digits>.tmp".
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")

WriterMode = Literal["resume", "overwrite", "new"]


class CorpusError(UserError):
    """A corpus folder that breaks the contract: bad manifest or corpus.json, missing files, ..."""


# --------------------------------------------------------------------------- helpers


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a corpus depends on (None where not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    versions.update({key: package_version(dist) for key, dist in _VERSIONED.items()})
    return versions


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_png(image: Image.Image, path: Path) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue(), sync_dir=False)  # the batch syncs the folder once


def _read_manifest(path: Path) -> pd.DataFrame:
    """manifest.csv with every value a string ("" where empty); one CorpusError for any problem."""
    try:
        manifest = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False,
                               encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise CorpusError(f"{path}: empty file; a manifest needs a header with a 'file' column") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise CorpusError(f"{path}: not a readable CSV manifest ({exc})") from exc
    if "file" not in manifest.columns:
        raise CorpusError(
            f"{path}: no 'file' column (found columns: {', '.join(map(str, manifest.columns))})"
        )
    blank = np.flatnonzero(manifest["file"].str.strip().eq("").to_numpy())
    if len(blank):
        lines = ", ".join(str(i + 2) for i in blank[:10])  # +2: header line, 1-based
        raise CorpusError(f"{path}: {len(blank)} rows have an empty 'file' (lines {lines})")
    return manifest


def _read_provenance(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorpusError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CorpusError(f"{path}: expected a JSON object, found {type(data).__name__}")
    version = data.get("format_version", FORMAT_VERSION)
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise CorpusError(
            f"{path}: corpus format version {version} is newer than this synthscope reads "
            f"({FORMAT_VERSION}); upgrade synthscope"
        )
    return data


def _outside(manifest_path: Path, folder: Path, files: Sequence[str], what: str = "corpus") -> None:
    """Refuse (one CorpusError naming the manifest, the line and the path) a manifest that lists a
    file outside ``folder``: an absolute path, one through "..", or one whose symbolic links lead
    out. Listed paths are followed only inside the folder they belong to."""
    folder_abs = os.path.normpath(os.path.abspath(folder))
    folder_real = os.path.realpath(folder)
    parents: dict[str, str] = {}  # resolved once per folder: a manifest lists thousands of files in one
    bad: list[str] = []
    for i, file in enumerate(files):
        lexical = os.path.normpath(os.path.join(folder_abs, file))
        if not _is_inside(lexical, folder_abs):
            reason = "which is outside the"
        else:
            parent, name = os.path.split(lexical)
            if parent not in parents:
                parents[parent] = os.path.realpath(parent)
            real = os.path.join(parents[parent], name)
            if os.path.islink(real):
                real = os.path.realpath(real)
            if _is_inside(real, folder_real):
                continue
            reason = f"a symbolic link to {real}, outside the"
        bad.append(f"line {i + 2} lists {file}, {reason} {what} folder")  # +2: header line, 1-based
    if bad:
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise CorpusError(f"{manifest_path}: {'; '.join(bad[:3])}{more}; a manifest lists only files inside "
                          f"its {what} folder ({folder})")


def _is_inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _cell(value: Any) -> str:
    """One manifest cell: everything is text; None/NaN become empty, containers become JSON."""
    if isinstance(value, torch.Tensor) and value.ndim == 0:
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, (list, tuple, dict, set, frozenset, np.ndarray, torch.Tensor)):
        return json.dumps(json_data(value))
    return str(value)


def _to_pil_images(images: Any) -> list[Image.Image]:
    """A batch as Pillow images, validated before anything is written."""
    if isinstance(images, Image.Image):
        raise TypeError("append() takes a batch: pass [image] for a single Pillow image")
    if isinstance(images, (list, tuple)):
        if all(isinstance(im, Image.Image) for im in images):
            out = []
            for i, im in enumerate(images):
                if im.mode not in _PNG_MODES:
                    try:
                        im = im.convert("RGB")  # CMYK, YCbCr, ... have no PNG form
                    except ValueError as exc:
                        raise UserError(f"image {i}: mode {im.mode} cannot be stored as PNG") from exc
                out.append(im)
            return out
        if not images:
            return []
        images = torch.stack([torch.as_tensor(np.asarray(im)) if not isinstance(im, torch.Tensor)
                              else im for im in images])
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"images must be a (B, C, H, W) tensor or a list of Pillow images, got {type(images).__name__}"
        )
    if images.ndim != 4 or images.shape[1] not in (1, 3, 4):
        hint = " (channels-last? use .permute(0, 3, 1, 2))" if images.ndim == 4 and images.shape[-1] in (1, 3, 4) else ""
        raise UserError(f"images must be (B, C, H, W) with C in 1, 3, 4; got {tuple(images.shape)}{hint}")
    images = images.detach().cpu()
    if not (images.is_floating_point() or images.dtype == torch.uint8):
        raise UserError(f"images must be float in [0, 1] or uint8, got {images.dtype}")
    if images.is_floating_point() and not torch.isfinite(images).all():
        raise UserError("images contain NaN or infinite values; nothing was written")
    # Samplers overshoot [0, 1] slightly; to_pil_list clamps, as any viewer would show them.
    return to_pil_list(images)


# --------------------------------------------------------------------------- writing


# The writers open in this process, by the real path of their lock file (to tell a user which
# writer holds a folder: one in this process, or another process).
_OPEN_WRITERS: weakref.WeakValueDictionary[str, CorpusWriter] = weakref.WeakValueDictionary()


def _lock_folder(root: Path) -> tuple[FileLock, str]:
    """Take ``root``'s writer lock at once or raise one CorpusError saying who holds it."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_NAME
    key = os.path.realpath(path)
    # One lock object per writer, never shared: a second writer in this process is refused too.
    lock = FileLock(path, timeout=0, thread_local=False)
    for attempt in range(2):
        try:
            lock.acquire()
            return lock, key
        except Timeout:
            if key not in _OPEN_WRITERS:
                break
            if attempt == 0:
                # A writer nobody can reach any more (e.g. kept only by a reference cycle through
                # a traceback) lets go of the folder when it is collected.
                gc.collect()
    if key in _OPEN_WRITERS:
        raise CorpusError(f"{root} is already open for writing by another CorpusWriter in this process "
                          f"(lock {path}); close it first (writer.close(), or open writers with "
                          f"`with CorpusWriter(...) as writer:`)")
    raise CorpusError(f"{root} is being written by another process (lock {path}); wait for it to finish "
                      f"or write to another folder")


def _release(lock: FileLock) -> None:
    with contextlib.suppress(Exception):  # also called at interpreter exit, when little is left
        lock.release(force=True)


def _process_running(pid: int) -> bool:
    """Whether ``pid`` is a running process on this machine (on Windows: assumed, it cannot be asked safely)."""
    if os.name == "nt":
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except OSError:
        return False
    return True


class CorpusWriter:
    """Appends batches of images and manifest rows to a corpus folder, atomically per batch.

    ``mode``: "resume" (default) adds to an existing corpus at ``root`` or starts a new one;
    "overwrite" deletes the corpus files there (images/NNNNNN.png, manifest.csv, corpus.json; nothing
    else) and starts afresh; "new" refuses a folder that already holds a corpus. Resuming refuses a
    corpus whose provenance names a different ``generator``. ``provenance`` (generator,
    checkpoint_sha256, config, seed, ...) is stored at the top level of corpus.json.

    Rows missing a ``source`` get the provenance's ``generator`` (or "unknown"). Every manifest
    value is stored as text.

    One writer per folder at a time: the writer locks its folder before it reads or changes
    anything there and holds the lock until :meth:`close` (or the end of a ``with`` block, or until
    it is dropped); a second writer on the folder, in another process or in this one, gets a
    CorpusError at once. Processes that write one corpus together each write a part
    (:func:`open_part`, a folder and a lock of its own) that the main process merges.
    """

    def __init__(self, root: Path | str, provenance: dict | None = None, mode: WriterMode = "resume") -> None:
        if mode not in ("resume", "overwrite", "new"):
            raise UserError(f"mode must be 'resume', 'overwrite' or 'new', got {mode!r}")
        self.root = Path(root)
        new_provenance = dict(provenance or {})
        clash = RESERVED_PROVENANCE_KEYS & new_provenance.keys()
        if clash:
            raise UserError(f"provenance keys {sorted(clash)} are set by the writer; rename them")
        new_provenance = json_data(new_provenance)  # fails early on values JSON cannot hold

        self.manifest_path = self.root / MANIFEST_NAME
        self.provenance_path = self.root / PROVENANCE_NAME
        self.images_dir = self.root / IMAGES_DIR
        # Locked before anything in the folder is read, removed or written.
        self._lock, self._lock_key = _lock_folder(self.root)
        self._closed = False
        self._finalizer = weakref.finalize(self, _release, self._lock)  # when dropped without close()
        _OPEN_WRITERS[self._lock_key] = self
        try:
            self._open(new_provenance, mode)
        except BaseException:
            self.close()  # a writer that failed to open holds nothing
            raise

    def _open(self, new_provenance: dict, mode: WriterMode) -> None:
        exists = self.manifest_path.exists() or self.provenance_path.exists()
        if exists and mode == "new":
            raise FileExistsError(
                f"{self.root} already holds a corpus; use mode='resume' to add to it or "
                f"mode='overwrite' to replace it"
            )
        if exists and mode == "overwrite":
            self._remove_corpus_files()
            exists = False
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temp_files()

        self._resume_entry: dict | None = None
        if exists:
            self._manifest = (_read_manifest(self.manifest_path) if self.manifest_path.exists()
                              else pd.DataFrame({"file": pd.Series(dtype=str)}))
            stored = (_read_provenance(self.provenance_path) if self.provenance_path.exists()
                      else self._fresh_provenance({}))
            self._provenance = self._merge_provenance(stored, new_provenance)
        else:
            self._manifest = pd.DataFrame({"file": pd.Series(dtype=str), "source": pd.Series(dtype=str)})
            self._provenance = self._fresh_provenance(new_provenance)
            # Written now, so that even an empty corpus is a readable one.
            self._write_manifest(self._manifest)
            self._write_provenance()
        self._next_index = self._first_free_index()

    # -- the lock

    def close(self) -> None:
        """Let go of the folder: other writers may open it now, and this one writes no more."""
        if self._closed:
            return
        self._closed = True
        self._finalizer()
        if _OPEN_WRITERS.get(self._lock_key) is self:
            del _OPEN_WRITERS[self._lock_key]

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> CorpusWriter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise CorpusError(f"{self.root}: this CorpusWriter is closed; open a new one to write more")

    # -- set-up

    @staticmethod
    def _fresh_provenance(caller: dict) -> dict:
        now = _now()
        return {"format": CORPUS_FORMAT, "format_version": FORMAT_VERSION, "created_at": now,
                "updated_at": now, "rows": 0, "package_versions": package_versions(), **caller}

    def _merge_provenance(self, stored: dict, caller: dict) -> dict:
        old, new = stored.get("generator"), caller.get("generator")
        if old is not None and new is not None and old != new:
            raise CorpusError(
                f"{self.root} holds images from generator {old!r}; refusing to add images from "
                f"{new!r}. Write to another folder, or pass mode='overwrite' to replace it."
            )
        merged = copy.deepcopy(stored)
        changed = {k: v for k, v in caller.items() if k in stored and stored[k] != v}
        for key, value in caller.items():
            merged.setdefault(key, value)
        versions = package_versions()
        if stored.get("package_versions") not in (None, versions):
            changed["package_versions"] = versions
        # The first session's values stay at the top level; what later sessions changed is
        # recorded (on their first append) under "resumed", so nothing about the data is hidden.
        self._resume_entry = {"at": _now(), "rows_before": len(self._manifest)}
        if changed:
            self._resume_entry["changed"] = changed
            keys = ", ".join(sorted(changed))
            warnings.warn(f"resuming {self.root} with different {keys}; recorded in corpus.json",
                          stacklevel=4)
        return merged

    def _remove_corpus_files(self) -> None:
        for path in (self.manifest_path, self.provenance_path):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.root / PARTS_DIR, ignore_errors=True)
        if self.images_dir.is_dir():
            for path in self.images_dir.iterdir():
                if re.fullmatch(r"\d+\.png", path.name):
                    path.unlink()

    def _remove_stale_temp_files(self) -> None:
        """Remove the temp files a crash mid-write left (never listed anywhere): those of a process
        that no longer runs, or older than STALE_TEMP_SECONDS. A file another live process is
        writing right now stays, and so does any hidden file not named like our temp files."""
        now = time.time()
        for folder in (self.root, self.images_dir):
            for path in folder.glob(".*.tmp"):
                match = _TEMP_NAME.match(path.name)
                if match is None:
                    continue
                try:
                    age = now - path.stat().st_mtime
                except FileNotFoundError:  # its writer finished meanwhile
                    continue
                if age < STALE_TEMP_SECONDS and _process_running(int(match["pid"])):
                    continue
                path.unlink(missing_ok=True)

    def _first_free_index(self) -> int:
        # Numbered from the highest listed image, not the row count: a user who deleted rows
        # must never have a listed image overwritten. Unlisted (orphan) images are overwritten.
        indices = [int(m.group(1)) for f in self._manifest["file"] if (m := _OWN_IMAGE.match(f))]
        return max(indices) + 1 if indices else 0

    # -- reading state

    def __len__(self) -> int:
        return len(self._manifest)

    @property
    def manifest(self) -> pd.DataFrame:
        return self._manifest.copy()

    @property
    def provenance(self) -> dict:
        return copy.deepcopy(self._provenance)

    @property
    def next_index(self) -> int:
        return self._next_index

    def existing(self, column: str) -> set[str]:
        """The values already in ``column`` (as text), e.g. keys of finished work; empty if no such column."""
        if column not in self._manifest.columns:
            return set()
        return set(self._manifest[column])

    # -- writing

    def _default_source(self) -> str:
        return str(self._provenance.get("generator") or "unknown")

    def _write_manifest(self, manifest: pd.DataFrame) -> None:
        atomic_write_bytes(self.manifest_path, manifest.to_csv(index=False, lineterminator="\n").encode())

    def _write_provenance(self) -> None:
        text = json.dumps(json_data(self._provenance), indent=2) + "\n"
        atomic_write_bytes(self.provenance_path, text.encode())

    def append(self, images: Any, rows: Sequence[dict] | None = None) -> list[str]:
        """Write a batch; return the new rows' ``file`` values ("images/000123.png", ...).

        ``images``: a float tensor (B, C, H, W) in [0, 1] (C = 1, 3 or 4), a uint8 tensor or array
        of that shape, or a list of Pillow images (stored in their own mode). ``rows``: one dict
        per image (``file`` is filled in by the writer and may not be given).
        """
        self._check_open()
        pil_images = _to_pil_images(images)
        n = len(pil_images)
        rows = [dict(r) for r in rows] if rows is not None else [{} for _ in range(n)]
        if len(rows) != n:
            raise UserError(f"{n} images but {len(rows)} rows")
        if n == 0:
            return []
        records = []
        for i, row in enumerate(rows):
            if "file" in row:
                raise UserError(f"row {i}: 'file' is set by the writer; store the value under another name")
            bad = [k for k in row if not isinstance(k, str) or not k]
            if bad:
                raise UserError(f"row {i}: column names must be non-empty strings, got {bad!r}")
            record = {k: _cell(v) for k, v in row.items()}
            if not record.get("source"):
                record["source"] = self._default_source()
            records.append(record)

        start = self._next_index
        files = [f"{IMAGES_DIR}/{start + i:06d}.png" for i in range(n)]
        # 1) images, each renamed into place whole; unlisted until the manifest names them.
        for name, image in zip(files, pil_images):
            _write_png(image, self.root / name)
        fsync_dir(self.images_dir)
        self._commit(files, records)
        return files

    def _commit(self, files: list[str], records: list[dict[str, str]]) -> None:
        """List ``files`` (already in place) with their rows: one manifest write, then provenance."""
        # 2) the manifest, replaced in one step: this is the commit point of the batch.
        batch = pd.DataFrame([{"file": f, **r} for f, r in zip(files, records)], dtype=str)
        columns = list(self._manifest.columns) + [c for c in batch.columns if c not in self._manifest.columns]
        # Union of columns across batches; a value a row never had is an empty cell.
        parts = [df.reindex(columns=columns, fill_value="") for df in (self._manifest, batch) if len(df)]
        manifest = pd.concat(parts, ignore_index=True).fillna("")
        self._write_manifest(manifest)
        self._manifest = manifest
        self._next_index += len(files)

        # 3) provenance; if a crash skips this, the manifest still holds the truth (rows count).
        if self._resume_entry is not None:
            self._provenance.setdefault("resumed", []).append(self._resume_entry)
            self._resume_entry = None
        self._provenance["rows"] = len(manifest)
        self._provenance["updated_at"] = _now()
        self._write_provenance()

    # -- parts written by other processes

    def pending_parts(self) -> list[Path]:
        """The part folders waiting to be merged, sorted by name."""
        folder = self.root / PARTS_DIR
        return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def merge_parts(self, order: Sequence[str] | None = None, key: str = "key",
                    same: Sequence[str] = ("generator",)) -> int:
        """Move every part's images and rows into this corpus; return the number of rows added.

        Rows are added in the order of their ``key`` in ``order`` (keys not in it last, by part
        and row), so that N processes give the manifest a one-process run would. A row whose key
        the corpus (or an earlier part) already lists is dropped: merging twice adds nothing.
        ``same``: provenance entries a part must share with this corpus (a part made another way
        is refused, never mixed in). Images are hard-linked where the filesystem allows (copied
        otherwise) before the one manifest write that commits them; the parts are removed after.
        """
        self._check_open()
        parts = self.pending_parts()
        if not parts:
            return 0
        seen = set(self._manifest[key]) if key in self._manifest.columns else set()
        rank = {k: i for i, k in enumerate(order or [])}
        rows: list[tuple[tuple[int, int, int], Path, dict[str, str]]] = []
        for p, folder in enumerate(parts):
            manifest_path = folder / MANIFEST_NAME
            if not manifest_path.is_file():  # a part created but killed before its first write
                continue
            provenance = (_read_provenance(folder / PROVENANCE_NAME)
                          if (folder / PROVENANCE_NAME).is_file() else {})
            differ = [k for k in same if k in provenance and provenance.get(k) != self._provenance.get(k)]
            if differ:
                raise CorpusError(f"{folder}: a part made with other {', '.join(differ)} than {self.root}; "
                                  f"remove it, or replace the corpus (--force)")
            manifest = _read_manifest(manifest_path)
            if manifest.empty:  # the part's process stopped before its first batch
                continue
            if key not in manifest.columns:
                raise CorpusError(f"{manifest_path}: a corpus part needs a {key!r} column to be merged")
            _outside(manifest_path, folder, list(manifest["file"]), what="part")
            for r, row in enumerate(manifest.to_dict("records")):
                if row[key] in seen:
                    continue
                seen.add(row[key])
                source = folder / row["file"]
                if not source.is_file():
                    raise CorpusError(f"{manifest_path}: lists {row['file']}, which is missing")
                rows.append(((rank.get(row[key], len(rank)), p, r), source, row))
        rows.sort(key=lambda item: item[0])
        start = self._next_index
        files = [f"{IMAGES_DIR}/{start + i:06d}.png" for i in range(len(rows))]
        for name, (_, source, _) in zip(files, rows):
            _place(source, self.root / name)
        if files:
            fsync_dir(self.images_dir)
            self._provenance.setdefault("merged", []).append(
                {"at": _now(), "parts": [p.name for p in parts], "rows": len(files)})
            self._commit(files, [{k: v for k, v in row.items() if k != "file"} for _, _, row in rows])
        for folder in parts:  # only after the commit: until then the parts are the truth
            shutil.rmtree(folder)
        with contextlib.suppress(OSError):
            (self.root / PARTS_DIR).rmdir()
        return len(files)


def open_part(root: Path | str, part: str) -> CorpusWriter:
    """A writer for one process's own part of the corpus at ``root``, ``root/parts/<part>/``: a corpus
    of its own, with the provenance the main process gave ``root`` (which must exist), merged into
    it by :meth:`CorpusWriter.merge_parts`. Other processes never touch this folder."""
    root = Path(root)
    if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", part):
        raise UserError(f"part names are letters, digits, '.', '_' and '-', got {part!r}")
    stored = _read_provenance(root / PROVENANCE_NAME)
    caller = {k: v for k, v in stored.items()
              if k not in RESERVED_PROVENANCE_KEYS and k not in ("merged", "resumed")}
    return CorpusWriter(root / PARTS_DIR / part, provenance=caller)


def _place(source: Path, target: Path) -> None:
    """Put ``source``'s bytes at ``target`` (an unlisted name, so replacing it is safe)."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)  # same filesystem: no copy, and the part's file is removed later
    except OSError:
        atomic_write_bytes(target, source.read_bytes(), sync_dir=False)


# --------------------------------------------------------------------------- reading


@dataclass
class Corpus:
    """A corpus read from disk: ``manifest`` (all text, one row per image), ``provenance`` (corpus.json).

    ``inferred`` is True for a plain image folder whose manifest was inferred. Unreadable images
    met by ``load_images`` raise with ``strict``; otherwise they are skipped with a warning,
    listed in ``skipped`` as (file, reason) and their rows dropped from ``manifest`` so that the
    images and the manifest stay aligned. For an inferred corpus, ``skipped`` also lists the
    symbolic links that were not followed (dangling, or leading outside the folder).
    """

    root: Path
    manifest: pd.DataFrame
    provenance: dict = field(default_factory=dict)
    inferred: bool = False
    strict: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.manifest)

    @property
    def name(self) -> str:
        return self.root.resolve().name

    def _path(self, file: str) -> Path:
        return (self.root / file).absolute()

    def paths(self) -> list[Path]:
        """Absolute paths of the images, in manifest order."""
        return [self._path(f) for f in self.manifest["file"]]

    def load_images(self, size: int | None = None, channels: int | None = None,
                    progress: bool = True) -> torch.Tensor:
        """All images as a float tensor (N, C, H, W) in [0, 1].

        ``size``: resize the shorter side and centre-crop to ``size`` x ``size``; None keeps the
        native size (all images must then share it). ``channels``: 1 or 3; None gives 1 when every
        image is greyscale, else 3. ``progress``: a bar for corpora of more than a few hundred files.
        """
        if channels not in (None, 1, 3):
            raise UserError(f"channels must be 1, 3 or None, got {channels}")
        if size is not None and size < 1:
            raise UserError(f"size must be a positive number of pixels, got {size}")
        from tqdm import tqdm

        files = list(self.manifest["file"])
        grey = None if channels is None else channels == 1
        tensors: list[torch.Tensor] = []
        bad_rows: list[int] = []
        skipped: list[tuple[str, str]] = []
        for i, file in enumerate(tqdm(files, desc=f"reading {self.name}", unit="img", leave=False,
                                      disable=not progress or len(files) <= PROGRESS_MIN_FILES)):
            try:
                image, _ = _decode(self._path(file), self.max_pixels, grey=grey, draft=size)
            except UnreadableImageError as exc:
                if self.strict:
                    raise
                skipped.append((file, exc.reason))
                bad_rows.append(i)
                warnings.warn(f"skipping {exc.path}: {exc.reason}", stacklevel=2)
                continue
            if size is not None:
                image = fit_square(image, size)
            tensors.append(from_pil(image))

        if bad_rows:
            self.manifest = self.manifest.drop(index=self.manifest.index[bad_rows]).reset_index(drop=True)
            self.skipped.extend(skipped)
            if not tensors:
                raise CorpusError(f"none of the {len(files)} images in {self.root} could be read "
                                  f"(first: {skipped[0][0]}: {skipped[0][1]})")
        if not tensors:
            side = size or 0
            return torch.zeros((0, channels or 3, side, side))
        if channels is None and len({t.shape[0] for t in tensors}) > 1:
            tensors = [t.expand(3, -1, -1) for t in tensors]  # mixed grey and colour: all colour
        shapes = {tuple(t.shape[1:]) for t in tensors}
        if len(shapes) > 1:
            sizes = ", ".join(f"{w}x{h}" for h, w in sorted(shapes)[:4])
            raise CorpusError(f"images in {self.root} differ in size ({sizes}, ...); pass size= to resize them")
        return torch.stack(tensors)

    def to_imageset(self, size: int | None = None, channels: int | None = None) -> ImageSet:
        """The corpus as an ImageSet: attributes = manifest, captions from ``prompt`` if present."""
        images = self.load_images(size=size, channels=channels)
        attributes = self.manifest.copy()
        captions = (list(attributes["prompt"]) if "prompt" in attributes.columns
                    else [""] * len(attributes))
        return ImageSet(name=self.name, images=images, attributes=attributes, captions=captions)


def read_corpus(root: Path | str, source: str | None = None, strict: bool = False,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> Corpus:
    """Read a corpus folder, or infer a corpus from a plain folder of images.

    With manifest.csv: every value is read as text, empty cells as ""; every listed file must
    exist and lie inside ``root`` (no absolute paths, none through "..", no symbolic link leading
    out); corpus.json (if present) becomes ``provenance``. A missing or empty ``source`` is filled
    with ``source``, else the provenance's generator, else "unknown" (a given source never
    overrides the manifest's own). Without a manifest: every image under ``root`` gets ``file``,
    ``folder`` (first sub-folder, "" for top-level files) and ``source`` (``source`` if given,
    else the sub-folder name, else "unknown"); symbolic links that dangle or lead outside ``root``
    are not followed but listed in ``skipped`` (with ``strict``, the first is an error).
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"corpus folder {root} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    manifest_path = root / MANIFEST_NAME
    provenance_path = root / PROVENANCE_NAME

    if manifest_path.exists():
        manifest = _read_manifest(manifest_path)
        provenance = _read_provenance(provenance_path) if provenance_path.exists() else {}
        fill = source or str(provenance.get("generator") or "unknown")
        if "source" not in manifest.columns:
            manifest.insert(1, "source", fill)
        else:
            manifest.loc[manifest["source"].str.strip().eq(""), "source"] = fill
        _outside(manifest_path, root, list(manifest["file"]))
        missing = [f for f in manifest["file"] if not (root / f).is_file()]
        if missing:
            listed = ", ".join(missing[:10]) + (", ..." if len(missing) > 10 else "")
            raise CorpusError(
                f"{manifest_path}: {len(missing)} of {len(manifest)} listed files are missing: {listed}"
            )
        return Corpus(root=root, manifest=manifest, provenance=provenance, strict=strict,
                      max_pixels=max_pixels)

    links: list[tuple[str, str]] = []  # symbolic links not followed: dangling or leading out of root
    files = find_images(root, skipped=links)
    if links and strict:
        raise UnreadableImageError(root / links[0][0], links[0][1])
    if not files:
        found = f" ({len(links)} symbolic links not followed, first: {links[0][0]}: {links[0][1]})" if links else ""
        raise CorpusError(f"{root} has no {MANIFEST_NAME} and no image files to infer one from{found}")
    rows = []
    for path in files:
        rel = path.relative_to(root)
        folder = rel.parts[0] if len(rel.parts) > 1 else ""
        rows.append({"file": rel.as_posix(), "source": source or folder or "unknown", "folder": folder})
    return Corpus(root=root, manifest=pd.DataFrame(rows, dtype=str), provenance={}, inferred=True,
                  strict=strict, max_pixels=max_pixels, skipped=links)
