"""Tiny open_clip models built from a config, for tests that must not reach a model hub.

``make_tiny_clip(folder)`` registers an architecture with open_clip (as if it shipped with it) and saves
seeded random weights as a local safetensors checkpoint, which loads through the same
``open_clip.create_model(name, pretrained=PATH)`` call as downloaded weights.

Two architectures: ``TINY`` (an image tower for detectors; its 64-token text vocabulary cannot take
real tokenizer output) and ``TINY_TEXT`` (a text tower sized for open_clip's own 49,408-token
SimpleTokenizer, so zero-shot label prompts can be encoded).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import open_clip
import torch
from safetensors.torch import save_file

TINY = "synthscope-test-tiny-clip"
TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}
TINY_TEXT = "synthscope-test-tiny-clip-text"
TINY_TEXT_CONFIG: dict[str, Any] = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}


def make_tiny_clip(folder: Path, name: str = TINY, config: dict[str, Any] | None = None, seed: int = 0) -> Path:
    """Register ``name`` (architecture ``config``, default ``TINY_CONFIG``) with open_clip and save seeded
    random weights as ``folder/open_clip_model.safetensors``; returns that path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(TINY_CONFIG if config is None else config))
    open_clip.add_model_config(folder / f"{name}.json")
    torch.manual_seed(seed)
    model = open_clip.create_model(name)
    path = folder / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path
