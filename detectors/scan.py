"""Scoring every file of a folder with a trained detector: one CSV row per file, whatever it is."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from synthscope.runtime import atomic_write_bytes, resolve_device

from .base import load_detector

COLUMNS = ["path", "score", "decision", "error"]


def list_files(root: Path) -> list[Path]:
    """Every regular, non-hidden file under ``root``, sorted: images or not, each gets a row."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))


def scan_folder(detector_dir: Path | str, folder: Path | str, out: Path | str, batch_size: int = 64,
                device: str = "auto", progress: bool = True) -> pd.DataFrame:
    """Score every file under ``folder`` and write ``out`` (CSV): path, P(fake), the decision at the
    detector's saved threshold, or why the file could not be read. A bad file never stops a scan."""
    from synthscope.generators.folder import (
        UnreadableImageError,
        fit_square,
        image_to_tensor,
        open_image,
    )

    detector, config = load_detector(detector_dir, device=resolve_device(device))
    threshold = float(config["threshold"])
    folder = Path(folder)
    files = list_files(folder)
    mode = "L" if detector.channels == 1 else "RGB"
    rows: list[dict] = []
    batch: list[tuple[int, torch.Tensor]] = []

    def flush() -> None:
        if not batch:
            return
        scores = detector.score(torch.stack([t for _, t in batch]), batch_size=batch_size)
        for (row_index, _), score in zip(batch, scores):
            rows[row_index].update(score=float(score), decision="fake" if score > threshold else "real")
        batch.clear()

    for path in tqdm(files, desc="scan", unit="file", disable=not progress):
        rows.append({"path": str(path.relative_to(folder)), "score": None, "decision": "", "error": ""})
        try:
            image = fit_square(open_image(path, mode=mode), detector.size)
        except UnreadableImageError as error:
            rows[-1]["error"] = error.reason
            continue
        except Exception as error:  # any decoder failure is this file's problem, not the scan's
            rows[-1]["error"] = f"unreadable: {error}"
            continue
        batch.append((len(rows) - 1, image_to_tensor(image)))
        if len(batch) >= batch_size:
            flush()
    flush()
    table = pd.DataFrame(rows, columns=COLUMNS)
    atomic_write_bytes(Path(out), table.to_csv(index=False).encode())
    return table
