"""Scoring every file of a folder with a trained detector: one CSV row per file, whatever it is.

A scan keeps the rows it has scored in ``<out>.parts/rank-NNN.csv`` (one file per process, rewritten
atomically every few seconds), so a killed scan resumes, with any number of processes; the main
process writes ``out`` when every file is scored and then removes the parts."""

from __future__ import annotations

import os
import shutil
import time
import warnings
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from synthscope.errors import UserError
from synthscope.fingerprint import fingerprint
from synthscope.images import from_pil
from synthscope.registry import load_detector
from synthscope.runtime import atomic_write_bytes
from synthscope.tables import spreadsheet_safe

from .base import check_output_file
from .estimator import DecisionSettings
from .domain import DomainCheck, kind_of_reason

# out_of_domain: why an image looks unlike the detector's training images (domain.DomainCheck), or ""
COLUMNS = ["path", "score", "decision", "error", "out_of_domain"]


def list_files(root: Path, exclude: tuple[Path, ...] = ()) -> list[Path]:
    """Every entry under ``root`` that is not a folder, sorted: images or not, each gets a row.

    Hidden files (and files in hidden folders) are listed like any other. Symbolic links are listed
    as they are: to a file (read only if it stays inside ``root``), dangling, or to a folder (not
    followed: its files inside ``root`` have rows of their own, and one outside is not read).
    Named pipes, sockets and devices are listed too (and never opened). ``exclude``: files and
    folders to leave out (a scan's own output and its parts, when they lie inside ``root``)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    left_out = {os.path.abspath(p) for p in exclude}
    found = []
    for dirpath, dirnames, filenames in os.walk(root):  # symbolic links to folders are not walked into
        dirnames[:] = [d for d in dirnames if os.path.abspath(os.path.join(dirpath, d)) not in left_out]
        entries = filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        found += [Path(dirpath) / name for name in entries
                  if os.path.abspath(os.path.join(dirpath, name)) not in left_out]
    return sorted(found)


def _not_to_open(path: Path, root: Path) -> str | None:
    """Why an entry is given a row without being opened, or None when it is to be read as an image
    (the reader itself refuses dangling links and links leading out of ``root``)."""
    from synthscope.generators.folder import link_problem

    if os.path.isdir(path):  # only a symbolic link to a folder is listed
        return link_problem(path, root) or ("skipped: symbolic link to a folder inside the scanned folder "
                                            "(its files have rows of their own)")
    if os.path.exists(path) and not os.path.isfile(path):
        return "skipped: not a regular file (a named pipe, socket or device)"
    return None


PART_COLUMNS = [*COLUMNS, "detector"]
FLUSH_SECONDS = 10.0  # a killed scan loses at most this much scoring work


def parts_folder(out: Path) -> Path:
    """Where the processes of a scan keep their scored rows until the main process merges them."""
    return out.with_name(f"{out.name}.parts")


def _detector_identity(detector_dir: Path, config: dict) -> str:
    """What a part's scores depend on: the detector's saved config (threshold, weights hash, ...)."""
    return fingerprint({"detector": detector_dir.resolve(), "config": config})[:16]


def _read_parts(folder: Path, identity: str) -> pd.DataFrame:
    """Rows scored by earlier (killed) runs with the same detector; unreadable parts are ignored."""
    tables = []
    for path in sorted(folder.glob("rank-*.csv")) if folder.is_dir() else []:
        try:
            table = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8")
        except (OSError, ValueError, pd.errors.ParserError) as error:
            warnings.warn(f"{path}: unreadable scan part ({error}); scoring its files again", stacklevel=3)
            continue
        if list(table.columns) == PART_COLUMNS:
            tables.append(table[table["detector"] == identity])
    if not tables:
        return pd.DataFrame(columns=PART_COLUMNS)
    return pd.concat(tables, ignore_index=True).drop_duplicates("path")


def scan_folder(detector_dir: Path | str, folder: Path | str, out: Path | str, batch_size: int = 64,
                device: str = "auto", progress: bool = True) -> pd.DataFrame:
    """Score every file under ``folder`` and write ``out`` (CSV): path, P(fake), the decision at the
    detector's saved threshold, or why the file could not be read. A bad file never stops a scan.
    Every entry :func:`list_files` lists gets a row, hidden files included (they are scanned); a
    symbolic link that leads outside ``folder``, a dangling one, a link to a folder and a named pipe
    get a row saying why they were not read. ``out`` and its parts are not scanned.

    Scored rows are kept as the scan goes (``<out>.parts/``), so a killed scan, run again with the
    same detector, scores only what is left. Launched as several processes, each scores its share of
    the chunks of files and the main process writes ``out`` (rows sorted by path, as one process)."""
    from synthscope.distributed import current_shard
    from synthscope.generators.folder import (
        UnreadableImageError,
        fit_square,
        open_image,
    )

    out = check_output_file(out)  # before any work: a folder here would cost every score at the end
    parts = parts_folder(out)
    if parts.exists() and not parts.is_dir():
        raise UserError(f"--out {out}: {parts} (where a scan keeps its rows as it goes) is a file")
    shard = current_shard(device)
    detector_dir = Path(detector_dir)
    detector, config = load_detector(detector_dir, device=shard.device(device))
    threshold = DecisionSettings.from_config(config).threshold
    identity = _detector_identity(detector_dir, config)
    folder = Path(folder)
    files = list_files(folder, exclude=(out, parts))  # its own output is not a file to scan
    earlier = _read_parts(parts, identity)
    if shard.is_main and len(earlier):  # held in the main part before another process rewrites its own
        atomic_write_bytes(parts / f"{shard.part}.csv", earlier[PART_COLUMNS].to_csv(index=False).encode("utf-8"))
    shard.wait()  # every process has read what earlier runs left before any part is rewritten
    done = set(earlier["path"])
    own_part = parts / f"{shard.part}.csv"
    keys = [str(path.relative_to(folder)) for path in files]
    # Units of work are chunks of batch_size files in path order (keyed by their first path): each file
    # is scored in the same batch, to the same bits, whatever the number of processes.
    chunks = [range(start, min(len(files), start + batch_size)) for start in range(0, len(files), batch_size)]
    pending = [chunk for chunk in chunks if any(keys[i] not in done for i in chunk)]
    mine = shard.select(pending, key=lambda chunk: keys[chunk[0]])
    mode = "L" if detector.channels == 1 else "RGB"
    domain = DomainCheck(config.get("training_domain"))
    rows: list[dict] = []
    last_flush = time.monotonic()

    def save_part() -> None:
        table = pd.DataFrame(rows, columns=COLUMNS).assign(detector=identity)
        if shard.is_main:  # the main process also keeps what earlier runs scored, so they can go
            table = pd.concat([earlier, table], ignore_index=True)
        atomic_write_bytes(own_part, table[PART_COLUMNS].to_csv(index=False).encode("utf-8"))

    bar = tqdm(total=sum(map(len, mine)), desc="scan", unit="file", disable=not shard.progress(progress))
    for chunk in mine:
        batch: list[tuple[int, torch.Tensor]] = []
        for i in chunk:
            if keys[i] in done:
                continue
            rows.append({"path": keys[i], "score": None, "decision": "", "error": "", "out_of_domain": ""})
            reason = _not_to_open(files[i], folder)
            if reason:
                rows[-1]["error"] = reason
                continue
            try:  # within: a symbolic link leading out of the folder is not read
                image = fit_square(open_image(files[i], mode=mode, within=folder), detector.size)
            except UnreadableImageError as error:
                rows[-1]["error"] = error.reason
                continue
            except Exception as error:  # any decoder failure is this file's problem, not the scan's
                rows[-1]["error"] = f"unreadable: {error}"
                continue
            tensor = from_pil(image)
            rows[-1]["out_of_domain"] = "; ".join(domain.reasons(files[i], tensor))
            batch.append((len(rows) - 1, tensor))
        if batch:
            scores = detector.score(torch.stack([t for _, t in batch]), batch_size=batch_size)
            for (row_index, _), score in zip(batch, scores):
                rows[row_index].update(score=float(score), decision="fake" if score > threshold else "real")
        bar.update(len(chunk))
        if time.monotonic() - last_flush > FLUSH_SECONDS:  # whole chunks only: a resumed chunk is redone whole
            save_part()
            last_flush = time.monotonic()
    bar.close()
    if shard.distributed or len(earlier):
        save_part()
    shard.wait()
    if not shard.is_main:
        return pd.DataFrame(rows, columns=COLUMNS)
    scored = pd.concat([_read_parts(parts, identity), pd.DataFrame(rows, columns=COLUMNS)], ignore_index=True)
    scored = scored.drop_duplicates("path").set_index("path")
    table = scored.reindex(keys).reset_index()[COLUMNS]  # every file once, in path order
    table["score"] = pd.to_numeric(table["score"], errors="coerce")
    for column in ("error", "out_of_domain"):
        table[column] = table[column].fillna("").astype(str)
    # A file name is text from outside: written so that no spreadsheet runs it as a formula.
    atomic_write_bytes(out, spreadsheet_safe(table).to_csv(index=False).encode())
    shutil.rmtree(parts, ignore_errors=True)  # merged: the parts are no longer needed
    _warn_out_of_domain(table, domain, detector_dir, out)
    return table


def _warn_out_of_domain(table: pd.DataFrame, domain: DomainCheck, detector_dir: Path, out: Path) -> None:
    """One warning for the whole scan: how many images look unlike the training images, and why."""
    images = int((table["error"] == "").sum())
    if not domain.active:
        if images:
            warnings.warn(f"{detector_dir} records nothing about its training images (it was trained by an "
                          f"older synthscope): no image was checked against them; train it again to have "
                          f"out-of-domain images flagged", stacklevel=3)
        return
    flagged = table.loc[table["out_of_domain"] != "", "out_of_domain"]
    if flagged.empty:
        return
    kinds = [{kind_of_reason(reason) for reason in text.split("; ")} for text in flagged]
    counts = {kind: sum(kind in found for found in kinds) for kind in ("size", "colour", "pixel statistics")}
    why = ", ".join(f"{count} by {kind}" for kind, count in counts.items() if count)
    warnings.warn(f"{len(flagged)} of {images} images look unlike the images the detector was trained on ({why}): "
                  f"their scores say little; see the out_of_domain column of {out}", stacklevel=3)
