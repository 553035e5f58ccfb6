"""Quality without downloads: features of a small classifier trained on the real set.

FID needs an ImageNet Inception network; the lab runs offline on 16-32 px digits and portraits, where
Inception features would be meaningless anyway. Instead we train a small multi-head CNN on the *real*
images (one head per vocabulary attribute) and use its penultimate layer as the feature space for

* a Fréchet distance (FID-like; only comparable between runs that use the same classifier, the same
  reference set and the same sample size ``n``),
* precision / recall (Kynkäänniemi et al. 2019) and density / coverage (Naeem et al. 2020),
* prompt adherence of conditional models: the classifier's heads judge whether a sample shows the
  requested attribute value (never more accurately than the judge's own held-out accuracy).

Every score is reported next to reference points: real-vs-real (held-out vs train) and noise-vs-real,
so a number like "FD 22" can be read without knowing the feature space.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import linalg

from synthscope.errors import UserError
from synthscope.grouped import Column, GroupedProportions, Schema
from synthscope.images import to_float
from synthscope.jsondata import json_data
from synthscope.persistence import Persistent
from synthscope.runtime import channels_last, evaluating

from .conditioning import Vocabulary
from .imageset import ImageSet

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
IGNORE = -100  # label of a missing attribute value: no loss, not counted in accuracy


# --------------------------------------------------------------------------------------------------
# The feature classifier
# --------------------------------------------------------------------------------------------------


class FeatureClassifier(nn.Module, Persistent):
    """A small multi-head CNN whose penultimate layer is the feature space for quality metrics.

    Two conv blocks (conv-BN-ReLU-maxpool), adaptive pooling to 4x4 (so the same architecture works
    at any size >= 4 px), a ``feature_dim`` ReLU layer, then one linear head per attribute of the
    vocabulary. Images are (N, C, H, W) floats in [0, 1] with the channel count and size the
    classifier was trained at.

    After training, ``heldout_accuracy`` maps attribute -> accuracy on the held-out split and
    ``heldout_recall`` maps attribute -> value -> recall of that value (how often the judge
    recognises it), both measured on images the classifier never trained on.

    Saved as ``config.json`` (the whole file is its config) and ``model.safetensors``.
    """

    kind: ClassVar[str] = "feature-classifier"
    renamed_kinds: ClassVar[dict[str, str]] = {"synthscope.FeatureClassifier": "feature-classifier"}
    section: ClassVar[str | None] = None
    config_file: ClassVar[str] = CONFIG_NAME
    weights_file: ClassVar[str] = WEIGHTS_NAME
    folder_noun: ClassVar[str] = "judge folder"
    remedy: ClassVar[str] = "expected a folder written by FeatureClassifier.save; delete it to train the judge again"

    def __init__(
        self,
        vocabulary: Vocabulary,
        channels: int,
        size: int,
        feature_dim: int = 128,
        widths: tuple[int, int] = (32, 64),
    ) -> None:
        super().__init__()
        if size < 4:
            raise UserError(f"FeatureClassifier needs images of at least 4 px, got {size}")
        self.vocabulary = vocabulary
        self.channels = int(channels)
        self.size = int(size)
        self.feature_dim = int(feature_dim)
        self.widths = (int(widths[0]), int(widths[1]))
        w1, w2 = self.widths
        self.body = nn.Sequential(
            nn.Conv2d(self.channels, w1, 3, padding=1, bias=False),
            nn.BatchNorm2d(w1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(w1, w2, 3, padding=1, bias=False),
            nn.BatchNorm2d(w2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(w2 * 16, self.feature_dim),
            nn.ReLU(inplace=True),
        )
        # A list in vocabulary order, not a ModuleDict: attribute names need not be valid module names.
        self.heads = nn.ModuleList(nn.Linear(self.feature_dim, k) for k in vocabulary.sizes())
        channels_last(self)  # 0.6x the time of a training step on a CPU (max-pooling above all)
        self.heldout_accuracy: dict[str, float] = {}
        self.heldout_recall: dict[str, dict[str, float]] = {}
        self.train_info: dict = {}

    @property
    def attributes(self) -> list[str]:
        return self.vocabulary.names

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            images = torch.as_tensor(np.asarray(images))
        if images.ndim != 4 or images.shape[1] != self.channels or tuple(images.shape[-2:]) != (
            self.size,
            self.size,
        ):
            raise UserError(
                f"the feature classifier was trained on (N, {self.channels}, {self.size}, {self.size}) "
                f"images, got {tuple(images.shape)}; resize the images or train a classifier at this size"
            )
        return to_float(images)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features of a batch already on the right device (with autograd)."""
        return self.body((x - 0.5) / 0.5)  # centre [0, 1] inputs

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits, one (N, K_attribute) tensor per attribute in vocabulary order."""
        h = self.embed(x)
        return [head(h) for head in self.heads]

    def _batched(self, images: torch.Tensor, batch_size: int, fn) -> list:
        images = self._check(images)
        with evaluating(self):  # BatchNorm running statistics: features must not depend on the batch
            return [fn(images[start : start + batch_size].to(self.device))
                    for start in range(0, images.shape[0], batch_size)]

    def features(self, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """Penultimate-layer features, (N, feature_dim) float64, eval mode, no gradients."""
        chunks = self._batched(images, batch_size, lambda b: self.embed(b).double().cpu().numpy())
        if not chunks:
            return np.zeros((0, self.feature_dim))
        return np.concatenate(chunks)

    def predict(self, images: torch.Tensor, batch_size: int = 256) -> dict[str, tuple[list[str], np.ndarray]]:
        """attribute -> (predicted value per image, class probabilities (N, K) in vocabulary order)."""

        def probs(b: torch.Tensor) -> list[np.ndarray]:
            return [F.softmax(logits, dim=1).double().cpu().numpy() for logits in self(b)]

        chunks = self._batched(images, batch_size, probs)
        result: dict[str, tuple[list[str], np.ndarray]] = {}
        for i, (name, values) in enumerate(self.vocabulary.attributes.items()):
            p = np.concatenate([c[i] for c in chunks]) if chunks else np.zeros((0, len(values)))
            result[name] = ([values[j] for j in p.argmax(axis=1)], p)
        return result

    # -- persistence -------------------------------------------------------------------------------

    def config(self) -> dict:
        """The whole ``config.json``: the architecture and what was measured on held-out images."""
        return {
            "kind": self.kind,
            "vocabulary": self.vocabulary.to_dict(),
            "channels": self.channels,
            "size": self.size,
            "feature_dim": self.feature_dim,
            "widths": list(self.widths),
            "heldout_accuracy": self.heldout_accuracy,
            "heldout_recall": self.heldout_recall,
            "train_info": self.train_info,
        }

    @classmethod
    def from_config(cls, config: dict, *, where: str = "the config", directory: Path | None = None,
                    device: str | torch.device = "cpu", **options) -> FeatureClassifier:
        """An untrained classifier shaped as ``config`` says, with its held-out measurements."""
        try:
            model = cls(Vocabulary.from_dict(config["vocabulary"]), channels=config["channels"], size=config["size"],
                        feature_dim=config["feature_dim"], widths=tuple(config["widths"]))
        except (KeyError, TypeError, AttributeError) as error:
            raise UserError(f"{where}: not a feature-classifier config ({error!r} is missing or malformed); "
                            f"{cls.remedy}") from None
        model.heldout_accuracy = {k: float(v) for k, v in config.get("heldout_accuracy", {}).items()}
        model.heldout_recall = config.get("heldout_recall", {})
        model.train_info = config.get("train_info", {})
        return model


def _is_missing(value) -> bool:
    """None, NaN, pd.NA or the prompt parser's "unspecified": no value for this attribute."""
    if value is None or (isinstance(value, str) and value == "unspecified"):
        return True
    return not isinstance(value, str) and bool(np.ndim(value) == 0 and pd.isna(value))


