"""Every kind of saved model, by its name, and the one place that builds and opens them: the
generators, the quality judge and the detectors.

A kind maps to ``"module:Class"`` and is imported only when that kind is built or loaded, so the names
are known (``synthscope --help``, the check of a saved config) without importing torch. ``build`` makes
an untrained model from a config, ``load`` opens a saved folder whatever its kind: the family's base
class reads and checks the config (:mod:`synthscope.persistence`), the kind it names picks the class.
The model classes never import this module: it imports them, by name.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from synthscope.errors import UserError

if TYPE_CHECKING:  # the persistence protocol imports torch: not needed to list the kinds
    from synthscope.persistence import Persistent, SavedConfig

Family = Literal["generator", "judge", "detector"]

KINDS: dict[str, dict[str, str]] = {
    "generator": {
        "ae": "synthscope.generators.autoencoder:AutoEncoder",
        "vae": "synthscope.generators.autoencoder:VAE",
        "gan": "synthscope.generators.gan:GAN",
        "diffusion": "synthscope.generators.diffusion:Diffusion",
        "pix2pix": "synthscope.generators.translation:Pix2Pix",
        "cyclegan": "synthscope.generators.translation:CycleGAN",
    },
    "judge": {
        "feature-classifier": "synthscope.generators.quality:FeatureClassifier",
    },
    "detector": {
        "cnn": "synthscope.detectors.cnn:CNNDetector",
        "clip": "synthscope.detectors.clip:ClipDetector",
        "gan-discriminator": "synthscope.detectors.discriminator:DiscriminatorDetector",
        "hf": "synthscope.detectors.external:HFDetector",
        "python": "synthscope.detectors.external:PythonDetector",
        "scores": "synthscope.detectors.external:ScoresDetector",
    },
}


# The base class of each family: it knows the family's folder layout (config file, section) and its
# checks, so a saved folder is read before its kind, and with it its class, is known.
FAMILY_BASES: dict[str, str] = {
    "generator": "synthscope.generators.base:Generator",
    "judge": "synthscope.generators.quality:FeatureClassifier",
    "detector": "synthscope.detectors.base:SavedDetector",
}


def _import(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def kind_names(family: Family) -> list[str]:
    """The kinds of one family, in the order they are listed (no model module is imported)."""
    return list(KINDS[family])


def resolve(family: Family, kind: object, where: str = "the config") -> type:
    """The class of a kind; an unknown kind is one error naming ``where`` and the known kinds."""
    table = KINDS[family]
    if not isinstance(kind, str) or kind not in table:
        raise UserError(f"{where}: unknown {family} kind {kind!r}; known: {', '.join(table)}")
    return _import(table[kind])


def build(family: Family, config: Any, where: str = "the config", **options: Any) -> Persistent:
    """An untrained model of the kind ``config`` names, shaped as it says (e.g. a run's ``model``
    section); problems are one error naming ``where``."""
    if not isinstance(config, dict):
        raise UserError(f"{where}: the model section must be a JSON object, found {type(config).__name__}")
    return resolve(family, config.get("kind"), where).from_config(config, where=where, **options)


def open_saved(family: Family, directory: Path | str) -> SavedConfig:
    """The checked config of a saved folder of ``family`` (nothing is built yet)."""
    return _import(FAMILY_BASES[family]).read_saved(directory)


def load_saved(family: Family, saved: SavedConfig, device: Any = "cpu", **options: Any) -> Persistent:
    """The model a config read by :func:`open_saved` describes, with its weights, on ``device``."""
    base = _import(FAMILY_BASES[family])
    key = "kind" if base.section is None else f"{base.section}.kind"
    cls = resolve(family, base.saved_kind(saved.model), where=f"{saved.path} ('{key}')")
    return cls.from_saved(saved, device, **options)


def load(family: Family, directory: Path | str, device: Any = "cpu", **options: Any) -> Persistent:
    """Open any saved model of ``family`` from its folder, whatever its kind (safetensors only)."""
    return load_saved(family, open_saved(family, directory), device, **options)


def load_generator(directory: Path | str, device: Any = "cpu") -> Any:
    """A trained generator from its run folder."""
    return load("generator", directory, device)


def load_judge(directory: Path | str, device: Any = "cpu") -> Any:
    """A saved quality judge (feature classifier)."""
    return load("judge", directory, device)


def load_detector(directory: Path | str, device: Any = "cpu") -> tuple[Any, dict[str, Any]]:
    """A saved detector and its whole ``detector.json`` (threshold, training record…)."""
    saved = open_saved("detector", directory)
    return load_saved("detector", saved, device), saved.file
