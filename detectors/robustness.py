"""Stress tests of a trained detector: perturbation sweeps and the format-shortcut check.

Every perturbation is applied identically to real and fake images (nothing here reads a label
before scoring), and the decision threshold stays the one fixed on held-out reals at training time:
a deployed detector does not get to re-tune itself for each JPEG quality.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from synthscope.errors import UserError

from .base import Detector
from .metrics import evaluate_scores
from .perturbations import SWEEPS, Chain, Perturbation, reencode
from .data import LabelledImages

#: The sweeps a robustness run does unless told otherwise (all of perturbations.SWEEPS).
DEFAULT_SWEEPS = tuple(SWEEPS)
#: Re-encodings of the format-shortcut check: lossless first, then two JPEG qualities.
REENCODINGS = (("png", 100), ("jpeg", 95), ("jpeg", 75))
ROBUSTNESS_COLUMNS = ["sweep", "step", "level", "spec", "ap", "ap_low", "ap_high", "roc_auc",
                      "fake_accuracy", "fake_accuracy_low", "fake_accuracy_high",
                      "fpr_at_threshold", "fpr_low", "fpr_high", "mean_score_real", "mean_score_fake"]


def metric_row(data: LabelledImages, scores: np.ndarray, threshold: float, n_boot: int, seed: int) -> dict:
    """AP, ROC-AUC and the rates at the fixed threshold, with their intervals (one table row)."""
    report = evaluate_scores(data.labels, scores, threshold, n_boot=n_boot, seed=seed)
    m = report.metrics
    real, fake = data.labels == 0, data.labels == 1
    return {
        "ap": m["ap"].value, "ap_low": m["ap"].ci_low, "ap_high": m["ap"].ci_high, "roc_auc": m["roc_auc"].value,
        "fake_accuracy": m["fake_accuracy"].value, "fake_accuracy_low": m["fake_accuracy"].ci_low,
        "fake_accuracy_high": m["fake_accuracy"].ci_high,
        "fpr_at_threshold": m["fpr_at_threshold"].value, "fpr_low": m["fpr_at_threshold"].ci_low,
        "fpr_high": m["fpr_at_threshold"].ci_high,
        "mean_score_real": float(scores[real].mean()) if real.any() else None,
        "mean_score_fake": float(scores[fake].mean()) if fake.any() else None,
    }


def robustness_sweeps(detector: Detector, data: LabelledImages, threshold: float,
                      sweeps: Sequence[str] = DEFAULT_SWEEPS, seed: int = 0, n_boot: int = 200,
                      progress: bool = True) -> pd.DataFrame:
    """Score ``data`` under every level of each named sweep (see ``perturbations.SWEEPS``).

    One row per (sweep, level): AP, ROC-AUC, the share of fakes caught and the false-positive rate
    at the saved ``threshold``, with 95 % intervals (bootstrap for AP, Wilson for the rates). Noise
    is keyed by each image's pixels, so an image gets the same noise whatever its batch, class or
    folder.
    """
    unknown = [name for name in sweeps if name not in SWEEPS]
    if unknown:
        raise UserError(f"unknown robustness sweep {', '.join(map(repr, unknown))}; "
                         f"choose from {', '.join(SWEEPS)}")
    levels: list[tuple[str, int, Perturbation | Chain]] = [
        (name, step, level) for name in sweeps for step, level in enumerate(SWEEPS[name])]
    clean_scores = None
    rows = []
    for name, step, level in tqdm(levels, desc="robustness", unit="level", disable=not progress):
        if level.is_identity and clean_scores is not None:
            scores = clean_scores  # every sweep starts at the clean images: score them once
        else:
            # Noise keyed by each image's pixels, not its path: the same images get the same noise
            # wherever their corpus lies (paths made the noise rows differ between two lab folders).
            scores = detector.score(level(data.images, seed=seed))
            if level.is_identity:
                clean_scores = scores
        rows.append({"sweep": name, "step": step, "level": str(level), "spec": level.spec,
                     **metric_row(data, scores, threshold, n_boot, seed)})
    return pd.DataFrame(rows, columns=ROBUSTNESS_COLUMNS)


def format_shortcut_check(detector: Detector, data: LabelledImages, threshold: float,
                          reencodings: Sequence[tuple[str, int]] = REENCODINGS, n_boot: int = 200,
                          seed: int = 0) -> pd.DataFrame:
    """Re-encode real and fake images the same way and measure how far the scores move.

    A detector that learnt the file format (PNG fakes vs JPEG reals, say) rather than the content
    loses its edge once both classes share a format. One row per (re-encoding, class): the mean
    absolute score change, the share of decisions that flip at the saved threshold, and AP before
    and after.
    """
    before = detector.score(data.images)
    ap_before = metric_row(data, before, threshold, n_boot=0, seed=seed)["ap"]
    rows = []
    for fmt, quality in reencodings:
        after = detector.score(reencode(data.images, fmt, quality))
        after_row = metric_row(data, after, threshold, n_boot=n_boot, seed=seed)
        label = "PNG (lossless)" if fmt == "png" else f"JPEG {quality}"
        for cls, value in (("real", 0), ("fake", 1)):
            mask = data.labels == value
            if not mask.any():
                continue
            flipped = (before[mask] > threshold) != (after[mask] > threshold)
            rows.append({"reencoding": label, "class": cls, "n": int(mask.sum()),
                         "mean_abs_score_change": float(np.abs(after[mask] - before[mask]).mean()),
                         "mean_score_change": float((after[mask] - before[mask]).mean()),
                         "decisions_flipped": float(flipped.mean()),
                         "ap_before": ap_before, "ap_after": after_row["ap"],
                         "ap_after_low": after_row["ap_low"], "ap_after_high": after_row["ap_high"]})
    return pd.DataFrame(rows)