def _labels(data: ImageSet, vocabulary: Vocabulary) -> torch.Tensor:
    """(N, n_attributes) class ids; IGNORE where a value is missing. Unknown values are an error."""
    columns = []
    for name, values in vocabulary.attributes.items():
        if name not in data.attributes.columns:
            raise UserError(f"{data.name}: vocabulary attribute {name!r} is not an attribute column")
        index = {v: i for i, v in enumerate(values)}
        ids = []
        for raw in data.attributes[name]:
            if _is_missing(raw):
                ids.append(IGNORE)
                continue
            key = str(raw)
            if key not in index:
                raise UserError(f"{data.name}: {name}={key!r} is not in the vocabulary ({', '.join(values)})")
            ids.append(index[key])
        columns.append(ids)
    return torch.tensor(columns, dtype=torch.long).T.reshape(len(data), len(columns))


def _heldout_scores(
    model: FeatureClassifier, images: torch.Tensor, labels: torch.Tensor
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    predictions = model.predict(images)
    accuracy: dict[str, float] = {}
    recall: dict[str, dict[str, float]] = {}
    for i, (name, values) in enumerate(model.vocabulary.attributes.items()):
        truth = labels[:, i].numpy()
        predicted = predictions[name][1].argmax(axis=1)
        valid = truth != IGNORE
        accuracy[name] = float((predicted[valid] == truth[valid]).mean()) if valid.any() else float("nan")
        recall[name] = {}
        for j, value in enumerate(values):
            of_value = truth == j
            if of_value.any():  # values absent from the held-out split get no recall entry
                recall[name][value] = float((predicted[of_value] == j).mean())
    return accuracy, recall


def train_feature_classifier(
    data: ImageSet,
    epochs: int = 15,
    seed: int = 0,
    device: str | torch.device = "cpu",
    heldout_fraction: float = 0.2,
    batch_size: int = 64,
    lr: float = 2e-3,
    feature_dim: int = 128,
    verbose: bool = False,
) -> FeatureClassifier:
    """Train a FeatureClassifier on ``data`` (real images), seeded and deterministic on CPU.

    A seeded ``heldout_fraction`` of ``data`` is kept out of training and used only to measure
    ``heldout_accuracy`` / ``heldout_recall``. Pass the *training* part of your real set here and keep
    your own held-out part for ``evaluate_quality``. The loss is cross-entropy summed over the heads.
    """
    if data.vocabulary is None:
        raise UserError(f"{data.name}: a feature classifier needs labelled data (the set has no vocabulary)")
    if len(data) < 10:
        raise UserError(f"{data.name}: {len(data)} images are too few to train a feature classifier")
    vocabulary = data.vocabulary
    train, heldout = data.split(heldout_fraction=heldout_fraction, seed=seed)
    train_labels, heldout_labels = _labels(train, vocabulary), _labels(heldout, vocabulary)
    x = train.images.float()
    started = time.perf_counter()
    # fork_rng: seed initialisation and shuffling without disturbing the caller's global RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FeatureClassifier(vocabulary, channels=data.channels, size=data.size, feature_dim=feature_dim)
        model.to(device)
        optimiser = torch.optim.Adam(model.parameters(), lr=lr)
        steps_per_epoch = math.ceil(len(train) / batch_size)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=lr, total_steps=max(1, epochs * steps_per_epoch), pct_start=0.2
        )
        generator = torch.Generator().manual_seed(seed)
        model.train()
        for epoch in range(epochs):
            order = torch.randperm(len(train), generator=generator)
            total, count = 0.0, 0
            for start in range(0, len(train), batch_size):
                index = order[start : start + batch_size]
                if len(index) < 2:  # BatchNorm needs more than one sample per batch
                    continue
                xb, yb = x[index].to(device), train_labels[index].to(device)
                loss = torch.zeros((), device=device)
                for i, logits in enumerate(model(xb)):
                    target = yb[:, i]
                    if (target != IGNORE).any():  # an all-missing head would give a NaN mean
                        loss = loss + F.cross_entropy(logits, target, ignore_index=IGNORE)
                if not loss.requires_grad:  # every label in this batch is missing
                    continue
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                schedule.step()
                total += loss.item() * len(index)
                count += len(index)
            if verbose:
                print(f"epoch {epoch + 1}/{epochs}: loss {total / max(count, 1):.4f}")
    model.eval()
    seconds = time.perf_counter() - started
    if len(heldout):
        model.heldout_accuracy, model.heldout_recall = _heldout_scores(model, heldout.images, heldout_labels)
    model.train_info = {
        "data": data.name,
        "n_train": len(train),
        "n_heldout": len(heldout),
        "heldout_fraction": heldout_fraction,
        "epochs": epochs,
        "seed": seed,
        "batch_size": batch_size,
        "lr": lr,
        "train_seconds": round(seconds, 2),
    }
    return model


