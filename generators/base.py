"""What every built-in generator shares: config, conditioning, the sampling API, and the run folder's
layout (``config.json`` with a ``model`` section, ``model.safetensors``) through which generators are
saved and opened (:class:`~synthscope.persistence.Persistent`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from synthscope.errors import UserError
from synthscope.jsondata import json_data
from synthscope.persistence import Persistent
from synthscope.runtime import channels_last, evaluating

from .conditioning import Vocabulary

if TYPE_CHECKING:
    from .imageset import ImageSet

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
SNAPSHOT_IMAGES = 64  # images in a training snapshot of a model that samples (at most)
SNAPSHOT_CLASS_ROWS = 4  # samples of each class in a conditional model's snapshot, one class a column
# Training snapshots a run keeps by default: as many as its progress figure shows side by side, since
# a digits-diffusion snapshot costs as much as 10 training steps.
SNAPSHOTS = 6
TRANSLATION_SNAPSHOTS = 4  # a translation snapshot's rows are wider (input, output, truth)


def null_ids(sizes: list[int], batch: int, device: torch.device | str) -> torch.Tensor:
    """The all-unspecified condition: each attribute's extra, last id."""
    return torch.tensor(sizes, device=device).expand(batch, -1).clone()


class ConditionEmbedding(nn.Module):
    """Embeds a multi-attribute condition (B, A) of class ids into one vector (B, dim).

    Each attribute has its own table with one extra "unspecified" row, and the rows are summed, so
    a prompt may name any subset of attributes ("a photo of a nurse" leaves gender unspecified).
    """

    def __init__(self, sizes: list[int], dim: int):
        super().__init__()
        self.sizes = list(sizes)
        self.tables = nn.ModuleList(nn.Embedding(size + 1, dim) for size in self.sizes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return sum(table(ids[:, i]) for i, table in enumerate(self.tables))

    def null_ids(self, batch: int, device: torch.device) -> torch.Tensor:
        return null_ids(self.sizes, batch, device)

    def drop(self, ids: torch.Tensor, p_attribute: float, p_all: float,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Randomly mark attributes unspecified: teaches partial prompts and the unconditional
        model needed for classifier-free guidance."""
        batch = ids.shape[0]
        null = self.null_ids(batch, ids.device)
        drop_attr = torch.rand(ids.shape, generator=generator, device=ids.device) < p_attribute
        drop_all = torch.rand((batch, 1), generator=generator, device=ids.device) < p_all
        return torch.where(drop_attr | drop_all, null, ids)


class Generator(nn.Module, Persistent):
    """Base class of the built-in generators.

    Subclasses define ``kind``, ``default_config``, ``build`` (the networks), ``make_optimizers``,
    ``training_step`` and ``sample``; images cross the API as float tensors in [0, 1]. An option
    added after models were saved goes into ``added_config`` as ``{"options": {name: value}}``, the
    value that reproduces a model saved before it existed.
    """

    kind: ClassVar[str] = ""
    default_config: ClassVar[dict[str, Any]] = {}
    # The allowed range of each numeric option (inclusive); checked with the option's type before
    # anything is built, so that a bad --set is one clear error, not a traceback mid-training.
    option_ranges: ClassVar[dict[str, tuple[float, float]]] = {}
    config_file: ClassVar[str] = CONFIG_FILE
    weights_file: ClassVar[str] = WEIGHTS_FILE
    folder_noun: ClassVar[str] = "run folder"
    remedy: ClassVar[str] = ("train it with 'synthscope generate train' (a run stopped before its first "
                             "checkpoint has no model yet)")

    def __init__(self, channels: int, size: int, vocabulary: Vocabulary | None = None,
                 conditional: bool = False, **options: Any):
        super().__init__()
        unknown = sorted(set(options) - set(self.default_config))
        if unknown:
            raise UserError(
                f"{self.kind}: unknown option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(self.default_config))}"
            )
        for name, value in options.items():
            self._check_option(name, value)
        if conditional and vocabulary is None:
            raise UserError(f"{self.kind}: --conditional needs a data set with labels (digits, portraits)")
        self.channels = channels
        self.size = size
        self.conditional = conditional
        self.vocabulary = vocabulary if conditional else None
        # Normalised through JSON so that a tuple option equals the list read back from config.json.
        self.options = json_data({**self.default_config, **options})
        self.build()
        channels_last(self)  # every built-in network trains faster so on a CPU

    def _check_option(self, name: str, value: Any) -> None:
        """``value`` has the type of the option's default and lies in its range."""
        default = self.default_config[name]
        where = f"{self.kind}: option {name}={json.dumps(value)}"
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise UserError(f"{where}: expected true or false")
            return
        if isinstance(default, (int, float)):
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not numeric or (isinstance(default, int) and not isinstance(value, int)):
                raise UserError(f"{where}: expected {'a whole number' if isinstance(default, int) else 'a number'}")
            if value != value or value in (float("inf"), float("-inf")):
                raise UserError(f"{where}: expected a finite number")
            low, high = self.option_ranges.get(name, (0, float("inf")))
            if not low <= value <= high:
                raise UserError(f"{where}: must be between {low:g} and {high:g}")
            return
        if isinstance(default, str) and not isinstance(value, str):
            raise UserError(f"{where}: expected text")
        if isinstance(default, list):
            if not isinstance(value, (list, tuple)) or not value or not all(
                    isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise UserError(f"{where}: expected a non-empty list of whole numbers, e.g. [16, 32]")
            low, high = self.option_ranges.get(name, (1, float("inf")))
            if not all(low <= v <= high for v in value):
                raise UserError(f"{where}: every value must be between {low:g} and {high:g}")

    # -- to be defined by subclasses -------------------------------------------------------
    def build(self) -> None:
        raise NotImplementedError

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def training_step(self, images: torch.Tensor, condition: torch.Tensor | None,
                      optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        """One optimisation step on a batch; returns the losses to log."""
        raise NotImplementedError

    def generate(self, n: int, condition: torch.Tensor | None, generator: torch.Generator,
                 **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError

    def finish_training(self, images: torch.Tensor) -> None:
        """Called once training ends, with the training images (e.g. to fit a latent prior)."""

    def snapshot(self, data: ImageSet, seed: int) -> tuple[torch.Tensor, int]:
        """What a training snapshot shows, and how many images a row of its grid holds: samples from
        fixed noise, 8 a row; a conditional model's grid has one column per value of the first
        attribute (each digit), a few samples of it down each column, so that conditioning is visible."""
        if not self.conditional:
            return self.sample(SNAPSHOT_IMAGES, seed=seed + 12345), 8
        columns = self.vocabulary.sizes()[0]
        rows = max(1, min(SNAPSHOT_CLASS_ROWS, SNAPSHOT_IMAGES // columns))
        prompts = self.vocabulary.balanced_prompts(rows * columns)  # cycles through the values: a column each
        return self.sample(len(prompts), prompt=prompts, seed=seed + 12345), columns

    def training_state(self) -> dict[str, torch.Tensor]:
        """What training carries besides weights and optimisers (a CycleGAN's image pools), saved with
        every checkpoint so that a resumed run continues exactly; nothing for most models."""
        return {}

    def load_training_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`training_state` returned (an empty dict from a checkpoint without it)."""

    def sampling_cost(self, n: int) -> float:
        """What drawing ``n`` samples costs, in training steps (one network pass for most models);
        training snapshots are spaced by it so that they never cost more than the training."""
        return 1.0

    # -- shared ------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def config(self) -> dict[str, Any]:
        """The ``model`` section of the run's ``config.json``."""
        return {
            "kind": self.kind,
            "channels": self.channels,
            "size": self.size,
            "conditional": self.conditional,
            "vocabulary": self.vocabulary.to_dict() if self.vocabulary else None,
            "options": self.options,
        }

    def conditions_for(self, n: int, prompt: str | list[str] | None) -> torch.Tensor | None:
        """Class ids for ``n`` samples: one prompt for all, one prompt per sample, or unconditional."""
        if prompt is None:
            return self.null_condition(n) if self.conditional else None
        if not self.conditional:
            raise UserError(
                f"this {self.kind} model was trained without --conditional, so it cannot follow a prompt"
            )
        prompts = [prompt] * n if isinstance(prompt, str) else list(prompt)
        if len(prompts) != n:
            raise UserError(f"got {len(prompts)} prompts for {n} samples")
        return self.vocabulary.encode(prompts).to(self.device)

    def null_condition(self, n: int) -> torch.Tensor:
        return null_ids(self.vocabulary.sizes(), n, self.device)

    def sample(self, n: int, prompt: str | list[str] | None = None, seed: int = 0,
               batch_size: int = 256, **kwargs: Any) -> torch.Tensor:
        """``n`` images (n, C, H, W) in [0, 1] on the CPU; the same seed gives the same images."""
        condition = self.conditions_for(n, prompt)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        chunks = []
        with evaluating(self):
            for start in range(0, n, batch_size):
                stop = min(n, start + batch_size)
                part = None if condition is None else condition[start:stop]
                chunks.append(self.generate(stop - start, part, generator, **kwargs).clamp(0, 1).cpu())
        return torch.cat(chunks) if chunks else torch.empty(0, self.channels, self.size, self.size)

    @classmethod
    def from_config(cls, config: dict[str, Any], *, where: str = "the model config", directory: Path | None = None,
                    device: str | torch.device = "cpu", **options: Any) -> Generator:
        """An untrained generator from the ``model`` section of a run's config. A section read back from
        disk is checked first: a missing key or a wrong type is one error naming ``where``."""
        for key in ("channels", "size"):
            value = config.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"{where}: model.{key} must be a positive whole number, found {value!r}")
        saved_options, vocabulary = config.get("options", {}), config.get("vocabulary")
        if not isinstance(saved_options, dict):
            raise UserError(f"{where}: model.options must be a JSON object, found {type(saved_options).__name__}")
        try:
            vocabulary = Vocabulary.from_dict(vocabulary) if vocabulary else None
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise UserError(f"{where}: model.vocabulary is malformed ({error!r})") from None
        try:
            return cls(channels=config["channels"], size=config["size"], vocabulary=vocabulary,
                       conditional=bool(config.get("conditional", False)), **saved_options)
        except ValueError as error:
            raise UserError(f"{where}: {error}") from None
