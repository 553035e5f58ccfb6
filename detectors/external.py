"""A team's own detector, tested like synthscope's: a Hugging Face image classifier (``hf``), any Python
function (``python``), or the scores of a model synthscope cannot call, read from a CSV (``scores``);
opened by the same loader as the kinds synthscope trains.

Nothing is trained here. ``synthscope detect train --kind hf|python`` scores held-out real images and
fixes the decision threshold for a target false-positive rate (:class:`~.estimator.ThresholdedDetector`),
optionally with a Platt calibration fitted on the held-out reals and fakes; ``detector.json`` records
which model it was (hub id and revision, or folder and the hash of its files; or the import path and the
hash of its module's source), so evaluation, scans and robustness sweeps open the same one again.

An external model is usually the slowest part of a run and its scores are a pure function of (model,
image), so they are cached on disk by image content and model identity, through the CLIP detector's
feature cache: a second evaluation, another threshold or another sweep does not call the model again.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from synthscope.errors import UserError
from synthscope.images import to_pil_list, to_uint8
from synthscope.runtime import resolve_device, sha256_file

from . import defaults
from .base import NUMBER, OBJECT, TEXT, Field, SavedDetector, check_output_folder
from .clip import FeatureCache, default_cache_dir, image_keys
from .data import LabelledImages, check_distinct_corpora, load_labelled
from .estimator import DetectorEstimator, ThresholdedDetector
from .metrics import DetectionReport, evaluate_scores
from .training import DetectorRun

FAKE_WORDS = ("fake", "ai", "generated", "synthetic")
# Part of every cache key: a change to how images reach the model must never reuse old scores.
PREPROCESSING = "tensor-to-pil-rgb/1"


def default_score_cache() -> Path:
    """Where scores are cached: beside the CLIP features, ``$SYNTHSCOPE_CACHE/detector-scores``, else
    ``~/.cache/synthscope/detector-scores`` (``$XDG_CACHE_HOME`` is honoured)."""
    return default_cache_dir().parent / "detector-scores"


def _cache_id(identity: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", identity)[:60].strip("-")
    return f"{readable}-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:300] or type(error).__name__


class ExternalDetector(SavedDetector):
    """What the ``hf`` and ``python`` kinds share: images in [0, 1] at ``size`` px in, the model's score
    out (a Platt calibration applied when one was fitted), every distinct image scored once per model and
    cached. Subclasses define :meth:`raw_scores` (one batch, one call to the model) and ``identity``."""

    weights_file: ClassVar[str | None] = None
    config_fields: ClassVar[list[Field]] = [("model.model_id", TEXT, True), ("model.calibration", OBJECT, False),
                                            ("model.calibration.a", NUMBER, False),
                                            ("model.calibration.b", NUMBER, False),
                                            ("model.score_cache", TEXT, False)]
    channels: int = 3
    identity: str = ""

    def setup(self, size: int, cache_dir: Path | str | None, cache: bool,
              calibration: dict[str, float] | None = None) -> None:
        """The parts every external detector has (called once its model identity is known)."""
        self.size, self.channels = int(size), 3
        self.model_id = _cache_id(f"{self.identity}|{PREPROCESSING}")
        self.cache = FeatureCache(cache_dir or default_score_cache(), self.model_id) if cache else None
        self.calibration = calibration
        self.images_scored = 0  # how many images the model itself was called on (the cache's proof)

    def raw_scores(self, images: torch.Tensor) -> np.ndarray:
        """The model's own score of one batch, float64, one per image."""
        raise NotImplementedError

    def uncalibrated(self, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
        """The model's scores: cached ones read, each distinct other image scored once, in batches."""
        keys = image_keys(images)
        found = self.cache.lookup(keys) if self.cache is not None else {}
        todo = list({key: i for i, key in reversed(list(enumerate(keys))) if key not in found}.values())[::-1]
        for start in range(0, len(todo), batch_size):
            index = todo[start:start + batch_size]
            scores = self.raw_scores(images[torch.tensor(index)])
            self.images_scored += len(index)
            # float64 bits kept as two float32s: the cache stores float32, and scores must come back exact
            bits = torch.from_numpy(scores.astype(np.float64).view(np.float32).reshape(len(index), 2))
            batch_keys = [keys[i] for i in index]
            if self.cache is not None:
                self.cache.store(batch_keys, bits)
            found.update(zip(batch_keys, bits))
        if self.cache is not None:
            self.cache.misses += len(todo)
            self.cache.hits += len(keys) - len(todo)
        return np.array([found[key].numpy().view(np.float64)[0] for key in keys], dtype=np.float64)

    def score(self, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
        """The score per image (higher: more likely fake), calibrated to P(fake) when calibrated."""
        return self.calibrated(self.uncalibrated(images, batch_size))

    def calibrated(self, scores: np.ndarray) -> np.ndarray:
        """The model's own ``scores`` as this detector reports them: mapped to P(fake) by its Platt
        calibration, or checked to read as P(fake) already."""
        if self.calibration is None:
            if len(scores) and (scores.min() < 0 or scores.max() > 1):
                # the metrics read scores as P(fake) (calibration error, Brier): any other scale needs a map
                raise UserError(f"{self.identity}: scores outside [0, 1] (from {scores.min():.4g} to "
                                f"{scores.max():.4g}); return P(fake), or calibrate the scores to it when the "
                                f"threshold is fixed ('synthscope detect train ... --fake FAKE --calibrate')")
            return scores
        return 1 / (1 + np.exp(-(self.calibration["a"] * scores + self.calibration["b"])))

    def common_config(self) -> dict[str, Any]:
        """The entries of the ``model`` section every external kind writes."""
        return {"kind": self.kind, "model_id": self.model_id, "size": self.size, "channels": self.channels,
                "calibration": self.calibration,
                "score_cache": None if self.cache is None else str(self.cache.folder.parent)}

    @staticmethod
    def cache_options(config: dict[str, Any], cache_dir: Path | str | None,
                      cache: bool | None) -> tuple[Path | str | None, bool]:
        """Where a reopened detector caches: where it cached when saved, unless told otherwise; a recorded
        folder that no longer exists (another machine) gives way to the default one."""
        recorded = config.get("score_cache", str(default_score_cache()))
        if cache is None:
            cache = recorded is not None
        if cache_dir is None and recorded is not None and Path(recorded).is_dir():
            cache_dir = recorded
        return cache_dir, cache


# --------------------------------------------------------------------------- Hugging Face


def folder_sha256(folder: Path) -> str:
    """One SHA-256 over every file of a model folder (relative names and contents), so a changed
    weight, config or processor file is noticed."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and ".cache" not in p.parts):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{sha256_file(path)}\0".encode())
    return digest.hexdigest()


def fake_label_index(labels: dict[int, str], fake_label: str | None, model: str) -> int:
    """The index of the label whose probability is P(fake): ``fake_label`` (exact, else ignoring case),
    else the one label that reads fake, ai, generated or synthetic; otherwise one error listing them."""
    listed = ", ".join(repr(name) for _, name in sorted(labels.items()))
    if fake_label is not None:
        for exact in (True, False):
            hits = [i for i, name in labels.items()
                    if (name == fake_label if exact else name.lower() == fake_label.lower())]
            if len(hits) == 1:
                return hits[0]
        raise UserError(f"--fake-label {fake_label!r}: model {model} has no such label; its labels: {listed}")
    hits = [i for i, name in labels.items() if set(re.split(r"[^a-z0-9]+", name.lower())) & set(FAKE_WORDS)]
    if len(hits) != 1:
        which = "no label" if not hits else "more than one label"
        raise UserError(f"model {model}: {which} reads {', '.join(FAKE_WORDS)}; name the label whose probability "
                        f"means fake with --fake-label NAME; its labels: {listed}")
    return hits[0]


def open_hf_model(model: str, revision: str | None = None,
                  device: str | torch.device = "cpu") -> tuple[Any, Any, dict[str, Any]]:
    """A transformers image classifier and its image processor, from a folder written by
    ``save_pretrained`` or a hub id (at ``revision``), and what identifies it: the folder and the hash of
    its files, or the id and the commit it resolved to. A model that cannot be had is one clear error."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification
    from transformers.utils import logging as hf_logging

    folder = Path(model).expanduser()
    if folder.is_dir():
        source: dict[str, Any] = {"model": str(folder.absolute()), "revision": None,
                                  "folder_sha256": folder_sha256(folder)}
        where = str(folder.absolute())
    elif model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise UserError(f"--model {model}: no such folder; give a folder written by save_pretrained "
                        f"(with its image processor) or a hub id such as org/name")
    else:
        source, where = {"model": model, "revision": revision, "folder_sha256": None}, model
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a bar per load would bury synthscope's own output (and its --quiet)
    try:
        network = AutoModelForImageClassification.from_pretrained(where, revision=source["revision"])
        processor = AutoImageProcessor.from_pretrained(where, revision=source["revision"])
    except Exception as error:  # noqa: BLE001 (network, cache, file formats and configs all fail differently)
        raise UserError(
            f"--model {model}: could not load a transformers image classifier with its image processor "
            f"({_one_line(error)}). Without network access, download it once where there is network and "
            f"either set HF_HUB_OFFLINE=1 with it in the Hugging Face cache ($HF_HOME), or save it with "
            f"save_pretrained (model and image processor) and pass that folder (--model FOLDER)") from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    if source["revision"] is None and source["folder_sha256"] is None:
        # the commit a hub id resolved to, so the detector reopens the very same weights
        source["revision"] = getattr(network.config, "_commit_hash", None)
    return network.to(device).eval(), processor, source


def processor_size(processor: Any, default: int = 224) -> int:
    """The square input size an image processor gives the model (its crop when it crops, else its resize:
    height or shortest edge), else ``default``."""
    size = getattr(processor, "crop_size" if getattr(processor, "do_center_crop", False) else "size", None)
    if size is not None and not isinstance(size, int):  # a dict, or transformers' SizeDict
        size = next((value for value in (getattr(size, key, None) if not isinstance(size, dict) else size.get(key)
                                         for key in ("height", "shortest_edge")) if value), None)
    return size if isinstance(size, int) and size > 0 else default


class HFDetector(ExternalDetector):
    """A transformers image-classification model: P(fake) is the softmax probability of its fake label.
    Saved as ``detector.json`` alone, naming the hub id and revision, or the folder and its files' hash."""

    kind: ClassVar[str] = "hf"
    config_fields: ClassVar[list[Field]] = ExternalDetector.config_fields + [
        ("model.model", TEXT, True), ("model.revision", TEXT, False), ("model.folder_sha256", TEXT, False),
        ("model.fake_label", TEXT, True)]

    def __init__(self, model: str, fake_label: str | None = None, size: int | None = None, revision: str | None = None,
                 device: str | torch.device = "cpu", cache_dir: Path | str | None = None, cache: bool = True,
                 calibration: dict[str, float] | None = None, expected_folder_sha256: str | None = None):
        self.network, self.processor, self.source = open_hf_model(model, revision, device)
        if expected_folder_sha256 and self.source["folder_sha256"] != expected_folder_sha256:
            raise UserError(f"--model {self.source['model']}: the model folder has changed since the threshold was "
                            f"fixed (its files' sha256 differs); restore it or run 'synthscope detect train' again")
        self.device = torch.device(device)
        self.labels = {int(i): str(name) for i, name in self.network.config.id2label.items()}
        self.label_index = fake_label_index(self.labels, fake_label, self.source["model"])
        self.fake_label = self.labels[self.label_index]
        self.identity = (f"hf:{self.source['model']}@{self.source['revision'] or self.source['folder_sha256']}"
                         f":{self.fake_label}")
        self.setup(size or processor_size(self.processor), cache_dir, cache, calibration)

    def raw_scores(self, images: torch.Tensor) -> np.ndarray:
        # 8-bit tensors go to the processor as they are: it rescales and normalises them exactly as the
        # Pillow images a pipeline gives it, without a Pillow round trip per image.
        inputs = self.processor(images=to_uint8(images.expand(-1, 3, -1, -1)).cpu(), return_tensors="pt")
        with torch.inference_mode():
            logits = self.network(pixel_values=inputs["pixel_values"].to(self.device)).logits
        return logits.float().softmax(dim=-1)[:, self.label_index].double().cpu().numpy()

    def config(self) -> dict[str, Any]:
        """The ``model`` section of ``detector.json``."""
        return {**self.common_config(), **self.source, "fake_label": self.fake_label, "labels": self.labels}

    @classmethod
    def from_config(cls, config: dict[str, Any], *, where: str = "the config", directory: Path | None = None,
                    device: str | torch.device = "cpu", cache_dir: Path | str | None = None,
                    cache: bool | None = None, **options: Any) -> HFDetector:
        """Reopen the model the detector names (the same revision, or the same unchanged folder)."""
        cache_dir, cache = cls.cache_options(config, cache_dir, cache)
        return cls(config["model"], config["fake_label"], int(config["size"]), config.get("revision"), device,
                   cache_dir, cache, config.get("calibration"), config.get("folder_sha256"))


# --------------------------------------------------------------------------- Python callable


def import_callable(path: str) -> tuple[Callable[[list[Any]], Any], str | None]:
    """The function ``package.module:function`` names, imported from this environment, and the SHA-256 of
    its module's source file (None when it has none); a bad path is one clear error."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise UserError(f"--callable {path!r}: give it as package.module:function")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 (a missing module, or one that fails as it is imported)
        raise UserError(f"--callable {path}: cannot import {module_name} ({_one_line(error)}); install it in this "
                        f"environment or put its folder on PYTHONPATH") from None
    module = target
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise UserError(f"--callable {path}: {module_name} has no {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise UserError(f"--callable {path}: {attribute} is a {type(target).__name__}, not a function")
    try:
        source = inspect.getsourcefile(module)
    except TypeError:  # a built-in or compiled module
        source = None
    return target, (sha256_file(source) if source and Path(source).is_file() else None)


class PythonDetector(ExternalDetector):
    """A Python function taking a list of Pillow images and returning one score per image (higher: more
    likely fake), imported by its path. Saved as ``detector.json`` alone, naming the path and the hash of
    its module's source."""

    kind: ClassVar[str] = "python"
    config_fields: ClassVar[list[Field]] = ExternalDetector.config_fields + [
        ("model.callable", TEXT, True), ("model.source_sha256", TEXT, False)]

    def __init__(self, path: str, size: int = defaults.EXTERNAL["python_size"], cache_dir: Path | str | None = None,
                 cache: bool = True, calibration: dict[str, float] | None = None,
                 expected_source_sha256: str | None = None):
        self.path = path
        self.function, self.source_sha256 = import_callable(path)
        if expected_source_sha256 and self.source_sha256 != expected_source_sha256:
            warnings.warn(f"--callable {path}: its module's source has changed since the threshold was fixed; the "
                          f"threshold may no longer give the target false-positive rate (run 'synthscope detect "
                          f"train' again)", stacklevel=2)
        self.identity = f"python:{path}@{self.source_sha256}"
        self.setup(size, cache_dir, cache, calibration)

    def raw_scores(self, images: torch.Tensor) -> np.ndarray:
        result = self.function(to_pil_list(images.expand(-1, 3, -1, -1)))
        if isinstance(result, torch.Tensor):
            result = result.detach().cpu().numpy()
        try:
            scores = np.asarray(result, dtype=np.float64)
        except (TypeError, ValueError):
            raise UserError(f"--callable {self.path}: returned {type(result).__name__}, not numbers; it must "
                            f"return one score per image") from None
        if scores.shape != (len(images),):
            raise UserError(f"--callable {self.path}: returned {scores.size} scores (shape {scores.shape}) for "
                            f"{len(images)} images; it must return one score per image")
        if not np.isfinite(scores).all():
            raise UserError(f"--callable {self.path}: returned a score that is not a finite number")
        return scores

    def config(self) -> dict[str, Any]:
        """The ``model`` section of ``detector.json``."""
        return {**self.common_config(), "callable": self.path, "source_sha256": self.source_sha256}

    @classmethod
    def from_config(cls, config: dict[str, Any], *, where: str = "the config", directory: Path | None = None,
                    device: str | torch.device = "cpu", cache_dir: Path | str | None = None,
                    cache: bool | None = None, **options: Any) -> PythonDetector:
        """Import the function again (a changed module is a warning: its threshold may no longer hold)."""
        cache_dir, cache = cls.cache_options(config, cache_dir, cache)
        return cls(config["callable"], int(config["size"]), cache_dir, cache, config.get("calibration"),
                   config.get("source_sha256"))


# --------------------------------------------------------------------------- scores from a CSV

SCORE_COLUMNS = ("path", "score")
JOIN_RULE = ("a row's path matches an image when it is the image's absolute path, or its path relative to the "
             "folder the CSV lies in")
NEEDS_MODEL = ("robustness sweeps, the format-shortcut check and scans need a model synthscope can call "
               "(--kind hf or python)")


def read_scores_csv(path: Path | str) -> dict[str, float]:
    """The scores of a CSV with columns ``path`` and ``score`` (finite numbers; a path given twice must
    have one score); anything else is one error naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--scores {path}: no such file; give a CSV with columns path, score")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise UserError(f"--scores {path}: cannot be read as CSV ({_one_line(error)})") from None
    absent = [column for column in SCORE_COLUMNS if column not in table.columns]
    if absent:
        found = ", ".join(map(str, table.columns)) or "none"
        raise UserError(f"--scores {path}: no column {', '.join(absent)} (found: {found}); give a CSV with "
                        f"columns path, score")
    values = pd.to_numeric(table["score"].str.strip(), errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(values) | (table["path"].str.strip() == "").to_numpy())
    if len(bad):
        row = bad[0]
        raise UserError(f"--scores {path}: line {row + 2} (path {table['path'][row]!r}, score "
                        f"{table['score'][row]!r}) needs a path and a finite number ({len(bad)} such rows)")
    scores: dict[str, float] = {}
    for name, value in zip(table["path"], values):
        if scores.setdefault(name, value) != value:
            raise UserError(f"--scores {path}: {name!r} is given twice with different scores; keep one row per image")
    return scores


def join_scores(table: dict[str, float], files: Sequence[str], where: Path | str) -> tuple[np.ndarray, int]:
    """The score of every file by :data:`JOIN_RULE` (a relative path in the CSV ``where`` is read from the
    CSV's own folder, as a manifest's are), and how many rows of ``table`` matched no file. Files without a
    score are one error listing the first few and the count."""
    base = Path(where).expanduser().absolute().parent
    by_path: dict[str, float] = {}
    rows: dict[str, str] = {}
    for name, score in table.items():
        full = os.path.normpath(os.path.join(base, os.path.expanduser(name)))  # an absolute name stays itself
        if by_path.setdefault(full, score) != score:
            raise UserError(f"--scores {where}: {rows[full]!r} and {name!r} name the same image with different "
                            f"scores; keep one row per image")
        rows[full] = name
    by_real = {os.path.realpath(full): full for full in by_path}
    scores, used, missing = np.empty(len(files)), set(), []
    for i, file in enumerate(files):
        full = os.path.normpath(os.path.abspath(file))
        full = full if full in by_path else by_real.get(os.path.realpath(full))
        if full is None:
            missing.append(file)
            continue
        scores[i] = by_path[full]
        used.add(full)
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise UserError(f"--scores {where}: {len(missing)} of the {len(files)} images have no score ({shown}); "
                        f"{JOIN_RULE}; score every image, or leave those out of the corpora")
    return scores, len(by_path) - len(used)


class ScoresDetector(ExternalDetector):
    """Scores of a model synthscope cannot call, read from a CSV (``path``, ``score``) and joined to the
    images by file (:data:`JOIN_RULE`). Nothing is called: :meth:`bind` gives it the images of a run and
    their scores, and only those images can be scored, so robustness sweeps, the format-shortcut check and
    scans are refused with one message. Saved as ``detector.json`` alone, naming the CSV that fixed the
    threshold and its hash."""

    kind: ClassVar[str] = "scores"
    config_fields: ClassVar[list[Field]] = ExternalDetector.config_fields + [
        ("model.scores_csv", TEXT, True), ("model.scores_sha256", TEXT, False)]

    def __init__(self, scores_csv: Path | str, size: int = defaults.EXTERNAL["scores_size"],
                 calibration: dict[str, float] | None = None):
        path = Path(scores_csv).expanduser().absolute()
        self.scores_csv = str(path)
        self.scores_sha256 = sha256_file(path) if path.is_file() else None
        self.identity = f"scores:{self.scores_csv}@{self.scores_sha256}"
        self.setup(size, None, False, calibration)
        self.bound_images: torch.Tensor | None = None
        self.bound_scores = np.empty(0)
        self.bound_keys: dict[bytes, float] | None = None
        self.saved_sha256: str | None = None  # the CSV's hash when the threshold was fixed (a loaded detector)

    def bind(self, data: LabelledImages, scores_csv: Path | str | None = None, warn_extra: bool = True) -> int:
        """Read the scores of ``data``'s images from ``scores_csv`` (default: the CSV given at training);
        returns how many rows matched no image (with ``warn_extra``, a warning says so too)."""
        where = Path(scores_csv) if scores_csv is not None else Path(self.scores_csv)
        if scores_csv is None and self.saved_sha256 and self.saved_sha256 != self.scores_sha256:
            warnings.warn(f"{where}: changed since its real images' rows fixed the threshold (SHA-256 "
                          f"{self.saved_sha256[:12]}… then, {str(self.scores_sha256)[:12]}… now); the threshold "
                          f"is the one fixed then", stacklevel=2)
        table = read_scores_csv(where)
        scores, extra = join_scores(table, data.files, where)
        if extra and warn_extra:
            warnings.warn(f"--scores {where}: {extra} of its {len(table)} rows match no image of these corpora "
                          f"and were not used ({JOIN_RULE})", stacklevel=2)
        self.bound_images, self.bound_scores, self.bound_keys = data.images, scores, None
        return extra

    def raw_scores(self, images: torch.Tensor) -> np.ndarray:
        raise UserError(f"--kind scores ({self.scores_csv}): these images have no score in the CSV; {NEEDS_MODEL}")

    def uncalibrated(self, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
        """The CSV's scores of bound images (those given to :meth:`bind`, or any subset of them)."""
        if self.bound_images is not None and images is self.bound_images:
            return self.bound_scores.copy()
        if self.bound_keys is None:
            bound = self.bound_images if self.bound_images is not None else torch.empty(0, 3, self.size, self.size)
            self.bound_keys = dict(zip(image_keys(bound), self.bound_scores))
        keys = image_keys(images)
        if not all(key in self.bound_keys for key in keys):
            return self.raw_scores(images)
        return np.array([self.bound_keys[key] for key in keys], dtype=np.float64)

    def config(self) -> dict[str, Any]:
        """The ``model`` section of ``detector.json``."""
        return {**self.common_config(), "scores_csv": self.scores_csv, "scores_sha256": self.scores_sha256}

    @classmethod
    def from_config(cls, config: dict[str, Any], *, where: str = "the config", directory: Path | None = None,
                    device: str | torch.device = "cpu", **options: Any) -> ScoresDetector:
        """The detector again; its scores are read when a run binds its images."""
        detector = cls(config["scores_csv"], int(config["size"]), config.get("calibration"))
        detector.saved_sha256 = config.get("scores_sha256")
        return detector


def assess_scores(detector_dir: Path | str, scores_csv: Path | str | None, real: Path | str | None,
                  fakes: Sequence[Path | str], n_boot: int = 1000, seed: int = 0, progress: bool = True):
    """:func:`~.assessment.assess_detector` for a ``scores`` detector: the test corpora's scores read from
    ``scores_csv`` (default: the CSV given at training), metrics at the saved threshold and the seen/unseen
    split; no robustness sweep nor format-shortcut check (:data:`NEEDS_MODEL`), and the report notes it."""
    from synthscope.registry import load_detector

    from .assessment import Assessment, split_by_training
    from .estimator import DecisionSettings
    from .training import score_labelled

    detector, config = load_detector(detector_dir)
    data = load_labelled(real, fakes, size=detector.size, channels=detector.channels, progress=progress)
    detector.bind(data, scores_csv)
    threshold = DecisionSettings.from_config(config).threshold
    report, scores = score_labelled(detector, threshold, data, n_boot=n_boot, seed=seed)
    by_training, training = split_by_training(report, scores, config, threshold, n_boot=n_boot, seed=seed)
    report.notes.append(f"scores read from a CSV: {NEEDS_MODEL}, so none was run")
    return Assessment(report, scores, pd.DataFrame(), pd.DataFrame(), config, by_training, training)


# --------------------------------------------------------------------------- estimator


def platt(scores: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict[str, float]:
    """A logistic calibration P(fake) = sigmoid(a * score + b) fitted on held-out scores (Platt scaling)."""
    from sklearn.linear_model import LogisticRegression

    if not (labels == 0).any() or not (labels == 1).any():
        raise UserError("--calibrate needs real and synthetic held-out images: give --fake too")
    fit = LogisticRegression(C=1e6, random_state=seed).fit(scores.reshape(-1, 1), labels)
    a, b = float(fit.coef_[0, 0]), float(fit.intercept_[0])
    if not (math.isfinite(a) and math.isfinite(b)):
        raise UserError("--calibrate: the logistic calibration did not converge on these scores")
    return {"a": a, "b": b}


class ExternalEstimator(DetectorEstimator):
    """A model trained elsewhere (``source``: a hub id or folder for ``hf``, ``module:function`` for
    ``python``, the CSV of its scores for ``scores``): it learns nothing, so all the data is held out and its reals fix the threshold; with
    ``calibrate`` a Platt calibration is fitted on the held-out reals and fakes first (a monotone map, so
    the decisions at the target false-positive rate are the same)."""

    learns = False
    runtime_params = ("device", "progress", "cache_dir", "cache", "batch_size")

    def __init__(self, kind: str, source: str, fake_label: str | None = None, size: int | None = None,
                 calibrate: bool = False, batch_size: int = defaults.EXTERNAL["batch_size"], seed: int = 0,
                 device: str | torch.device = "auto", cache_dir: Path | str | None = None, cache: bool = True,
                 progress: bool = True):
        if kind not in ("hf", "python", "scores"):
            raise UserError(f"unknown external detector kind {kind!r}; choose hf, python or scores")
        self.kind, self.source, self.fake_label, self.size, self.calibrate = kind, source, fake_label, size, calibrate
        self.batch_size, self.seed, self.device = batch_size, seed, device
        self.cache_dir, self.cache, self.progress = cache_dir, cache, progress

    def open(self) -> ExternalDetector:
        """The model, opened before any image is read so that a bad model or path fails fast."""
        if self.kind == "hf":
            self.detector_ = HFDetector(self.source, self.fake_label, self.size, device=resolve_device(self.device),
                                        cache_dir=self.cache_dir, cache=self.cache)
        elif self.fake_label is not None:
            raise UserError(f"--fake-label is for --kind hf; --kind {self.kind} gives the fake score itself")
        elif self.kind == "python":
            self.detector_ = PythonDetector(self.source, self.size or defaults.EXTERNAL["python_size"],
                                            self.cache_dir, self.cache)
        else:
            self.detector_ = ScoresDetector(self.source, self.size or defaults.EXTERNAL["scores_size"])
        return self.detector_

    def fit(self, train: LabelledImages, held_out: LabelledImages) -> ExternalEstimator:
        """Nothing to learn; with ``calibrate``, the Platt calibration on the held-out scores."""
        detector = self.detector_ if self.detector_ is not None else self.open()
        detector.calibration = None
        raw = detector.uncalibrated(held_out.images, self.batch_size)
        if self.calibrate:
            detector.calibration = platt(raw, held_out.labels, self.seed)
        self.held_out_scores_ = detector.calibrated(raw)  # the model is not called again
        return self

    def held_out_scores(self, held_out: LabelledImages) -> np.ndarray:
        return self.held_out_scores_

    def training_record(self, split: dict[str, Any]) -> dict[str, Any]:
        detector = self.detector_
        calibration = ("Platt (logistic) on the held-out reals and fakes" if detector.calibration
                       else "none: the threshold applies to the model's own score")
        # what the model was trained on is not known here: no generator is marked seen or unseen
        return {"fake_sources": None, "note": "a model trained elsewhere; only the threshold was fixed here",
                "calibration": calibration, "images_scored": detector.images_scored,
                **{name: split[name] for name in ("val_fraction", "seed", "n_val")}}


def make_external_detector(kind: str, source: str, real: Path | str, out: Path | str, fakes: Sequence[Path | str] = (),
                           fake_label: str | None = None, size: int | None = None, calibrate: bool = False,
                           target_fpr: float = defaults.THRESHOLD["target_fpr"], seed: int = 0,
                           batch_size: int = defaults.EXTERNAL["batch_size"], device: str = "auto",
                           cache_dir: Path | str | None = None, cache: bool = True, n_boot: int = 1000,
                           progress: bool = True) -> tuple[DetectorRun, DetectionReport | None]:
    """A detector folder ``out`` for a model trained elsewhere: no training, only a threshold for
    ``target_fpr`` fixed on the ``real`` images (all of them held out: the model never saw them here).

    ``fakes``, when given, are scored and reported at that threshold (the reals being the ones that fixed
    it, their false-positive rate is the target by construction) and, with ``calibrate``, used with the
    reals for a Platt calibration. They are recorded apart from training corpora: what the model was
    trained on is not known, so evaluations mark no test generator as seen or unseen."""
    fakes = list(fakes)
    if calibrate and not fakes:
        raise UserError("--calibrate needs real and synthetic images to fit on: give --fake too")
    estimator = ExternalEstimator(kind, source, fake_label, size, calibrate, batch_size, seed, device, cache_dir,
                                  cache, progress)
    model = ThresholdedDetector(estimator, target_fpr=target_fpr, val_fraction=1.0, seed=seed)
    check_distinct_corpora(real, fakes)
    check_output_folder(out)
    began = time.perf_counter()
    detector = estimator.open()  # before any image is read: a bad model or path fails fast
    data = load_labelled(real, fakes, size=detector.size, channels=detector.channels, progress=progress)
    if isinstance(detector, ScoresDetector):  # rows for other images (the test ones, say) are simply not used
        detector.bind(data, warn_extra=False)
    model.fit(data, {"real": str(real), "reported_fakes": [str(f) for f in fakes]}, began=began)
    report = None
    if fakes:
        scores = estimator.held_out_scores_
        report = evaluate_scores(data.labels, scores, model.threshold, probs=scores, sources=data.sources,
                                 n_boot=n_boot, seed=seed)
        model.training_["reported"] = {name: report[name] for name in ("ap", "roc_auc", "tpr_at_1pct_fpr")}
        model.training_["reported"]["tpr_at_threshold"] = report["fake_accuracy"]
    model.save(out)
    return DetectorRun.of(model, out), report
