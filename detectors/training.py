"""Training a CNN detector on one real corpus against one or more synthetic corpora (:class:`CNNEstimator`),
with a decision threshold fixed on held-out *real* images only (:class:`.estimator.ThresholdedDetector`),
and scoring labelled images at a threshold."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from synthscope.errors import UserError
from synthscope.runtime import ThreadGovernor, resolve_device, seed_everything

from . import defaults
from .base import Detector, check_output_folder
from .cnn import CNNDetector
from .data import LabelledImages, check_distinct_corpora, load_labelled
from .estimator import DetectorEstimator, ThresholdedDetector
from .metrics import DetectionReport, evaluate_scores
from .perturbations import BlurJpegAugment

@dataclass
class DetectorRun:
    """A trained detector (any kind), its threshold (fixed on held-out reals) and its training record."""

    detector: Detector
    threshold: float
    target_fpr: float
    history: pd.DataFrame
    out: Path
    seconds: float

    @classmethod
    def of(cls, model: ThresholdedDetector, out: Path | str, history: pd.DataFrame | None = None) -> DetectorRun:
        """The run of a fitted (and saved) thresholded detector."""
        estimator = model.estimator
        if history is None:
            history = getattr(estimator, "history_", None)
        return cls(model.detector, model.threshold, model.target_fpr,
                   history if history is not None else pd.DataFrame(), Path(out), model.seconds_)


class CNNEstimator(DetectorEstimator):
    """A CNN detector trained with balanced real/fake batches and blur+JPEG augmentation.

    Each image is blurred with probability ``p_blur`` (sigma drawn from ``blur_sigma``) and
    JPEG-compressed with probability ``p_jpeg`` (quality drawn from ``jpeg_quality``). The held-out
    part's loss drives early stopping (after ``patience`` epochs without improvement; the best epoch's
    weights are kept). Defaults: :data:`synthscope.detectors.defaults.CNN`.
    """

    kind = CNNDetector.kind

    def __init__(self, arch: str = defaults.CNN["arch"], size: int = defaults.CNN["size"],
                 pretrained: str | None = defaults.CNN["pretrained"], epochs: int = defaults.CNN["epochs"],
                 batch_size: int = defaults.CNN["batch_size"], lr: float = defaults.CNN["lr"],
                 p_blur: float = defaults.CNN["p_blur"], p_jpeg: float = defaults.CNN["p_jpeg"],
                 blur_sigma: tuple[float, float] = defaults.CNN["blur_sigma"],
                 jpeg_quality: tuple[int, int] = defaults.CNN["jpeg_quality"], patience: int = defaults.CNN["patience"],
                 seed: int = 0, device: str = "auto", progress: bool = True):
        self.arch, self.size, self.pretrained, self.epochs = arch, size, pretrained, epochs
        self.batch_size, self.lr, self.p_blur, self.p_jpeg = batch_size, lr, p_blur, p_jpeg
        self.blur_sigma, self.jpeg_quality, self.patience = blur_sigma, jpeg_quality, patience
        self.seed, self.device, self.progress = seed, device, progress

    def fit(self, train: LabelledImages, held_out: LabelledImages) -> CNNEstimator:
        """Train on ``train``; ``held_out``'s loss picks the epoch whose weights are kept."""
        seed_everything(self.seed)
        device = resolve_device(self.device)
        detector = CNNDetector(self.arch, channels=train.images.shape[1], size=self.size,
                               pretrained=self.pretrained).to(device)
        optimizer = torch.optim.AdamW(detector.parameters(), lr=self.lr, weight_decay=1e-4)
        augment = BlurJpegAugment(p_blur=self.p_blur, p_jpeg=self.p_jpeg, sigma=self.blur_sigma,
                                  quality=self.jpeg_quality)
        generator = torch.Generator().manual_seed(self.seed)
        real_index = np.flatnonzero(train.labels == 0)
        fake_index = np.flatnonzero(train.labels == 1)
        steps_per_epoch = max(1, len(train) // self.batch_size)
        half = max(1, self.batch_size // 2)

        best_loss, best_state, stale, records = float("inf"), None, 0, []
        bar = tqdm(total=self.epochs * steps_per_epoch, desc=f"train detector ({self.arch})", unit="step",
                   disable=not self.progress)
        governor = ThreadGovernor()  # fewer threads while other jobs share the CPUs, all of them alone
        for epoch in range(1, self.epochs + 1):
            detector.train()
            for _ in range(steps_per_epoch):
                governor.tick()
                # Balanced batches: as many reals as fakes, whatever the corpus sizes.
                pick_real = real_index[torch.randint(len(real_index), (half,), generator=generator).numpy()]
                pick_fake = fake_index[torch.randint(len(fake_index), (half,), generator=generator).numpy()]
                index = torch.from_numpy(np.concatenate([pick_real, pick_fake]))
                images = augment(train.images[index], generator=generator).to(device)
                targets = torch.from_numpy(train.labels[index.numpy()]).float().to(device)
                loss = F.binary_cross_entropy_with_logits(detector(images), targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                bar.update(1)
            val_scores = detector.score(held_out.images)
            val_loss = float(F.binary_cross_entropy(torch.from_numpy(val_scores).clamp(1e-7, 1 - 1e-7),
                                                    torch.from_numpy(held_out.labels).double()))
            records.append({"epoch": epoch, "train_loss": loss.item(), "val_loss": val_loss})
            bar.set_postfix(val_loss=f"{val_loss:.3f}")
            if val_loss < best_loss - 1e-4:
                best_loss, best_state, stale = val_loss, copy.deepcopy(detector.state_dict()), 0
            else:
                stale += 1
                if stale >= self.patience:
                    break
        bar.close()
        detector.load_state_dict(best_state)
        self.detector_, self.history_ = detector.eval(), pd.DataFrame(records)
        self.best_val_loss_, self.augment_ = best_loss, augment
        return self

    def training_record(self, split: dict[str, Any]) -> dict[str, Any]:
        return {"epochs_run": len(self.history_), "best_val_loss": self.best_val_loss_, "batch_size": self.batch_size,
                "lr": self.lr, "patience": self.patience, "p_blur": self.p_blur, "p_jpeg": self.p_jpeg,
                "blur_sigma": list(self.augment_.sigma), "jpeg_quality": list(self.augment_.quality),
                **{name: split[name] for name in ("seed", "n_train", "n_val")}}


def train_detector(real: Path | str, fakes: Sequence[Path | str], out: Path | str, arch: str = "small",
                   size: int = 32, **options: Any) -> DetectorRun:
    """Train a CNN detector on a real corpus against synthetic corpora (see :func:`fit_detector`)."""
    if not fakes:
        raise UserError("give at least one synthetic corpus (--fake)")
    check_distinct_corpora(real, fakes)
    check_output_folder(out)
    data = load_labelled(real, fakes, size=size, progress=options.get("progress", True))
    return fit_detector(data, out, arch=arch, size=size,
                        record={"real": str(real), "fakes": [str(f) for f in fakes]}, **options)


def cnn_model(target_fpr: float = defaults.THRESHOLD["target_fpr"],
              val_fraction: float = defaults.THRESHOLD["val_fraction"], seed: int = 0,
              **params: Any) -> ThresholdedDetector:
    """An unfitted CNN detector with its threshold to fix on held-out reals; ``params`` go to
    :class:`CNNEstimator`."""
    return ThresholdedDetector(CNNEstimator(seed=seed, **params), target_fpr=target_fpr, val_fraction=val_fraction,
                               seed=seed)


def fit_detector(data: LabelledImages, out: Path | str, record: dict | None = None, **params: Any) -> DetectorRun:
    """Train a CNN detector (:class:`CNNEstimator`; ``params`` are its hyperparameters and
    ``target_fpr``, ``val_fraction``, ``seed``) and save it in ``out``.

    A stratified ``val_fraction`` is held out: its loss drives early stopping and its *real* images
    alone fix the decision threshold for ``target_fpr``. ``record`` (e.g. the corpora used) is saved
    with the training settings.
    """
    check_output_folder(out)
    model = cnn_model(**params).fit(data, record)
    model.save(out)
    return DetectorRun.of(model, out)


def score_labelled(detector: Detector, threshold: float, data: LabelledImages, n_boot: int = 1000,
                   seed: int = 0) -> tuple[DetectionReport, pd.DataFrame]:
    """Score labelled images: the metrics at ``threshold`` and one row per image (file, source,
    label, score, decision)."""
    scores = detector.score(data.images)
    report = evaluate_scores(data.labels, scores, threshold, probs=scores, sources=data.sources,
                             n_boot=n_boot, seed=seed)
    table = pd.DataFrame({"file": data.files, "source": data.sources, "label": data.labels, "score": scores,
                          "decision": np.where(scores > threshold, "fake", "real")})
    return report, table

