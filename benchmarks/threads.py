"""Threads: the lab's training stages with torch's old default (a thread per usable CPU) and with
synthscope's choice (the CPUs other processes leave free, re-checked while training), alone and
beside a second synthscope process.

Each stage is `synthscope generate train` with the lab's model settings and fewer steps, run as its
own process; the wall time of the training is read from the run (``train_seconds`` in its
``config.json``), so process start-up is left out. Printed, measured in this run:

- per stage and in total: seconds with the old default and with the new choice, and the speed-up
  (target: >= 1.8x on a 2-core machine);
- two copies of a stage, the second started a few seconds after the first, each with the new
  choice, against one alone: the slowdown (target: at most about 2x, i.e. two jobs share the
  machine instead of fighting over it); and the same pair with the old default, for comparison.

Run it on an otherwise idle machine.

    python benchmarks/threads.py [--scale 1.0] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


STAGGER_SECONDS = 3.0

# (name, generate-train arguments, steps at --scale 1): the lab's stages (synthscope/lab.py).
STAGES = [
    ("autoencoder", ["--model", "ae", "--data", "digits", "--set", "latent_dim=5"], 300),
    ("vae", ["--model", "vae", "--data", "digits"], 300),
    ("gan", ["--model", "gan", "--data", "digits"], 150),
    ("diffusion", ["--model", "diffusion", "--data", "digits", "--conditional"], 150),
]


def train(work: Path, name: str, arguments: list[str], steps: int, threads: int | None) -> subprocess.Popen:
    """Start one training run as its own process (``threads`` None: synthscope's choice)."""
    out = work / f"{name}-{threads or 'auto'}-{time.perf_counter_ns()}"
    command = [sys.executable, "-m", "synthscope", "generate", "train", *arguments, "--steps", str(steps),
               "--out", str(out), "--no-eval", "--quiet", "--device", "cpu"]
    if threads is not None:
        command += ["--threads", str(threads)]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.out = out  # type: ignore[attr-defined]
    return process


def seconds(process: subprocess.Popen) -> float:
    """Training seconds of a finished run (start-up excluded)."""
    _, stderr = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"training failed:\n{stderr[-3000:]}")
    config = json.loads((process.out / "config.json").read_text())  # type: ignore[attr-defined]
    return float(config["train_seconds"])


def main() -> int:
    from synthscope.runtime import available_cpus

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every stage's steps (default: 1)")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed after)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="synthscope-threads-"))
    work.mkdir(parents=True, exist_ok=True)
    old_default = available_cpus()  # torch's default: a thread per usable CPU
    print(f"usable CPUs: {old_default} (torch's default threads); synthscope's choice: the CPUs others leave free\n")
    try:
        rows = []
        for name, arguments, steps in STAGES:
            steps = max(10, int(steps * args.scale))
            old = seconds(train(work, name, arguments, steps, old_default))
            new = seconds(train(work, name, arguments, steps, None))
            rows.append((name, steps, old, new))
            print(f"{name:12} {steps:5d} steps: {old:6.1f} s with {old_default} threads, {new:6.1f} s with "
                  f"synthscope's choice: {old / new:.2f}x")
        old_total, new_total = sum(r[2] for r in rows), sum(r[3] for r in rows)
        print(f"{'all stages':12}            {old_total:6.1f} s vs {new_total:6.1f} s: {old_total / new_total:.2f}x "
              f"faster (target >= 1.8x)\n")

        name, arguments, steps = STAGES[0]
        steps = max(10, int(steps * args.scale))
        alone = next(r[3] for r in rows if r[0] == name)
        for label, threads, reference in (("synthscope's choice", None, alone),
                                          (f"{old_default} threads", old_default, rows[0][2])):
            first = train(work, name, arguments, steps, threads)
            time.sleep(STAGGER_SECONDS)  # the second starts while the first computes, as a colleague's would
            pair = [first, train(work, name, arguments, steps, threads)]
            both = [seconds(p) for p in pair]
            print(f"two {name} runs at once, {label}: {max(both):.1f} s each at most, alone {reference:.1f} s: "
                  f"{max(both) / reference:.2f}x slower" + (" (target <= about 2x)" if threads is None else ""))
        return 0
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
