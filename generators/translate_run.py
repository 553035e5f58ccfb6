"""Translation jobs behind the CLI: train pix2pix or CycleGAN on a translation set into a run folder,
and translate a folder or corpus with a trained run into a corpus that links each output to its input."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from synthscope.errors import UserError
from synthscope.registry import load_generator, resolve
from synthscope.runtime import resolve_device, seed_everything, sha256_file

from .base import TRANSLATION_SNAPSHOTS, WEIGHTS_FILE
from .pairs import PairedImageSet, folder_pairs, parse_translation, portrait_pairs, translation_set
from .training import TrainingRun, snapshot_interval, train_generator

TRANSLATION_KINDS = ("pix2pix", "cyclegan")
# Default optimiser steps on 32 px portraits: pix2pix takes about a minute on one CPU thread and then
# beats the identity baseline on held-out people (benchmarks/translation.py); CycleGAN's steps cost
# about twice as much.
DEFAULT_STEPS = {"pix2pix": 2500, "cyclegan": 1000}
DEFAULT_PORTRAITS = 1000  # people drawn (pairs) when --n is not given


@dataclass
class TranslationRun(TrainingRun):
    """A trained translation run and, when it was evaluated, what the evaluation measured."""

    evaluation: Any = None  # a translation_eval.TranslationEvaluation


def load_translation_data(kind: str, data_spec: str, translate: str | None, size: int = 32, n: int | None = None,
                          seed: int = 0, strict: bool = False) -> PairedImageSet:
    """The training set ``--data``/``--translate`` describe: portraits drawn paired (pix2pix) or unpaired
    (CycleGAN: the pairs are never shown), or a folder with A/ and B/."""
    paired = kind == "pix2pix"
    if data_spec == "portraits":
        if translate is None:
            raise UserError(f"--model {kind} --data portraits: say what to translate, e.g. "
                            f"--translate 'age:young->older' or --translate colour")
        a, b = portrait_pairs(n or DEFAULT_PORTRAITS, parse_translation(translate), seed=seed, size=size,
                              paired=paired)
        return translation_set(a, b, paired=paired)
    if translate is not None:
        raise UserError(f"--translate {translate!r} draws portraits; use it with --data portraits "
                        f"(a folder of your own holds its domains in A/ and B/)")
    if data_spec == "digits":
        raise UserError(f"--model {kind} translates between two domains: use --data portraits with --translate, "
                        f"or a folder with A/ and B/")
    path = Path(data_spec)
    if not path.exists():
        raise FileNotFoundError(f"--data {data_spec!r}: not portraits and no such folder")
    data = folder_pairs(path, size=size, strict=strict)
    if n is not None and n < len(data):
        data = data.subset(range(n))
    return data


def train_translation(kind: str, data_spec: str, out: Path | str, translate: str | None = None,
                      steps: int | None = None, seed: int = 0, size: int | None = None, n: int | None = None,
                      device: str = "auto", options: dict[str, Any] | None = None, force: bool = False,
                      progress: bool = True, strict: bool = False, evaluate: bool = True,
                      judge_dir: Path | None = None, snapshot_every: int | None = None,
                      snapshots: int = TRANSLATION_SNAPSHOTS) -> TranslationRun:
    """Train a translation model into ``out`` (resumed if a run is there; ``force`` starts over), on 80 %
    of the set; the held-out 20 % are for measuring it against the true targets. With ``evaluate``,
    the run folder also gets that measurement (:mod:`.translation_eval`: ``translation.json``,
    ``attribute_preservation.csv``, ``attribute_changes.csv``) and its lecture visuals, and the run's
    ``evaluation`` holds it. ``judge_dir`` shares the judge between runs on the same data. Training
    snapshots (the first training inputs translated) are saved every ``snapshot_every`` steps, by
    default about ``snapshots`` times a run."""
    from .workflow import clear_run, training_split

    if kind not in TRANSLATION_KINDS:
        raise UserError(f"--translate needs a translation model ({', '.join(TRANSLATION_KINDS)}), not {kind}")
    out = Path(out)
    if force and out.exists():
        clear_run(out)
    seed_everything(seed)
    size = size or 32
    data = load_translation_data(kind, data_spec, translate, size=size, n=n, seed=seed, strict=strict)
    train, heldout = training_split(data, seed)
    model = resolve("generator", kind, where="--model")(channels=train.channels, size=train.size,
                                                      **(options or {}))
    steps = int(DEFAULT_STEPS[kind] if steps is None else steps)
    if steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    if snapshot_every is None:
        snapshot_every = snapshot_interval(model, steps, snapshots)
    info = {"data": {"spec": data_spec, "translate": None if translate is None else str(parse_translation(translate)),
                     "paired": data.paired, "size": size, "n": len(data), "train": len(train),
                     "heldout": len(heldout)}, "command": "generate train"}
    run = train_generator(model, train, out, steps=steps, seed=seed, device=resolve_device(device),
                          snapshot_every=snapshot_every, progress=progress, run_info=info)
    if evaluate:
        from .translation_eval import evaluate_translation_run

        inputs, targets = evaluation_pairs(heldout, data_spec, translate, size, seed)
        translation = None if translate is None else parse_translation(translate)
        evaluation = evaluate_translation_run(
            run, train, inputs, targets, changed=None if translation is None else translation.attribute,
            translation=None if translation is None else str(translation), seed=seed, judge_dir=judge_dir,
            judged_by=judge_training_set(train, data_spec, translate, size, n, seed))
        return TranslationRun(**vars(run), evaluation=evaluation)
    return TranslationRun(**vars(run))


def judge_training_set(train: PairedImageSet, data_spec: str, translate: str | None, size: int, n: int | None,
                       seed: int) -> PairedImageSet:
    """What the judge of a run reads its outputs with learns from. Portraits runs of the same draw
    (translation, people, size, seed) share one: the training split of the paired draw, which is
    pix2pix's own training set. So pix2pix and CycleGAN are read by the same judge, and with a shared
    ``judge_dir`` it is trained once. A folder run's judge learns from its own training split."""
    from .workflow import training_split

    if data_spec != "portraits" or train.paired:
        return train
    paired = load_translation_data("pix2pix", data_spec, translate, size=size, n=n, seed=seed)
    return training_split(paired, seed)[0]


