"""Annotators: who reads the *perceived* attributes of an audit's images, as a tidy table for the metrics.

Every annotator writes one row per image and attribute with the columns of
:data:`synthscope.audits.metrics.ANNOTATION_COLUMNS` plus ``confidence`` (the top class probability),
``predicted`` (the top value, kept even when the annotator abstains) and ``file``. ``value`` is the
predicted value, or :data:`~synthscope.audits.metrics.ABSTAIN` when ``confidence < abstain_below``.
Values are perceived attributes (the gender presentation, skin tone or age group a classifier or a
person reads in a picture), never anyone's identity.

- :class:`ProbeAnnotator` — the ground-truth probe of the built-in portraits world: the small multi-head
  :class:`~synthscope.generators.quality.FeatureClassifier`, trained on rendered portraits whose
  attributes we know, at the audit's image size, cached on disk. It is trained on the *uniform*
  (parity) world, so it has no prior that favours the majority group of a profession: a probe trained
  on a skewed world would push ambiguous images towards the very skew the audit measures.
  :meth:`ProbeAnnotator.validity` measures its accuracy, confusion and abstention rate on fresh
  portraits. Its accuracy on *generated* images can be lower (they are not drawn by the renderer).
- :class:`ClipZeroShotAnnotator` — open_clip zero-shot: each value has label prompts ("a photo of a
  woman"); an image takes the value whose mean prompt embedding it is closest to, with a softmax over
  the values at the model's logit scale. The prompts are recorded with the results. CLIP reads skin tone
  poorly (it is not a default; :data:`SKIN_TONE_LABELS` is there for those who want it, with that caveat)
  and carries its training data's own associations between professions and groups.
- human labels are imported by :func:`synthscope.audits.labels.import_labels`.

:func:`annotate` runs annotators over a corpus in batches, keeps per-annotator results in the audit
folder and, when run again (e.g. after images were added), annotates only the images it has not seen.
"""

from __future__ import annotations

import hashlib
import re
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from synthscope.distributed import Shard
from synthscope.generators.corpus import Corpus, CorpusError, read_corpus
from tqdm.auto import tqdm

from synthscope.errors import UserError
from synthscope.fingerprint import fingerprint
from synthscope.generators.attributes import SKIN_TONE_WORDS, SKIN_TONES
from synthscope.runtime import atomic_write_bytes, atomic_write_json, sha256_file

from .metrics import ABSTAIN, ANNOTATION_COLUMNS, confusion
from .spec import (
    CLIP_DEFAULT_MODEL,
    CLIP_DEFAULT_PRETRAINED,
    DEFAULT_ABSTAIN_BELOW,
    DEFAULT_CLIP_LABELS,
    PROBE_ATTRIBUTES,
    AnnotatorSpec,
    ClipAnnotatorSpec,
    ProbeAnnotatorSpec,
    check_clip_labels,
)

EXTRA_COLUMNS = ("confidence", "predicted", "file")
TABLE_COLUMNS = (*ANNOTATION_COLUMNS, *EXTRA_COLUMNS)
PROMPT_TABLE_COLUMNS = ("annotator", "attribute", "value", "prompt")
ANNOTATIONS_FILE = "annotations.csv"
PROMPTS_FILE = "annotator_prompts.csv"
ANNOTATORS_FILE = "annotators.json"
CACHE_DIR = "annotator_cache"
CACHE_FORMAT = "synthscope-annotations/1"
FLUSH_SECONDS = 30.0  # an interrupted run loses at most this much annotation work
PROBE_DEFAULT_SIZE = 16  # the built-in backend's image size (audits.backends.BUILTIN_DEFAULT_SIZE)
PROBE_DEFAULT_N_TRAIN = 4000
PROBE_DEFAULT_VALIDITY_N = 1000

# Opt-in CLIP label prompts for skin tone, lighter -> darker, with the value names of the portraits
# world ("1" .. "6"). Zero-shot CLIP separates light from dark skin at best coarsely (and confounds
# it with lighting and image colour); validate it against human labels before reporting it.
SKIN_TONE_LABELS: dict[str, tuple[str, ...]] = {
    tone: (f"a photo of a person with {word} skin",) for tone, word in zip(SKIN_TONES, SKIN_TONE_WORDS)
}

_CAVEAT = ("Values are perceived attributes read from synthetic images (gender presentation, skin tone, "
           "age group), not anyone's identity.")


# --------------------------------------------------------------------------------------------
# Corpus side: image ids and prompt metadata
# --------------------------------------------------------------------------------------------


