"""End-to-end generator jobs behind the CLI: train (+ visuals + quality), sample to a corpus, export."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from synthscope.errors import UserError
from synthscope.images import to_uint8
from synthscope.registry import load_generator, resolve
from synthscope.runtime import check_disk, check_memory, resolve_device, seed_everything, sha256_file

from .base import CONFIG_FILE, SNAPSHOTS, WEIGHTS_FILE, Generator
from .data import load_data
from .imageset import HELDOUT_FRACTION, ImageSet
from .training import STATE_FILE, snapshot_interval, train_generator

# Default optimiser steps per model kind: each trains on digits (16 px) in about two minutes or
# less on 2 CPU cores (measured by benchmarks/generator_quality.py).
DEFAULT_STEPS = {"ae": 1500, "vae": 5000, "gan": 2500, "diffusion": 1400}
DEFAULT_SIZE = {"digits": 16, "portraits": 32}


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``["latent_dim=2", "mode=denoising"]`` -> typed dict (numbers, booleans, lists via JSON)."""
    import json

    options: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UserError(f"--set {pair!r}: expected KEY=VALUE")
        key, value = pair.split("=", 1)
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def new_generator(kind: str, data: ImageSet, conditional: bool = False, **options: Any) -> Generator:
    """An untrained generator of ``kind`` shaped for ``data``."""
    return resolve("generator", kind, where="--model")(channels=data.channels, size=data.size,
                                                      vocabulary=data.vocabulary, conditional=conditional,
                                                      **options)


def train_run(kind: str, data_spec: str = "digits", out: Path | str = "run", conditional: bool = False,
              steps: int | None = None, seed: int = 0, size: int | None = None, n: int | None = None,
              device: str = "auto", options: dict[str, Any] | None = None, force: bool = False,
              snapshot_every: int | None = None, snapshots: int = SNAPSHOTS, evaluate: bool = True,
              progress: bool = True, strict: bool = False, judge_dir: Path | None = None, eval_samples: int = 1000,
              score: bool = True):
    """Train a generator into ``out``; an existing run there is resumed (``force`` starts over).

    With ``evaluate``, the run folder also gets the lecture visuals and the quality scores, and the
    result is a RunEvaluation (else the TrainingRun). ``judge_dir`` shares the quality judge between
    runs on the same data.
    """
    out = Path(out)
    if force and out.exists():
        clear_run(out)
    seed_everything(seed)
    size = size or DEFAULT_SIZE.get(data_spec, 32)
    data = load_data(data_spec, size=size, n=n, seed=seed, strict=strict)
    train, heldout = training_split(data, seed)
    model = new_generator(kind, data, conditional, **(options or {}))
    steps = int(DEFAULT_STEPS[kind] if steps is None else steps)
    if steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    if snapshot_every is None:
        snapshot_every = snapshot_interval(model, steps, snapshots)
    run = train_generator(
        model, train, out, steps=steps, seed=seed, device=resolve_device(device),
        snapshot_every=snapshot_every, progress=progress,
        run_info={"data": {"spec": data_spec, "size": size, "n": len(data), "train": len(train),
                           "heldout": len(heldout)}, "command": "generate train"},
    )
    if evaluate:
        from .evaluation import evaluate_run

        return evaluate_run(run, train, heldout, seed=seed, n_samples=eval_samples, judge_dir=judge_dir,
                            score=score)
    return run


def training_split(data: ImageSet, seed: int) -> tuple[ImageSet, ImageSet]:
    """The (training, held-out) split every training run makes, refused when fewer than two training
    images remain (batch normalisation needs two in a batch)."""
    train, heldout = data.split(seed=seed)
    if len(train) < 2:
        raise UserError(f"--n {len(data)}: {len(train)} training image(s) remain after holding out "
                        f"{HELDOUT_FRACTION:.0%} for evaluation; training needs at least 2 (use --n 3 or more)")
    return train, heldout


def clear_run(run_dir: Path) -> None:
    """Remove everything a training run and its evaluation wrote (a translation run's too), so nothing
    stale survives --force."""
    from .evaluation import ADHERENCE_FILE, JUDGE_DIR, QUALITY_FILE, VISUALS_DIR
    from .training import HISTORY_FILE
    from .translation_eval import CHANGES_FILE, PRESERVATION_FILE, RESULT_FILE

    for name in (STATE_FILE, CONFIG_FILE, WEIGHTS_FILE, HISTORY_FILE, QUALITY_FILE, ADHERENCE_FILE,
                 RESULT_FILE, PRESERVATION_FILE, CHANGES_FILE):
        (run_dir / name).unlink(missing_ok=True)
    for folder in ("snapshots", VISUALS_DIR, JUDGE_DIR):
        shutil.rmtree(run_dir / folder, ignore_errors=True)


