"""ImageSet: an in-memory set of images with their ground-truth attributes and captions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from synthscope.errors import UserError

from .conditioning import Vocabulary

# The share of a data set every training run holds out to measure the model on (and the lab's
# lecture figures show): one split, made the same way everywhere from the run's seed.
HELDOUT_FRACTION = 0.2


@dataclass
class ImageSet:
    """Images as a float tensor (N, C, H, W) in [0, 1], one attribute row and caption per image.

    ``vocabulary`` lists the attributes a conditional model may be trained on (columns of
    ``attributes`` with the same names); it is None for sets without usable labels.
    """

    name: str
    images: torch.Tensor
    attributes: pd.DataFrame
    captions: list[str]
    vocabulary: Vocabulary | None = None

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.ndim != 4:
            raise UserError(f"{self.name}: images must be (N, C, H, W), got {tuple(self.images.shape)}")
        if len(self.attributes) != n or len(self.captions) != n:
            raise UserError(
                f"{self.name}: {n} images but {len(self.attributes)} attribute rows "
                f"and {len(self.captions)} captions"
            )
        self.attributes = self.attributes.reset_index(drop=True)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def size(self) -> int:
        return self.images.shape[-1]

    def subset(self, index) -> "ImageSet":
        index = np.asarray(index, dtype=np.int64)
        return ImageSet(
            name=self.name,
            images=self.images[torch.from_numpy(index)],
            attributes=self.attributes.iloc[index].reset_index(drop=True),
            captions=[self.captions[i] for i in index],
            vocabulary=self.vocabulary,
        )

    def split(self, heldout_fraction: float = HELDOUT_FRACTION, seed: int = 0) -> tuple["ImageSet", "ImageSet"]:
        """A seeded random (train, held-out) split; by default the one every training run makes."""
        order = np.random.default_rng(seed).permutation(len(self))
        n_heldout = int(round(len(self) * heldout_fraction))
        return self.subset(order[n_heldout:]), self.subset(order[:n_heldout])

    def condition_ids(self) -> torch.Tensor:
        """Class ids (N, n_attributes) of every image under ``vocabulary``."""
        if self.vocabulary is None:
            raise UserError(f"{self.name} has no labels a conditional model can use")
        columns = self.vocabulary.names
        rows = self.attributes[columns].astype(str).to_dict("records")
        return torch.tensor([self.vocabulary.encode_values(r) for r in rows], dtype=torch.long)
