"""What every detector kind shares: an object that scores image tensors, and a folder with
``detector.json`` naming its kind (:class:`SavedDetector`, the detectors' layout of the one save/load
protocol, with the check of every field the code reads). ``synthscope.registry.load_detector`` opens
any kind, so evaluation and scans need not care."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from synthscope.errors import UserError
from synthscope.persistence import Persistent, SavedConfig

CONFIG_FILE = "detector.json"


class Detector(Protocol):
    """A trained real-vs-fake detector: images in [0, 1] at ``size`` px with ``channels`` channels in,
    P(fake) per image out."""

    size: int
    channels: int

    def score(self, images: torch.Tensor, batch_size: int = 256) -> np.ndarray: ...


class DetectorConfigError(UserError):
    """A ``detector.json`` that is not what ``synthscope detect train`` writes: one line naming the file
    and the field."""


NUMBER = "a number"
WHOLE = "a whole number"
TEXT = "text"
OBJECT = "an object"
# A field of ``detector.json`` the code reads: its dotted name, what it must hold (one of the kinds
# above, or a tuple of the allowed values) and whether it may be missing (None is allowed where the
# value is optional).
Field = tuple[str, Any, bool]

# The fields every kind has; each kind declares its own (``SavedDetector.config_fields``).
_COMMON_FIELDS: list[Field] = [("threshold", NUMBER, True), ("target_fpr", NUMBER, False),
                               ("threshold_source", TEXT, False), ("training", OBJECT, False),
                               ("training_domain", OBJECT, False), ("model.size", WHOLE, True),
                               ("model.channels", (1, 3), True), ("model.kind", TEXT, True)]


def _field_problem(config: dict[str, Any], name: str, expected: Any, required: bool) -> str | None:
    """What is wrong with one dotted field of a config, or None."""
    value: Any = config
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return f"{name!r} is missing" if required else None
        value = value[part]
    if value is None and not required:
        return None
    if expected == NUMBER:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif expected == WHOLE:
        ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    elif expected == TEXT:
        ok = isinstance(value, str)
    elif expected == OBJECT:
        ok = isinstance(value, dict)
    else:
        return None if value in expected else (f"{name!r} must be one of {', '.join(map(str, expected))}, "
                                               f"not {value!r}")
    what = "a positive whole number" if expected == WHOLE else expected
    return None if ok else f"{name!r} must be {what}, not {json.dumps(value)[:40]}"


def _config_error(path: Path | str, problem: str) -> DetectorConfigError:
    return DetectorConfigError(f"{path}: {problem}; it is not a detector config as 'synthscope detect train' "
                               f"writes it (train the detector again, or restore the file)")


def check_fields(config: dict[str, Any], fields: list[Field], path: Path | str) -> None:
    """One :class:`DetectorConfigError` naming ``path`` and the first of ``fields`` that is wrong."""
    for name, expected, required in fields:
        problem = _field_problem(config, name, expected, required)
        if problem:
            raise _config_error(path, problem)


def check_detector_config(config: Any, path: Path | str) -> dict[str, Any]:
    """``config`` if it holds every field all detector kinds have, of the right type, else one
    :class:`DetectorConfigError` naming ``path`` and the first field that is wrong (the fields of its
    kind are checked by the kind, :meth:`SavedDetector.check_saved`)."""
    if not isinstance(config, dict):
        kind = "a JSON array" if isinstance(config, list) else f"a JSON {type(config).__name__}"
        raise _config_error(path, f"holds {kind}, not an object")
    if "model" not in config:
        raise _config_error(path, "'model' is missing")
    if not isinstance(config["model"], dict):
        raise _config_error(path, "'model' must be an object")
    check_fields(config, _COMMON_FIELDS, path)
    return config


class SavedDetector(Persistent):
    """The detectors' folder layout: ``detector.json`` (decision settings and training record beside
    the ``model`` section) and, for kinds with weights of their own, a safetensors file. Each kind
    declares the ``detector.json`` fields its loader reads (``config_fields``), checked before loading."""

    config_file: ClassVar[str] = CONFIG_FILE
    weights_file: ClassVar[str | None] = None
    folder_noun: ClassVar[str] = "detector folder"
    remedy: ClassVar[str] = "make one with 'synthscope detect train'"
    config_fields: ClassVar[list[Field]] = []

    @classmethod
    def check_config(cls, config: Any, path: Path) -> dict[str, Any]:
        return check_detector_config(config, path)

    @classmethod
    def fields_for(cls, model_config: dict[str, Any]) -> list[Field]:
        """The fields of a saved config of this kind that its loader reads."""
        return cls.config_fields

    @classmethod
    def check_saved(cls, saved: SavedConfig) -> None:
        check_fields(saved.file, cls.fields_for(saved.model), saved.path)


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
