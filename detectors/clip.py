"""CLIP detector in the style of UnivFD (Ojha et al. 2023): a frozen open_clip image encoder and a probe
(logistic regression or k-nearest neighbours) on its L2-normalised image features.

The encoder never trains, so its features are a pure function of (model, image): they are cached on
disk, keyed by the image's pixels and the model's identity, and a second evaluation, another probe or
a re-scan of the same images does not run the encoder again.

Weights come from an open_clip pretrained tag (downloaded once by open_clip into the Hugging Face
cache) or from a local checkpoint file, loaded through the same ``open_clip.create_model(name,
pretrained=...)`` call. Probes are saved as safetensors: nothing is unpickled when a detector loads.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from synthscope.distributed import Shard, current_shard
from synthscope.errors import UserError
from synthscope.runtime import (
    atomic_write_bytes,
    atomic_write_json,
    seed_everything,
    sha256_file,
)

from . import defaults
from .base import OBJECT, TEXT, WHOLE, Field, SavedDetector, check_output_folder
from .data import LabelledImages, check_distinct_corpora, load_labelled
from .defaults import KNN_WEIGHTS, PROBES
from .estimator import DetectorEstimator, ThresholdedDetector
from .training import DetectorRun

PROBE_FILE = "probe.safetensors"
ENCODER_CONFIG_DIR = "open_clip_config"  # the architecture, so a custom model reopens in a new process
DEFAULT_MODEL = defaults.CLIP["model"]
DEFAULT_PRETRAINED = defaults.CLIP["pretrained"]
DEFAULT_CS = (0.01, 0.1, 1.0, 10.0, 100.0)
CACHE_ENV = "SYNTHSCOPE_CACHE"
CACHE_FORMAT = "synthscope-clip-features/1"
# Part of every cache key: a change to how images are prepared must never reuse old features.
PREPROCESSING = "tensor-resize-antialias-clamp/1"


# --------------------------------------------------------------------------- encoder


def default_cache_dir() -> Path:
    """Where features are cached: ``$SYNTHSCOPE_CACHE/clip-features``, else
    ``~/.cache/synthscope/clip-features`` (``$XDG_CACHE_HOME`` is honoured)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser() / "clip-features"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return base / "synthscope" / "clip-features"


def _weights_error(model: str, pretrained: str | None, checkpoint: str | None, error: Exception) -> ValueError:
    reason = " ".join(str(error).split())[:300] or type(error).__name__  # one line, however long the original
    if checkpoint is not None:
        return ValueError(f"CLIP checkpoint {checkpoint} could not be loaded as open_clip model {model!r} ({reason}). "
                          f"Check that the file is a state dict of that architecture (--clip-model)")
    return ValueError(
        f"CLIP weights {model}/{pretrained} could not be loaded ({reason}). Without network access, either "
        f"download them once where there is network (open_clip keeps them in the Hugging Face cache, $HF_HOME) "
        f"and set HF_HUB_OFFLINE=1 here, or put the checkpoint file on this machine and pass its path "
        f"(--clip-checkpoint PATH)")


