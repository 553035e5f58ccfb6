"""Does a detector trained on one generator catch another? The train x test cross-generator matrix
and leave-one-generator-out, from one real corpus and several synthetic ones.

Every corpus is split once into a training part and a test part (seeded, the same for every
detector), so no detector is ever tested on an image it, or its threshold, saw.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthscope.errors import UserError
from synthscope.fingerprint import Reuse, fingerprint
from synthscope.runtime import atomic_write_bytes, resolve_device

from .base import Detector, check_output_folder
from .data import LabelledImages, check_distinct_corpora, concatenate, load_corpus, stratified_split
from .estimator import ThresholdedDetector
from .robustness import metric_row
from .training import cnn_model, fit_detector

ALL = "all generators"
STUDY_RECORD = "study_fingerprint.json"  # in a detector folder: what the detector was trained from
STUDY_FORMAT = 1  # bumped when a study detector's training changes meaning, so that older ones are retrained
MATRIX_FILE = "matrix.csv"
LEAVE_ONE_OUT_FILE = "leave_one_out.csv"


@dataclass
class SplitCorpora:
    """Each corpus cut once into a training and a test part; ``names`` are the synthetic corpora."""

    names: list[str]
    train: dict[str, LabelledImages]
    test: dict[str, LabelledImages]

    def training_set(self, fakes: Sequence[str]) -> LabelledImages:
        return concatenate([self.train["real"], *(self.train[name] for name in fakes)])

    def test_set(self, fakes: Sequence[str]) -> LabelledImages:
        return concatenate([self.test["real"], *(self.test[name] for name in fakes)])


def split_corpora(real: Path | str, fakes: Sequence[Path | str], size: int = 32, test_fraction: float = 0.3,
                  seed: int = 0, progress: bool = True) -> SplitCorpora:
    """Load a real corpus and synthetic corpora (named by folder) and split each the same way."""
    if not fakes:
        raise UserError("give at least one synthetic corpus (--fake)")
    check_distinct_corpora(real, fakes)
    names = [Path(f).name for f in fakes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates or "real" in names:
        raise UserError(f"synthetic corpora need distinct folder names other than 'real' "
                         f"(repeated: {', '.join(duplicates or ['real'])})")
    if not 0 < test_fraction < 1:
        raise UserError(f"test fraction must be between 0 and 1, got {test_fraction}")
    train, test = {}, {}
    for name, path, label in [("real", real, 0), *((n, f, 1) for n, f in zip(names, fakes))]:
        part = load_corpus(path, label, size=size, progress=progress)
        # Name each synthetic corpus by its folder, so the matrix reads in the user's own words.
        part.sources = [name] * len(part) if label else part.sources
        train[name], test[name] = stratified_split(part, test_fraction, seed)
    return SplitCorpora(names, train, test)


def _data_sha256(data: LabelledImages) -> str:
    digest = hashlib.sha256(data.images.numpy().tobytes())
    digest.update(data.labels.tobytes())
    return digest.hexdigest()


def _trained(directory: Path, data: LabelledImages, settings: dict[str, Any], device: str,
             progress: bool) -> tuple[Detector, float]:
    """A detector for this training set: reused when one was trained on the same images with the
    same parameters (its ``get_params()``, runtime ones aside), else trained now."""
    data_sha256 = _data_sha256(data)
    reuse = Reuse(directory, STUDY_RECORD)
    made_from = fingerprint({"format": STUDY_FORMAT, "data_sha256": data_sha256,
                             "params": cnn_model(**settings).fingerprint_params()})
    if reuse.matches(made_from):
        try:
            saved = ThresholdedDetector.load(directory, device)
            return saved.detector, saved.threshold
        except (FileNotFoundError, ValueError):  # recorded, then removed or broken: train it again
            pass
    reuse.forget()  # a retraining interrupted half-way must not pass for the detector recorded before
    run = fit_detector(data, directory, device=device, progress=progress,
                       record={"study": {"data_sha256": data_sha256, "settings": settings}}, **settings)
    reuse.record(made_from, data_sha256=data_sha256)
    return run.detector, run.threshold


def _cell(data: LabelledImages, scores: np.ndarray, threshold: float, n_boot: int, seed: int) -> dict[str, Any]:
    return {"n_real": int((data.labels == 0).sum()), "n_fake": int(data.labels.sum()),
            **metric_row(data, scores, threshold, n_boot, seed)}


@dataclass
class Generalisation:
    """The cross-generator matrix (one row per train x test pair) and leave-one-generator-out rows.

    ``detectors`` maps a training set name (a corpus, or ``ALL``) to its detector folder."""

    matrix: pd.DataFrame
    leave_one_out: pd.DataFrame
    detectors: dict[str, Path] = field(default_factory=dict)

    def pivot(self, metric: str = "ap") -> pd.DataFrame:
        """The matrix as a train (rows) x test (columns) table of one metric."""
        table = self.matrix.pivot(index="train", columns="test", values=metric)
        order = list(dict.fromkeys(self.matrix["train"]))
        return table.loc[order, [c for c in dict.fromkeys(self.matrix["test"])]]

    def save(self, out: Path | str) -> None:
        out = Path(out)
        atomic_write_bytes(out / MATRIX_FILE, self.matrix.to_csv(index=False).encode())
        atomic_write_bytes(out / LEAVE_ONE_OUT_FILE, self.leave_one_out.to_csv(index=False).encode())

    @classmethod
    def load(cls, out: Path | str) -> "Generalisation":
        out = Path(out)
        return cls(pd.read_csv(out / MATRIX_FILE), pd.read_csv(out / LEAVE_ONE_OUT_FILE))


def cross_generator(split: SplitCorpora, out: Path | str, n_boot: int = 200, seed: int = 0, device: str = "auto",
                    progress: bool = True, **train_options: Any) -> Generalisation:
    """Train one detector per synthetic corpus, one on all of them, and (with three or more
    corpora) one per left-out corpus; test each on every corpus's test part.

    Each detector's threshold is fixed on its own held-out training reals; the test parts are
    never seen in training. ``train_options`` go to :func:`fit_detector` (arch, epochs, …)."""
    out, device = check_output_folder(out), resolve_device(device)
    settings = {"seed": seed, "size": split.train["real"].images.shape[-1], **train_options}
    names = split.names
    # (name, fakes trained on, the corpus left out or None)
    training_sets: list[tuple[str, list[str], str | None]] = [(name, [name], None) for name in names]
    if len(names) > 1:
        training_sets.append((ALL, list(names), None))
    leave_out = names if len(names) > 2 else []
    training_sets += [(f"all but {name}", [n for n in names if n != name], name) for name in leave_out]

    # Score every test part once per detector; reals are shared by all cells.
    matrix_rows, loo_rows, folders = [], [], {}
    for number, (train_name, fakes, held_out) in enumerate(training_sets):
        folder = out / "detectors" / f"{number:02d}-{_slug(train_name)}"
        folders[train_name] = folder
        detector, threshold = _trained(folder, split.training_set(fakes), settings, device, progress)
        real_scores = detector.score(split.test["real"].images)
        fake_scores = {name: detector.score(split.test[name].images) for name in names}

        def cell(tested: Sequence[str]) -> dict[str, Any]:
            data = split.test_set(tested)
            scores = np.concatenate([real_scores, *(fake_scores[n] for n in tested)])
            return _cell(data, scores, threshold, n_boot, seed)

        if held_out is not None:
            seen = cell(fakes)
            loo_rows.append({"held_out": held_out, "trained_on": ", ".join(fakes), **cell([held_out]),
                             "ap_seen": seen["ap"], "fake_accuracy_seen": seen["fake_accuracy"]})
        else:
            for test_name in names:
                matrix_rows.append({"train": train_name, "test": test_name, "threshold": threshold,
                                    **cell([test_name])})
    result = Generalisation(pd.DataFrame(matrix_rows), pd.DataFrame(loo_rows), folders)
    result.save(out)
    return result


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text.lower()).strip("-") or "detector"
