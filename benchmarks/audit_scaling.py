"""Scaling: the same builtin-backend audit and the same `detect scan` with 1 and with 2 processes.

Each configuration runs as real processes (`accelerate launch --multi_gpu --num_processes 2`, which
starts CPU processes through torchrun when the device is cpu; one process: plain `python`), one
torch thread each, on a machine that should otherwise be idle. Inside the processes the stages are
timed (after the imports and model loading that any launch pays once):

- audit: generating the images (the builtin diffusion model, trained once beforehand) and annotating
  them with the probe; images per second, and the merge of the processes' parts as a share of the run;
- scan: scoring every file of a folder of PNGs with a small CNN detector; files per second, and the
  merge of the processes' CSV parts as a share of the run.

Prints each figure for 1 and 2 processes and the speed-up (target: >= 1.6x on 2 cores), and checks
that the outputs are the same (image bytes per key, audit tables, scan rows). Wall times of the whole
commands (with start-up) are printed too.

Last, the merge alone at auditor scale: ``--merge-rows`` images (default 43,800 = 146 professions x 3
phrasings x 100 images) written as 8 process parts, then merged into one corpus.

    python benchmarks/audit_scaling.py [--images-per-prompt 64] [--files 5000] [--merge-rows 43800] [--work DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """
[audit]
name = "scaling"

[prompts]
templates = ["a photo of a {{profession}}", "a portrait of a {{profession}}"]
professions = ["doctor", "nurse", "engineer", "chief executive", "janitor", "teacher", "software developer",
               "housekeeper"]
images_per_prompt = {n}
seed = 0

[backend]
kind = "builtin"
train_steps = 300
checkpoint = "{checkpoint}"
device = "cpu"

[[annotators]]
kind = "probe"
attributes = ["gender", "skin_tone"]

