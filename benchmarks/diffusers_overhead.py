"""Diffusers backend overhead: the audit runner + DiffusersBackend vs calling the same pipeline directly.

(a) ``synthscope.audits.runner.generate_corpus(jobs, DiffusersBackend(path, ...), out)`` for ``--n``
    images into an empty corpus folder (per-image seeded generators, atomic PNG writes with fsync, the
    manifest rewritten and corpus.json updated per batch, provenance, progress bar off);
(b) a bare loop over the same pipeline object (the backend's own ``.pipeline``: same weights, dtype,
    device, progress bar disabled) with the same prompts, batch size, steps, guidance and one
    ``torch.Generator().manual_seed(seed)`` per image, saving each image with ``PIL.Image.save`` into
    a folder: the same work minus our bookkeeping.

Both run alternately ``--repeats`` times into fresh folders; the best of each is kept. Prints seconds per
image for both and their ratio (target: <= 1.05). The pipeline is the tests' tiny Stable-Diffusion-style
one (``tests/tiny_diffusers.py``: random weights, UNet/VAE channels (32, 64), CLIP text encoder of width
32), saved with ``save_pretrained`` and loaded back as a hub model would be. Its builder has no channel
width option, so a call is made heavier with ``--sample-size`` (latent side; images are twice that;
default 32 -> 64 px images) and ``--steps``. A real Stable Diffusion call is seconds to minutes per
image, so the overhead measured here is an upper bound on the relative overhead of a real audit.

``--threads`` defaults to 1: on a CPU shared with other processes, intra-op thread pools spinning on
contended cores can slow a call down a hundredfold and make the timings noise.

    python benchmarks/diffusers_overhead.py [--n 32] [--batch-size 4] [--steps 10] [--sample-size 32]
                                            [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from synthscope.audits.backends import DiffusersBackend
from synthscope.audits.runner import ImageJob, generate_corpus

TESTS = Path(__file__).resolve().parents[1] / "tests"  # tiny_diffusers.py lives with the tests

PROFESSIONS = ("doctor", "nurse", "engineer", "chief executive", "janitor", "teacher", "software developer",
               "housekeeper")


def save_tiny(path: Path, sample_size: int) -> Path:
    """The tests' tiny pipeline, saved with ``save_pretrained`` to ``path``."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    from tiny_diffusers import save_tiny_pipeline

    return save_tiny_pipeline(path, sample_size=sample_size)


def make_jobs(n: int) -> list[ImageJob]:
    """``n`` images over eight profession prompts, one seed each, default guidance."""
    jobs = []
    for i in range(n):
        profession = PROFESSIONS[i % len(PROFESSIONS)]
        article = "an" if profession[0] in "aeiou" else "a"
        jobs.append(ImageJob(f"{profession}#{i // len(PROFESSIONS)}", f"a photo of {article} {profession}",
                             seed=1000 + i, attributes={"profession": profession}))
    return jobs


def batches(jobs: list[ImageJob], batch_size: int) -> list[list[ImageJob]]:
    """The runner's plan for jobs of one guidance: consecutive slices of ``batch_size``."""
    return [jobs[start:start + batch_size] for start in range(0, len(jobs), batch_size)]


def bare_loop(pipeline, jobs: list[ImageJob], batch_size: int, kwargs: dict, folder: Path) -> None:
    """The baseline: the pipeline called directly, one generator per image, each image saved as a PNG."""
    folder.mkdir(parents=True)
    index = 0
    for batch in batches(jobs, batch_size):
        generators = [torch.Generator(device="cpu").manual_seed(job.seed) for job in batch]
        with torch.inference_mode():
            images = pipeline(prompt=[job.prompt for job in batch], generator=generators, output_type="pil",
                              **kwargs).images
        for image in images:
            image.save(folder / f"{index:06d}.png")
            index += 1


def ours(backend: DiffusersBackend, jobs: list[ImageJob], batch_size: int, folder: Path) -> None:
    summary = generate_corpus(jobs, backend, folder, batch_size=batch_size, progress=False)
    assert summary.generated == len(jobs) and summary.already_done == 0, summary


def same_images(bare_folder: Path, corpus_folder: Path, n: int) -> bool:
    """Both arms made the same pixels (so they did the same work)."""
    import numpy as np
    from PIL import Image

    for i in range(n):
        with Image.open(bare_folder / f"{i:06d}.png") as a, Image.open(corpus_folder / "images" / f"{i:06d}.png") as b:
            if not np.array_equal(np.asarray(a), np.asarray(b)):
                return False
    return True


def timed(function, *args) -> float:
    began = time.perf_counter()
    function(*args)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=32, help="images per timed run (default: 32)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per pipeline call (default: 4)")
    parser.add_argument("--steps", type=int, default=10, help="num_inference_steps (default: 10)")
    parser.add_argument("--sample-size", type=int, default=32,
                        help="latent side of the tiny pipeline; images are twice as large (default: 32)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats; the best of each is kept")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    jobs = make_jobs(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = save_tiny(root / "pipeline", args.sample_size)
        backend = DiffusersBackend(path, num_inference_steps=args.steps, device="cpu", batch_size=args.batch_size)
        # Exactly the keywords the backend passes (its options without the unset ones, and the guidance).
        kwargs = {k: v for k, v in {**backend.options, "guidance_scale": backend.default_guidance}.items()
                  if v is not None}
        pipeline = backend.pipeline
        bare_loop(pipeline, jobs[: args.batch_size], args.batch_size, kwargs, root / "warm-up")  # warm-up
        bare_times, our_times = [], []
        for r in range(args.repeats):
            bare_times.append(timed(bare_loop, pipeline, jobs, args.batch_size, kwargs, root / f"bare-{r}"))
            our_times.append(timed(ours, backend, jobs, args.batch_size, root / f"corpus-{r}"))
        bare, mine = min(bare_times) / args.n, min(our_times) / args.n
        side = args.sample_size * 2
        print(f"tiny StableDiffusionPipeline ({side} px images, {args.steps} steps, guidance "
              f"{backend.default_guidance}), {args.n} images in batches of {args.batch_size}, "
              f"{args.threads} thread(s), best of {args.repeats}")
        print(f"  bare pipeline loop     : {bare:8.4f} s/image   (runs: {', '.join(f'{t:.2f}' for t in bare_times)} s)")
        print(f"  generate_corpus        : {mine:8.4f} s/image   (runs: {', '.join(f'{t:.2f}' for t in our_times)} s)")
        same = same_images(root / "bare-0", root / "corpus-0", args.n)
        print(f"  same pixels in both    : {'yes' if same else 'NO'}")
        print(f"  ratio {mine / bare:.3f} (target <= 1.05)   overhead {(mine - bare) * 1e3:+.1f} ms/image")


if __name__ == "__main__":
    main()