# Provenance entries that must match before new images may join an existing corpus.
# (A data export's "n" may change: its images are checked instead, see _check_same_start.)
RESUME_KEYS = ("generator", "checkpoint_sha256", "seed", "sample_options", "data", "size", "batch_size")


def open_corpus(out: Path, provenance: dict[str, Any], force: bool):
    """A writer that resumes ``out`` only if it was made the same way (else: an error, or with
    ``force`` a fresh corpus), so images of two different origins never mix."""
    from .corpus import CorpusWriter, read_corpus

    if force:
        return CorpusWriter(out, provenance=provenance, mode="overwrite")
    if (out / "manifest.csv").exists():
        existing = read_corpus(out).provenance
        changed = [k for k in RESUME_KEYS
                   if k in provenance and not _same_origin(out, k, existing.get(k), provenance[k])]
        if changed:
            raise UserError(f"{out}: holds a corpus made with other {', '.join(changed)}; "
                             f"use another --out folder, or --force to replace it")
    return CorpusWriter(out, provenance=provenance)


def _same_origin(out: Path, key: str, recorded: Any, wanted: Any) -> bool:
    """Whether a resume key names the same origin. "data" may name a source folder, relative to the
    corpus (so that a corpus moved together with its source resumes) or absolute (as older corpora
    recorded it): two names of one folder are the same origin."""
    if recorded == wanted:
        return True
    if key != "data" or not (isinstance(recorded, str) and isinstance(wanted, str)):
        return False
    folder = out / recorded  # an absolute path stays itself
    return folder.is_dir() and folder.resolve() == (out / wanted).resolve()


def sample_to_corpus(run_dir: Path | str, out: Path | str, n: int, prompts: list[str] | None = None,
                     seed: int = 0, batch_size: int = 64, device: str = "auto",
                     progress: bool = True, force: bool = False, **sample_options: Any) -> Path:
    """Write ``n`` samples (per prompt) of a trained generator as a corpus, resuming a partial one.

    Batch ``b`` of prompt ``p`` is drawn with its own seed, so a resumed run with the same ``n`` and
    ``batch_size`` writes exactly the images an uninterrupted one would have; asking for more images
    later adds the missing ones, never a duplicate. Launched as several processes, each draws its
    share of the batches into its own part and the main process merges them (the same images
    and manifest as one process).
    """
    from synthscope.distributed import current_shard

    from .corpus import open_part, read_corpus

    if n < 1 or batch_size < 1:
        raise UserError(f"--n and --batch-size must be at least 1 (got {n} and {batch_size})")
    run_dir, out = Path(run_dir), Path(out)
    guidance = sample_options.get("guidance")
    if guidance is not None and not 0 <= float(guidance) <= 100:
        raise UserError(f"--guidance must be between 0 and 100 (a classifier-free guidance scale), got {guidance}")
    count = n * len(prompts or [None])
    check_memory(count * 200, f"--n {n}")  # the plan holds a key per image
    shard = current_shard(device)
    model = load_generator(run_dir, device=shard.device(device))
    if model.kind != "diffusion" and sample_options:
        raise UserError(f"{', '.join(sorted(sample_options))}: only diffusion models take these "
                         f"sampling options; {run_dir} holds a {model.kind}")
    for prompt in prompts or []:
        model.conditions_for(1, prompt)  # fail on a bad prompt before writing anything
    check_disk(count * (model.channels * model.size ** 2 + 200), out, f"--n {n} images of {model.size} px")
    provenance = {
        "generator": model.kind, "run_dir": str(run_dir),
        "checkpoint_sha256": sha256_file(run_dir / WEIGHTS_FILE),
        "config": model.config(), "seed": seed, "sample_options": sample_options,
        "batch_size": batch_size, "command": "generate sample",
    }
    jobs = [(p, start) for p in (prompts or [None]) for start in range(0, n, batch_size)]
    order = [f"{p or ''}#{i}" for p in (prompts or [None]) for i in range(n)]
    writer = None
    if shard.is_main:
        writer = open_corpus(out, provenance, force)
        writer.merge_parts(order, same=RESUME_KEYS)  # what a killed multi-process run left
    shard.wait()
    done = writer.existing("key") if writer is not None else set(read_corpus(out).manifest.get("key", []))
    target = writer if not shard.distributed else open_part(out, shard.part)
    pending = [(p, start) for p, start in jobs
               if any(f"{p or ''}#{i}" not in done for i in range(start, min(n, start + batch_size)))]
    mine = shard.select(pending, key=lambda job: f"{job[0] or ''}#{job[1]}")
    bar = tqdm(total=sum(min(batch_size, n - start) for _, start in mine), desc=f"sample {model.kind}",
               unit="img", disable=not (mine and shard.progress(progress)))  # nothing to draw: no bar
    for prompt, start in mine:
        count = min(batch_size, n - start)
        keys = [f"{prompt or ''}#{start + i}" for i in range(count)]
        batch_seed = int(np.random.SeedSequence([seed, start, _stable_hash(prompt)]).generate_state(1)[0])
        images = model.sample(count, prompt=prompt, seed=batch_seed, **sample_options)
        requested = model.vocabulary.parse(prompt) if prompt and model.vocabulary else {}
        rows = [{"key": key, "source": model.kind, "prompt": prompt or "", "seed": batch_seed,
                 "batch_index": i, **{f"requested_{a}": v for a, v in requested.items()}}
                for i, key in enumerate(keys)]
        # A batch that is only partly written (e.g. an earlier run asked for fewer images) adds
        # only its missing images: a key is never listed twice.
        keep = [i for i, key in enumerate(keys) if key not in done]
        target.append(images[keep], [rows[i] for i in keep])
        bar.update(count)
    bar.close()
    shard.wait()
    if writer is not None:
        writer.merge_parts(order, same=RESUME_KEYS)
    shard.wait()
    return out


