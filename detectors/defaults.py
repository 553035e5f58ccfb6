"""The detectors' hyperparameters and their default values, as plain data (no torch).

Each estimator's constructor takes its defaults from here, and ``synthscope detect train`` its option
defaults, so the two cannot drift apart and ``--help`` stays free of torch. What a fitted estimator
was built with is its ``get_params()`` (:mod:`.estimator`); these are only the starting values.
"""

from __future__ import annotations

from typing import Any

ARCHS = ("small", "resnet18", "resnet50")
PROBES = ("logistic", "knn")
KNN_WEIGHTS = ("uniform", "distance")

# The CNN detector (:class:`synthscope.detectors.training.CNNEstimator`).
CNN: dict[str, Any] = {
    "arch": "small", "size": 32, "pretrained": None, "epochs": 30, "batch_size": 64, "lr": 1e-3,
    "p_blur": 0.5, "p_jpeg": 0.5, "blur_sigma": (0.0, 3.0), "jpeg_quality": (30, 100), "patience": 5,
}

# The probe on frozen CLIP features (:class:`synthscope.detectors.clip.ClipEstimator`).
CLIP: dict[str, Any] = {
    "model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k", "checkpoint": None, "probe": "logistic",
    "C": None, "k": 10, "knn_weights": "uniform", "size": 32, "channels": 3, "batch_size": 256,
}

# The threshold every kind fixes on held-out reals (:class:`synthscope.detectors.estimator.ThresholdedDetector`).
# A GAN's discriminator learns nothing from the corpus, so by default all of it calibrates.
THRESHOLD: dict[str, Any] = {"target_fpr": 0.01, "val_fraction": 0.2, "seed": 0}
DISCRIMINATOR_VAL_FRACTION = 1.0

# A model trained elsewhere (:class:`synthscope.detectors.external.ExternalEstimator`): an ``hf`` model reads
# images at its processor's size; a ``python`` callable gets them at ``python_size`` px unless told; a
# ``scores`` CSV needs the images only for the profile scans compare with, read at ``scores_size`` px.
EXTERNAL: dict[str, Any] = {"batch_size": 64, "python_size": 224, "scores_size": 32}