class ClipEncoder:
    """A frozen open_clip image encoder with its own tensor preprocessing.

    ``checkpoint`` (a local file) replaces the ``pretrained`` tag when given; both go through
    ``open_clip.create_model(model, pretrained=...)``. ``expected_checkpoint_sha256`` makes a changed
    file an error (a saved probe only fits the features of the weights it was trained on).
    """

    def __init__(self, model: str = DEFAULT_MODEL, pretrained: str | None = DEFAULT_PRETRAINED,
                 checkpoint: Path | str | None = None, device: str | torch.device = "cpu",
                 expected_checkpoint_sha256: str | None = None):
        import open_clip

        model = model.replace("/", "-")  # open_clip's own spelling: ViT-B/32 is ViT-B-32
        if ":" in model:  # hf-hub:… / local-dir:… schemas carry no stable identity here
            raise UserError(f"CLIP model {model!r}: give an open_clip model name (e.g. {DEFAULT_MODEL}) with "
                             f"--clip-pretrained TAG or --clip-checkpoint FILE, not a hub/local-dir schema")
        architecture = open_clip.get_model_config(model)
        if architecture is None:
            raise UserError(f"unknown open_clip model {model!r}; see open_clip.list_models() "
                             f"(e.g. {DEFAULT_MODEL}, ViT-B-16, ViT-L-14)")
        self.checkpoint_sha256 = None
        if checkpoint is not None:
            checkpoint, pretrained = str(Path(checkpoint).expanduser().absolute()), None
            if not Path(checkpoint).is_file():
                raise UserError(f"CLIP checkpoint {checkpoint}: no such file; put the open_clip checkpoint of "
                                 f"{model} (.safetensors, .bin or .pt) on this machine and pass its path "
                                 f"(--clip-checkpoint PATH), or give a pretrained tag (--clip-pretrained)")
            self.checkpoint_sha256 = sha256_file(checkpoint)
            if expected_checkpoint_sha256 and self.checkpoint_sha256 != expected_checkpoint_sha256:
                raise UserError(f"CLIP checkpoint {checkpoint} has changed since the detector was trained "
                                 f"(sha256 differs); restore that file or retrain the detector")
            identity = f"open_clip:{model}:sha256={self.checkpoint_sha256}"
        elif pretrained:
            tags = open_clip.list_pretrained_tags_by_model(model)
            if pretrained not in tags:
                raise UserError(f"unknown pretrained tag {pretrained!r} for CLIP model {model}; known tags: "
                                 f"{', '.join(tags) or 'none'}; or pass a local file with --clip-checkpoint")
            identity = f"open_clip:{model}:{pretrained}"
        else:
            # Randomly initialised features would differ between runs and mean nothing.
            raise UserError(f"CLIP model {model}: give a pretrained tag (--clip-pretrained) or a local "
                             f"checkpoint file (--clip-checkpoint)")
        try:
            network = open_clip.create_model(model, pretrained=checkpoint or pretrained, device=device)
        except Exception as error:  # noqa: BLE001 (downloads, file formats and state dicts all fail differently)
            raise _weights_error(model, pretrained, checkpoint, error) from None

        self.model, self.pretrained, self.checkpoint = model, pretrained, checkpoint
        self.architecture = architecture
        self.feature_dim = int(architecture["embed_dim"])
        self.network = network.eval().requires_grad_(False)
        self.device = torch.device(device)
        cfg = network.visual.preprocess_cfg  # the tag's mean/std when it has its own, else OpenAI's
        size = cfg["size"]
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))
        self.interpolation = "bicubic" if cfg.get("interpolation", "bicubic") == "bicubic" else "bilinear"
        self.mean = torch.tensor(cfg["mean"], dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(cfg["std"], dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        preprocessing = (f"{PREPROCESSING};size={self.image_size};{self.interpolation};"
                         f"mean={tuple(cfg['mean'])};std={tuple(cfg['std'])}")
        digest = hashlib.sha256(f"{identity}|{preprocessing}".encode()).hexdigest()[:16]
        readable = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{model}-{pretrained or 'checkpoint'}")
        self.identity = identity
        self.model_id = f"{readable}-{digest}"  # the cache folder: readable, and unique per model
        self.images_encoded = 0  # how often the network actually ran, per image (the cache's proof)

    def spec(self) -> dict[str, Any]:
        """How to open this encoder again (the ``model`` section of ``detector.json``)."""
        return {"model": self.model, "pretrained": self.pretrained, "checkpoint": self.checkpoint,
                "checkpoint_sha256": self.checkpoint_sha256, "model_id": self.model_id,
                "feature_dim": self.feature_dim, "encoder_image_size": list(self.image_size)}

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] (any size, 1 or 3 channels) as the encoder's normalised RGB input."""
        images = images.to(self.device, torch.float32)
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        if tuple(images.shape[-2:]) != self.image_size:
            images = F.interpolate(images, size=self.image_size, mode=self.interpolation, align_corners=False,
                                   antialias=True).clamp(0, 1)  # bicubic overshoots the range
        return (images - self.mean) / self.std

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised image features (N, feature_dim), float32 on the CPU; one forward pass."""
        with torch.inference_mode():
            features = self.network.encode_image(self.preprocess(images), normalize=True)
        self.images_encoded += len(images)
        return features.float().cpu()

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised text features (N, feature_dim), float32 on the CPU, tokenized with the model's own
        open_clip tokenizer (for zero-shot label prompts)."""
        import open_clip

        tokens = open_clip.get_tokenizer(self.model)(list(texts)).to(self.device)
        with torch.inference_mode():
            features = self.network.encode_text(tokens, normalize=True)
        return features.float().cpu()


# --------------------------------------------------------------------------- feature cache


def image_keys(images: torch.Tensor) -> list[bytes]:
    """One SHA-256 per image, of its shape and float32 pixels: equal pixels, equal key."""
    array = images.detach().to("cpu", torch.float32).contiguous().numpy()
    shape = "x".join(map(str, array.shape[1:])).encode()
    return [hashlib.sha256(shape + b"|" + image.tobytes()).digest() for image in array]


def _shard_digest(keys: torch.Tensor, features: torch.Tensor) -> str:
    return hashlib.sha256(keys.numpy().tobytes() + features.numpy().tobytes()).hexdigest()


class FeatureCache:
    """Features of one encoder on disk: ``root/<model_id>/<hash>.safetensors`` shards, each holding the
    image keys and their features with a checksum. Shards are written atomically; a corrupt or
    partial one is ignored (and removed), so its images are simply encoded again."""

    def __init__(self, root: Path | str, model_id: str):
        self.folder = Path(root).expanduser() / model_id
        self.model_id = model_id
        self.hits = 0
        self.misses = 0
        self._index: dict[bytes, tuple[str, int]] = {}
        self._read: set[str] = set()

    def _drop(self, shard: str, error: Exception | str) -> None:
        self._index = {k: v for k, v in self._index.items() if v[0] != shard}
        self._read.discard(shard)
        warnings.warn(f"{self.folder / shard}: unreadable feature-cache shard ({error}); "
                      f"ignoring it and encoding those images again", stacklevel=3)
        (self.folder / shard).unlink(missing_ok=True)

    def _refresh(self) -> None:
        """Index the shards written since the last look (by this or another process)."""
        from safetensors import SafetensorError, safe_open

        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob("*.safetensors")):
            if path.name in self._read:
                continue
            self._read.add(path.name)
            try:
                with safe_open(str(path), framework="pt") as handle:
                    if (handle.metadata() or {}).get("model_id") != self.model_id:
                        raise UserError("written for another model")
                    keys = handle.get_tensor("keys").numpy()
            except (OSError, ValueError, KeyError, SafetensorError) as error:  # an unreadable shard is a cache miss
                self._drop(path.name, error)
                continue
            for row, key in enumerate(keys):
                self._index[key.tobytes()] = (path.name, row)

    def lookup(self, keys: Sequence[bytes]) -> dict[bytes, torch.Tensor]:
        """The cached features of those ``keys`` that are cached (verified against their checksum)."""
        from safetensors import SafetensorError, safe_open

        self._refresh()
        by_shard: dict[str, list[bytes]] = {}
        for key in dict.fromkeys(keys):
            if key in self._index:
                by_shard.setdefault(self._index[key][0], []).append(key)
        found: dict[bytes, torch.Tensor] = {}
        for shard, wanted in by_shard.items():
            try:
                with safe_open(str(self.folder / shard), framework="pt") as handle:
                    expected = (handle.metadata() or {}).get("sha256")
                    shard_keys, features = handle.get_tensor("keys"), handle.get_tensor("features")
                if _shard_digest(shard_keys, features) != expected:
                    raise UserError("checksum mismatch")
            except (OSError, ValueError, KeyError, SafetensorError) as error:  # changed since indexed: recompute
                self._drop(shard, error)
                continue
            for key in wanted:
                found[key] = features[self._index[key][1]]
        return found

    def store(self, keys: Sequence[bytes], features: torch.Tensor) -> None:
        """Add one batch of features as a new shard."""
        from safetensors.torch import save

        key_tensor = torch.from_numpy(np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32).copy())
        features = features.detach().to("cpu", torch.float32).contiguous()
        digest = _shard_digest(key_tensor, features)
        name = f"{hashlib.sha256(b''.join(keys)).hexdigest()[:32]}.safetensors"
        data = save({"keys": key_tensor, "features": features},
                    metadata={"format": CACHE_FORMAT, "model_id": self.model_id, "sha256": digest})
        atomic_write_bytes(self.folder / name, data, sync_dir=False)  # a lost shard is only recomputed
        self._read.add(name)
        for row, key in enumerate(keys):
            self._index[key] = (name, row)


