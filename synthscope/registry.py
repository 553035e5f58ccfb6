"""Every kind of saved model, by its name: the generators, the quality judge and the detectors.

A kind maps to ``"module:Class"`` and is imported only when that kind is built or loaded, so the names
are known (``synthscope --help``, the check of a saved config) without importing torch. The model
classes never import this module: it imports them, by name.
"""

from __future__ import annotations

import importlib
from typing import Literal

from synthscope.errors import UserError

Family = Literal["generator", "judge", "detector"]

KINDS: dict[str, dict[str, str]] = {
    "generator": {
        "ae": "synthscope.generators.autoencoder:AutoEncoder",
        "vae": "synthscope.generators.autoencoder:VAE",
        "gan": "synthscope.generators.gan:GAN",
        "diffusion": "synthscope.generators.diffusion:Diffusion",
    },
    "judge": {
        "feature-classifier": "synthscope.generators.quality:FeatureClassifier",
    },
    "detector": {
        "cnn": "synthscope.detectors.cnn:CNNDetector",
        "clip": "synthscope.detectors.clip:ClipDetector",
        "gan-discriminator": "synthscope.detectors.discriminator:DiscriminatorDetector",
    },
}


def kind_names(family: Family) -> list[str]:
    """The kinds of one family, in the order they are listed (no model module is imported)."""
    return list(KINDS[family])


def resolve(family: Family, kind: object, where: str = "the config") -> type:
    """The class of a kind; an unknown kind is one error naming ``where`` and the known kinds."""
    table = KINDS[family]
    if not isinstance(kind, str) or kind not in table:
        raise UserError(f"{where}: unknown {family} kind {kind!r}; known: {', '.join(table)}")
    module, _, name = table[kind].partition(":")
    return getattr(importlib.import_module(module), name)
