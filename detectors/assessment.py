"""One detector, fully assessed on a test set: deployment metrics, per-image scores, robustness
sweeps and the format-shortcut check, saved as plain files and reloadable for a report."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from synthscope.distributed import current_shard
from synthscope.registry import load_detector
from synthscope.runtime import atomic_write_bytes, atomic_write_json, read_json
from synthscope.tables import spreadsheet_safe, undo_spreadsheet_safe

from .metrics import DetectionReport, MetricValue, evaluate_scores, mark_seen_in_training, per_source_from_layout
from .robustness import DEFAULT_SWEEPS, format_shortcut_check, robustness_sweeps
from .data import LabelledImages, corpus_fake_sources, load_labelled
from .estimator import DecisionSettings
from .training import score_labelled

METRICS_FILE = "metrics.json"
SCORES_FILE = "scores.csv"
ROBUSTNESS_FILE = "robustness.csv"
SHORTCUT_FILE = "format_shortcut.csv"
SEEN_UNSEEN_FILE = "seen_unseen.csv"
SUBSETS = {"seen": True, "unseen": False}  # subset name -> seen_in_training of its synthetic images


def training_sources(config: dict[str, Any]) -> tuple[list[str] | None, str]:
    """The synthetic sources (generators) a detector was trained on, and how they are known.

    Detectors record them at training (``training.fake_sources``). For older ones they are read
    from the training corpora's manifests where these are still there, else taken from the corpora's
    folder names; a GAN's discriminator has seen its own samples (source "gan"). ``(None, "not
    recorded")`` when nothing tells."""
    training = config.get("training") if isinstance(config.get("training"), dict) else {}
    recorded = training.get("fake_sources")
    if isinstance(recorded, list) and all(isinstance(source, str) for source in recorded):
        return sorted(recorded), "recorded at training"
    if config.get("model", {}).get("kind") == "gan-discriminator":
        return ["gan"], "the GAN's own samples"
    fakes = training.get("fakes")
    if isinstance(fakes, list) and fakes and all(isinstance(fake, str) for fake in fakes):
        sources = sorted({source for fake in fakes for source in corpus_fake_sources(fake)})
        return sources, "read from its training corpora"
    return None, "not recorded"


def _from_training_folders(files: Sequence[str], config: dict[str, Any]) -> dict[str, Any]:
    """How many test files lie in the folders the detector was trained on (None when no recorded
    training folder exists here)."""
    training = config.get("training") if isinstance(config.get("training"), dict) else {}
    given = [training.get("real"), *(training.get("fakes") or [])]
    folders = [os.path.realpath(f) for f in given if isinstance(f, str) and f and os.path.isdir(f)]
    if not folders:
        return {"training_folders": [], "test_images_from_training_folders": None}
    inside = sum(any(os.path.realpath(f).startswith(folder.rstrip(os.sep) + os.sep) for folder in folders)
                 for f in files)
    return {"training_folders": folders, "test_images_from_training_folders": int(inside)}


