"""Did a generator make something new, or copy a training image? The memorisation check.

For every generated image, its nearest training images are found in two spaces: pixels (a copy is a
copy whatever it shows) and the quality judge's features (a copy shifted by a pixel or re-coloured
is still near there). Each image then gets Carlini et al.'s (2023, "Extracting Training Data from
Diffusion Models") criterion:

    ratio = distance to the nearest training image / mean distance to its ``k`` nearest

An image is flagged as a likely copy when the ratio is below ``threshold``. A dividing mean, not a
fixed distance, is what makes one threshold serve every data set and space: an image that copies one
training image is much nearer to it than to that image's neighbours (ratio near 0), while a new image
lies about as near to several (ratio near 1), however spread the data are.

Defaults, and why: ``k = 50`` and ``threshold = 1/6``, Carlini et al.'s CIFAR-10 setting (their
distance divided by ``alpha = 0.5`` times the mean over the ``n = 50`` nearest, flagged below
``delta = 1/3``: ``1/6`` of the plain mean). A training set of fewer than ``k + 1`` images uses
all of the others (``k = n_train - 1``): a few-dozen-image set is exactly where copies are likely.

Distances are Euclidean on images in [0, 1] (flattened) and on the judge's feature vectors; the
criterion is a ratio, so their scale does not matter. The share of flagged samples comes with a
Wilson interval, per space (a :class:`~synthscope.grouped.GroupedShares`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from synthscope.errors import UserError
from synthscope.grouped import Column, GroupedShares, Schema

DEFAULT_K = 50
DEFAULT_THRESHOLD = 1 / 6
PIXELS, FEATURES = "pixels", "judge features"
FLAGGED, NOT_FLAGGED = "likely copy", "new"
# Sample rows compared with the whole training set at once: bounds memory to CHUNK x n_train floats.
CHUNK = 512


def nearest_training(samples: torch.Tensor | np.ndarray, train: torch.Tensor | np.ndarray,
                     k: int) -> tuple[np.ndarray, np.ndarray]:
    """Distances (N, k), nearest first, and indices (N, k) of each sample's ``k`` nearest training
    rows (Euclidean; samples and training rows flattened to vectors of the same length)."""
    samples, train = torch.as_tensor(samples).float(), torch.as_tensor(train).float()
    samples, train = samples.reshape(len(samples), -1), train.reshape(len(train), -1)
    if samples.shape[1] != train.shape[1]:
        raise UserError(f"generated images have {samples.shape[1]} values each and training images "
                        f"{train.shape[1]}: compare images of the same size and channels")
    if not 1 <= k <= len(train):
        raise UserError(f"k = {k}: must be between 1 and the {len(train)} training images")
    distances, indices = [], []
    for start in range(0, len(samples), CHUNK):
        # Exact differences, not the matrix-product shortcut: a copy must read 0, not about 1e-3.
        block = torch.cdist(samples[start:start + CHUNK], train, compute_mode="donot_use_mm_for_euclid_dist")
        values, where = torch.topk(block, k, dim=1, largest=False, sorted=True)
        distances.append(values.numpy())
        indices.append(where.numpy())
    if not distances:
        return np.zeros((0, k)), np.zeros((0, k), dtype=np.int64)
    return np.concatenate(distances), np.concatenate(indices)


@dataclass
class MemorisationCheck:
    """The check of one set of generated images against one training set.

    ``per_image``: one row per generated image and space: ``sample`` (its index), ``space``,
    ``nearest`` (the training image's index), ``distance``, ``mean_k_distance``, ``ratio``,
    ``flagged``. ``shares``: the share flagged per space, with its Wilson interval.
    """

    per_image: pd.DataFrame
    shares: GroupedShares
    k: int
    threshold: float
    n_train: int

    def flagged_share(self, space: str = PIXELS) -> tuple[float, float, float]:
        """Share of samples flagged in ``space`` and its interval: (share, low, high)."""
        rows = self.shares.by_group
        row = rows[(rows["space"] == space) & (rows["value"] == FLAGGED)].iloc[0]
        return (float(row["share_of_all"]), float(row["share_of_all_ci_low"]),
                float(row["share_of_all_ci_high"]))

    def closest(self, space: str = PIXELS, n: int = 8) -> pd.DataFrame:
        """The ``n`` samples nearest to a training image by the criterion (lowest ratio first)."""
        rows = self.per_image[self.per_image["space"] == space]
        return rows.sort_values(["ratio", "sample"], kind="stable").head(n)

    def describe(self) -> dict[str, Any]:
        """The settings and the flagged share per space, as plain data (for JSON and reports)."""
        shares = {space: dict(zip(("share", "ci_low", "ci_high"), self.flagged_share(space)))
                  for space in self.per_image["space"].unique()}
        return {"k": self.k, "threshold": self.threshold, "n_train": self.n_train,
                "n_samples": int(self.per_image["sample"].nunique()), "flagged": shares,
                "criterion": "distance to the nearest training image / mean distance to the k nearest "
                             "(Carlini et al. 2023), flagged below the threshold"}


SHARE_KEYS = Schema((Column("space", "text", "where distances are measured: pixels or judge features"),))


def check_memorisation(samples: torch.Tensor, train: torch.Tensor, k: int = DEFAULT_K,
                       threshold: float = DEFAULT_THRESHOLD, judge: Any = None,
                       confidence: float = 0.95) -> MemorisationCheck:
    """Check generated ``samples`` (N, C, H, W) in [0, 1] against the ``train`` images they were
    trained on, in pixels and, given a ``judge`` (a FeatureClassifier of this data), in its features."""
    if len(train) < 2:
        raise UserError(f"the training set has {len(train)} image(s); the check needs at least 2")
    if not 0 < threshold < 1:
        raise UserError(f"threshold {threshold}: must lie between 0 and 1 (a ratio of distances)")
    k = min(int(k), len(train) - 1)
    spaces = {PIXELS: (samples, train)}
    if judge is not None:
        spaces[FEATURES] = (judge.features(samples), judge.features(train))
    frames = []
    for space, (generated, training) in spaces.items():
        distances, indices = nearest_training(generated, training, k)
        mean_k = distances.mean(axis=1)
        # An image at distance 0 from k training images that are all identical to it has 0 / 0:
        # it copies them, so it is flagged.
        ratio = np.divide(distances[:, 0], mean_k, out=np.zeros(len(mean_k)), where=mean_k > 0)
        frames.append(pd.DataFrame({
            "sample": np.arange(len(distances)), "space": space, "nearest": indices[:, 0],
            "distance": distances[:, 0], "mean_k_distance": mean_k, "ratio": ratio,
            "flagged": ratio < threshold}))
    per_image = pd.concat(frames, ignore_index=True)
    counts = (per_image.assign(value=np.where(per_image["flagged"], FLAGGED, NOT_FLAGGED))
              .groupby(["space", "value"], sort=False).size().rename("count").reset_index())
    complete = pd.MultiIndex.from_product([list(spaces), [FLAGGED, NOT_FLAGGED]], names=["space", "value"])
    counts = counts.set_index(["space", "value"]).reindex(complete, fill_value=0).reset_index()
    counts["is_abstention"] = False
    shares = GroupedShares(counts, keys=["space"], confidence=confidence, key_schema=SHARE_KEYS)
    return MemorisationCheck(per_image, shares, k, float(threshold), len(train))


def closest_pairs_figure(check: MemorisationCheck, samples: torch.Tensor, train: torch.Tensor,
                         space: str = PIXELS, n: int = 8, title: str | None = None):
    """Generated images (top row) above their nearest training image (bottom row), the likeliest
    copies first; a matplotlib Figure."""
    from .visuals import image_grid

    rows = check.closest(space, n)
    if rows.empty:
        raise UserError("no generated images to show")
    top = samples[torch.tensor(rows["sample"].tolist())]
    bottom = train[torch.tensor(rows["nearest"].tolist())]
    flagged = int(rows["flagged"].sum())
    title = title or (f"Closest pairs in {space}: {flagged} of these {len(rows)} flagged "
                      f"(ratio < {check.threshold:.3g}, k = {check.k})")
    return image_grid(torch.cat([top, bottom]), nrow=len(rows), title=title,
                      row_labels=["generated", "nearest training"])


# -- jobs: a run folder, or any corpus against any training set ------------------------------------

RESULT_FILE = "memorisation.json"
TABLE_FILE = "memorisation.csv"


def training_images_of_run(run_dir: Path | str):
    """The training images of a run folder, as its training split drew them (same data, size, count
    and seed as recorded in its ``config.json``), and that seed."""
    from synthscope.runtime import read_json

    from .data import load_data

    path = Path(run_dir) / "config.json"
    config = read_json(path)
    data = config.get("data") if isinstance(config, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("spec"), str):
        raise UserError(f"{path}: no 'data' record of what the run was trained on; give --train")
    seed = int(config.get("seed", 0))
    train, _ = load_data(data["spec"], size=data.get("size"), n=data.get("n"), seed=seed).split(seed=seed)
    return train, seed


def check_run_samples(run_dir: Path | str, samples: torch.Tensor | None, out: Path | str,
                      judge_dir: Path | str | None = None, k: int = DEFAULT_K, threshold: float = DEFAULT_THRESHOLD,
                      source: str | None = None) -> tuple[MemorisationCheck, dict[str, Path]]:
    """A run's ``samples`` checked against its own training images, in pixels and in the features of
    the judge its evaluation used (trained with the run's seed: found in ``judge_dir``, by default the
    run's own ``judge/``, and reused there); written into ``out``. Returns the check and its figures."""
    from .evaluation import JUDGE_DIR, judge_for

    run_dir = Path(run_dir)
    train, seed = training_images_of_run(run_dir)
    judge = None
    if train.vocabulary is not None:  # a judge learns the data's labels: none for unlabelled folders
        judge = judge_for(Path(judge_dir) if judge_dir is not None else run_dir / JUDGE_DIR, train, seed)
    check = check_memorisation(samples, train.images, k=k, threshold=threshold, judge=judge)
    figures = write_check(check, samples, train.images, out, source=source or str(run_dir))
    return check, figures


def check_run(run_dir: Path | str, out: Path | str, n: int = 500, seed: int = 0, k: int = DEFAULT_K,
              threshold: float = DEFAULT_THRESHOLD, device: str = "cpu") -> MemorisationCheck:
    """Sample ``n`` images from a trained run (``seed``) and check them (:func:`check_run_samples`)."""
    from synthscope.registry import load_generator

    samples = load_generator(run_dir, device=device).sample(n, seed=seed)
    return check_run_samples(run_dir, samples, out, k=k, threshold=threshold)[0]


def check_corpus(corpus: Path | str, train_spec: str, out: Path | str, k: int = DEFAULT_K,
                 threshold: float = DEFAULT_THRESHOLD, seed: int = 0, progress: bool = True) -> MemorisationCheck:
    """Check any corpus (or folder of images) against any training set (``digits``, ``portraits``,
    a folder or a corpus), in pixels; both are compared at the training images' size."""
    from .corpus import read_corpus
    from .data import load_data

    if Path(train_spec).is_dir():
        training = read_corpus(train_spec).load_images(progress=progress)
    else:
        training = load_data(train_spec, seed=seed).images
    samples = read_corpus(corpus).load_images(size=training.shape[-1], channels=training.shape[1],
                                              progress=progress)
    check = check_memorisation(samples, training, k=k, threshold=threshold)
    write_check(check, samples, training, out, source=str(corpus))
    return check


def write_check(check: MemorisationCheck, samples: torch.Tensor, train: torch.Tensor, out: Path | str,
                source: str) -> dict[str, Path]:
    """``memorisation.csv`` (one row per image and space), ``memorisation.json`` (settings and shares)
    and a figure of the closest pairs per space, written atomically into ``out``; returns the
    figures' paths by space."""
    from synthscope.runtime import atomic_write_bytes, atomic_write_json
    from synthscope.tables import spreadsheet_safe

    from .visuals import save_figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / TABLE_FILE, spreadsheet_safe(check.per_image).to_csv(index=False).encode())
    figures = {space: save_figure(closest_pairs_figure(check, samples, train, space=space),
                                  out / f"closest-pairs-{space.replace(' ', '-')}.png")
               for space in check.per_image["space"].unique()}
    atomic_write_json(out / RESULT_FILE, {**check.describe(), "source": source})  # last: marks it done
    return figures


def summary_lines(check: MemorisationCheck) -> list[str]:
    """One plain line per space: how many samples look copied, with the interval."""
    n = int(check.per_image["sample"].nunique())
    lines = []
    for space in check.per_image["space"].unique():
        share, low, high = check.flagged_share(space)
        lines.append(f"{space}: {share:.0%} [{low:.0%}, {high:.0%}] of {n} samples flagged as likely copies "
                     f"(nearest / mean of {check.k} nearest < {check.threshold:.3g})")
    return lines
