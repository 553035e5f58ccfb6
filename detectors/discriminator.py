"""A trained GAN's own discriminator as a detector baseline: P(fake) = sigmoid(-D(x)).

The discriminator is used as trained (it learns nothing more here); only the decision threshold is
fixed, on real images the GAN did not see. A conditional GAN's projection discriminator is scored
*without* a condition: every image gets the "unspecified" condition (each attribute's extra null row,
which training fits through attribute dropout), because a detector cannot know the prompt.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from synthscope.errors import UserError
from synthscope.runtime import (
    atomic_write_json,
    resolve_device,
    sha256_file,
)

from .base import CONFIG_FILE, check_output_folder
from .domain import training_profile
from .metrics import threshold_at_fpr
from .training import DetectorRun, load_labelled, stratified_split

KIND = "gan-discriminator"


class DiscriminatorDetector:
    """Scores images with a GAN's discriminator; ``size`` and ``channels`` are the GAN's."""

    def __init__(self, gan: Any, run_dir: Path):
        if getattr(gan, "kind", None) != "gan":
            raise UserError(f"{run_dir}: a {getattr(gan, 'kind', '?')} run has no discriminator; "
                             f"give a run made with 'synthscope generate train --model gan'")
        self.gan, self.run_dir = gan, Path(run_dir)
        self.size, self.channels = int(gan.size), int(gan.channels)

    def logits(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """The discriminator's "real" logit D(x) per image (unconditional for a conditional GAN)."""
        return self.gan.discriminator_logits(images, batch_size).double()

    def score(self, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """P(fake) = sigmoid(-D(x)) per image, float64. Taken from the logit rather than as
        1 - P(real), which rounds confident reals to exact ties at 0 in float32."""
        return torch.sigmoid(-self.logits(images, batch_size)).numpy()


def _weights_path(run_dir: Path) -> Path:
    from synthscope.generators.base import WEIGHTS_FILE

    return run_dir / WEIGHTS_FILE


def open_discriminator(gan_run: Path | str, device: str | torch.device = "cpu",
                       expected_sha256: str | None = None) -> tuple[DiscriminatorDetector, str]:
    """The discriminator of a GAN run folder and the SHA-256 of its weights; with ``expected_sha256``,
    a run that changed since (retrained, resumed) is a clear error rather than a silently other model."""
    from synthscope.generators.registry import load_generator

    run_dir = Path(gan_run).expanduser().absolute()
    weights = _weights_path(run_dir)
    if not weights.is_file():
        raise FileNotFoundError(f"{run_dir}: not a trained GAN run (no {weights.name}); "
                                f"make one with 'synthscope generate train --model gan'")
    digest = sha256_file(weights)
    if expected_sha256 and digest != expected_sha256:
        raise UserError(f"{weights}: the GAN run has changed since this detector was calibrated (sha256 "
                         f"differs); recalibrate the detector on the run as it is now, or restore the run")
    return DiscriminatorDetector(load_generator(run_dir, device=device), run_dir), digest


def make_discriminator_detector(gan_run: Path | str, real_corpus: Path | str, out: Path | str,
                                val_fraction: float = 1.0, target_fpr: float = 0.01, seed: int = 0,
                                batch_size: int = 256, device: str = "auto", progress: bool = True) -> DetectorRun:
    """Turn a GAN run's discriminator into a detector folder ``out``: no training, only a threshold
    for ``target_fpr`` fixed on real images (the "validation reals").

    ``real_corpus`` should hold reals the GAN was *not* trained on: its discriminator has fitted its
    own training images and would look more certain on them. ``val_fraction`` < 1 uses a seeded
    share of the corpus (the rest stays free for testing); by default the whole corpus calibrates.
    """
    if not 0 < val_fraction <= 1:
        raise UserError(f"val_fraction must be in (0, 1], got {val_fraction}")
    check_output_folder(out)
    began = time.perf_counter()
    detector, digest = open_discriminator(gan_run, resolve_device(device))
    reals = load_labelled(real_corpus, [], size=detector.size, channels=detector.channels, progress=progress)
    if val_fraction < 1:
        _, reals = stratified_split(reals, val_fraction, seed)
    scores = detector.score(reals.images, batch_size)
    threshold = threshold_at_fpr(scores, target_fpr)
    seconds = time.perf_counter() - began
    gan_config = detector.gan.config()
    out = Path(out)
    atomic_write_json(out / CONFIG_FILE, {
        "model": {"kind": KIND, "gan_run": str(detector.run_dir), "gan_weights_sha256": digest,
                  "size": detector.size, "channels": detector.channels,
                  "conditional": bool(gan_config["conditional"]),
                  "scoring": "P(fake) = sigmoid(-D(x)); conditional GANs scored with the unspecified condition"},
        "threshold": threshold, "target_fpr": target_fpr,
        "threshold_source": f"{len(reals)} held-out real images (no test labels)",
        # the GAN's own training images are not at hand: the reals that fixed the threshold stand for them
        "training_domain": training_profile(reals.images, reals.files, seed=seed),
        # what a corpus of this GAN's samples is called (its manifest's source): the fakes it learnt from
        "training": {"real": str(real_corpus), "fake_sources": [detector.gan.kind], "val_fraction": val_fraction,
                     "seed": seed, "n_val": len(reals),
                     "note": "the GAN's discriminator is used as trained; only the threshold is fitted here",
                     "seconds": round(seconds, 1)},
    })
    history = pd.DataFrame({"n_val_reals": [len(reals)], "mean_real_score": [float(scores.mean())],
                            "threshold": [threshold]})
    return DetectorRun(detector, threshold, target_fpr, history, out, seconds)


def load_saved(directory: Path, config: dict[str, Any], device: str | torch.device) -> DiscriminatorDetector:
    """Open a saved discriminator detector (the hook ``base.load_detector`` calls for its kind); the GAN
    run must still hold the weights it was calibrated with."""
    spec = config.get("model", {})
    if spec.get("kind") != KIND:
        raise UserError(f"{Path(directory) / CONFIG_FILE}: not a {KIND} detector")
    return open_discriminator(spec["gan_run"], device, expected_sha256=spec.get("gan_weights_sha256"))[0]
