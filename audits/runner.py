"""Resumable generation of an audit's images into a corpus.

An audit is a list of :class:`ImageJob` (one per image: a unique key, the prompt, the seed, the
guidance and the attributes the audit groups by). :func:`generate_corpus` writes them through a
backend into a corpus folder, batch by batch. Each batch is committed atomically by the
CorpusWriter, so a run that is killed loses at most the batch in flight, and a re-run skips every key
the manifest already lists. Batches are planned from the whole job list, and each image depends
only on its own prompt, seed and guidance, so an interrupted-and-resumed audit writes the same
images, in the same order, as an uninterrupted one.

Under several processes (:mod:`synthscope.distributed`) each process generates its share of the planned
batches into its own corpus part; the main process merges the parts in plan order when all are done
(and, at the start, whatever parts a killed run left), so the corpus holds the images and rows a
one-process run would.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthscope.distributed import Shard
from synthscope.errors import UserError
from synthscope.generators.corpus import open_part, read_corpus
from synthscope.generators.workflow import RESUME_KEYS, open_corpus
from tqdm.auto import tqdm

from .backends import TextToImageBackend

# Manifest columns the runner owns; a job's attributes may not use these names.
RESERVED_COLUMNS = frozenset({"file", "source", "key", "prompt", "seed", "guidance", "backend", "nsfw_filtered"})
MAX_SEED = 2**64  # torch.Generator.manual_seed takes seeds in [0, 2**64)


@dataclass(frozen=True)
class ImageJob:
    """One image to generate: ``key`` identifies it in the corpus (e.g. "<prompt hash>#<i>"), ``seed``
    seeds its own generator, ``guidance`` None means the backend's default, ``attributes`` are
    written to the manifest as columns (profession, template index, descriptor, ...)."""

    key: str
    prompt: str
    seed: int
    guidance: float | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class GenerationSummary:
    """What a :func:`generate_corpus` call did: jobs in total, images generated now, images found
    already done, and how many of the corpus's images for these jobs were NSFW-filtered (black)."""

    out: Path
    total: int
    generated: int
    already_done: int
    nsfw_filtered: int


def _check_jobs(jobs: Sequence[ImageJob]) -> None:
    """Every problem with the job list, before anything is generated or written."""
    seen: set[str] = set()
    for i, job in enumerate(jobs):
        if not isinstance(job.key, str) or not job.key:
            raise UserError(f"job {i}: key must be a non-empty string, got {job.key!r}")
        if job.key in seen:
            raise UserError(f"job {i}: key {job.key!r} appears twice; every image needs its own key")
        seen.add(job.key)
        if not isinstance(job.prompt, str):
            raise TypeError(f"job {job.key!r}: prompt must be a string, got {type(job.prompt).__name__}")
        if isinstance(job.seed, bool) or not isinstance(job.seed, int) or not 0 <= job.seed < MAX_SEED:
            raise UserError(f"job {job.key!r}: seed must be an integer in [0, 2**64), got {job.seed!r}")
        if job.guidance is not None and not math.isfinite(float(job.guidance)):
            raise UserError(f"job {job.key!r}: guidance must be a finite number, got {job.guidance!r}")
        clash = RESERVED_COLUMNS & set(job.attributes)
        if clash:
            raise UserError(f"job {job.key!r}: attribute name(s) {', '.join(sorted(clash))} are manifest "
                             f"columns the runner writes; rename them")


def _plan_batches(jobs: Sequence[ImageJob], batch_size: int) -> list[list[ImageJob]]:
    """Jobs grouped by guidance (one backend call takes one guidance), in order of first appearance,
    then cut into batches of at most ``batch_size``."""
    groups: dict[float | None, list[ImageJob]] = {}
    for job in jobs:
        groups.setdefault(None if job.guidance is None else float(job.guidance), []).append(job)
    return [group[start:start + batch_size] for group in groups.values()
            for start in range(0, len(group), batch_size)]


def _effective_guidance(job: ImageJob, backend: TextToImageBackend) -> float | None:
    return backend.default_guidance if job.guidance is None else float(job.guidance)


GUIDANCE_OPTIONS = ("guidance", "guidance_scale")  # how backends name their default guidance in describe()


def _options_used(options: Mapping[str, Any], jobs: Sequence[ImageJob],
                  backend: TextToImageBackend) -> dict[str, Any]:
    """The backend's image-affecting options with its default guidance replaced by the guidance the
    jobs use: one number when they all use one value (the default, when no job sets one), else the
    sorted list of values (a sweep). Each image's own value is in the manifest's guidance column."""
    options = dict(options)
    used = sorted({g for g in (_effective_guidance(job, backend) for job in jobs) if g is not None})
    for name in GUIDANCE_OPTIONS:
        if name in options and used:
            options[name] = used[0] if len(used) == 1 else used
    return options