# --------------------------------------------------------------------------------------------------
# Distances between feature sets
# --------------------------------------------------------------------------------------------------


def _as_features(feats, name: str) -> np.ndarray:
    if isinstance(feats, torch.Tensor):
        feats = feats.detach().cpu().numpy()
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2:
        raise UserError(f"{name}: features must be a 2-D array (N, d), got shape {feats.shape}")
    if not np.isfinite(feats).all():
        raise UserError(f"{name}: features contain NaN or inf")
    return feats


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    # Singular covariances are expected here (dead ReLU units, fewer samples than dimensions); the
    # caller checks the result for finiteness and imaginary parts, so scipy's warning is only noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        return linalg.sqrtm(matrix)


def _trace_sqrt_product_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr sqrt(S1 S2) via the symmetric form sqrt(S1) S2 sqrt(S1): real and stable for PSD inputs."""
    w, v = linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = root1 @ sigma2 @ root1
    return float(np.sqrt(np.clip(linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum())


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (the FID formula).

    ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 sqrt(S_a S_b))``, following the pytorch-fid implementation:
    scipy's ``sqrtm``; if the product is singular and the root is not finite, ``eps * I`` is added to
    both covariances; a numerically complex root keeps its real part. If the imaginary part is large
    (ill-conditioned product), the trace is computed from the symmetric form instead of failing.

    The estimate is biased upwards by finite sample size (more so in high dimensions), so compare
    distances only between sets of the same size.
    """
    a, b = _as_features(feats_a, "feats_a"), _as_features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise UserError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    if len(a) < 2 or len(b) < 2:
        raise UserError(f"need at least 2 samples per set for a covariance, got {len(a)} and {len(b)}")
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    sigma1 = np.atleast_2d(np.cov(a, rowvar=False))
    sigma2 = np.atleast_2d(np.cov(b, rowvar=False))
    diff = mu1 - mu2

    covmean = _sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            tr_covmean = float(np.trace(covmean.real))
        else:
            tr_covmean = _trace_sqrt_product_eigh(sigma1, sigma2)
    else:
        tr_covmean = float(np.trace(covmean))
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)
    # Rounding can leave identical sets at -1e-12; a distance is never negative.
    return max(value, 0.0)


