"""Detectors as estimators, in scikit-learn's manner, and the one place their decision is fixed and saved.

- :class:`DetectorEstimator` is the protocol every kind's trainer follows: hyperparameters are the
  constructor's arguments and nothing else happens there; ``get_params()`` returns them (plain JSON
  data, the single source for the command line's defaults, the lab's settings and the "reuse this
  detector?" fingerprint); ``fit(train, held_out)`` learns and sets ``detector_`` (the saved kind, a
  :class:`~synthscope.detectors.base.SavedDetector`); ``score(images)`` is P(fake) per image.
- :class:`ThresholdedDetector` (compare scikit-learn's ``TunedThresholdClassifierCV``) wraps an estimator,
  or an already fitted detector: it holds a seeded share of the data out, fits the estimator on the
  rest and the threshold on the held-out *real* images only (``threshold_at_fpr``; no test label, and
  no held-out fake, ever moves it). It owns the decision settings of ``detector.json`` (threshold,
  target FPR, where the threshold came from): :class:`DecisionSettings` writes and reads them, once
  for every kind.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from synthscope.errors import UserError
from synthscope.registry import load_detector
from synthscope.runtime import atomic_write_bytes

from .base import Detector
from .data import LabelledImages, check_training_split, seen_sources, stratified_split
from .defaults import THRESHOLD
from .domain import training_profile
from .metrics import threshold_at_fpr

HISTORY_FILE = "history.csv"


class DetectorEstimator:
    """What every detector kind's trainer is: hyperparameters in ``__init__``, ``get_params``,
    ``set_params``, ``fit`` and ``score``.

    Subclasses set ``kind`` (the detector kind of :mod:`synthscope.registry` they make), store each
    constructor argument under its own name, and define :meth:`fit` and :meth:`training_record`.
    """

    kind: ClassVar[str] = ""
    # False for a kind that learns nothing from the data (a GAN's own discriminator): only its
    # threshold is fitted, all data is held out, and the held-out reals stand for its training images.
    learns: ClassVar[bool] = True
    # Parameters that say how a detector is fitted, not what it becomes: left out of its fingerprint.
    runtime_params: ClassVar[tuple[str, ...]] = ("device", "progress")

    detector_: Detector | None = None
    history_: pd.DataFrame | None = None

    @classmethod
    def param_names(cls) -> list[str]:
        """The constructor's arguments, in order (scikit-learn's ``_get_param_names``)."""
        signature = inspect.signature(cls.__init__)
        return [p.name for p in signature.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters as given to the constructor: ``type(self)(**self.get_params())`` is an
        unfitted copy."""
        return {name: getattr(self, name) for name in self.param_names()}

    def set_params(self, **params: Any) -> DetectorEstimator:
        """Change hyperparameters (before :meth:`fit`); an unknown name is an error naming the known ones."""
        known = self.param_names()
        for name, value in params.items():
            if name not in known:
                raise UserError(f"{type(self).__name__} has no parameter {name!r}; known: {', '.join(known)}")
            setattr(self, name, value)
        return self

    def fingerprint_params(self) -> dict[str, Any]:
        """What the fitted detector depends on: the kind and every hyperparameter but the runtime ones."""
        params = {k: v for k, v in self.get_params().items() if k not in self.runtime_params}
        return {"kind": self.kind, **params}

    def fit(self, train: LabelledImages, held_out: LabelledImages) -> DetectorEstimator:
        """Learn from ``train``; ``held_out`` may steer training (early stopping) but never the threshold,
        which :class:`ThresholdedDetector` fixes on its reals. Sets ``detector_`` and ``history_``."""
        raise NotImplementedError

    def score(self, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """P(fake) per image, float64."""
        if self.detector_ is None:
            raise UserError(f"this {self.kind} detector is not fitted yet; call fit first")
        return self.detector_.score(images, batch_size)

    def held_out_scores(self, held_out: LabelledImages) -> np.ndarray:
        """P(fake) of every held-out image (a kind that scored them while fitting may return those)."""
        return self.score(held_out.images)

    def training_record(self, split: dict[str, Any]) -> dict[str, Any]:
        """The kind's part of ``detector.json``'s ``training`` record; ``split`` holds the seed, the sizes
        of the training and held-out parts and the held-out fraction, for the kind to record those it
        always has."""
        raise NotImplementedError


def _learns(estimator: DetectorEstimator | Detector) -> bool:
    """Whether fitting learns from the data; a detector fitted elsewhere only has its threshold fixed."""
    return isinstance(estimator, DetectorEstimator) and estimator.learns


@dataclass(frozen=True)
class DecisionSettings:
    """How a detector decides, as saved in ``detector.json``: "fake" when P(fake) > ``threshold``, a
    threshold fixed for ``target_fpr`` on the held-out reals ``threshold_source`` names."""

    threshold: float
    target_fpr: float | None = None
    threshold_source: str | None = None

    @classmethod
    def held_out(cls, real_scores: np.ndarray, target_fpr: float) -> DecisionSettings:
        """The threshold for ``target_fpr`` on held-out real images' scores (never on test labels)."""
        real_scores = np.asarray(real_scores)
        if len(real_scores) == 0:
            raise UserError("no held-out real images to fix the threshold on")
        return cls(threshold_at_fpr(real_scores, target_fpr), target_fpr,
                   f"{len(real_scores)} held-out real images (no test labels)")

    def to_config(self) -> dict[str, Any]:
        """The entries of ``detector.json`` (the one place they are written)."""
        return {"threshold": self.threshold, "target_fpr": self.target_fpr, "threshold_source": self.threshold_source}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DecisionSettings:
        """Read back from a checked ``detector.json`` (the one place they are read); folders saved before
        the target FPR and its source were recorded have only the threshold."""
        return cls(float(config["threshold"]), config.get("target_fpr"), config.get("threshold_source"))

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """True ("fake") where P(fake) is above the threshold."""
        return np.asarray(scores) > self.threshold


class ThresholdedDetector:
    """A detector with its decision threshold fixed on held-out real images (scikit-learn's
    ``TunedThresholdClassifierCV``, with a false-positive rate as the objective).

    ``estimator`` is a :class:`DetectorEstimator` to fit, or an already fitted detector (anything with
    ``score``) whose threshold alone is fitted. ``fit(data)`` holds a stratified ``val_fraction`` of the
    data out (seeded by ``seed``), fits the estimator on the rest and the threshold on the held-out
    reals (an estimator that learns nothing, or a fitted detector, uses the held-out share alone:
    ``val_fraction=1`` gives it all the data); ``save`` writes the detector folder, ``load`` opens any
    saved one.
    """

    def __init__(self, estimator: DetectorEstimator | Detector, target_fpr: float = THRESHOLD["target_fpr"],
                 val_fraction: float = THRESHOLD["val_fraction"], seed: int = THRESHOLD["seed"]):
        self.estimator, self.target_fpr, self.val_fraction, self.seed = estimator, target_fpr, val_fraction, seed
        self.decision_: DecisionSettings | None = None
        self.training_domain_: dict[str, Any] | None = None
        self.training_: dict[str, Any] = {}
        self.seconds_ = 0.0

    # -- the estimator protocol --------------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Its own parameters and, with ``deep``, the estimator's as ``estimator__<name>`` (scikit-learn's
        spelling); ``estimator`` itself is the object."""
        params = {"estimator": self.estimator, "target_fpr": self.target_fpr, "val_fraction": self.val_fraction,
                  "seed": self.seed}
        if deep and isinstance(self.estimator, DetectorEstimator):
            params.update({f"estimator__{k}": v for k, v in self.estimator.get_params().items()})
        return params

    def set_params(self, **params: Any) -> ThresholdedDetector:
        """Change parameters, the estimator's as ``estimator__<name>``."""
        inner = {k.removeprefix("estimator__"): v for k, v in params.items() if k.startswith("estimator__")}
        for name, value in params.items():
            if name.startswith("estimator__"):
                continue
            if name not in ("estimator", "target_fpr", "val_fraction", "seed"):
                raise UserError(f"ThresholdedDetector has no parameter {name!r}")
            setattr(self, name, value)
        if inner:
            self.estimator.set_params(**inner)
        return self

    def fingerprint_params(self) -> dict[str, Any]:
        """Everything a fitted detector depends on besides its data (plain JSON data, runtime settings
        such as the device left out): what decides whether a saved one may be reused."""
        if not isinstance(self.estimator, DetectorEstimator):
            raise UserError("a detector fitted elsewhere has no parameters to fingerprint")
        return {"estimator": self.estimator.fingerprint_params(), "target_fpr": self.target_fpr,
                "val_fraction": self.val_fraction, "seed": self.seed}

    @property
    def detector(self) -> Detector:
        """The fitted detector (the estimator's, or the one given)."""
        if isinstance(self.estimator, DetectorEstimator):
            if self.estimator.detector_ is None:
                raise UserError(f"this {self.estimator.kind} detector is not fitted yet; call fit first")
            return self.estimator.detector_
        return self.estimator

    @property
    def threshold(self) -> float:
        if self.decision_ is None:
            raise UserError("the threshold is not fitted yet; call fit or fit_threshold first")
        return self.decision_.threshold

    def check_params(self) -> None:
        """Refuse a held-out fraction outside (0, 1] (before any work)."""
        if not 0 < self.val_fraction <= 1:
            raise UserError(f"val_fraction must be in (0, 1], got {self.val_fraction}")

    def split(self, data: LabelledImages,
              record: dict[str, Any] | None = None) -> tuple[LabelledImages, LabelledImages]:
        """The training part and the held-out part (seeded, stratified by source); a kind that learns
        must find real and synthetic images in both (``record`` names the corpora in the error)."""
        if _learns(self.estimator):
            if not (data.labels == 0).any() or not (data.labels == 1).any():
                raise UserError("training needs both real and synthetic images")
            train, held_out = stratified_split(data, self.val_fraction, self.seed)
            check_training_split(data, train, held_out, record)
            return train, held_out
        self.check_params()
        if self.val_fraction == 1:
            return data.subset(np.empty(0, dtype=int)), data
        return stratified_split(data, self.val_fraction, self.seed)

    def fit(self, data: LabelledImages, record: dict[str, Any] | None = None,
            split: tuple[LabelledImages, LabelledImages] | None = None,
            began: float | None = None) -> ThresholdedDetector:
        """Hold out, fit the estimator, fix the threshold on the held-out reals and note what the detector
        was trained on. ``record`` (e.g. the corpora) heads the training record; ``split`` is
        :meth:`split`'s result when the caller made it already; ``began`` when timing started."""
        began = time.perf_counter() if began is None else began
        train, held_out = self.split(data, record) if split is None else split
        estimator = self.estimator
        if isinstance(estimator, DetectorEstimator):
            estimator.fit(train, held_out)
            scores = estimator.held_out_scores(held_out)
        else:
            scores = estimator.score(held_out.images)
        self.fit_threshold(scores[held_out.labels == 0])
        learns = _learns(estimator)
        # what scans compare new images with: the training images, or for a kind that learnt nothing
        # here the reals that fixed its threshold (not fakes that were only reported)
        domain = data if learns else held_out.subset(np.flatnonzero(held_out.labels == 0))
        self.training_domain_ = training_profile(domain.images, domain.files, seed=self.seed)
        self.seconds_ = time.perf_counter() - began
        split_record = {"seed": self.seed, "n_train": len(train), "n_val": len(held_out),
                        "val_fraction": self.val_fraction}
        kind_record = estimator.training_record(split_record) if isinstance(estimator, DetectorEstimator) else {}
        self.training_ = {**(record or {}), "fake_sources": seen_sources(data) if learns else [],
                          **kind_record, "seconds": round(self.seconds_, 1)}
        return self

    def fit_threshold(self, reals: np.ndarray | torch.Tensor,
                      target_fpr: float | None = None) -> ThresholdedDetector:
        """Fix the threshold on held-out real images (a tensor of them) or their scores (an array)."""
        if target_fpr is not None:
            self.target_fpr = target_fpr
        scores = self.score(reals) if isinstance(reals, torch.Tensor) else np.asarray(reals)
        self.decision_ = DecisionSettings.held_out(scores, self.target_fpr)
        return self

    def score(self, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """P(fake) per image (the estimator's, or the fitted detector's, score)."""
        return self.estimator.score(images, batch_size)

    def decide(self, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """True ("fake") per image whose P(fake) is above the threshold."""
        if self.decision_ is None:
            raise UserError("the threshold is not fitted yet; call fit or fit_threshold first")
        return self.decision_.decide(self.score(images, batch_size))

    # -- saving and opening ------------------------------------------------------------------------
    def save(self, out: Path | str) -> None:
        """The detector folder: the kind's files, then ``detector.json`` with the decision settings, the
        training images' profile and the training record, and ``history.csv`` for a kind that trained."""
        if self.decision_ is None:
            raise UserError("the threshold is not fitted yet; call fit or fit_threshold first")
        out = Path(out)
        extra = self.decision_.to_config()
        if self.training_domain_ is not None:
            extra["training_domain"] = self.training_domain_
        if self.training_:
            extra["training"] = self.training_
        self.detector.save(out, extra=extra)
        estimator = self.estimator
        if isinstance(estimator, DetectorEstimator) and estimator.learns and estimator.history_ is not None:
            atomic_write_bytes(out / HISTORY_FILE, estimator.history_.to_csv(index=False).encode())

    @classmethod
    def load(cls, directory: Path | str, device: str | torch.device = "cpu") -> ThresholdedDetector:
        """A saved detector of any kind with its decision settings and training record."""
        detector, config = load_detector(directory, device)
        return cls.from_config(detector, config)

    @classmethod
    def from_config(cls, detector: Detector, config: dict[str, Any]) -> ThresholdedDetector:
        """Wrap a loaded ``detector`` with the settings its ``detector.json`` (``config``) holds."""
        decision = DecisionSettings.from_config(config)
        target_fpr = THRESHOLD["target_fpr"] if decision.target_fpr is None else decision.target_fpr
        model = cls(detector, target_fpr=target_fpr)
        training = config.get("training") or {}
        model.val_fraction = training.get("val_fraction", model.val_fraction)
        model.seed = training.get("seed", model.seed)
        model.decision_, model.training_domain_, model.training_ = decision, config.get("training_domain"), training
        return model
