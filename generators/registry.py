"""Model kinds by their CLI name, and the one place that builds or loads a generator from its config.

The model classes never import this module: it imports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from synthscope.errors import UserError
from synthscope.runtime import load_weights, read_json

from .autoencoder import VAE, AutoEncoder
from .base import CONFIG_FILE, WEIGHTS_FILE, Generator
from .conditioning import Vocabulary
from .diffusion import Diffusion
from .gan import GAN

GENERATORS = {cls.kind: cls for cls in (AutoEncoder, VAE, GAN, Diffusion)}


def build_generator(model_config: dict[str, Any], where: str = "the model config") -> Generator:
    """Construct an untrained generator from the ``model`` section of a run's config. A section read
    back from disk is checked first: a missing key or a wrong type is one error naming ``where``."""
    if not isinstance(model_config, dict):
        raise UserError(f"{where}: the model section must be a JSON object, found {type(model_config).__name__}")
    kind = model_config.get("kind")
    if kind not in GENERATORS:
        raise UserError(f"{where}: unknown model kind {kind!r}; known: {', '.join(GENERATORS)}")
    for key in ("channels", "size"):
        value = model_config.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{where}: model.{key} must be a positive whole number, found {value!r}")
    options, vocabulary = model_config.get("options", {}), model_config.get("vocabulary")
    if not isinstance(options, dict):
        raise UserError(f"{where}: model.options must be a JSON object, found {type(options).__name__}")
    try:
        vocabulary = Vocabulary.from_dict(vocabulary) if vocabulary else None
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise UserError(f"{where}: model.vocabulary is malformed ({error!r})") from None
    cls = GENERATORS[kind]
    try:
        return cls(channels=model_config["channels"], size=model_config["size"], vocabulary=vocabulary,
                   conditional=bool(model_config.get("conditional", False)),
                   # A saved config lists every option, so one it lacks predates that option.
                   **{**cls.legacy_options, **options})
    except ValueError as error:
        raise UserError(f"{where}: {error}") from None


def load_generator(directory: Path, device: str | torch.device = "cpu") -> Generator:
    """Load a trained generator from a run folder (safetensors only: no pickled code runs)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such run folder")
    weights = directory / WEIGHTS_FILE
    if not weights.exists():
        raise FileNotFoundError(f"{weights}: missing weight file (was training finished or interrupted "
                                f"before its first checkpoint?)")
    config = read_json(directory / CONFIG_FILE)
    if not isinstance(config, dict) or "model" not in config:
        raise UserError(f"{directory / CONFIG_FILE}: no 'model' section")
    model = build_generator(config["model"], where=str(directory / CONFIG_FILE))
    load_weights(model, weights, expected_sha256=config.get("weights_sha256"))
    return model.to(device).eval()