def _distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # scipy's cdist computes sqrt(sum((x - y)^2)) directly: d(x, x) is exactly 0 and d(x, y) is the
    # same number in every call. (sklearn's dot-product trick is off by rounding, which moves points
    # across ball boundaries: identical sets would get a density of 1.06 instead of 1.)
    from scipy.spatial.distance import cdist

    return cdist(x, y)


def _kth_neighbour_radii(feats: np.ndarray, k: int, chunk_size: int) -> np.ndarray:
    """Distance of each point to its k-th nearest neighbour in the same set, the point itself excluded."""
    radii = np.empty(len(feats))
    for start in range(0, len(feats), chunk_size):
        d = _distances(feats[start : start + chunk_size], feats)
        # Index k of the sorted row: index 0 is the point itself at distance 0 (as in prdc).
        radii[start : start + chunk_size] = np.partition(d, k, axis=1)[:, k]
    return radii


def precision_recall_density_coverage(
    real_feats: np.ndarray, fake_feats: np.ndarray, k: int = 5, chunk_size: int = 1024
) -> dict:
    """Precision, recall (Kynkäänniemi et al. 2019), density and coverage (Naeem et al. 2020).

    With B(x, r) the ball around x whose radius r is the distance to x's k-th nearest neighbour in its
    own set (excluding x), and strict inequalities as in the clovaai ``prdc`` reference:

    * precision = share of fakes inside some real ball (fidelity),
    * recall = share of reals inside some fake ball (diversity),
    * density = mean over fakes of (number of real balls containing it) / k (about 1 for matching
      distributions, exactly 1 for identical sets without ties; unbounded above),
    * coverage = share of reals whose ball contains at least one fake.

    Distances are computed in chunks so large sets never need a full N x N matrix in memory.
    """
    real, fake = _as_features(real_feats, "real_feats"), _as_features(fake_feats, "fake_feats")
    if real.shape[1] != fake.shape[1]:
        raise UserError(f"feature dimensions differ: {real.shape[1]} vs {fake.shape[1]}")
    if k < 1 or len(real) <= k or len(fake) <= k:
        raise UserError(f"k={k} needs more than k samples per set, got {len(real)} real and {len(fake)} fake")
    real_radii = _kth_neighbour_radii(real, k, chunk_size)
    fake_radii = _kth_neighbour_radii(fake, k, chunk_size)

    fake_in_real = np.zeros(len(fake), dtype=bool)  # precision
    real_in_fake = np.zeros(len(real), dtype=bool)  # recall
    balls_per_fake = np.zeros(len(fake), dtype=np.int64)  # density
    nearest_fake = np.full(len(real), np.inf)  # coverage
    for start in range(0, len(fake), chunk_size):
        stop = min(start + chunk_size, len(fake))
        d = _distances(real, fake[start:stop])  # (R, chunk)
        inside_real = d < real_radii[:, None]
        fake_in_real[start:stop] = inside_real.any(axis=0)
        balls_per_fake[start:stop] = inside_real.sum(axis=0)
        real_in_fake |= (d < fake_radii[None, start:stop]).any(axis=1)
        nearest_fake = np.minimum(nearest_fake, d.min(axis=1))
    return {
        "precision": float(fake_in_real.mean()),
        "recall": float(real_in_fake.mean()),
        "density": float(balls_per_fake.mean() / k),
        "coverage": float((nearest_fake < real_radii).mean()),
        "k": int(k),
        "n_real": int(len(real)),
        "n_fake": int(len(fake)),
    }


