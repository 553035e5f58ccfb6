"""Does a detector trained on one generator catch another? The train x test cross-generator matrix
and leave-one-generator-out, from one real corpus and several synthetic ones.

Every corpus is split once into a training part and a test part (seeded, the same for every
detector), so no detector is ever tested on an image it, or its threshold, saw. Saved detectors (a
team's own model, say) can join as fixed rows: tested on the same test parts, never trained here, at
the threshold they were saved with.
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
    # how it was made (the corpus folders by name, the split), so the same split can be read at another size
    paths: dict[str, Path] = field(default_factory=dict)
    test_fraction: float = 0.3
    seed: int = 0

    def training_set(self, fakes: Sequence[str]) -> LabelledImages:
        return concatenate([self.train["real"], *(self.train[name] for name in fakes)])

    def test_set(self, fakes: Sequence[str]) -> LabelledImages:
        return concatenate([self.test["real"], *(self.test[name] for name in fakes)])

    def at_size(self, size: int, channels: int = 3, progress: bool = True) -> SplitCorpora:
        """The same split with the images read at ``size`` px and ``channels`` (for a saved detector with
        its own input size): the same files in every part, or one error."""
        images = self.test["real"].images
        if images.shape[-1] == size and images.shape[1] == channels:
            return self
        if not self.paths:
            raise UserError("this split does not record its corpus folders; make it with split_corpora")
        again = split_corpora(self.paths["real"], [self.paths[name] for name in self.names], size=size,
                              test_fraction=self.test_fraction, seed=self.seed, channels=channels, progress=progress)
        if any(again.test[name].files != self.test[name].files for name in self.test):
            raise UserError(f"the corpora read differently at {size} px (an image readable at one size only?); "
                            f"the test parts differ, so a fixed detector cannot be compared with the others")
        return again


def split_corpora(real: Path | str, fakes: Sequence[Path | str], size: int = 32, test_fraction: float = 0.3,
                  seed: int = 0, progress: bool = True, channels: int = 3) -> SplitCorpora:
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
        part = load_corpus(path, label, size=size, channels=channels, progress=progress)
        # Name each synthetic corpus by its folder, so the matrix reads in the user's own words.
        part.sources = [name] * len(part) if label else part.sources
        train[name], test[name] = stratified_split(part, test_fraction, seed)
    paths = {"real": Path(real), **{name: Path(fake) for name, fake in zip(names, fakes)}}
    return SplitCorpora(names, train, test, paths, test_fraction, seed)


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
        return cls(pd.read_csv(out / MATRIX_FILE), _read_rows(out / LEAVE_ONE_OUT_FILE))


def _read_rows(path: Path) -> pd.DataFrame:
    """A saved table that may hold no rows: with fewer than three corpora there is no leave-one-out,
    and an empty table is saved without a header."""
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def _test_scores(detector: Detector, split: SplitCorpora) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A detector's scores of the real test part and of every synthetic one (reals are shared by all cells)."""
    return detector.score(split.test["real"].images), {name: detector.score(split.test[name].images)
                                                       for name in split.names}


def _fixed_rows(split: SplitCorpora, fixed: Sequence[Path | str], n_boot: int, seed: int, device: str,
                progress: bool) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """One matrix row per saved detector and synthetic corpus, the detector tested as it is: never trained
    here, at its saved threshold, on the test parts read at its own input size. A ``scores`` detector
    reads the test images' scores from its CSV."""
    rows, folders = [], {}
    for directory in map(Path, fixed):
        name = f"{directory.name} (fixed)"
        if name in folders:
            raise UserError(f"--fixed: two detector folders are named {directory.name}; give folders with distinct "
                            f"names")
        saved = ThresholdedDetector.load(directory, device)
        detector, threshold = saved.detector, saved.threshold
        tests = split.at_size(detector.size, detector.channels, progress)
        if hasattr(detector, "bind"):  # scores from a CSV: the training parts' rows are simply not used
            detector.bind(tests.test_set(tests.names), warn_extra=False)
        real_scores, fake_scores = _test_scores(detector, tests)
        for test_name in split.names:
            data = tests.test_set([test_name])
            scores = np.concatenate([real_scores, fake_scores[test_name]])
            rows.append({"train": name, "test": test_name, "threshold": threshold, "fixed": True,
                         **_cell(data, scores, threshold, n_boot, seed)})
        folders[name] = directory
    return rows, folders


