"""Run sharded synthscope jobs in this process, for the multi-process tests.

Launched by the tests as several processes (``accelerate launch --multi_gpu --num_processes N``, which
runs CPU processes when the device is ``cpu``), or directly as one:

    python distributed_driver.py JOBS.json

JOBS.json is a list of jobs, run in order (one launch amortises the start-up of the processes):
``{"job": "audit", "spec": ..., "out": ...}``, ``{"job": "sample", "run_dir": ..., "out": ..., "n": N}``,
``{"job": "scan", "detector": ..., "folder": ..., "out": ...}``, ``clip-train`` and ``clip-eval`` (a CLIP
detector trained and assessed from a real and a fake corpus); ``"open_clip_config"`` registers a
test architecture with open_clip first. A job with ``"die_after": K`` makes the
process of rank ``die_rank`` (default 1) exit abruptly once it has written K batches, as a killed
process would; the launcher then stops the others.
"""

from __future__ import annotations

import json
import os
import sys

import torch

torch.set_num_threads(1)


def die_after(batches: int) -> None:
    """Make this process exit, without any clean-up, once it has written ``batches`` more batches
    (of a corpus, or of a scan's part)."""
    from synthscope.detectors import scan
    from synthscope.generators import corpus

    written = []

    def dying(function):
        def wrapper(*args, **kwargs):
            if len(written) >= batches:
                os._exit(9)  # no clean-up, no flush: as a SIGKILL would leave it
            written.append(1)
            return function(*args, **kwargs)
        return wrapper

    corpus.CorpusWriter.append = dying(corpus.CorpusWriter.append)
    scan.atomic_write_bytes = dying(scan.atomic_write_bytes)


def run(job: dict) -> None:
    if job.get("open_clip_config"):  # a test architecture, registered as if it shipped with open_clip
        import open_clip

        open_clip.add_model_config(job["open_clip_config"])
    if job["job"] == "audit":
        from synthscope.audits.audit import run_audit

        run_audit(job["spec"], job["out"], progress=False, device="cpu",
                  annotator_options={"probe": {"n_train": 400}})
    elif job["job"] == "sample":
        from synthscope.generators.workflow import sample_to_corpus

        sample_to_corpus(job["run_dir"], job["out"], n=job["n"], batch_size=job.get("batch_size", 8),
                         device="cpu", progress=False)
    elif job["job"] == "scan":
        from synthscope.detectors.scan import scan_folder

        scan_folder(job["detector"], job["folder"], job["out"], batch_size=job.get("batch_size", 8),
                    device="cpu", progress=False)
    elif job["job"] == "clip-train":
        from synthscope.detectors.clip import train_clip_detector

        train_clip_detector(job["real"], [job["fake"]], job["out"], model=job["model"], pretrained=None,
                            checkpoint=job["checkpoint"], size=16, target_fpr=0.05, batch_size=8, device="cpu",
                            cache_dir=job["cache"], progress=False)
    elif job["job"] == "clip-eval":
        from synthscope.detectors.assessment import assess_detector

        assessment = assess_detector(job["detector"], real=job["real"], fakes=[job["fake"]], sweeps=["jpeg"],
                                     n_boot=20, device="cpu", progress=False)
        if assessment is not None:
            assessment.save(job["out"])
    else:
        raise ValueError(f"unknown job {job['job']!r}")


def main() -> int:
    from synthscope.distributed import current_shard

    with open(sys.argv[1], encoding="utf-8") as handle:
        jobs = json.load(handle)
    shard = current_shard("cpu")
    for job in jobs:
        if job.get("die_after") is not None and shard.index == job.get("die_rank", 1):
            die_after(job["die_after"])
        run(job)
    return 0


if __name__ == "__main__":
    sys.exit(main())
