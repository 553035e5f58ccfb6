"""Labelled images for the detectors: corpora read as images with their label (1 = fake), source and
file; the checks that a real and synthetic corpus make a sound training set; the seeded stratified
split that every detector kind holds its threshold-fixing images out with.

This module owns reading and splitting labelled data only; training lives with each kind
(:mod:`.training`, :mod:`.clip`, :mod:`.discriminator`), decisions in :mod:`.estimator`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from synthscope.errors import UserError


@dataclass
class LabelledImages:
    """Images with their label (1 = fake), source (``real`` or a generator) and file."""

    images: torch.Tensor
    labels: np.ndarray
    sources: list[str]
    files: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> "LabelledImages":
        return LabelledImages(self.images[torch.from_numpy(index)], self.labels[index],
                              [self.sources[i] for i in index], [self.files[i] for i in index])


def load_corpus(path: Path | str, label: int, size: int = 32, channels: int | None = 3,
                progress: bool = True) -> LabelledImages:
    """One corpus (or plain image folder) as labelled images. A fake corpus's source is its
    generator (from its manifest), else its folder name."""
    from synthscope.generators.corpus import read_corpus

    name = Path(path).name
    corpus = read_corpus(path, source="real" if label == 0 else name)
    if len(corpus) == 0:
        raise UserError(f"{path}: the corpus holds no images")
    images = corpus.load_images(size=size, channels=channels, progress=progress)  # may drop unreadable rows, with a warning
    if len(images) == 0:
        raise UserError(f"{path}: none of the {len(corpus.manifest) + len(corpus.skipped)} images it lists "
                         f"could be read")
    sources = ["real"] * len(corpus) if label == 0 else fake_sources(corpus.manifest, name)
    return LabelledImages(images, np.full(len(corpus), label), sources, [str(f) for f in corpus.paths()])


def fake_sources(manifest: pd.DataFrame, name: str) -> list[str]:
    """The source of each row of a synthetic corpus's manifest: its generator, else the corpus's
    folder ``name`` (a row marked "real", "unknown" or nothing)."""
    return [s if s not in ("", "real", "unknown") else name for s in manifest["source"]]


def corpus_fake_sources(path: Path | str) -> list[str]:
    """The distinct sources a synthetic corpus holds, read from its manifest (no image is decoded);
    its folder name when it can no longer be read."""
    from synthscope.generators.corpus import read_corpus

    name = Path(path).name
    try:
        return sorted(set(fake_sources(read_corpus(path, source=name).manifest, name)))
    except (OSError, ValueError):  # moved, deleted or broken since: its name is all that is left
        return [name]


def check_distinct_corpora(real: Path | str | None, fakes: Sequence[Path | str]) -> None:
    """Refuse a folder given twice (as real and as synthetic, or twice as synthetic) or inside another
    one given: its images would be read on both sides, and a detector that learns to tell a folder
    from itself learns nothing."""
    given = ([] if real is None else [("--real", Path(real))]) + [("--fake", Path(f)) for f in fakes]
    resolved = [(flag, path, path.expanduser().resolve()) for flag, path in given]
    for i, (flag_a, path_a, a) in enumerate(resolved):
        for flag_b, path_b, b in resolved[i + 1:]:
            if a == b:
                both = f"as {flag_a} and as {flag_b}" if flag_a != flag_b else f"twice as {flag_a}"
                raise UserError(f"{path_a} is given twice ({both}): a detector needs real and synthetic images "
                                 f"from different folders, each folder once")
            if a in b.parents or b in a.parents:
                inner, outer = ((flag_a, path_a), (flag_b, path_b)) if b in a.parents else ((flag_b, path_b),
                                                                                            (flag_a, path_a))
                raise UserError(f"{inner[1]} ({inner[0]}) lies inside {outer[1]} ({outer[0]}): the same images "
                                 f"could be read on both sides; give folders that do not contain each other")


def check_training_split(data: LabelledImages, train: LabelledImages, held_out: LabelledImages,
                         record: dict | None = None) -> None:
    """A clear error, naming the corpus, when the training part or the held-out part (which fixes the
    threshold) has no real or no synthetic image (too few readable images to split)."""
    record = record or {}
    for label, kind, corpora in ((0, "real", [record.get("real")]), (1, "synthetic", record.get("fakes") or [])):
        total = int((data.labels == label).sum())
        for part, name in ((train, "training set"), (held_out, "held-out set that fixes the threshold")):
            if not (part.labels == label).any():
                where = ", ".join(str(c) for c in corpora if c) or f"the {kind} corpora"
                raise UserError(f"the {name} holds no {kind} images: {where} gave {total} readable {kind} "
                                 f"image{'s' if total != 1 else ''} in all (files that could not be read were "
                                 f"skipped, each with a warning), and a detector needs at least 2: one to train "
                                 f"on and one held out")


def concatenate(parts: Sequence[LabelledImages]) -> LabelledImages:
    return LabelledImages(torch.cat([p.images for p in parts]), np.concatenate([p.labels for p in parts]),
                          sum((p.sources for p in parts), []), sum((p.files for p in parts), []))


def load_labelled(real: Path | str | None, fakes: Sequence[Path | str], size: int = 32,
                  channels: int | None = 3, progress: bool = True) -> LabelledImages:
    """A real corpus and synthetic corpora read as one labelled set (1 = fake)."""
    parts = [] if real is None else [load_corpus(real, 0, size, channels, progress)]
    parts += [load_corpus(fake, 1, size, channels, progress) for fake in fakes]
    if not parts:
        raise UserError("give a real corpus, synthetic corpora, or both")
    return concatenate(parts)


def seen_sources(data: LabelledImages) -> list[str]:
    """The synthetic sources (generators) among ``data``: what a detector trained on it has seen."""
    return sorted({source for source, label in zip(data.sources, data.labels) if label == 1})


def stratified_split(data: LabelledImages, fraction: float, seed: int) -> tuple[LabelledImages, LabelledImages]:
    """A seeded split that keeps every source's share in both parts."""
    rng = np.random.default_rng(seed)
    held = []
    for source in sorted(set(data.sources)):
        index = np.flatnonzero(np.array(data.sources) == source)
        rng.shuffle(index)
        held.extend(index[: max(1, int(round(len(index) * fraction)))])
    held_mask = np.zeros(len(data), dtype=bool)
    held_mask[held] = True
    return data.subset(np.flatnonzero(~held_mask)), data.subset(np.flatnonzero(held_mask))
