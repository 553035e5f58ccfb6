"""A trained GAN's own discriminator as a detector baseline: P(fake) = sigmoid(-D(x)).

The discriminator is used as trained (it learns nothing more here); only the decision threshold is
fixed, on real images the GAN did not see. A conditional GAN's projection discriminator is scored
*without* a condition: every image gets the "unspecified" condition (each attribute's extra null row,
which training fits through attribute dropout), because a detector cannot know the prompt.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from synthscope.errors import UserError
from synthscope.generators.base import Generator
from synthscope.generators.gan import GAN
from synthscope.runtime import resolve_device, sha256_file

from . import defaults
from .base import TEXT, Field, SavedDetector, check_output_folder
from .data import LabelledImages, load_labelled
from .estimator import DetectorEstimator, ThresholdedDetector
from .training import DetectorRun

KIND = "gan-discriminator"


def _no_discriminator(run_dir: Path | str, kind: Any) -> UserError:
    return UserError(f"{run_dir}: a {kind} run has no discriminator; "
                     f"give a run made with 'synthscope generate train --model gan'")


class DiscriminatorDetector(SavedDetector):
    """Scores images with a GAN's discriminator; ``size`` and ``channels`` are the GAN's. Saved as a
    ``detector.json`` alone, pointing at the GAN's run folder and the SHA-256 of its weights."""

    kind: ClassVar[str] = KIND
    config_fields: ClassVar[list[Field]] = [("model.gan_run", TEXT, True), ("model.gan_weights_sha256", TEXT, False)]

    def __init__(self, gan: Any, run_dir: Path, gan_weights_sha256: str | None = None):
        if getattr(gan, "kind", None) != GAN.kind:
            raise _no_discriminator(run_dir, getattr(gan, "kind", "?"))
        self.gan, self.run_dir = gan, Path(run_dir)
        self.size, self.channels = int(gan.size), int(gan.channels)
        self.gan_weights_sha256 = gan_weights_sha256

    def config(self) -> dict[str, Any]:
        """The ``model`` section of ``detector.json``: where the GAN is, and which weights it had."""
        return {"kind": KIND, "gan_run": str(self.run_dir), "gan_weights_sha256": self.gan_weights_sha256,
                "size": self.size, "channels": self.channels, "conditional": bool(self.gan.conditional),
                "scoring": "P(fake) = sigmoid(-D(x)); conditional GANs scored with the unspecified condition"}

    @classmethod
    def from_config(cls, config: dict[str, Any], *, where: str = "the config", directory: Path | None = None,
                    device: str | torch.device = "cpu", **options: Any) -> DiscriminatorDetector:
        """Open the GAN run the detector points at; it must still hold the weights it was calibrated with."""
        return open_discriminator(config["gan_run"], device, expected_sha256=config.get("gan_weights_sha256"))[0]

    def logits(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """The discriminator's "real" logit D(x) per image (unconditional for a conditional GAN)."""
        return self.gan.discriminator_logits(images, batch_size).double()

    def score(self, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """P(fake) = sigmoid(-D(x)) per image, float64. Taken from the logit rather than as
        1 - P(real), which rounds confident reals to exact ties at 0 in float32."""
        return torch.sigmoid(-self.logits(images, batch_size)).numpy()


def _weights_path(run_dir: Path) -> Path:
    return run_dir / Generator.weights_file


def open_discriminator(gan_run: Path | str, device: str | torch.device = "cpu",
                       expected_sha256: str | None = None) -> tuple[DiscriminatorDetector, str]:
    """The discriminator of a GAN run folder and the SHA-256 of its weights; with ``expected_sha256``,
    a run that changed since (retrained, resumed) is a clear error rather than a silently other model."""
    run_dir = Path(gan_run).expanduser().absolute()
    weights = _weights_path(run_dir)
    if not weights.is_file():
        raise FileNotFoundError(f"{run_dir}: not a trained GAN run (no {weights.name}); "
                                f"make one with 'synthscope generate train --model gan'")
    digest = sha256_file(weights)
    if expected_sha256 and digest != expected_sha256:
        raise UserError(f"{weights}: the GAN run has changed since this detector was calibrated (sha256 "
                         f"differs); recalibrate the detector on the run as it is now, or restore the run")
    saved = Generator.read_saved(run_dir)
    if Generator.saved_kind(saved.model) != GAN.kind:
        raise _no_discriminator(run_dir, Generator.saved_kind(saved.model))
    return DiscriminatorDetector(GAN.from_saved(saved, device), run_dir, digest), digest


class DiscriminatorEstimator(DetectorEstimator):
    """A GAN run's discriminator as a detector: it learns nothing more (``fit`` only opens it), so the
    thresholded wrapper holds all of its data out, and the reals there fix the threshold."""

    kind = KIND
    learns = False

    def __init__(self, gan_run: Path | str, batch_size: int = 256, device: str | torch.device = "auto",
                 progress: bool = True):
        self.gan_run, self.batch_size, self.device, self.progress = gan_run, batch_size, device, progress

    def open(self) -> DiscriminatorDetector:
        """The discriminator of the GAN run, as it is now (its weights' SHA-256 is recorded)."""
        self.detector_ = open_discriminator(self.gan_run, resolve_device(self.device))[0]
        return self.detector_

    def fit(self, train: LabelledImages, held_out: LabelledImages) -> DiscriminatorEstimator:
        """Nothing to learn: the discriminator is used as trained."""
        if self.detector_ is None:
            self.open()
        return self

    def score(self, images: torch.Tensor, batch_size: int | None = None) -> np.ndarray:
        return super().score(images, self.batch_size if batch_size is None else batch_size)

    def held_out_scores(self, held_out: LabelledImages) -> np.ndarray:
        scores = self.score(held_out.images)
        self.held_out_mean_ = float(scores.mean())
        return scores

    def training_record(self, split: dict[str, Any]) -> dict[str, Any]:
        # what a corpus of this GAN's samples is called (its manifest's source): the fakes it learnt from
        return {"fake_sources": [self.detector_.gan.kind],
                **{name: split[name] for name in ("val_fraction", "seed", "n_val")},
                "note": "the GAN's discriminator is used as trained; only the threshold is fitted here"}


def make_discriminator_detector(gan_run: Path | str, real_corpus: Path | str, out: Path | str,
                                val_fraction: float = defaults.DISCRIMINATOR_VAL_FRACTION, target_fpr: float = 0.01,
                                seed: int = 0, batch_size: int = 256, device: str = "auto",
                                progress: bool = True) -> DetectorRun:
    """Turn a GAN run's discriminator into a detector folder ``out``: no training, only a threshold
    for ``target_fpr`` fixed on real images (the "validation reals").

    ``real_corpus`` should hold reals the GAN was *not* trained on: its discriminator has fitted its
    own training images and would look more certain on them. ``val_fraction`` < 1 uses a seeded
    share of the corpus (the rest stays free for testing); by default the whole corpus calibrates.
    """
    estimator = DiscriminatorEstimator(gan_run, batch_size=batch_size, device=device, progress=progress)
    model = ThresholdedDetector(estimator, target_fpr=target_fpr, val_fraction=val_fraction, seed=seed)
    model.check_params()
    check_output_folder(out)
    began = time.perf_counter()
    detector = estimator.open()
    reals = load_labelled(real_corpus, [], size=detector.size, channels=detector.channels, progress=progress)
    model.fit(reals, {"real": str(real_corpus)}, began=began).save(out)
    n_val = model.training_["n_val"]
    history = pd.DataFrame({"n_val_reals": [n_val], "mean_real_score": [estimator.held_out_mean_],
                            "threshold": [model.threshold]})
    return DetectorRun.of(model, out, history)