[reference]
source = "none"
"""


# ------------------------------------------------------------------------------ inside each process


def worker(job_file: str) -> None:
    """Run one timed job in this process (one of several when launched by accelerate)."""
    import torch

    torch.set_num_threads(1)
    from synthscope.distributed import current_shard
    from synthscope.generators import corpus

    job = json.loads(Path(job_file).read_text())
    shard = current_shard("cpu")
    merging = [0.0]
    merge_parts = corpus.CorpusWriter.merge_parts

    def timed_merge(self, *args, **kwargs):
        began = time.perf_counter()
        try:
            return merge_parts(self, *args, **kwargs)
        finally:
            merging[0] += time.perf_counter() - began

    corpus.CorpusWriter.merge_parts = timed_merge
    times: dict[str, float] = {}
    shard.wait()
    began = time.perf_counter()
    if job["job"] == "audit":
        from synthscope.audits.annotators import annotate, annotator_from_spec
        from synthscope.audits.audit import IMAGES_DIR, _image_size, generate_images

        spec, summary = generate_images(job["spec"], job["out"], device="cpu", progress=False, shard=shard)
        times["generate"] = time.perf_counter() - began
        out = Path(job["out"])
        annotators = [annotator_from_spec(a, size=_image_size(out / IMAGES_DIR)) for a in spec.annotators]
        began_annotating = time.perf_counter()
        annotate(out / IMAGES_DIR, annotators, out_dir=out, progress=False, shard=shard)
        times["annotate"] = time.perf_counter() - began_annotating
        times["images"] = summary.total
    else:
        from synthscope.detectors import scan

        write = scan.atomic_write_bytes

        def timed_write(path, data, *args, **kwargs):  # the main process's final CSV is the merge
            began_writing = time.perf_counter()
            try:
                return write(path, data, *args, **kwargs)
            finally:
                if Path(path) == Path(job["out"]):
                    merging[0] += time.perf_counter() - began_writing

        scan.atomic_write_bytes = timed_write
        table = scan.scan_folder(job["detector"], job["folder"], job["out"], device="cpu", progress=False)
        times["images"] = len(table)
    shard.wait()
    times["total"] = time.perf_counter() - began
    times["merge"] = merging[0]
    if shard.is_main:
        Path(job["times"]).write_text(json.dumps(times))


# ------------------------------------------------------------------------------ the benchmark


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(job: dict, work: Path, processes: int) -> dict:
    """Run ``job`` as ``processes`` processes; its stage times (from the main process) and wall time."""
    job_file = work / f"job-{job['name']}-{processes}.json"
    job = {**job, "times": str(work / f"times-{job['name']}-{processes}.json")}
    job_file.write_text(json.dumps(job))
    me = str(Path(__file__).resolve())
    if processes == 1:
        command = [sys.executable, me, "--worker", str(job_file)]
    else:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                   str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", str(free_port()), me, "--worker", str(job_file)]
    began = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    wall = time.perf_counter() - began
    if result.returncode != 0:
        raise SystemExit(f"{job['name']} with {processes} process(es) failed:\n{result.stderr[-4000:]}")
    return {**json.loads(Path(job["times"]).read_text()), "wall": wall}


def by_key(corpus_dir: Path) -> dict[str, str]:
    from synthscope.generators.corpus import read_corpus

    corpus = read_corpus(corpus_dir)
    return {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in zip(corpus.manifest["key"], corpus.paths())}


def prepare(work: Path, images_per_prompt: int, files: int) -> tuple[dict, dict]:
    """Train the builtin model and the probe once (not timed), write the PNG folder and a detector."""
    import numpy as np
    import torch
    from PIL import Image

    from synthscope.audits.audit import run_audit
    from synthscope.detectors.training import train_detector
    from synthscope.generators.corpus import CorpusWriter
    from synthscope.generators.data import load_digits

    torch.set_num_threads(1)
    spec = work / "audit.toml"
    spec.write_text(SPEC.format(n=images_per_prompt, checkpoint=(work / "builtin-model").as_posix()))
    warm = work / "warm.toml"  # trains the model and the probe into their caches
    warm.write_text(SPEC.format(n=1, checkpoint=(work / "builtin-model").as_posix()))
    run_audit(warm, work / "warm", device="cpu", progress=True)

    folder = work / "inbox"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for i in range(files):
        array = np.roll(base, i, axis=1)
        array[:8, :8] = i % 256
        Image.fromarray(array).save(folder / f"{i:06d}.png")
    digits = load_digits(32).images.expand(-1, 3, -1, -1).contiguous()
    CorpusWriter(work / "real", {"generator": "real"}).append(digits[:400], [{"source": "real"}] * 400)
    CorpusWriter(work / "fake", {"generator": "toy"}).append(1 - digits[400:800], [{"source": "toy"}] * 400)
    train_detector(work / "real", [work / "fake"], work / "detector", size=32, epochs=1, device="cpu",
                   progress=False)
    audit = {"name": "audit", "job": "audit", "spec": str(spec)}
    scan = {"name": "scan", "job": "scan", "detector": str(work / "detector"), "folder": str(folder)}
    return audit, scan


def merge_cost(work: Path, rows: int, parts: int = 8) -> tuple[float, float]:
    """Seconds to merge ``rows`` images spread over ``parts`` process parts into a corpus (the main
    process's extra work at the end of a sharded run), and to write them in the first place."""
    import torch

    from synthscope.generators.corpus import CorpusWriter, open_part

    root = work / "merge"
    shutil.rmtree(root, ignore_errors=True)
    writer = CorpusWriter(root, {"generator": "toy"})
    images = torch.rand(256, 3, 16, 16)
    began = time.perf_counter()
    keys = [f"prompt-{i // 100}#{i % 100}" for i in range(rows)]
    for p in range(parts):
        part = open_part(root, f"rank-{p:03d}")
        mine = keys[p::parts]
        for start in range(0, len(mine), 256):
            batch = mine[start:start + 256]
            part.append(images[:len(batch)], [{"key": k} for k in batch])
    written = time.perf_counter() - began
    began = time.perf_counter()
    assert writer.merge_parts(keys) == rows
    return time.perf_counter() - began, written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images-per-prompt", type=int, default=64)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--merge-rows", type=int, default=43_800,
                        help="rows for the merge-cost measurement (default: 146 professions x 3 phrasings x 100)")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed after)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return 0

    work = args.work or Path(tempfile.mkdtemp(prefix="synthscope-scaling-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("SYNTHSCOPE_CACHE", str(work / "cache"))
    try:
        audit, scan = prepare(work, args.images_per_prompt, args.files)
        results = {}
        for job in (audit, scan):
            for processes in (1, 2):
                out = work / f"{job['name']}-{processes}"
                shutil.rmtree(out, ignore_errors=True)
                target = out if job["name"] == "audit" else out.with_suffix(".csv")
                results[job["name"], processes] = launch({**job, "out": str(target)}, work, processes)

        print(f"\n{'':24}{'1 process':>14}{'2 processes':>14}{'speed-up':>10}")
        for name, unit in (("audit", "images"), ("scan", "files")):
            one, two = results[name, 1], results[name, 2]
            rate1, rate2 = one["images"] / one["total"], two["images"] / two["total"]
            print(f"{name + ' ' + unit + '/s':24}{rate1:>14.1f}{rate2:>14.1f}{rate2 / rate1:>9.2f}x"
                  f"   (target >= 1.6x)")
            if name == "audit":
                for stage in ("generate", "annotate"):
                    print(f"{'  ' + stage + ' s':24}{one[stage]:>14.1f}{two[stage]:>14.1f}{one[stage] / two[stage]:>9.2f}x")
            print(f"{'  merge, share of run':24}{one['merge'] / one['total']:>14.1%}{two['merge'] / two['total']:>14.1%}")
            print(f"{'  wall s (with start-up)':24}{one['wall']:>14.1f}{two['wall']:>14.1f}{one['wall'] / two['wall']:>9.2f}x")

        merged, written = merge_cost(work, args.merge_rows)
        print(f"\nmerging {args.merge_rows:,} images from 8 process parts: {merged:.1f} s "
              f"({merged / args.merge_rows * 1000:.2f} ms per image; writing them as parts took {written:.1f} s)")

        same_images = by_key(work / "audit-1" / "images") == by_key(work / "audit-2" / "images")
        tables = sorted((work / "audit-1").glob("annotator_cache/*.csv"))
        same_annotations = ((work / "audit-1" / "annotations.csv").read_bytes()
                            == (work / "audit-2" / "annotations.csv").read_bytes())
        same_scan = (work / "scan-1.csv").read_bytes() == (work / "scan-2.csv").read_bytes()
        print(f"\nidentical with 1 and 2 processes: images {same_images}, annotations {same_annotations} "
              f"({len(tables)} annotator cache(s)), scan rows {same_scan}")
        return 0 if same_images and same_annotations and same_scan else 1
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