def fixed_summary(result: Generalisation) -> tuple[Generalisation, list[str]]:
    """The study without its fixed rows (what the seen/unseen sentences are about) and one sentence per
    fixed detector: its AP over the synthetic corpora, none of which it was trained on here."""
    matrix = result.matrix
    fixed = matrix["fixed"].astype(bool) if "fixed" in matrix else pd.Series(False, index=matrix.index)
    lines = []
    for name, rows in matrix[fixed].groupby("train", sort=False):
        rows = rows.dropna(subset=["ap"])
        if len(rows):
            worst = rows.loc[rows["ap"].idxmin()]
            lines.append(f"{name}: a saved detector tested as it is (not trained here; its own threshold): AP "
                         f"{rows['ap'].mean():.2f} on average, lowest {worst['ap']:.2f} on {worst['test']}.")
    return Generalisation(matrix[~fixed], result.leave_one_out, result.detectors), lines


@dataclass(frozen=True)
class PlannedDetector:
    """One detector of a cross-generator study: its name, the synthetic corpora it trains on, the one
    it leaves out (None but for the leave-one-out detectors) and its folder."""

    name: str
    fakes: list[str]
    held_out: str | None
    folder: Path


def study_plan(names: Sequence[str], out: Path | str) -> list[PlannedDetector]:
    """The detectors of a study of the corpora ``names``, in the order :func:`cross_generator`
    trains them: one per corpus, one on all of them (two or more), one per left-out corpus (three or
    more)."""
    names = list(names)
    training_sets: list[tuple[str, list[str], str | None]] = [(name, [name], None) for name in names]
    if len(names) > 1:
        training_sets.append((ALL, names, None))
    leave_out = names if len(names) > 2 else []
    training_sets += [(f"all but {name}", [n for n in names if n != name], name) for name in leave_out]
    return [PlannedDetector(name, fakes, held_out, Path(out) / "detectors" / f"{number:02d}-{_slug(name)}")
            for number, (name, fakes, held_out) in enumerate(training_sets)]


def _settings(split: SplitCorpora, seed: int, train_options: dict[str, Any]) -> dict[str, Any]:
    return {"seed": seed, "size": split.train["real"].images.shape[-1], **train_options}


def train_study_detectors(split: SplitCorpora, out: Path | str, left_out: bool, seed: int = 0, device: str = "auto",
                          progress: bool = True, **train_options: Any) -> list[Path]:
    """Train (or reuse) part of a study's detectors exactly as :func:`cross_generator` trains them:
    the leave-one-out ones (``left_out``) or the others. Two processes can each train a part; a
    :func:`cross_generator` afterwards, with the same arguments, reuses them all. Their folders."""
    out, device = check_output_folder(out), resolve_device(device)
    settings = _settings(split, seed, train_options)
    chosen = [planned for planned in study_plan(split.names, out) if (planned.held_out is not None) == left_out]
    for planned in chosen:
        _trained(planned.folder, split.training_set(planned.fakes), settings, device, progress)
    return [planned.folder for planned in chosen]


def cross_generator(split: SplitCorpora, out: Path | str, n_boot: int = 200, seed: int = 0, device: str = "auto",
                    progress: bool = True, fixed: Sequence[Path | str] = (), **train_options: Any) -> Generalisation:
    """Train one detector per synthetic corpus, one on all of them, and (with three or more
    corpora) one per left-out corpus; test each on every corpus's test part; then each ``fixed``
    saved detector (a team's own model, say) as it is, at its own threshold (rows marked ``fixed``).

    Each trained detector's threshold is fixed on its own held-out training reals; the test parts are
    never seen in training. ``train_options`` go to :func:`fit_detector` (arch, epochs, …)."""
    out, device = check_output_folder(out), resolve_device(device)
    settings = _settings(split, seed, train_options)
    names = split.names

    # Score every test part once per detector; reals are shared by all cells.
    matrix_rows, loo_rows, folders = [], [], {}
    for planned in study_plan(names, out):
        train_name, fakes, held_out, folder = planned.name, planned.fakes, planned.held_out, planned.folder
        folders[train_name] = folder
        detector, threshold = _trained(folder, split.training_set(fakes), settings, device, progress)
        real_scores, fake_scores = _test_scores(detector, split)

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
                                    "fixed": False, **cell([test_name])})
    rows, fixed_folders = _fixed_rows(split, fixed, n_boot, seed, device, progress)
    result = Generalisation(pd.DataFrame(matrix_rows + rows), pd.DataFrame(loo_rows), {**folders, **fixed_folders})
    result.save(out)
    return result


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text.lower()).strip("-") or "detector"
