"""How every model is saved and opened again: a JSON config plus safetensors weights, in one folder.

:class:`Persistent` is the one save/load protocol of the generators, the quality judge and the
detectors. A model class declares its on-disk layout as data (config file, the section of it that
holds the model's own config, weight file, the key its SHA-256 is recorded under) and two methods:
``config()`` (what rebuilds it, as plain JSON data) and ``from_config()`` (an untrained model from
that data). Everything else happens here, once:

- writes are atomic (weights first, then the config naming their hash), and the config records
  ``format_version``; a config from a newer format is refused, one without it is an older one;
- weights are safetensors only (nothing is unpickled) and checked against the recorded SHA-256;
- options added to a class after models were saved are declared on the class
  (``added_config``: the values that reproduce such a model, in the shape of ``config()``) and filled
  in for any saved config that lacks them;
- every problem is one :class:`~synthscope.errors.UserError` (or ``FileNotFoundError``) naming the
  file, the key and the fix.

Which class a saved kind name stands for is :mod:`synthscope.registry`'s business; this module imports
nothing from the subpackages, and the model classes import this module, never the registry.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from synthscope.errors import UserError
from synthscope.runtime import atomic_write_json, load_weights, read_json, save_weights

FORMAT_KEY = "format_version"
# Version 1 is the layout written since models were first saved; a config without the key is one of
# those. Raise it only when a saved config changes in a way older code would misread.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SavedConfig:
    """A saved config read back and checked: its folder, its file, the whole file, and the model's own
    section of it (the whole file when the class keeps no section)."""

    directory: Path
    path: Path
    file: dict[str, Any]
    model: dict[str, Any]


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "text", bool: "true/false", type(None): "null"}
    return names.get(type(value), "a number")


def fill_added(saved: dict[str, Any], added: dict[str, Any]) -> dict[str, Any]:
    """``saved`` with every entry of ``added`` it lacks filled in, nested objects entry by entry; a copy,
    and an entry of the wrong type is left for the class's own check to report."""
    filled = copy.deepcopy(saved)
    for key, value in added.items():
        if key not in filled:
            filled[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(filled[key], dict):
            filled[key] = fill_added(filled[key], value)
    return filled


class Persistent:
    """Save and open a model as ``config_file`` (JSON) plus ``weights_file`` (safetensors).

    Subclasses set ``kind`` and define :meth:`config` and :meth:`from_config`; a family of models
    sharing one folder layout (the generators, the detectors) sets the layout once on its base class.
    """

    kind: ClassVar[str] = ""
    config_file: ClassVar[str] = "config.json"
    # The key of the config file holding ``config()``; None: ``config()`` is the whole file.
    section: ClassVar[str | None] = "model"
    # None: the model keeps no weights of its own (e.g. it points at another saved model).
    weights_file: ClassVar[str | None] = "model.safetensors"
    weights_key: ClassVar[str] = "weights_sha256"
    folder_noun: ClassVar[str] = "model folder"
    # How such a folder is made, said after a problem with one (e.g. "make one with 'synthscope …'").
    remedy: ClassVar[str] = "save the model again"
    # Entries of ``config()`` added after models were first saved, each with the value that reproduces
    # a model saved before it existed (nested like ``config()``).
    added_config: ClassVar[dict[str, Any]] = {}
    # Kind names written by earlier versions -> the kind's name now.
    renamed_kinds: ClassVar[dict[str, str]] = {}

    # -- defined by subclasses ---------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """What rebuilds this model (untrained) through :meth:`from_config`, as plain JSON data."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any], *, where: str = "the config", directory: Path | None = None,
                    device: str | torch.device = "cpu", **options: Any) -> Persistent:
        """A model shaped as ``config`` says, before its weights are loaded; problems name ``where``.
        ``directory`` is the saved folder when there is one (for files kept beside the config)."""
        raise NotImplementedError

    def weights_module(self) -> torch.nn.Module:
        """The module whose state is the weight file (the model itself unless it wraps one)."""
        return self  # type: ignore[return-value]

    def save_files(self, directory: Path) -> None:
        """Write any files kept beside the config and weights (none by default)."""

    @classmethod
    def check_config(cls, config: Any, path: Path) -> dict[str, Any]:
        """The family's check of a config file read back: by default an object with its section."""
        if not isinstance(config, dict):
            raise UserError(f"{path}: holds {_json_type(config)}, not an object; {cls.remedy}")
        if cls.section is not None:
            if cls.section not in config:
                raise UserError(f"{path}: no '{cls.section}' section; {cls.remedy}")
            if not isinstance(config[cls.section], dict):
                raise UserError(f"{path}: the {cls.section} section must be a JSON object, found "
                                f"{type(config[cls.section]).__name__}")
        return config

    @classmethod
    def check_saved(cls, saved: SavedConfig) -> None:
        """The kind's own check of a saved config, before anything is built (none by default)."""

    # -- the protocol ------------------------------------------------------------------------------
    def save(self, directory: Path | str, extra: dict[str, Any] | None = None) -> str | None:
        """Write the weights, any files beside them, then the config (``extra`` entries, ``config()``, the
        weights' SHA-256 and the format version), each atomically; returns the weights' SHA-256."""
        directory = Path(directory)
        payload = dict(extra or {})
        digest = None
        if self.weights_file is not None:
            digest = save_weights(self.weights_module(), directory / self.weights_file)
            payload[self.weights_key] = digest
        self.save_files(directory)
        if self.section is None:
            payload.update(self.config())
        else:
            payload[self.section] = self.config()
        payload[FORMAT_KEY] = FORMAT_VERSION
        atomic_write_json(directory / self.config_file, payload)
        return digest

    @classmethod
    def read_saved(cls, directory: Path | str) -> SavedConfig:
        """The config saved in ``directory``, checked as this class's family writes it."""
        directory = Path(directory)
        path = directory / cls.config_file
        if not path.is_file():
            state = "no such" if not directory.is_dir() else "not a"
            raise FileNotFoundError(f"{directory}: {state} {cls.folder_noun} (no {cls.config_file}); {cls.remedy}")
        config = cls.check_config(read_json(path), path)
        version = config.get(FORMAT_KEY, FORMAT_VERSION)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise UserError(f"{path}: '{FORMAT_KEY}' must be a positive whole number, found {version!r}; "
                            f"{cls.remedy}")
        if version > FORMAT_VERSION:
            raise UserError(f"{path}: saved in format {version}, newer than this synthscope reads "
                            f"({FORMAT_VERSION}); upgrade synthscope")
        model = config if cls.section is None else config[cls.section]
        return SavedConfig(directory, path, config, model)

    @classmethod
    def saved_kind(cls, model_config: dict[str, Any]) -> Any:
        """The kind a saved model config names, under its current name."""
        kind = model_config.get("kind")
        return cls.renamed_kinds.get(kind, kind) if isinstance(kind, str) else kind

    @classmethod
    def load(cls, directory: Path | str, device: str | torch.device = "cpu", **options: Any) -> Persistent:
        """Open a model of this class saved in ``directory`` (safetensors only: no pickled code runs)."""
        saved = cls.read_saved(directory)
        kind = cls.saved_kind(saved.model)
        if kind != cls.kind:
            raise UserError(f"{saved.path}: holds a {kind!r} model, not a {cls.kind!r} one; open it with the "
                            f"loader of its kind (synthscope.registry.load)")
        return cls.from_saved(saved, device, **options)

    @classmethod
    def from_saved(cls, saved: SavedConfig, device: str | torch.device = "cpu", **options: Any) -> Persistent:
        """The one place a saved model is rebuilt: its config (with options added since filled in), then
        its weights, hash-checked, then onto ``device`` in eval mode."""
        cls.check_saved(saved)
        config = fill_added(saved.model, cls.added_config)
        model = cls.from_config(config, where=str(saved.path), directory=saved.directory, device=device, **options)
        if cls.weights_file is not None:
            weights = saved.directory / cls.weights_file
            if not weights.is_file():
                raise FileNotFoundError(f"{weights}: missing weight file (was the save interrupted?); {cls.remedy}")
            load_weights(model.weights_module(), weights, expected_sha256=saved.file.get(cls.weights_key))
        if isinstance(model, torch.nn.Module):
            model = model.to(device).eval()
        return model