# --------------------------------------------------------------------------- probes


def _as_numpy(features: torch.Tensor | np.ndarray) -> np.ndarray:
    return features.numpy() if isinstance(features, torch.Tensor) else np.asarray(features)


class LogisticProbe(nn.Module):
    """Logistic regression on the features; its weights are plain tensors (safetensors, no pickle)."""

    kind = "logistic"

    def __init__(self, feature_dim: int):
        super().__init__()
        self.register_buffer("coef", torch.zeros(feature_dim, dtype=torch.float64))
        self.register_buffer("intercept", torch.zeros(1, dtype=torch.float64))
        self.options: dict[str, Any] = {}

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, C: float | None = None,
            seed: int = 0) -> tuple[LogisticProbe, pd.DataFrame]:
        """Fit with balanced class weights. ``C=None`` picks C from ``DEFAULT_CS`` by cross-validated
        log-loss on the training features alone, so the held-out split stays untouched for the
        threshold. Returns the probe and the C search as a table."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GridSearchCV, StratifiedKFold

        base = LogisticRegression(class_weight="balanced", max_iter=5000)
        folds = min(5, int(np.bincount(labels, minlength=2).min()))
        if C is None and folds >= 2:
            search = GridSearchCV(base, {"C": list(DEFAULT_CS)}, scoring="neg_log_loss",
                                  cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
            search.fit(features, labels)
            fitted, C = search.best_estimator_, float(search.best_params_["C"])
            history = pd.DataFrame({"C": list(DEFAULT_CS), "cv_log_loss": -search.cv_results_["mean_test_score"]})
        else:
            C = 1.0 if C is None else float(C)  # too few images per class to cross-validate
            fitted = base.set_params(C=C).fit(features, labels)
            history = pd.DataFrame({"C": [C], "cv_log_loss": [np.nan]})
        probe = cls(features.shape[1])
        probe.coef.copy_(torch.from_numpy(fitted.coef_[0].astype(np.float64)))
        probe.intercept.copy_(torch.from_numpy(fitted.intercept_.astype(np.float64)))
        probe.options = {"C": C}
        return probe, history

    def predict(self, features: torch.Tensor | np.ndarray) -> np.ndarray:
        """P(fake) per feature row, float64."""
        from scipy.special import expit

        # A row-wise sum, not a matrix product: BLAS may round a row differently depending on its
        # neighbours, and an image's score should not depend on the batch it came in.
        logits = (_as_numpy(features).astype(np.float64) * self.coef.numpy()).sum(axis=1) + float(self.intercept[0])
        return expit(logits)


class KNNProbe(nn.Module):
    """k-nearest neighbours by cosine distance among the stored training features; P(fake) is the
    (optionally distance-weighted) share of fake neighbours. The stored features and labels are the
    whole model, kept as tensors."""

    kind = "knn"

    def __init__(self, n: int, feature_dim: int, k: int = 10, weights: str = "uniform"):
        super().__init__()
        if weights not in KNN_WEIGHTS:
            raise UserError(f"k-NN weights must be one of {', '.join(KNN_WEIGHTS)}, got {weights!r}")
        self.register_buffer("features", torch.zeros(n, feature_dim, dtype=torch.float32))
        self.register_buffer("labels", torch.zeros(n, dtype=torch.int64))
        self.k, self.weights = int(k), weights
        self.options: dict[str, Any] = {"k": self.k, "weights": weights, "n": n}
        self._classifier = None

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, k: int = 10,
            weights: str = "uniform") -> tuple[KNNProbe, pd.DataFrame]:
        """Store the training features; ``k`` may not exceed their number."""
        if not 1 <= k <= len(labels):
            raise UserError(f"k-NN: k={k} must be between 1 and the {len(labels)} training images")
        probe = cls(len(labels), features.shape[1], k, weights)
        probe.features.copy_(torch.from_numpy(np.asarray(features, dtype=np.float32)))
        probe.labels.copy_(torch.from_numpy(np.asarray(labels, dtype=np.int64)))
        return probe, pd.DataFrame({"k": [k], "weights": [weights], "n_reference": [len(labels)]})

    def predict(self, features: torch.Tensor | np.ndarray) -> np.ndarray:
        """P(fake) per feature row, float64."""
        if self._classifier is None:  # sklearn's index is rebuilt from the tensors, never unpickled
            from sklearn.neighbors import KNeighborsClassifier

            self._classifier = KNeighborsClassifier(self.k, weights=self.weights, metric="cosine",
                                                    algorithm="brute")
            self._classifier.fit(self.features.numpy(), self.labels.numpy())
        proba = self._classifier.predict_proba(_as_numpy(features).astype(np.float32))
        classes = list(self._classifier.classes_)
        return proba[:, classes.index(1)].astype(np.float64) if 1 in classes else np.zeros(len(proba))


def _new_probe(model_config: dict[str, Any]) -> LogisticProbe | KNNProbe:
    """An empty probe shaped as ``detector.json`` says, ready for ``load_weights``."""
    options = model_config.get("probe_options", {})
    dim = int(model_config["feature_dim"])
    if model_config.get("probe") == "logistic":
        probe = LogisticProbe(dim)
    elif model_config.get("probe") == "knn":
        probe = KNNProbe(int(options["n"]), dim, int(options["k"]), options.get("weights", "uniform"))
    else:
        raise UserError(f"unknown CLIP probe {model_config.get('probe')!r}; choose from {', '.join(PROBES)}")
    probe.options = dict(options)
    return probe


# --------------------------------------------------------------------------- detector


class ClipDetector(SavedDetector):
    """Frozen CLIP features + a probe. Images in [0, 1] at ``size`` px in, P(fake) out; features come
    from the on-disk cache when the same pixels were seen before by the same encoder. Saved as
    ``detector.json``, the probe as ``probe.safetensors`` and the encoder's architecture beside them."""

    kind: ClassVar[str] = "clip"
    weights_file: ClassVar[str] = PROBE_FILE
    weights_key: ClassVar[str] = "probe_sha256"
    config_fields: ClassVar[list[Field]] = [
        ("model.model", TEXT, True), ("model.pretrained", TEXT, False), ("model.checkpoint", TEXT, False),
        ("model.checkpoint_sha256", TEXT, False), ("model.model_id", TEXT, False), ("model.feature_dim", WHOLE, True),
        ("model.probe", PROBES, True), ("model.probe_options", OBJECT, False), ("model.feature_cache", TEXT, False),
        ("probe_sha256", TEXT, False)]
    _KNN_FIELDS: ClassVar[list[Field]] = [
        ("model.probe_options", OBJECT, True), ("model.probe_options.n", WHOLE, True),
        ("model.probe_options.k", WHOLE, True), ("model.probe_options.weights", KNN_WEIGHTS, False)]

    def __init__(self, encoder: ClipEncoder, probe: LogisticProbe | KNNProbe | None, size: int, channels: int,
                 cache: FeatureCache | None = None, progress: bool = False):
        self.encoder, self.probe, self.size, self.channels = encoder, probe, int(size), int(channels)
        self.cache, self.progress = cache, progress

    def features(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """L2-normalised CLIP features (N, D): cached ones are read, the rest encoded in batches
        (each distinct image once) and added to the cache."""
        keys = image_keys(images)
        found = self.cache.lookup(keys) if self.cache is not None else {}
        todo, seen = [], set(found)  # the first position of each distinct image not in the cache
        for i, key in enumerate(keys):
            if key not in seen:
                seen.add(key)
                todo.append(i)
        with tqdm(total=len(todo), desc=f"CLIP features ({self.encoder.model})", unit="img",
                  disable=not self.progress or len(todo) <= batch_size) as bar:
            for start in range(0, len(todo), batch_size):
                index = todo[start:start + batch_size]
                encoded = self.encoder.encode(images[torch.tensor(index)])
                batch_keys = [keys[i] for i in index]
                if self.cache is not None:
                    self.cache.store(batch_keys, encoded)
                found.update(zip(batch_keys, encoded))
                bar.update(len(index))
        if self.cache is not None:
            self.cache.misses += len(todo)
            self.cache.hits += len(keys) - len(todo)
        if not keys:
            return torch.empty(0, self.encoder.feature_dim)
        return torch.stack([found[key] for key in keys])

    def share_features(self, images: torch.Tensor, shard: Shard, batch_size: int = 256) -> None:
        """Encode ``images`` into the feature cache as one of several processes, then wait for the others.

        Every process calls this with the same images; each encodes its share of the batches
        :meth:`features` would encode (keyed by their first image), so that afterwards every process
        finds every feature in the shared cache, computed in the same batch as by one process alone."""
        if self.cache is None:
            raise UserError("several processes share CLIP features through the feature cache; run without "
                             "--no-cache (or as one process)")
        keys = image_keys(images)
        found = self.cache.lookup(keys)
        todo, seen = [], set(found)
        for i, key in enumerate(keys):
            if key not in seen:
                seen.add(key)
                todo.append(i)
        batches = [todo[start:start + batch_size] for start in range(0, len(todo), batch_size)]
        for index in shard.select(batches, key=lambda batch: keys[batch[0]].hex()):
            self.cache.store([keys[i] for i in index], self.encoder.encode(images[torch.tensor(index)]))
        shard.wait()

    def score(self, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """P(fake) per image, float64."""
        if self.probe is None:
            raise UserError("this CLIP detector has no trained probe yet")
        if len(images) == 0:
            return np.empty(0)
        return self.probe.predict(self.features(images, batch_size))

    @classmethod
    def fields_for(cls, model_config: dict[str, Any]) -> list[Field]:
        return cls.config_fields + (cls._KNN_FIELDS if model_config.get("probe") == "knn" else [])

    def config(self) -> dict[str, Any]:
        """The ``model`` section of ``detector.json``."""
        return {"kind": self.kind, **self.encoder.spec(), "probe": self.probe.kind,
                "probe_options": dict(self.probe.options), "size": self.size, "channels": self.channels,
                # where evaluation and scans look for features again (None: no cache)
                "feature_cache": None if self.cache is None else str(self.cache.folder.parent)}

    def weights_module(self) -> nn.Module:
        return self.probe

    def save_files(self, directory: Path) -> None:
        """The encoder's architecture, so that a custom one reopens in a new process."""
        atomic_write_json(directory / ENCODER_CONFIG_DIR / f"{self.encoder.model}.json", self.encoder.architecture)

    @classmethod
    def from_config(cls, config: dict[str, Any], *, where: str = "the config", directory: Path | str | None = None,
                    device: str | torch.device = "cpu", cache_dir: Path | str | None = None,
                    cache: bool | None = None, **options: Any) -> ClipDetector:
        """Reopen the encoder of a saved detector from its tag or (unchanged) checkpoint, with an empty probe
        for the saved one. Features are cached where training cached them (``--cache-dir``, ``--no-cache``)
        unless ``cache_dir``/``cache`` say otherwise; a recorded cache folder that no longer exists (e.g. on
        another machine) gives way to the default one."""
        import open_clip

        name = config["model"]
        saved_architecture = None if directory is None else Path(directory) / ENCODER_CONFIG_DIR / f"{name}.json"
        if open_clip.get_model_config(name) is None and saved_architecture is not None and saved_architecture.is_file():
            open_clip.add_model_config(saved_architecture)  # a custom architecture, not shipped with open_clip
        encoder = ClipEncoder(name, config.get("pretrained"), config.get("checkpoint"), device,
                              expected_checkpoint_sha256=config.get("checkpoint_sha256"))
        if encoder.feature_dim != int(config["feature_dim"]):
            raise UserError(f"{where}: the probe expects {config['feature_dim']}-d features but "
                             f"{name} gives {encoder.feature_dim}-d ones")
        if encoder.model_id != config.get("model_id"):
            warnings.warn(f"{directory or where}: CLIP preprocessing differs from training ({config.get('model_id')} "
                          f"vs {encoder.model_id}), e.g. after an open_clip upgrade; scores may shift", stacklevel=2)
        recorded = config.get("feature_cache", str(default_cache_dir()))
        if cache is None:
            cache = recorded is not None
        if cache_dir is None:
            cache_dir = recorded if recorded is not None and Path(recorded).is_dir() else default_cache_dir()
        feature_cache = FeatureCache(cache_dir, encoder.model_id) if cache else None
        return cls(encoder, _new_probe(config), int(config["size"]), int(config["channels"]), feature_cache)


class ClipEstimator(DetectorEstimator):
    """A probe on frozen CLIP features (UnivFD): ``probe="logistic"`` (C by cross-validation on the
    training part when not given) or ``"knn"`` (``k`` neighbours, the training features as reference).
    ``checkpoint`` (a local file) replaces the ``pretrained`` tag. Features are cached in ``cache_dir``
    unless ``cache`` is False. Defaults: :data:`synthscope.detectors.defaults.CLIP`."""

    kind = ClipDetector.kind
    runtime_params = ("device", "progress", "cache_dir", "cache")

    def __init__(self, model: str = defaults.CLIP["model"], pretrained: str | None = defaults.CLIP["pretrained"],
                 checkpoint: Path | str | None = defaults.CLIP["checkpoint"], probe: str = defaults.CLIP["probe"],
                 C: float | None = defaults.CLIP["C"], k: int = defaults.CLIP["k"],
                 knn_weights: str = defaults.CLIP["knn_weights"], size: int = defaults.CLIP["size"],
                 channels: int = defaults.CLIP["channels"], batch_size: int = defaults.CLIP["batch_size"],
                 seed: int = 0, device: str | torch.device = "auto", cache_dir: Path | str | None = None,
                 cache: bool = True, progress: bool = True):
        self.model, self.pretrained, self.checkpoint, self.probe = model, pretrained, checkpoint, probe
        self.C, self.k, self.knn_weights, self.size, self.channels = C, k, knn_weights, size, channels
        self.batch_size, self.seed, self.device = batch_size, seed, device
        self.cache_dir, self.cache, self.progress = cache_dir, cache, progress

    def open(self) -> ClipDetector:
        """The encoder and feature cache, without a probe yet: opened before any image is read, so that
        missing weights fail fast."""
        if self.probe not in PROBES:
            raise UserError(f"unknown CLIP probe {self.probe!r}; choose from {', '.join(PROBES)}")
        encoder = ClipEncoder(self.model, self.pretrained, self.checkpoint, self.device)
        feature_cache = FeatureCache(self.cache_dir or default_cache_dir(), encoder.model_id) if self.cache else None
        self.detector_ = ClipDetector(encoder, None, self.size, self.channels, feature_cache, self.progress)
        return self.detector_

    def fit(self, train: LabelledImages, held_out: LabelledImages) -> ClipEstimator:
        """Fit the probe on the training part's features; the held-out part is only scored."""
        detector = self.detector_ if self.detector_ is not None else self.open()
        train_features = detector.features(train.images, self.batch_size).numpy()
        val_features = detector.features(held_out.images, self.batch_size).numpy()
        if self.probe == "logistic":
            detector.probe, self.history_ = LogisticProbe.fit(train_features, train.labels, C=self.C, seed=self.seed)
        else:
            detector.probe, self.history_ = KNNProbe.fit(train_features, train.labels, k=self.k,
                                                         weights=self.knn_weights)
        # scored from the features at hand: encoding the held-out images again could change their bits
        self.held_out_scores_ = detector.probe.predict(val_features)
        return self

    def held_out_scores(self, held_out: LabelledImages) -> np.ndarray:
        return self.held_out_scores_

    def training_record(self, split: dict[str, Any]) -> dict[str, Any]:
        detector = self.detector_
        return {"probe": self.probe, "probe_options": detector.probe.options,
                **{name: split[name] for name in ("seed", "n_train", "n_val", "val_fraction")},
                "feature_cache": str(detector.cache.folder) if detector.cache else None,
                "images_encoded": detector.encoder.images_encoded}


def train_clip_detector(real: Path | str, fakes: Sequence[Path | str], out: Path | str, model: str = DEFAULT_MODEL,
                        pretrained: str | None = DEFAULT_PRETRAINED, checkpoint: Path | str | None = None,
                        probe: str = "logistic", C: float | None = None, k: int = 10, knn_weights: str = "uniform",
                        size: int = 32, channels: int = 3, val_fraction: float = 0.2, target_fpr: float = 0.01,
                        seed: int = 0, batch_size: int = 256, device: str = "auto",
                        cache_dir: Path | str | None = None, cache: bool = True,
                        progress: bool = True) -> DetectorRun | None:
    """Fit a probe on frozen CLIP features of a real corpus against synthetic corpora (:class:`ClipEstimator`)
    and save it in ``out``.

    A stratified ``val_fraction`` is held out; its *real* images alone fix the threshold for
    ``target_fpr``. Launched as several processes, they encode the images together into the shared
    feature cache; the main process then fits the probe, writes the detector and returns it, the
    others return None.
    """
    if not fakes:
        raise UserError("give at least one synthetic corpus (--fake)")
    if probe not in PROBES:
        raise UserError(f"unknown CLIP probe {probe!r}; choose from {', '.join(PROBES)}")
    check_distinct_corpora(real, fakes)
    check_output_folder(out)
    seed_everything(seed)
    shard = current_shard(device)
    began = time.perf_counter()
    estimator = ClipEstimator(model, pretrained, checkpoint, probe, C, k, knn_weights, size, channels, batch_size,
                              seed, shard.device(device), cache_dir, cache, shard.progress(progress))
    detector = estimator.open()  # before reading data: fail fast on weights
    data = load_labelled(real, fakes, size=size, channels=channels, progress=shard.progress(progress))
    thresholded = ThresholdedDetector(estimator, target_fpr=target_fpr, val_fraction=val_fraction, seed=seed)
    record = {"real": str(real), "fakes": [str(f) for f in fakes]}
    train, val = thresholded.split(data, record)
    if shard.distributed:  # the same calls as in fit, so each image is encoded in the same batch
        detector.share_features(train.images, shard, batch_size)
        detector.share_features(val.images, shard, batch_size)
        if not shard.is_main:
            shard.wait()  # returns once the main process has written the detector
            return None
    thresholded.fit(data, record, split=(train, val), began=began).save(out)
    shard.wait()
    return DetectorRun.of(thresholded, out)
