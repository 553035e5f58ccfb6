"""What every detector kind shares: a folder with ``detector.json`` naming its kind, and an object
that scores image tensors. ``load_detector`` opens any kind, so evaluation and scans need not care."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

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


def read_detector_config(directory: Path | str) -> dict[str, Any]:
    """The saved ``detector.json`` of a detector folder, with a clear error when there is none."""
    directory = Path(directory)
    if not (directory / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{directory}: not a detector folder (no {CONFIG_FILE}); "
                                f"make one with 'synthscope detect train'")
    return read_json(directory / CONFIG_FILE)


def load_detector(directory: Path | str, device: str | torch.device = "cpu") -> tuple[Detector, dict[str, Any]]:
    """Any saved detector and its config (threshold, training record…), whatever its kind."""
    directory = Path(directory)
    config = read_detector_config(directory)
    kind = config.get("model", {}).get("kind")
    if kind not in KIND_MODULES:
        raise ValueError(f"{directory / CONFIG_FILE}: unknown detector kind {kind!r}; "
                         f"known: {', '.join(KIND_MODULES)}")
    module = importlib.import_module(f"{__package__}.{KIND_MODULES[kind]}")
    return module.load_saved(directory, config, device), config
