"""One detector, fully assessed on a test set: deployment metrics, per-image scores, robustness
sweeps and the format-shortcut check, saved as plain files and reloadable for a report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from synthscope.distributed import current_shard
from synthscope.runtime import atomic_write_bytes, atomic_write_json, read_json
from synthscope.tables import spreadsheet_safe, undo_spreadsheet_safe

from .base import load_detector
from .metrics import DetectionReport, MetricValue
from .robustness import DEFAULT_SWEEPS, format_shortcut_check, robustness_sweeps
from .training import LabelledImages, load_labelled, score_labelled

METRICS_FILE = "metrics.json"
SCORES_FILE = "scores.csv"
ROBUSTNESS_FILE = "robustness.csv"
SHORTCUT_FILE = "format_shortcut.csv"


@dataclass
class Assessment:
    """A detector's results on one test set; ``robustness`` and ``shortcut`` are empty when skipped."""

    report: DetectionReport
    scores: pd.DataFrame
    robustness: pd.DataFrame
    shortcut: pd.DataFrame
    detector: dict[str, Any]  # the detector's saved config: kind, threshold, training record

    def save(self, out: Path | str) -> Path:
        """metrics.json/.csv, per_source.csv, scores.csv, robustness.csv, format_shortcut.csv. Text cells
        that a spreadsheet would run as a formula (a file or source name beginning with ``=``, say)
        are written with a leading quote (:func:`synthscope.tables.spreadsheet_safe`)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / METRICS_FILE, {**self.report.to_dict(), "detector": self.detector})
        for name, frame in (("metrics.csv", self.report.table()), ("per_source.csv", self.report.per_source_table()),
                            (SCORES_FILE, self.scores), (ROBUSTNESS_FILE, self.robustness),
                            (SHORTCUT_FILE, self.shortcut)):
            atomic_write_bytes(out / name, spreadsheet_safe(frame).to_csv(index=False).encode())
        return out

    @classmethod
    def load(cls, out: Path | str) -> "Assessment":
        out = Path(out)
        doc = read_json(out / METRICS_FILE)
        metrics = {name: MetricValue(m.get("value"), m.get("ci_low"), m.get("ci_high"), m.get("method", ""),
                                     m.get("note")) for name, m in doc["metrics"].items()}
        report = DetectionReport(doc["threshold"], doc["n_real"], doc["n_fake"], metrics, doc.get("per_source", []),
                                 doc.get("confidence", 0.95), doc.get("n_boot", 0), doc.get("seed", 0),
                                 doc.get("notes", []))

        def table(name: str) -> pd.DataFrame:
            path = out / name
            return pd.read_csv(path) if path.is_file() and path.stat().st_size > 1 else pd.DataFrame()

        scores = undo_spreadsheet_safe(table(SCORES_FILE), ["file", "source"])  # the files' own names again
        return cls(report, scores, table(ROBUSTNESS_FILE), table(SHORTCUT_FILE), doc.get("detector", {}))


def assess_detector(detector_dir: Path | str, data: LabelledImages | None = None, *,
                    real: Path | str | None = None, fakes: Sequence[Path | str] = (),
                    sweeps: Sequence[str] = DEFAULT_SWEEPS, shortcut: bool = True, n_boot: int = 1000,
                    seed: int = 0, device: str = "auto", progress: bool = True) -> Assessment | None:
    """Deployment metrics at the saved threshold, then (optionally) robustness and format checks.

    The test set is ``data``, or else the ``real`` and ``fakes`` corpora read at the detector's
    own input size. Launched as several processes, a CLIP detector's processes encode the test
    images together into the shared feature cache; the main process then assesses and returns the
    assessment, the others return None."""
    shard = current_shard(device)
    detector, config = load_detector(detector_dir, device=shard.device(device))
    if data is None:
        data = load_labelled(real, fakes, size=detector.size, channels=detector.channels,
                             progress=shard.progress(progress))
    if shard.distributed:
        if hasattr(detector, "share_features"):  # what one process would encode first: the clean images
            detector.share_features(data.images, shard)
        if not shard.is_main:
            return None
    threshold = float(config["threshold"])
    report, scores = score_labelled(detector, threshold, data, n_boot=n_boot, seed=seed)
    both = bool((data.labels == 0).any() and (data.labels == 1).any())
    robustness = (robustness_sweeps(detector, data, threshold, sweeps, seed=seed, n_boot=min(n_boot, 200),
                                    progress=progress) if sweeps and both else pd.DataFrame())
    format_check = (format_shortcut_check(detector, data, threshold, n_boot=min(n_boot, 200), seed=seed)
                    if shortcut and both else pd.DataFrame())
    return Assessment(report, scores, robustness, format_check, config)