# --------------------------------------------------------------------------------------------------
# A quality report with reference points
# --------------------------------------------------------------------------------------------------


@dataclass
class QualityReport:
    """Fréchet distance and PRDC of generated images against held-out real images, with references.

    Every Fréchet distance uses exactly ``n`` images on both sides (seeded subsamples of the larger
    sets), so ``fd``, ``fd_real_vs_real`` and ``fd_noise`` are comparable with each other:

    * ``fd``: generated vs held-out real,
    * ``fd_real_vs_real``: real training images vs held-out real (what a perfect generator scores),
    * ``fd_noise``: uniform-noise images vs held-out real (what a useless generator scores).

    ``prdc`` is generated vs held-out and ``prdc_real_vs_real`` the same metrics for training vs
    held-out real images, both on the same ``n`` images. Numbers depend on the feature classifier and
    on ``n``; compare runs only when both match.
    """

    fd: float
    fd_real_vs_real: float
    fd_noise: float
    n: int
    prdc: dict
    prdc_real_vs_real: dict
    n_generated: int
    n_heldout: int
    n_train: int
    k: int
    seed: int
    feature_dim: int
    classifier_accuracy: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-serialisable (plain floats and ints; NaN becomes None)."""

        return json_data(asdict(self), nonfinite="null")

    def summary(self) -> str:
        p = self.prdc
        return (
            f"FD {self.fd:.1f} (real vs real {self.fd_real_vs_real:.1f}, noise {self.fd_noise:.1f}; "
            f"n={self.n}) · precision {p['precision']:.2f} recall {p['recall']:.2f} "
            f"density {p['density']:.2f} coverage {p['coverage']:.2f} (k={self.k})"
        )


def _subsample(images: torch.Tensor, n: int, rng: np.random.Generator) -> torch.Tensor:
    """n images without replacement (all of them, in order, when there are exactly n)."""
    if len(images) == n:
        return images
    return images[torch.from_numpy(np.sort(rng.choice(len(images), size=n, replace=False)))]


def evaluate_quality(
    classifier: FeatureClassifier,
    real_heldout: ImageSet,
    real_train: ImageSet,
    generated: torch.Tensor,
    seed: int = 0,
    k: int = 5,
    max_n: int | None = None,
) -> QualityReport:
    """Score ``generated`` images (N, C, H, W in [0, 1]) against held-out real images.

    ``real_heldout`` should be images the classifier never trained on; ``real_train`` gives the
    real-vs-real reference (usually the set the classifier was trained on, so this reference is a
    slightly pessimistic "perfect generator"). All sets are subsampled (seeded) to the same
    ``n = min(len(generated), len(real_heldout), len(real_train), max_n)``, because the Fréchet
    distance and PRDC depend on sample size. Noise is ``n`` uniform random images of the same shape.
    """
    sizes = [len(generated), len(real_heldout), len(real_train)] + ([max_n] if max_n else [])
    n = int(min(sizes))
    if n <= max(k, 2):
        raise UserError(
            f"too few images for a quality estimate: n={n} (generated {len(generated)}, held-out "
            f"{len(real_heldout)}, train {len(real_train)}); need more than k={k}"
        )
    rng = np.random.default_rng(seed)
    heldout = classifier.features(_subsample(real_heldout.images, n, rng))
    train = classifier.features(_subsample(real_train.images, n, rng))
    fake = classifier.features(_subsample(generated, n, rng))
    shape = (n, classifier.channels, classifier.size, classifier.size)
    noise = classifier.features(torch.rand(shape, generator=torch.Generator().manual_seed(seed)))
    return QualityReport(
        fd=frechet_distance(fake, heldout),
        fd_real_vs_real=frechet_distance(train, heldout),
        fd_noise=frechet_distance(noise, heldout),
        n=n,
        prdc=precision_recall_density_coverage(heldout, fake, k=k),
        prdc_real_vs_real=precision_recall_density_coverage(heldout, train, k=k),
        n_generated=int(len(generated)),
        n_heldout=int(len(real_heldout)),
        n_train=int(len(real_train)),
        k=int(k),
        seed=int(seed),
        feature_dim=classifier.feature_dim,
        classifier_accuracy=dict(classifier.heldout_accuracy),
    )


# --------------------------------------------------------------------------------------------------
# Prompt adherence
# --------------------------------------------------------------------------------------------------


# The adherence table's groups, and the judge's validity carried beside each group's counts.
ADHERENCE_KEYS = Schema((Column("attribute", "text", "the attribute a prompt asked for"),
                         Column("requested", "text", "the value it asked for")))
ADHERENCE_COLUMNS = Schema((
    Column("judge_accuracy", "float", "accuracy of the attribute's head on real held-out images"),
    Column("judge_recall", "float", "how often that head recognises the value on real held-out images"),
))


def adherence_table(counts: pd.DataFrame, confidence: float = 0.95) -> GroupedProportions:
    """Prompt adherence from its counts (``attribute``, ``requested``, n, k, judge_accuracy,
    judge_recall; one row per requested value), e.g. read back from a run folder."""
    return GroupedProportions(counts, ADHERENCE_KEYS.names, "adherence", confidence, ADHERENCE_KEYS,
                              ADHERENCE_COLUMNS)


def prompt_adherence(
    classifier: FeatureClassifier,
    images: torch.Tensor,
    requested: list[dict[str, str]],
    confidence: float = 0.95,
) -> GroupedProportions:
    """How often the classifier sees the requested attribute value in each generated image.

    ``requested[i]`` is the ``{attribute: value}`` the prompt of ``images[i]`` asked for (as from
    ``Vocabulary.parse``); attributes a prompt leaves out (or sets to None / "unspecified") are not
    counted for that image (NaN counts as left out too, so ``DataFrame.to_dict("records")`` works).

    Returns a grouped result (see :func:`adherence_table`): ``by_group`` has one row per (attribute,
    requested value), values in the vocabulary's order and only those requested, with n (images that
    requested it), k (judged to match), adherence = k / n and its Wilson interval (adherence_ci_low,
    adherence_ci_high), and the judge's validity on real held-out images: ``judge_accuracy`` (overall
    accuracy of that attribute's head) and ``judge_recall`` (how often it recognises that value).
    ``.overall(["requested"], keep=["judge_accuracy"])`` pools the values: adherence per attribute.
    Adherence cannot be measured more precisely than the judge is accurate.
    """
    if len(requested) != len(images):
        raise UserError(f"{len(images)} images but {len(requested)} requested-attribute dicts")
    vocabulary = classifier.vocabulary
    for i, request in enumerate(requested):
        for attribute, value in request.items():
            if attribute not in vocabulary.attributes:
                raise UserError(
                    f"requested[{i}]: unknown attribute {attribute!r}; the judge knows {', '.join(vocabulary.names)}"
                )
            if not _is_missing(value) and str(value) not in vocabulary.attributes[attribute]:
                raise UserError(f"requested[{i}]: {attribute}={value!r} is not a value the judge knows")
    predictions = classifier.predict(images) if len(images) else {}
    rows = []
    for attribute in vocabulary.names:
        asked = [(i, str(r[attribute])) for i, r in enumerate(requested) if not _is_missing(r.get(attribute))]
        if not asked:
            continue
        predicted = predictions[attribute][0]
        recall = classifier.heldout_recall.get(attribute, {})
        for value in vocabulary.attributes[attribute]:  # vocabulary order, only values requested
            matches = [predicted[i] == value for i, v in asked if v == value]
            if matches:
                rows.append({"attribute": attribute, "requested": value, "n": len(matches), "k": int(sum(matches)),
                             "judge_accuracy": classifier.heldout_accuracy.get(attribute, float("nan")),
                             "judge_recall": recall.get(value, float("nan"))})
    return adherence_table(pd.DataFrame(rows, columns=[*ADHERENCE_KEYS.names, "n", "k", *ADHERENCE_COLUMNS.names]),
                           confidence)