def image_ids(manifest: pd.DataFrame) -> pd.Series:
    """The id of every image of a manifest: its ``key`` (audit and exported corpora have one) where that
    is filled in, else its ``file``. Ids must be unique: a duplicate is an error naming it."""
    ids = manifest["file"].astype(str)
    if "key" in manifest.columns:
        key = manifest["key"].astype(str).str.strip()
        ids = key.where(key != "", ids)
    doubled = ids[ids.duplicated()]
    if len(doubled):
        raise CorpusError(f"image id {doubled.iloc[0]!r} appears twice in the manifest (key, else file, "
                          f"identifies an image)")
    return ids.reset_index(drop=True).rename("image_id")


def corpus_metadata(corpus: Corpus) -> pd.DataFrame:
    """One row per image of ``corpus``: image_id, file, prompt, template, profession, descriptor, guidance.

    Tolerant: a column the manifest lacks is empty ("" for text, NaN for template and guidance).
    ``template`` is the index of the phrasing: the manifest's ``template_index`` when it has one, else a
    numeric ``template`` column.
    """
    manifest = corpus.manifest.reset_index(drop=True)
    n = len(manifest)

    def text(column: str) -> pd.Series:
        if column in manifest.columns:
            return manifest[column].fillna("").astype(str)
        return pd.Series([""] * n, dtype=object)

    def number(*columns: str) -> pd.Series:
        for column in columns:
            if column in manifest.columns:
                values = pd.to_numeric(manifest[column].replace("", np.nan), errors="coerce")
                if values.notna().any() or column == columns[-1]:
                    return values.astype(float)
        return pd.Series([np.nan] * n, dtype=float)

    meta = pd.DataFrame({"image_id": image_ids(manifest), "file": text("file"), "prompt": text("prompt"),
                         "template": number("template_index", "template"), "profession": text("profession"),
                         "descriptor": text("descriptor"), "guidance": number("guidance")})
    return meta


