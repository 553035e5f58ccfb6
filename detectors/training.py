"""Training a CNN detector on one real corpus against one or more synthetic corpora, and
evaluating it with a decision threshold fixed on held-out *real* images only."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from synthscope.errors import UserError
from synthscope.runtime import ThreadGovernor, atomic_write_bytes, resolve_device, seed_everything

from .base import Detector, check_output_folder
from .cnn import CNNDetector
from .domain import training_profile
from .metrics import DetectionReport, evaluate_scores, threshold_at_fpr
from .perturbations import BlurJpegAugment

HISTORY_FILE = "history.csv"


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


@dataclass
class DetectorRun:
    """A trained detector (any kind), its threshold (fixed on held-out reals) and its training record."""

    detector: Detector
    threshold: float
    target_fpr: float
    history: pd.DataFrame
    out: Path
    seconds: float


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


def fit_detector(data: LabelledImages, out: Path | str, arch: str = "small", size: int = 32,
                 pretrained: str | None = None, epochs: int = 30, batch_size: int = 64, lr: float = 1e-3,
                 p_blur: float = 0.5, p_jpeg: float = 0.5, blur_sigma: tuple[float, float] = (0.0, 3.0),
                 jpeg_quality: tuple[int, int] = (30, 100), val_fraction: float = 0.2, patience: int = 5,
                 target_fpr: float = 0.01, seed: int = 0, device: str = "auto", progress: bool = True,
                 record: dict | None = None) -> DetectorRun:
    """Train a CNN detector with balanced real/fake batches and blur+JPEG augmentation.

    Each image is blurred with probability ``p_blur`` (sigma drawn from ``blur_sigma``) and
    JPEG-compressed with probability ``p_jpeg`` (quality drawn from ``jpeg_quality``). A stratified
    ``val_fraction`` is held out: its loss drives early stopping (after ``patience`` epochs without
    improvement; the best epoch's weights are kept) and its *real* images alone fix the decision
    threshold for ``target_fpr``. ``record`` (e.g. the corpora used) is saved with the training settings.
    """
    if not (data.labels == 0).any() or not (data.labels == 1).any():
        raise UserError("training needs both real and synthetic images")
    check_output_folder(out)
    seed_everything(seed)
    device = resolve_device(device)
    train, val = stratified_split(data, val_fraction, seed)
    check_training_split(data, train, val, record)
    detector = CNNDetector(arch, channels=data.images.shape[1], size=size, pretrained=pretrained).to(device)
    optimizer = torch.optim.AdamW(detector.parameters(), lr=lr, weight_decay=1e-4)
    augment = BlurJpegAugment(p_blur=p_blur, p_jpeg=p_jpeg, sigma=blur_sigma, quality=jpeg_quality)
    generator = torch.Generator().manual_seed(seed)
    real_index = np.flatnonzero(train.labels == 0)
    fake_index = np.flatnonzero(train.labels == 1)
    steps_per_epoch = max(1, len(train) // batch_size)
    half = max(1, batch_size // 2)

    best_loss, best_state, stale, records = float("inf"), None, 0, []
    began = time.perf_counter()
    bar = tqdm(total=epochs * steps_per_epoch, desc=f"train detector ({arch})", unit="step", disable=not progress)
    governor = ThreadGovernor()  # fewer threads while other jobs share the CPUs, all of them alone
    for epoch in range(1, epochs + 1):
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
        val_scores = detector.score(val.images)
        val_loss = float(F.binary_cross_entropy(torch.from_numpy(val_scores).clamp(1e-7, 1 - 1e-7),
                                                torch.from_numpy(val.labels).double()))
        records.append({"epoch": epoch, "train_loss": loss.item(), "val_loss": val_loss})
        bar.set_postfix(val_loss=f"{val_loss:.3f}")
        if val_loss < best_loss - 1e-4:
            best_loss, best_state, stale = val_loss, copy.deepcopy(detector.state_dict()), 0
        else:
            stale += 1
            if stale >= patience:
                break
    bar.close()
    detector.load_state_dict(best_state)
    val_scores = detector.score(val.images)
    threshold = threshold_at_fpr(val_scores[val.labels == 0], target_fpr)
    seconds = time.perf_counter() - began
    out = Path(out)
    history = pd.DataFrame(records)
    detector.save(out, extra={
        "threshold": threshold, "target_fpr": target_fpr,
        "threshold_source": f"{int((val.labels == 0).sum())} held-out real images (no test labels)",
        "training_domain": training_profile(data.images, data.files, seed=seed),
        "training": {**(record or {}), "fake_sources": seen_sources(data), "epochs_run": len(records),
                     "best_val_loss": best_loss, "batch_size": batch_size, "lr": lr, "patience": patience,
                     "p_blur": p_blur, "p_jpeg": p_jpeg, "blur_sigma": list(augment.sigma),
                     "jpeg_quality": list(augment.quality), "seed": seed, "n_train": len(train),
                     "n_val": len(val), "seconds": round(seconds, 1)},
    })
    atomic_write_bytes(out / HISTORY_FILE, history.to_csv(index=False).encode())
    return DetectorRun(detector.eval(), threshold, target_fpr, history, out, seconds)


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