def _check_done(manifest, jobs: Sequence[ImageJob], backend: TextToImageBackend, out: Path) -> None:
    """A key already in the corpus must have been made from the same prompt, seed and guidance."""
    if "key" not in manifest.columns:
        return
    by_key = {job.key: job for job in jobs}
    rows = manifest[manifest["key"].isin(by_key.keys())]
    for row in rows.to_dict("records"):
        job = by_key[row["key"]]
        guidance = _effective_guidance(job, backend)
        expected = {"prompt": job.prompt, "seed": str(job.seed), "guidance": "" if guidance is None else str(guidance)}
        differ = [c for c, v in expected.items() if c in row and row[c] != v]
        if differ:
            raise UserError(f"{out}: image {row['key']!r} was made with another {', '.join(differ)} than this audit "
                             f"asks for; write to another folder, or force to replace the corpus")


def generate_corpus(jobs: Sequence[ImageJob], backend: TextToImageBackend, out: Path | str,
                    batch_size: int | None = None, force: bool = False, progress: bool = True,
                    shard: Shard | None = None) -> GenerationSummary:
    """Generate every job's image into the corpus at ``out``, skipping keys it already holds.

    Manifest rows: key, prompt, seed, guidance (the one used), backend, the job's attributes and, where
    the backend knows, nsfw_filtered. corpus.json holds ``backend.describe()``, whose guidance option
    (and ``sample_options``) records the guidance the jobs used: one number, or the sorted list of a
    sweep, never a default no image was made with. A corpus made by another
    backend, checkpoint or image-affecting options is refused unless ``force`` (which replaces it).
    ``batch_size``: images per backend call (default: the backend's). ``shard``: this process's place
    when several generate together (every process calls this with the same jobs); None: alone.
    """
    shard = shard or Shard()
    out = Path(out)
    jobs = list(jobs)
    _check_jobs(jobs)
    batch_size = int(batch_size or backend.batch_size)
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}")
    backend.check_prompts(sorted({job.prompt for job in jobs}))  # bad prompts fail before any writing

    description = backend.describe()
    options = _options_used(description.get("options", {}), jobs, backend)
    provenance = {"generator": backend.name, "checkpoint_sha256": description.get("checkpoint_sha256"),
                  "sample_options": options, "backend": {**description, "options": options},
                  "command": "audit run"}
    # Planned over all jobs, not only the missing ones, so a resumed run keeps the original order.
    plan = _plan_batches(jobs, batch_size)
    order = [job.key for batch in plan for job in batch]
    writer = None
    if shard.is_main:
        writer = open_corpus(out, provenance, force)  # refuses a corpus made another way
        writer.merge_parts(order, same=RESUME_KEYS)  # what a killed multi-process run left
        _check_done(writer.manifest, jobs, backend, out)
    shard.wait()
    manifest = writer.manifest if writer is not None else read_corpus(out).manifest
    done = set(manifest["key"]) if "key" in manifest.columns else set()
    already = sum(job.key in done for job in jobs)
    target = writer if not shard.distributed else open_part(out, shard.part)
    # The unit of work is a planned batch (keyed by its first image): whole batches, as one process
    # would draw them, so an image is the same bytes whatever the number of processes.
    pending = [batch for batch in plan if any(job.key not in done for job in batch)]
    mine = shard.select(pending, key=lambda batch: batch[0].key)

    generated = 0
    bar = tqdm(total=sum(job.key not in done for batch in mine for job in batch), desc=f"generate {backend.name}",
               unit="img", disable=not shard.progress(progress), dynamic_ncols=True)
    try:
        for batch in mine:
            todo = [job for job in batch if job.key not in done]
            result = backend.generate([j.prompt for j in todo], [j.seed for j in todo], todo[0].guidance)
            if len(result.images) != len(todo):
                raise RuntimeError(f"backend {backend.name} returned {len(result.images)} images for "
                                   f"{len(todo)} prompts")
            rows = []
            for job, nsfw in zip(todo, result.nsfw_filtered):
                row = {"key": job.key, "prompt": job.prompt, "seed": job.seed,
                       "guidance": _effective_guidance(job, backend), "backend": backend.name,
                       **dict(job.attributes)}
                if nsfw is not None:
                    row["nsfw_filtered"] = nsfw
                rows.append(row)
            target.append(result.images, rows)
            generated += len(todo)
            bar.update(len(todo))
    finally:
        bar.close()

    shard.wait()
    if writer is not None:
        writer.merge_parts(order, same=RESUME_KEYS)
    shard.wait()  # every process sees the merged corpus from here on
    manifest = writer.manifest if writer is not None else read_corpus(out).manifest
    nsfw = 0
    if "nsfw_filtered" in manifest.columns:
        keys = {job.key for job in jobs}
        nsfw = int((manifest["key"].isin(keys) & manifest["nsfw_filtered"].eq("True")).sum())
    return GenerationSummary(out=out, total=len(jobs), generated=generated, already_done=already, nsfw_filtered=nsfw)