# Seed offset of the held-out people an unpaired portrait run is measured on: other people than any
# it trained on, drawn paired so that each has a true target.
EVALUATION_SEED_OFFSET = 7919


def evaluation_pairs(heldout: PairedImageSet, data_spec: str, translate: str | None, size: int,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Held-out inputs and their true targets. A paired held-out split is its own truth; unpaired
    portraits (CycleGAN) are measured on as many new people drawn paired (never trained on); an
    unpaired folder has no truth (None)."""
    if heldout.paired:
        return heldout.inputs, heldout.images
    if data_spec == "portraits" and translate is not None:
        a, b = portrait_pairs(max(len(heldout), 2), parse_translation(translate), seed=seed + EVALUATION_SEED_OFFSET,
                              size=size, paired=True)
        return a.images, b.images
    return heldout.inputs, None


def _relative_to(source: Path, out: Path) -> str:
    """``source`` as a corpus at ``out`` names it: relative to the corpus, so that a folder moved together
    with its source (a lab folder copied elsewhere) still resumes (workflow.open_corpus)."""
    try:
        return Path(os.path.relpath(source.resolve(), out.resolve())).as_posix()
    except ValueError:  # on another drive (Windows): no relative path exists
        return str(source.resolve())


def translate_to_corpus(run_dir: Path | str, source: Path | str, out: Path | str, batch_size: int = 64,
                        device: str = "auto", progress: bool = True, force: bool = False) -> Path:
    """Translate every image of ``source`` (a folder or a corpus) with the model in ``run_dir``, into a
    corpus at ``out`` whose manifest names each output's input (``input_file``). Re-running adds only
    the images not yet translated."""
    from .corpus import read_corpus
    from .workflow import open_corpus

    run_dir, source, out = Path(run_dir), Path(source), Path(out)
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    model = load_generator(run_dir, device=resolve_device(device))
    if not hasattr(model, "translate"):
        raise UserError(f"{run_dir} holds a {model.kind}, which draws new images; translate needs a translation "
                        f"model ({', '.join(TRANSLATION_KINDS)})")
    corpus = read_corpus(source)
    images = corpus.load_images(size=model.size, channels=model.channels, progress=progress)
    files = list(corpus.manifest["file"])  # after load_images: unreadable files are dropped from both
    # "data" is one of the keys a resumed corpus must share: outputs of two inputs never mix.
    provenance = {"generator": model.kind, "run_dir": str(run_dir), "data": _relative_to(source, out),
                  "checkpoint_sha256": sha256_file(run_dir / WEIGHTS_FILE), "config": model.config(),
                  "size": model.size, "command": "generate translate"}
    keys = [f"translate#{file}" for file in files]
    with open_corpus(out, provenance, force) as writer:
        done = writer.existing("key")
        pending = [i for i, key in enumerate(keys) if key not in done]
        bar = tqdm(total=len(pending), desc=f"translate {model.kind}", unit="img", disable=not progress)
        for start in range(0, len(pending), batch_size):
            chosen = pending[start:start + batch_size]
            outputs = model.translate(images[torch.tensor(chosen, dtype=torch.long)])
            rows = [{"key": keys[i], "source": model.kind, "input_file": (source / files[i]).as_posix()}
                    for i in chosen]
            writer.append(outputs, rows)
            bar.update(len(chosen))
        bar.close()
    return out
