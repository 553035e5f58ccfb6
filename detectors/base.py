"""What every detector kind shares: a folder with ``detector.json`` naming its kind, and an object
that scores image tensors. ``load_detector`` opens any kind, so evaluation and scans need not care."""

from __future__ import annotations

import importlib
import json
import math
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from synthscope.errors import UserError
from synthscope.runtime import read_json

CONFIG_FILE = "detector.json"


class Detector(Protocol):
    """A trained real-vs-fake detector: images in [0, 1] at ``size`` px with ``channels`` channels in,
    P(fake) per image out."""

    size: int
    channels: int

    def score(self, images: torch.Tensor, batch_size: int = 256) -> np.ndarray: ...


# kind -> the module that opens it (imported only when needed: CLIP pulls in open_clip).
# Each module has ``load_saved(directory, config, device) -> Detector``.
KIND_MODULES = {"cnn": "cnn", "clip": "clip", "gan-discriminator": "discriminator"}


class DetectorConfigError(UserError):
    """A ``detector.json`` that is not what ``synthscope detect train`` writes: one line naming the file
    and the field."""


_NUMBER = "a number"
_WHOLE = "a whole number"
_TEXT = "text"
_OBJECT = "an object"

# The fields of ``detector.json`` the code reads, per detector kind, each with what it must hold and
# whether it may be missing (None is allowed where the value is optional).
_COMMON_FIELDS = [("threshold", _NUMBER, True), ("target_fpr", _NUMBER, False),
                  ("threshold_source", _TEXT, False), ("training", _OBJECT, False),
                  ("training_domain", _OBJECT, False), ("model.size", _WHOLE, True),
                  ("model.channels", (1, 3), True)]
_KIND_FIELDS = {
    "cnn": [("model.arch", ("small", "resnet18", "resnet50"), True), ("weights_sha256", _TEXT, False)],
    "clip": [("model.model", _TEXT, True), ("model.pretrained", _TEXT, False),
             ("model.checkpoint", _TEXT, False), ("model.checkpoint_sha256", _TEXT, False),
             ("model.model_id", _TEXT, False), ("model.feature_dim", _WHOLE, True),
             ("model.probe", ("logistic", "knn"), True), ("model.probe_options", _OBJECT, False),
             ("model.feature_cache", _TEXT, False), ("probe_sha256", _TEXT, False)],
    "gan-discriminator": [("model.gan_run", _TEXT, True), ("model.gan_weights_sha256", _TEXT, False)],
}
_KNN_FIELDS = [("model.probe_options.n", _WHOLE, True), ("model.probe_options.k", _WHOLE, True),
               ("model.probe_options.weights", ("uniform", "distance"), False)]


def _field_problem(config: dict[str, Any], name: str, expected: Any, required: bool) -> str | None:
    """What is wrong with one dotted field of a config, or None."""
    value: Any = config
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return f"{name!r} is missing" if required else None
        value = value[part]
    if value is None and not required:
        return None
    if expected == _NUMBER:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif expected == _WHOLE:
        ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    elif expected == _TEXT:
        ok = isinstance(value, str)
    elif expected == _OBJECT:
        ok = isinstance(value, dict)
    else:
        return None if value in expected else (f"{name!r} must be one of {', '.join(map(str, expected))}, "
                                               f"not {value!r}")
    what = "a positive whole number" if expected == _WHOLE else expected
    return None if ok else f"{name!r} must be {what}, not {json.dumps(value)[:40]}"


def check_detector_config(config: Any, path: Path | str) -> dict[str, Any]:
    """``config`` if it holds every field the code reads, of the right type, else one
    :class:`DetectorConfigError` naming ``path`` and the first field that is wrong."""
    def fail(problem: str) -> DetectorConfigError:
        return DetectorConfigError(f"{path}: {problem}; it is not a detector config as 'synthscope detect train' "
                                   f"writes it (train the detector again, or restore the file)")

    if not isinstance(config, dict):
        kind = "a JSON array" if isinstance(config, list) else f"a JSON {type(config).__name__}"
        raise fail(f"holds {kind}, not an object")
    if "model" not in config:
        raise fail("'model' is missing")
    if not isinstance(config["model"], dict):
        raise fail("'model' must be an object")
    kind = config["model"].get("kind")
    if kind not in KIND_MODULES:
        raise fail(f"'model.kind' is {kind!r}; known kinds: {', '.join(KIND_MODULES)}")
    fields = _COMMON_FIELDS + _KIND_FIELDS[kind]
    if kind == "clip" and config["model"].get("probe") == "knn":
        fields = fields + [("model.probe_options", _OBJECT, True), *_KNN_FIELDS]
    for name, expected, required in fields:
        problem = _field_problem(config, name, expected, required)
        if problem:
            raise fail(problem)
    return config


def read_detector_config(directory: Path | str) -> dict[str, Any]:
    """The saved ``detector.json`` of a detector folder, checked field by field: a missing file, or
    one without a field the code reads, is one clear error naming it."""
    directory = Path(directory)
    if not (directory / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{directory}: not a detector folder (no {CONFIG_FILE}); "
                                f"make one with 'synthscope detect train'")
    return check_detector_config(read_json(directory / CONFIG_FILE), directory / CONFIG_FILE)


def _writable_folder(path: Path, what: str) -> None:
    """Create ``path`` (a folder) if needed; a file in the way, or no permission, is a ValueError."""
    for folder in [path, *path.parents]:
        if folder.exists():
            if not folder.is_dir():
                raise UserError(f"{what}: {folder} is a file, not a folder")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise UserError(f"{what}: cannot write in {folder} (permission denied)")
            return


def check_output_folder(out: Path | str, flag: str = "--out") -> Path:
    """Stop before any work when ``out`` cannot become a results folder (it is a file, or lies under one)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{flag} {out}: is a file, not a folder; give a folder for the results")
    _writable_folder(out, f"{flag} {out}")
    return out


def check_output_file(out: Path | str, flag: str = "--out") -> Path:
    """Stop before any work when ``out`` cannot become a file (it is a folder, or lies under a file)."""
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{flag} {out}: is a folder; give the file to write, e.g. {out / 'scores.csv'}")
    _writable_folder(out.parent, f"{flag} {out}")
    return out


def load_detector(directory: Path | str, device: str | torch.device = "cpu") -> tuple[Detector, dict[str, Any]]:
    """Any saved detector and its config (threshold, training record…), whatever its kind."""
    directory = Path(directory)
    config = read_detector_config(directory)  # checked: a known kind and every field its loader reads
    kind = config["model"]["kind"]
    module = importlib.import_module(f"{__package__}.{KIND_MODULES[kind]}")
    return module.load_saved(directory, config, device), config