def _square(image: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """(C, H, W) in [0, 1] centre-cropped to a square and resized (antialiased) to ``size``."""
    _, h, w = image.shape
    if (h, w) == tuple(size):
        return image
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    image = image[:, top:top + side, left:left + side]
    if (side, side) != tuple(size):
        image = F.interpolate(image[None], size=tuple(size), mode=mode, align_corners=False,
                              antialias=True)[0].clamp(0, 1)  # bicubic overshoots [0, 1]
    return image


def load_image(corpus: Corpus, index: int) -> torch.Tensor:
    """Image ``index`` of ``corpus`` as an RGB float tensor (3, H, W) at its own size, decoded through the
    corpus (size limits, EXIF rotation); raises the corpus's error when it cannot be read."""
    one = Corpus(root=corpus.root, manifest=corpus.manifest.iloc[[index]].reset_index(drop=True),
                 provenance=corpus.provenance, inferred=corpus.inferred, strict=True, max_pixels=corpus.max_pixels)
    return one.load_images(size=None, channels=3)[0]


# --------------------------------------------------------------------------------------------
# Annotators
# --------------------------------------------------------------------------------------------


def apply_threshold(predicted: Sequence[str], confidence: Sequence[float], abstain_below: float) -> list[str]:
    """The annotated value of each image: its predicted value, or :data:`ABSTAIN` where the confidence is
    below ``abstain_below`` (or missing)."""
    out = []
    for value, p in zip(predicted, confidence):
        p = float(p)
        out.append(str(value) if np.isfinite(p) and p >= abstain_below else ABSTAIN)
    return out


class Annotator(ABC):
    """Reads perceived attributes from images. Subclasses give the scores; the base class applies the
    abstention threshold and shapes the rows.

    ``name`` is the annotator column of the results (unique within an audit); ``attributes`` the
    attributes read; ``abstain_below`` the top-probability threshold under which the annotator abstains.
    """

    kind: ClassVar[str] = "annotator"
    name: str
    attributes: tuple[str, ...]
    abstain_below: float

    @property
    @abstractmethod
    def input_size(self) -> tuple[int, int]:
        """(height, width) the scores expect; other images are centre-cropped and resized to it."""

    @property
    def resize_mode(self) -> str:
        """Interpolation used to bring images to ``input_size``."""
        return "bilinear"

    @abstractmethod
    def scores(self, images: torch.Tensor) -> dict[str, tuple[list[str], np.ndarray]]:
        """attribute -> (top value per image, top probability per image) for (N, 3, H, W) images at
        ``input_size`` in [0, 1]."""

    @abstractmethod
    def cache_key(self) -> dict[str, Any]:
        """What the scores depend on (model identity, labels); cached scores are reused only when this is
        unchanged. The threshold is not part of it: it is applied when results are read."""

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description for provenance and reports."""
        return {"kind": self.kind, "name": self.name, "attributes": list(self.attributes),
                "abstain_below": self.abstain_below, "abstain_label": ABSTAIN, "caveat": _CAVEAT}

    def prompts(self) -> pd.DataFrame:
        """The label prompts used (annotator, attribute, value, prompt); empty for annotators without."""
        return pd.DataFrame(columns=list(PROMPT_TABLE_COLUMNS))

    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        """One (C, H, W) image in [0, 1] as RGB at ``input_size``."""
        if image.shape[0] == 1:
            image = image.expand(3, -1, -1)
        return _square(image.float(), self.input_size, self.resize_mode)

    def predict(self, images: torch.Tensor, image_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """Rows image_id, annotator, attribute, value, confidence, predicted for a batch of images (any
        size; resized to ``input_size``), with the abstention threshold applied."""
        images = torch.stack([self.prepare(im) for im in images]) if len(images) else images
        ids = [str(i) for i in (image_ids if image_ids is not None else range(len(images)))]
        if len(ids) != len(images):
            raise UserError(f"{len(images)} images but {len(ids)} image ids")
        raw = _raw_frame(ids, self.scores(images) if len(images) else {}, self.attributes)
        return self.finish(raw)

    def finish(self, raw: pd.DataFrame) -> pd.DataFrame:
        """Raw scores (image_id, attribute, predicted, confidence) as annotation rows with this annotator's
        name and threshold."""
        out = raw[["image_id", "attribute", "predicted", "confidence"]].copy()
        out.insert(1, "annotator", self.name)
        out["value"] = apply_threshold(out["predicted"], out["confidence"], self.abstain_below)
        return out[["image_id", "annotator", "attribute", "value", "confidence", "predicted"]]


def _raw_frame(ids: Sequence[str], scores: Mapping[str, tuple[list[str], np.ndarray]],
               attributes: Sequence[str]) -> pd.DataFrame:
    """Long rows image_id, attribute, predicted, confidence: images in order, attributes in order."""
    if not ids:
        return pd.DataFrame({"image_id": [], "attribute": [], "predicted": [], "confidence": []})
    parts = []
    for a in attributes:
        values, top = scores[a]
        parts.append(pd.DataFrame({"image_id": list(ids), "attribute": a, "predicted": [str(v) for v in values],
                                   "confidence": np.asarray(top, dtype=float), "_order": range(len(ids))}))
    frame = pd.concat(parts, ignore_index=True)
    frame["_attr"] = frame["attribute"].map({a: i for i, a in enumerate(attributes)})
    frame = frame.sort_values(["_order", "_attr"], kind="stable")
    return frame.drop(columns=["_order", "_attr"]).reset_index(drop=True)


# Portraits drawn to tell whether a kept probe was trained on portraits drawn as they are drawn now.
PROBE_SAMPLE_DRAWN = 32


def default_probe_cache_dir() -> Path:
    """Where trained probes are kept: beside the CLIP feature cache (``$SYNTHSCOPE_CACHE/probes``, else
    ``~/.cache/synthscope/probes``)."""
    from synthscope.detectors.clip import default_cache_dir

    return default_cache_dir().parent / "probes"


class ProbeAnnotator(Annotator):
    """The ground-truth probe of the portraits world: a FeatureClassifier trained on ``n_train`` rendered
    portraits of the uniform world at ``size`` px (seed ``seed``), trained once and kept in ``cache_dir``
    (through :func:`synthscope.generators.evaluation.judge_for`, which retrains when the settings, or
    the pixels of :data:`PROBE_SAMPLE_DRAWN` portraits drawn the same way, differ).

    ``attributes``: any of profession, gender, skin_tone, age (default gender, skin_tone, age). The
    classifier is trained on first use. ``classifier`` passes a ready one (its size wins over ``size``).
    """

    kind: ClassVar[str] = "probe"

    def __init__(self, attributes: Sequence[str] = PROBE_ATTRIBUTES, abstain_below: float = DEFAULT_ABSTAIN_BELOW,
                 size: int = PROBE_DEFAULT_SIZE, n_train: int = PROBE_DEFAULT_N_TRAIN, seed: int = 0,
                 cache_dir: Path | str | None = None, device: str | torch.device = "cpu", name: str = "probe",
                 classifier: Any = None, batch_size: int = 256) -> None:
        from synthscope.generators.portraits import portraits_vocabulary

        known = portraits_vocabulary().names
        unknown = [a for a in attributes if a not in known]
        if unknown or not attributes:
            raise UserError(f"the probe reads {', '.join(known)}; got {', '.join(map(repr, unknown)) or 'none'}")
        if not 0.0 <= float(abstain_below) <= 1.0:
            raise UserError(f"abstain_below must be between 0 and 1, got {abstain_below}")
        self.attributes = tuple(attributes)
        self.abstain_below = float(abstain_below)
        self.size = int(classifier.size if classifier is not None else size)
        self.n_train, self.seed, self.name = int(n_train), int(seed), str(name)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_probe_cache_dir()
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self._classifier = classifier
        self._own = classifier is None  # trained (or read) from the cache folder by this annotator
        self._weights_sha256: str | None = None

    @classmethod
    def from_spec(cls, spec: ProbeAnnotatorSpec, size: int = PROBE_DEFAULT_SIZE, **options: Any) -> ProbeAnnotator:
        """The probe an audit spec asks for, at the audit's image ``size``."""
        return cls(attributes=spec.attributes, abstain_below=spec.abstain_below, size=size, **options)

    @staticmethod
    def world():
        """The world the probe trains and is validated on: the uniform (parity) portraits world."""
        from synthscope.generators.portraits import PortraitDistribution

        return PortraitDistribution.uniform()

    @property
    def folder(self) -> Path:
        """The probe's cache folder (one per size, training-set size, seed and world)."""
        digest = fingerprint(self.world().to_dict())[:12]
        return self.cache_dir / f"probe-{self.size}px-n{self.n_train}-seed{self.seed}-{digest}"

    @property
    def classifier(self):
        """The trained FeatureClassifier (trained, or read from the cache, on first use)."""
        if self._classifier is None:
            from synthscope.generators.evaluation import judge_for
            from synthscope.generators.portraits import generate_portraits
            from synthscope.generators.training import data_fingerprint

            def draw(n: int):
                return generate_portraits(n=n, seed=self.seed, size=self.size, distribution=self.world())

            # Keyed on the drawing's settings and on a few portraits drawn the same way, not on all
            # n_train of them: drawing those takes seconds an audit need not spend once the probe is kept.
            drawn_from = {"n": self.n_train, "size": self.size, "world": self.world().to_dict(),
                          "sample_sha256": data_fingerprint(draw(PROBE_SAMPLE_DRAWN))}
            self._classifier = judge_for(self.folder, lambda: draw(self.n_train), seed=self.seed,
                                         drawn_from=drawn_from)
        self._classifier.to(self.device).eval()
        return self._classifier

    @property
    def input_size(self) -> tuple[int, int]:
        """The probe's own image size, square."""
        return (self.size, self.size)

    def scores(self, images: torch.Tensor) -> dict[str, tuple[list[str], np.ndarray]]:
        """Top value and softmax probability per image, for each attribute."""
        predictions = self.classifier.predict(images, batch_size=self.batch_size)
        return {a: (predictions[a][0], predictions[a][1].max(axis=1)) for a in self.attributes}

    def weights_sha256(self) -> str:
        """SHA-256 of the probe's weights (its identity in caches and provenance)."""
        if self._weights_sha256 is None:
            from synthscope.generators.quality import WEIGHTS_NAME

            classifier = self.classifier
            path = self.folder / WEIGHTS_NAME
            if self._own and path.is_file():
                self._weights_sha256 = sha256_file(path)
            else:  # a classifier passed in, never saved: hash its tensors
                digest = hashlib.sha256()
                for key, value in sorted(classifier.state_dict().items()):
                    digest.update(key.encode() + value.detach().cpu().contiguous().numpy().tobytes())
                self._weights_sha256 = digest.hexdigest()
        return self._weights_sha256

    def cache_key(self) -> dict[str, Any]:
        """Weights, size and attributes (the threshold is applied at read time)."""
        return {"kind": self.kind, "weights_sha256": self.weights_sha256(), "size": self.size,
                "attributes": list(self.attributes)}

    def describe(self) -> dict[str, Any]:
        """Settings, weights hash, the classifier's own held-out accuracy and the training world."""
        classifier = self.classifier
        return {**super().describe(), "size": self.size, "n_train": self.n_train, "seed": self.seed,
                "world": "uniform (parity) portraits world", "weights_sha256": self.weights_sha256(),
                "heldout_accuracy": dict(classifier.heldout_accuracy),
                "note": "trained on rendered portraits; accuracy on generated images may be lower"}

    def validity(self, n: int = PROBE_DEFAULT_VALIDITY_N, seed: int | None = None, world: Any = None,
                 confidence: float = 0.95) -> pd.DataFrame:
        """Accuracy, abstention rate and confusion of the probe on ``n`` fresh portraits whose truth is
        known (seed ``seed``, default the training seed + 1, so none was trained on; ``world`` default
        uniform), one row per attribute.

        Columns: annotator, attribute, n, n_correct, n_abstained, abstention_rate, accuracy (abstentions
        count as not correct) with its Wilson interval, accuracy_of_determined with its interval,
        abstain_below, and ``confusion``: {true value: {annotated value: count}} (rows are the truth,
        :data:`ABSTAIN` is a column); ``pd.DataFrame(row.confusion).T`` gives the matrix.
        """
        from synthscope.generators.portraits import generate_portraits

        seed = self.seed + 1 if seed is None else int(seed)
        data = generate_portraits(n=int(n), seed=seed, size=self.size, distribution=world or self.world())
        ids = [f"validity#{i}" for i in range(len(data))]
        table = self.predict(data.images, ids)
        truth = data.attributes.astype(str).assign(image_id=ids)
        rows = []
        for attribute in self.attributes:
            result = confusion(table, truth, attribute, annotator=self.name, confidence=confidence)
            rows.append({**result.summary(), "abstain_below": self.abstain_below, "seed": seed,
                         "confusion": {str(t): {str(p): int(c) for p, c in row.items()}
                                       for t, row in result.matrix.iterrows()}})
        return pd.DataFrame(rows)


class ClipZeroShotAnnotator(Annotator):
    """open_clip zero-shot reading of perceived attributes.

    ``labels``: attribute -> value -> label prompts (default
    :data:`synthscope.audits.spec.DEFAULT_CLIP_LABELS`: gender presentation and age group; add
    ``"skin_tone": SKIN_TONE_LABELS`` knowingly). A value's text embedding is the normalised mean of its
    prompts' embeddings; an image's probabilities are the softmax of ``logit_scale * cosine`` over the
    values of the attribute. Weights: a pretrained tag, or a local ``checkpoint`` file (the same loading
    and offline error as the CLIP detector, :class:`synthscope.detectors.clip.ClipEncoder`); image
    features are cached like the detector's.
    """

    kind: ClassVar[str] = "clip"

    def __init__(self, model: str = CLIP_DEFAULT_MODEL, pretrained: str | None = CLIP_DEFAULT_PRETRAINED,
                 checkpoint: Path | str | None = None,
                 labels: Mapping[str, Mapping[str, Sequence[str] | str]] | None = None,
                 abstain_below: float = DEFAULT_ABSTAIN_BELOW, device: str | torch.device = "cpu",
                 cache_dir: Path | str | None = None, cache: bool = True, name: str = "clip",
                 batch_size: int = 64, encoder: Any = None) -> None:
        from synthscope.detectors.clip import (
            ClipEncoder,
            FeatureCache,
            default_cache_dir,
        )

        self.labels = check_clip_labels(DEFAULT_CLIP_LABELS if labels is None else labels)
        if not 0.0 <= float(abstain_below) <= 1.0:
            raise UserError(f"abstain_below must be between 0 and 1, got {abstain_below}")
        self.attributes = tuple(self.labels)
        self.abstain_below = float(abstain_below)
        self.name, self.batch_size = str(name), int(batch_size)
        self.encoder = encoder if encoder is not None else ClipEncoder(model, pretrained, checkpoint, device)
        self.cache = (FeatureCache(cache_dir or default_cache_dir(), self.encoder.model_id) if cache else None)
        network = self.encoder.network
        # The scale CLIP was trained with (exp of a learnt log-scale, ~100 for released models).
        self.logit_scale = float(network.logit_scale.exp()) if hasattr(network, "logit_scale") else 100.0
        self._text: dict[str, tuple[list[str], torch.Tensor]] = {}
        for attribute, values in self.labels.items():
            embeddings = []
            for prompts in values.values():
                mean = self.encoder.encode_text(list(prompts)).mean(dim=0)
                embeddings.append(mean / mean.norm().clamp_min(1e-12))
            self._text[attribute] = (list(values), torch.stack(embeddings))

    @classmethod
    def from_spec(cls, spec: ClipAnnotatorSpec, **options: Any) -> ClipZeroShotAnnotator:
        """The annotator an audit spec asks for; ``spec.pretrained`` may be a tag or a local weights file."""
        pretrained, checkpoint = spec.pretrained, None
        if _looks_like_file(pretrained):
            pretrained, checkpoint = None, pretrained
        return cls(model=spec.model, pretrained=pretrained, checkpoint=checkpoint, labels=spec.labels,
                   abstain_below=spec.abstain_below, **options)

    @property
    def input_size(self) -> tuple[int, int]:
        """The encoder's input size."""
        return tuple(self.encoder.image_size)

    @property
    def resize_mode(self) -> str:
        """The encoder's own interpolation (bicubic for released CLIP models)."""
        return self.encoder.interpolation

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised image features, from the feature cache where the same pixels were seen before."""
        from synthscope.detectors.clip import ClipDetector

        # A detector without a probe is exactly "encoder + feature cache"; reused, not rewritten.
        holder = ClipDetector(self.encoder, None, size=self.input_size[0], channels=3, cache=self.cache)
        return holder.features(images, batch_size=self.batch_size)

    def probabilities(self, images: torch.Tensor) -> dict[str, tuple[list[str], np.ndarray]]:
        """attribute -> (values, softmax probabilities (N, K)) for images at ``input_size``."""
        features = self.features(images)
        out = {}
        for attribute, (values, text) in self._text.items():
            logits = self.logit_scale * features @ text.T
            out[attribute] = (values, torch.softmax(logits.double(), dim=1).numpy())
        return out

    def scores(self, images: torch.Tensor) -> dict[str, tuple[list[str], np.ndarray]]:
        """Top value and its probability per image, for each attribute."""
        out = {}
        for attribute, (values, p) in self.probabilities(images).items():
            out[attribute] = ([values[j] for j in p.argmax(axis=1)], p.max(axis=1))
        return out

    def cache_key(self) -> dict[str, Any]:
        """The encoder's identity (tag or checkpoint hash, preprocessing) and the label prompts."""
        return {"kind": self.kind, "model_id": self.encoder.model_id, "identity": self.encoder.identity,
                "labels": {a: {v: list(p) for v, p in vs.items()} for a, vs in self.labels.items()}}

    def describe(self) -> dict[str, Any]:
        """Model, weights, logit scale and every label prompt."""
        spec = self.encoder.spec()
        return {**super().describe(), "model": spec["model"], "pretrained": spec["pretrained"],
                "checkpoint": spec["checkpoint"], "checkpoint_sha256": spec["checkpoint_sha256"],
                "model_id": spec["model_id"], "logit_scale": self.logit_scale,
                "labels": {a: {v: list(p) for v, p in vs.items()} for a, vs in self.labels.items()},
                "note": "zero-shot CLIP carries its training data's associations; its skin-tone reading is "
                        "weak. Validate against human labels."}

    def prompts(self) -> pd.DataFrame:
        """One row per label prompt: annotator, attribute, value, prompt."""
        rows = [(self.name, a, v, p) for a, values in self.labels.items() for v, prompts in values.items()
                for p in prompts]
        return pd.DataFrame(rows, columns=list(PROMPT_TABLE_COLUMNS))


def _looks_like_file(value: str | None) -> bool:
    if not value:
        return False
    return Path(value).expanduser().exists() or "/" in value or "\\" in value or \
        value.endswith((".safetensors", ".bin", ".pt", ".pth"))


def annotator_from_spec(spec: AnnotatorSpec, size: int = PROBE_DEFAULT_SIZE, **options: Any) -> Annotator:
    """The annotator of a spec entry (probe at the audit's image ``size``, or CLIP). Human labels are not
    run: they are exported with :func:`~synthscope.audits.labels.export_label_sheet` and imported with
    :func:`~synthscope.audits.labels.import_labels`."""
    if isinstance(spec, ProbeAnnotatorSpec):
        return ProbeAnnotator.from_spec(spec, size=size, **options)
    if isinstance(spec, ClipAnnotatorSpec):
        return ClipZeroShotAnnotator.from_spec(spec, **options)
    raise UserError(f"annotator kind {getattr(spec, 'kind', spec)!r} is not run by annotate(); human labels "
                     f"come from import_labels")


# --------------------------------------------------------------------------------------------
# Running annotators over a corpus, with a per-annotator cache
# --------------------------------------------------------------------------------------------


def _cache_paths(out_dir: Path, name: str) -> tuple[Path, Path]:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "annotator"
    if stem != name:  # two names that clean up alike must not share a file
        stem += "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    folder = out_dir / CACHE_DIR
    return folder / f"{stem}.csv", folder / f"{stem}.json"


_CACHE_COLUMNS = ["image_id", "image_sha256", "attribute", "predicted", "confidence", "annotator_key"]


def _key_digest(key: dict[str, Any]) -> str:
    return fingerprint(key)[:16]


def _read_cache(csv_path: Path, digest: str) -> pd.DataFrame:
    """The cached rows made by an annotator with this key digest (every row carries it, so a cache can
    never be mistaken for another annotator's, whatever was interrupted when)."""
    empty = pd.DataFrame(columns=_CACHE_COLUMNS)
    if not csv_path.is_file():
        return empty
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8")
    except (OSError, ValueError, pd.errors.ParserError) as error:
        warnings.warn(f"{csv_path}: unreadable annotation cache ({error}); annotating again", stacklevel=3)
        return empty
    if list(table.columns) != _CACHE_COLUMNS:
        warnings.warn(f"{csv_path}: not an annotation cache of this version; annotating again", stacklevel=3)
        return empty
    mine = table["annotator_key"] == digest
    if len(table) and not mine.any():
        warnings.warn(f"{csv_path}: made by an annotator with other settings or weights; annotating again",
                      stacklevel=3)
    table = table[mine].copy()
    table["confidence"] = pd.to_numeric(table["confidence"], errors="coerce")
    return table


def _write_cache(csv_path: Path, json_path: Path, key: dict[str, Any], table: pd.DataFrame) -> None:
    atomic_write_bytes(csv_path, table.assign(annotator_key=_key_digest(key))[_CACHE_COLUMNS]
                       .to_csv(index=False).encode("utf-8"))
    # Beside it, for people: which annotator the digest stands for.
    atomic_write_json(json_path, {"format": CACHE_FORMAT, "annotator_key": _key_digest(key), "annotator": key})


def _cache_parts(csv_path: Path) -> list[Path]:
    """The per-process parts of a cache (``<name>.rank-001.csv``, ...) that the main process folds in."""
    return sorted(csv_path.parent.glob(f"{csv_path.stem}.rank-*.csv"))


def _run_annotator(annotator: Annotator, corpus: Corpus, meta: pd.DataFrame, out_dir: Path | None,
                   batch_size: int, progress: bool, strict: bool,
                   shard: Shard | None = None) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Raw rows (image_id, attribute, predicted, confidence) for every readable image of the corpus.

    With a distributed ``shard``, only this process's share of the batches is read, and their
    scores go to this process's own cache part (``<name>.<part>.csv``), which the main process folds
    into the cache on its next call (then it finds every image there)."""
    key = annotator.cache_key() if out_dir is not None else {}
    paths = _cache_paths(out_dir, annotator.name) if out_dir is not None else None
    sharded = shard is not None and shard.distributed
    # Units of work are the batches one process would read (keyed by their first image), so that an
    # image is scored in the same batch, to the same bits, whatever the number of processes.
    chunks = [range(start, min(len(meta), start + batch_size)) for start in range(0, len(meta), batch_size)]
    if sharded:
        chunks = shard.select(chunks, key=lambda chunk: meta["image_id"].iloc[chunk[0]])
    mine = [False] * len(meta)
    for chunk in chunks:
        for i in chunk:
            mine[i] = True
    folded: list[Path] = []  # cache parts of other processes, folded into the cache by this call
    cached = pd.DataFrame(columns=_CACHE_COLUMNS)
    if paths is not None:
        if sharded:
            own = paths[0].with_name(f"{paths[0].stem}.{shard.part}.csv")
            paths = (own, own.with_suffix(".json"))
        else:
            folded = _cache_parts(paths[0])
        tables = [t for t in (_read_cache(path, _key_digest(key)) for path in [paths[0], *folded]) if len(t)]
        if tables:  # a part folded in just before a crash is also in the cache: keep one row of each
            cached = pd.concat(tables, ignore_index=True).drop_duplicates(["image_id", "image_sha256", "attribute"])
    # The file's hash guards against an image replaced under the same id (a corpus rebuilt with --force).
    hashes = [sha256_file(corpus.root / f) if paths and owned else ""
              for f, owned in zip(meta["file"], mine)]
    current = pd.DataFrame({"image_id": meta["image_id"], "image_sha256": hashes})[mine]
    done = cached.merge(current, on=["image_id", "image_sha256"], how="inner")
    complete = done.groupby("image_id")["attribute"].agg(set)
    wanted = set(annotator.attributes)
    have = {i for i, attrs in complete.items() if wanted <= attrs}
    todo = [[i for i in chunk if meta["image_id"].iloc[i] not in have] for chunk in chunks]
    todo = [batch for batch in todo if batch]
    found = [done[done["image_id"].isin(have) & done["attribute"].isin(wanted)]]
    skipped: list[tuple[str, str]] = []
    sha = dict(zip(current["image_id"], current["image_sha256"]))
    last_flush = time.monotonic()

    def flush() -> None:
        if paths is not None:
            _write_cache(*paths, key, pd.concat(found, ignore_index=True))

    n_todo = sum(map(len, todo))
    bar = tqdm(total=sum(mine), initial=sum(mine) - n_todo, desc=f"annotate ({annotator.name})", unit="img",
               disable=not progress, dynamic_ncols=True)
    try:
        for batch in todo:
            rows, images = [], []
            for i in batch:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        images.append(annotator.prepare(load_image(corpus, i)))
                    rows.append(i)
                except (CorpusError, ValueError) as error:  # an unreadable file is skipped, named, not fatal
                    if strict:
                        raise
                    skipped.append((str(meta["file"].iloc[i]), str(error)))
            if rows:
                ids = [meta["image_id"].iloc[i] for i in rows]
                raw = _raw_frame(ids, annotator.scores(torch.stack(images)), annotator.attributes)
                raw.insert(1, "image_sha256", [sha[i] for i in raw["image_id"]])
                found.append(raw)
            bar.update(len(batch))
            if time.monotonic() - last_flush > FLUSH_SECONDS:
                flush()
                last_flush = time.monotonic()
    finally:
        bar.close()
        if todo or folded:
            flush()  # also on an error or Ctrl-C: finished batches are kept
    for path in folded:  # in the cache now; removed only after the cache was written
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)
    raw = pd.concat(found, ignore_index=True)
    # In corpus order, however the rows reached the cache (earlier runs, other processes).
    position = raw["image_id"].map({image_id: i for i, image_id in enumerate(meta["image_id"])})
    raw = raw.iloc[np.argsort(position.to_numpy(), kind="stable")]
    return raw[["image_id", "attribute", "predicted", "confidence"]].reset_index(drop=True), skipped


TEXT_COLUMNS = ("image_id", "prompt", "profession", "descriptor", "annotator", "attribute", "value", "predicted",
                "file")


def annotation_table(table: pd.DataFrame) -> pd.DataFrame:
    """The table's columns in order, text as Python strings (object dtype, whatever pandas' default string
    type is), template, guidance and confidence as floats: the same types from a fresh run, the cache, or
    an import."""
    table = table[list(TABLE_COLUMNS)].copy()
    for column in TEXT_COLUMNS:
        table[column] = pd.Series([v if isinstance(v, str) else ("" if _blank(v) else str(v)) for v in table[column]],
                                  index=table.index, dtype=object)
    for column in ("template", "guidance", "confidence"):
        table[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    return table.reset_index(drop=True)


def _blank(value: Any) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def annotate(corpus_dir: Path | str, annotators: Sequence[Annotator], out_dir: Path | str | None = None,
             batch_size: int = 64, progress: bool = True, strict: bool = False,
             shard: Shard | None = None) -> pd.DataFrame:
    """Annotate every image of a corpus with each annotator; the tidy table of :data:`TABLE_COLUMNS`.

    ``corpus_dir``: any corpus (:func:`synthscope.generators.corpus.read_corpus`); its manifest gives the
    image ids (:func:`image_ids`) and prompt metadata (:func:`corpus_metadata`; missing columns are
    empty). Images are read in batches of ``batch_size`` and resized to each annotator's input size.

    With ``out_dir`` (the audit folder) each annotator's raw scores are kept in
    ``out_dir/annotator_cache/<name>.csv`` (with the annotator's identity beside, and each image's file
    hash), so a re-run annotates only images it has not seen (e.g. ones added since); the threshold
    is applied when reading, so changing ``abstain_below`` costs nothing. It also writes
    ``annotations.csv`` (the table), ``annotator_prompts.csv`` (every label prompt used) and
    ``annotators.json`` (each annotator's description). An unreadable image is skipped with a warning
    naming it (an error with ``strict``).

    ``shard``: this process's place when several annotate together (each reads the images it owns,
    the main process folds their caches together and writes the table, which every process returns).
    """
    names = [a.name for a in annotators]
    if not annotators:
        raise UserError("give at least one annotator")
    if len(set(names)) != len(names):
        raise UserError(f"annotator names must be unique, got {', '.join(names)}")
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}")
    corpus = read_corpus(corpus_dir, strict=strict)
    meta = corpus_metadata(corpus)
    out = Path(out_dir) if out_dir is not None else None
    shard = shard or Shard()
    if shard.distributed:
        if out is None:
            raise UserError("several processes annotate together only with out_dir (where their parts meet)")
        for annotator in annotators:  # each reads the images it owns into its own cache part
            with shard.main_first():  # e.g. a probe trained on first use: once, then read by the others
                annotator.cache_key()
            _run_annotator(annotator, corpus, meta, out, int(batch_size), shard.progress(progress), strict, shard)
        shard.wait()
        if not shard.is_main:
            shard.wait()  # until the main process has written the table
            return read_annotations(out / ANNOTATIONS_FILE)
    tables, skipped_all = [], {}
    for annotator in annotators:  # alone, or the main process folding in every part: nothing left to read
        raw, skipped = _run_annotator(annotator, corpus, meta, out, int(batch_size), shard.progress(progress),
                                      strict)
        tables.append(annotator.finish(raw))
        skipped_all.update(dict(skipped))
    if skipped_all:
        listed = "; ".join(f"{f} ({r})" for f, r in list(skipped_all.items())[:5])
        warnings.warn(f"{len(skipped_all)} image(s) of {corpus.root} could not be read and have no annotations: "
                      f"{listed}", stacklevel=2)
    table = annotation_table(pd.concat(tables, ignore_index=True).merge(meta, on="image_id", how="left"))
    if out is not None:
        atomic_write_bytes(out / ANNOTATIONS_FILE, table.to_csv(index=False).encode("utf-8"))
        prompts = pd.concat([a.prompts() for a in annotators], ignore_index=True)
        atomic_write_bytes(out / PROMPTS_FILE, prompts.to_csv(index=False).encode("utf-8"))
        atomic_write_json(out / ANNOTATORS_FILE, {"corpus": str(Path(corpus_dir)), "n_images": len(meta),
                                                  "skipped": [{"file": f, "reason": r} for f, r in skipped_all.items()],
                                                  "annotators": [a.describe() for a in annotators]})
    shard.wait()
    return table


def read_annotations(path: Path | str) -> pd.DataFrame:
    """Read an ``annotations.csv`` written by :func:`annotate` (or a human import saved as CSV) back with
    the right types: ids and values as text (skin tone "1" stays "1"), template/guidance/confidence as
    numbers (the same types :func:`annotate` returns)."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8")
    for column in ("template", "guidance", "confidence"):
        if column in table.columns:
            table[column] = pd.to_numeric(table[column].replace("", np.nan), errors="coerce")
    return annotation_table(table) if set(TABLE_COLUMNS) <= set(table.columns) else table