@dataclass
class Assessment:
    """A detector's results on one test set; ``robustness`` and ``shortcut`` are empty when skipped.

    ``training`` says what the detector was trained on (``sources``, ``how`` they are known) and which
    test generators it saw (``seen_test_sources``, ``unseen_test_sources``); ``by_training`` holds
    the metrics on the seen and on the unseen generators' images, each against all test reals (a
    subset with no synthetic image is left out; none when the training sources are not known)."""

    report: DetectionReport
    scores: pd.DataFrame
    robustness: pd.DataFrame
    shortcut: pd.DataFrame
    detector: dict[str, Any]  # the detector's saved config: kind, threshold, training record
    by_training: dict[str, DetectionReport] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)

    def seen_unseen_table(self) -> pd.DataFrame:
        """Every metric on all test images and on the seen and unseen subsets (long format): subset,
        the synthetic sources in it, n_real, n_fake, metric, value, ci_low, ci_high, method."""
        if not self.by_training:
            return pd.DataFrame()
        seen = self.training.get("seen_test_sources", [])
        unseen = self.training.get("unseen_test_sources", [])
        parts = []
        for subset, report, sources in (("all", self.report, seen + unseen),
                                        *((name, self.by_training[name], seen if flag else unseen)
                                          for name, flag in SUBSETS.items() if name in self.by_training)):
            table = report.table().drop(columns=["note"])
            table.insert(0, "subset", subset)
            table.insert(1, "sources", ", ".join(sorted(sources)))
            table.insert(2, "n_real", report.n_real)
            table.insert(3, "n_fake", report.n_fake)
            parts.append(table)
        return pd.concat(parts, ignore_index=True)

    def save(self, out: Path | str) -> Path:
        """metrics.json/.csv, per_source.csv, scores.csv, seen_unseen.csv, robustness.csv,
        format_shortcut.csv. Text cells that a spreadsheet would run as a formula (a file or source
        name beginning with ``=``, say) are written with a leading quote
        (:func:`synthscope.tables.spreadsheet_safe`)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / METRICS_FILE, {
            **self.report.to_dict(), "detector": self.detector, "training_sources": self.training,
            "by_training": {name: report.to_dict() for name, report in self.by_training.items()}})
        for name, frame in (("metrics.csv", self.report.table()), ("per_source.csv", self.report.per_source_table()),
                            (SCORES_FILE, self.scores), (SEEN_UNSEEN_FILE, self.seen_unseen_table()),
                            (ROBUSTNESS_FILE, self.robustness), (SHORTCUT_FILE, self.shortcut)):
            atomic_write_bytes(out / name, spreadsheet_safe(frame).to_csv(index=False).encode())
        return out

    @classmethod
    def load(cls, out: Path | str) -> "Assessment":
        out = Path(out)
        doc = read_json(out / METRICS_FILE)

        def table(name: str) -> pd.DataFrame:
            path = out / name
            return pd.read_csv(path) if path.is_file() and path.stat().st_size > 1 else pd.DataFrame()

        scores = undo_spreadsheet_safe(table(SCORES_FILE), ["file", "source"])  # the files' own names again
        by_training = {name: _report_from_dict(part) for name, part in (doc.get("by_training") or {}).items()}
        return cls(_report_from_dict(doc), scores, table(ROBUSTNESS_FILE), table(SHORTCUT_FILE),
                   doc.get("detector", {}), by_training, doc.get("training_sources") or {})


def _report_from_dict(doc: dict[str, Any]) -> DetectionReport:
    metrics = {name: MetricValue(m.get("value"), m.get("ci_low"), m.get("ci_high"), m.get("method", ""),
                                 m.get("note")) for name, m in doc["metrics"].items()}
    confidence = doc.get("confidence", 0.95)
    per_source = per_source_from_layout(doc.get("per_source") or [], confidence)
    return DetectionReport(doc["threshold"], doc["n_real"], doc["n_fake"], metrics, per_source, confidence,
                           doc.get("n_boot", 0), doc.get("seed", 0), doc.get("notes", []))


def split_by_training(report: DetectionReport, scores: pd.DataFrame, config: dict[str, Any], threshold: float,
                      n_boot: int = 1000, seed: int = 0) -> tuple[dict[str, DetectionReport], dict[str, Any]]:
    """Mark every test source as seen or unseen in training (a ``seen_in_training`` column in
    ``scores`` and a key of the report's per-source results: True or False for synthetic sources,
    None for reals or when the training sources are unknown) and measure the seen and the unseen
    generators' images apart, each against all test reals. Returns those reports and what is known of the
    training (see :class:`Assessment`)."""
    sources, how = training_sources(config)
    test_sources = sorted(set(scores.loc[scores["label"] == 1, "source"].astype(str)))
    seen = {} if sources is None else {source: source in sources for source in test_sources}
    scores["seen_in_training"] = [seen.get(str(source)) if label == 1 else None
                                  for source, label in zip(scores["source"], scores["label"])]
    if report.per_source is not None:
        report.per_source = mark_seen_in_training(report.per_source, seen)
    training = {"sources": sources, "how": how,
                "seen_test_sources": [s for s in test_sources if seen.get(s) is True],
                "unseen_test_sources": [s for s in test_sources if seen.get(s) is False],
                **_from_training_folders(list(scores["file"]) if "file" in scores else [], config)}
    by_training: dict[str, DetectionReport] = {}
    if not seen:
        return by_training, training
    labels, values = scores["label"].to_numpy(), scores["score"].to_numpy(dtype=float)
    flags = scores["seen_in_training"].to_numpy()
    for name, flag in SUBSETS.items():
        fake = (labels == 1) & (flags == flag)
        if not fake.any():
            continue
        if fake.sum() == (labels == 1).sum():  # every synthetic test image: the pooled figures
            by_training[name] = report
            continue
        keep = (labels == 0) | fake
        by_training[name] = evaluate_scores(labels[keep], values[keep], threshold, probs=values[keep],
                                            n_boot=n_boot, seed=seed)
    return by_training, training


def assess_detector(detector_dir: Path | str, data: LabelledImages | None = None, *,
                    real: Path | str | None = None, fakes: Sequence[Path | str] = (),
                    sweeps: Sequence[str] = DEFAULT_SWEEPS, shortcut: bool = True, n_boot: int = 1000,
                    seed: int = 0, device: str = "auto", progress: bool = True) -> Assessment | None:
    """Deployment metrics at the saved threshold, then (optionally) robustness and format checks.

    The test set is ``data``, or else the ``real`` and ``fakes`` corpora read at the detector's
    own input size. Every synthetic test source is marked as seen or unseen in the detector's
    training, and the seen and unseen generators are measured apart (:func:`split_by_training`).
    Launched as several processes, a CLIP detector's processes encode the test images together
    into the shared feature cache; the main process then assesses and returns the assessment, the
    others return None."""
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
    threshold = DecisionSettings.from_config(config).threshold
    report, scores = score_labelled(detector, threshold, data, n_boot=n_boot, seed=seed)
    by_training, training = split_by_training(report, scores, config, threshold, n_boot=n_boot, seed=seed)
    both = bool((data.labels == 0).any() and (data.labels == 1).any())
    robustness = (robustness_sweeps(detector, data, threshold, sweeps, seed=seed, n_boot=min(n_boot, 200),
                                    progress=progress) if sweeps and both else pd.DataFrame())
    format_check = (format_shortcut_check(detector, data, threshold, n_boot=min(n_boot, 200), seed=seed)
                    if shortcut and both else pd.DataFrame())
    return Assessment(report, scores, robustness, format_check, config, by_training, training)


def evaluate_detector(detector_dir: Path | str, real: Path | str | None, fakes: Sequence[Path | str],
                      n_boot: int = 1000, seed: int = 0, device: str = "auto",
                      return_scores: bool = False,
                      progress: bool = True) -> DetectionReport | tuple[DetectionReport, pd.DataFrame] | None:
    """Score test corpora and report the deployment metrics at the detector's saved threshold: the
    first part of :func:`assess_detector`, without the stress tests.

    ``real`` or ``fakes`` may be left out: a real-only test set reports the false-positive rate."""
    assessment = assess_detector(detector_dir, real=real, fakes=fakes, sweeps=(), shortcut=False, n_boot=n_boot,
                                 seed=seed, device=device, progress=progress)
    if assessment is None:  # another process of a multi-process run: the main one reports
        return None
    return (assessment.report, assessment.scores) if return_scores else assessment.report