def _check_same_start(writer, data: ImageSet, name: str) -> None:
    """A corpus exported with another ``--n`` is resumed only when its images are the first ones of
    this export (then the rest is added, or nothing when it already holds more)."""
    from .corpus import read_corpus

    have = len(writer)
    stored = read_corpus(writer.root).load_images(channels=data.images.shape[1], progress=False)
    ours = to_uint8(data.images[:have])
    if len(ours) != have or not torch.equal(to_uint8(stored), ours):
        raise UserError(
            f"{writer.root}: holds {have} {name} images that are not the first ones of a {len(data)}-image "
            f"export" + (" (portraits are drawn as a whole, so another --n is another draw)"
                         if name == "portraits" else "") + "; use another --out folder, or --force to replace it")


def _stable_hash(text: str | None) -> int:
    import zlib

    return zlib.crc32((text or "").encode())


def export_builtin(name: str, out: Path | str, n: int | None = None, seed: int = 0,
                   size: int | None = None, progress: bool = True, force: bool = False) -> Path:
    """Write built-in real images (digits or portraits) as a corpus: the "real" side."""
    if n is not None and n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    if name not in DEFAULT_SIZE:
        raise UserError(f"unknown built-in data set {name!r}; choose from {', '.join(DEFAULT_SIZE)}")
    size = size or DEFAULT_SIZE[name]
    data = load_data(name, size=size, n=n, seed=seed)
    return write_image_set(data, out, {"generator": "real", "data": name, "size": size, "seed": seed,
                                       "command": "data export"}, key=name, progress=progress, force=force)


def write_image_set(data: ImageSet, out: Path | str, provenance: dict[str, Any], key: str, progress: bool = True,
                    force: bool = False) -> Path:
    """Write real images (``data``, with its attributes and captions) as a corpus, resuming a partial
    one: image i gets the manifest key ``{key}#{i}`` and the source "real"."""
    writer = open_corpus(Path(out), {**provenance, "n": len(data)}, force)
    done = len(writer)
    if done and done != len(data):
        _check_same_start(writer, data, key)
    rows = data.attributes.astype(str).to_dict("records")
    bar = tqdm(total=len(data), initial=done, desc=f"export {key}", unit="img", disable=not progress)
    for start in range(done, len(data), 256):
        stop = min(len(data), start + 256)
        batch_rows = [{"key": f"{key}#{i}", "source": "real", "caption": data.captions[i], **rows[i]}
                      for i in range(start, stop)]
        writer.append(data.images[start:stop], batch_rows)
        bar.update(stop - start)
    bar.close()
    return Path(out)
