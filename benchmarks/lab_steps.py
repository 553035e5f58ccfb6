"""The lab's training lengths: does a stage with fewer steps keep its quality?

For each named lab stage (``synthscope/lab.py: lab_stages``), trains it with its options at each
``--steps`` value (default: the lab's steps and the longer reference length the lab used before, in
``REFERENCE_STEPS``) and prints the Fréchet distance of 1,000 samples to held-out digits, the
training seconds, and each one's ratio to the reference. The bar: a stage's distance within 10 % of
the reference's. Every run shares one quality judge (trained once, in ``--work``), runs with one
thread, two runs at a time (``--parallel``): the way the lab's two processes run them.

A Fréchet distance moves from seed to seed too: ``--seeds 0 1`` measures each length on several,
so that a change can be told from noise.

``--audit`` does the same for the lab's audit (``LAB_AUDIT_SPEC``: the built-in diffusion model on a
skewed portraits world) at each ``--audit-steps`` training length: does the audit still recover the
injected bias? Printed per length: the rank correlation between the world's share of women per
profession and the perceived share among the model's pictures (Spearman), for how many of the eight
professions both are on the same side of one half, how many of the 24 comparisons with the training
world say "amplified", and the audit's seconds.

    python benchmarks/lab_steps.py [--stages gan vae] [--steps 1250 2500] [--seeds 0] [--work DIR]
    python benchmarks/lab_steps.py --audit [--audit-steps 900 1500] [--sample-steps 25]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# The lengths the lab trained each digits stage for before they were measured shorter (the bar's
# reference); a stage not listed has kept its length.
REFERENCE_STEPS = {"ae-2d": 1500, "ae": 1500, "ae-denoising": 1500, "vae": 3000, "gan": 2500, "diffusion": 1200}
AUDIT_REFERENCE_STEPS = 1500

TRAIN_AUDIT = """
import sys, torch
torch.set_num_threads(1)
from pathlib import Path
from synthscope.audits.audit import run_audit
from synthscope.lab import LAB_AUDIT_SPEC
steps, sample_steps, out = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
spec = out / "audit.toml"
spec.write_text(LAB_AUDIT_SPEC.format(images_per_prompt=20, seed=0, train_steps=steps, sample_steps=sample_steps))
run_audit(spec, out, device="cpu", progress=False)
"""

TRAIN_ONE = """
import json, sys, torch
torch.set_num_threads(1)
from pathlib import Path
from synthscope.lab import lab_stages
from synthscope.generators.workflow import train_run
name, steps, seed, out, judge = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5])
stage = {stage.name: stage for stage in lab_stages()}[name]
train_run(stage.kind, stage.data, out, conditional=stage.conditional, steps=steps, seed=seed, device="cpu",
          options=stage.options_for(False), force=True, progress=False, judge_dir=judge, eval_samples=1000)
"""


def train(name: str, steps: int, seed: int, work: Path) -> dict:
    """One stage trained and scored in its own one-thread process; its distance and seconds."""
    out = work / f"{name}-{steps}-seed{seed}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", TRAIN_ONE, name, str(steps), str(seed), str(out), str(work / "judge")],
                   check=True, env=env)
    quality = json.loads((out / "quality.json").read_text())
    config = json.loads((out / "config.json").read_text())
    return {"stage": name, "steps": steps, "seed": seed, "fd": quality["fd"], "seconds": config["train_seconds"]}


def audit(steps: int, sample_steps: int, work: Path) -> dict:
    """The lab's audit at one training length, in its own one-thread process: does it recover the
    world's skew?"""
    import time

    import pandas as pd
    from scipy.stats import spearmanr

    from synthscope.lab import LAB_AUDIT_SPEC

    out = work / f"audit-{steps}-{sample_steps}"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", TRAIN_AUDIT, str(steps), str(sample_steps), str(out)], check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    seconds = time.perf_counter() - started
    world = _world_share_female(LAB_AUDIT_SPEC)
    shares = pd.read_csv(out / "audit_tables" / "shares_by_profession.csv")
    female = shares[(shares["attribute"] == "gender") & (shares["value"] == "female")]
    perceived = female.set_index("profession")["share_of_determined"]
    verdicts = pd.read_csv(out / "audit_tables" / "amplification.csv")["verdict"]
    return {"steps": steps, "rho": spearmanr([world[name] for name in perceived.index], perceived.values).correlation,
            "same_side": sum((perceived[name] > 0.5) == (world[name] > 0.5) for name in perceived.index),
            "professions": len(perceived), "amplified": int((verdicts == "amplified").sum()),
            "comparisons": len(verdicts), "seconds": seconds}


def _world_share_female(spec_text: str) -> dict[str, float]:
    import tomllib

    spec = tomllib.loads(spec_text.format(images_per_prompt=1, seed=0, train_steps=1, sample_steps=1))
    return spec["backend"]["world_skew"]["share_female"]


def main() -> None:
    from synthscope.lab import lab_stages

    stages = {stage.name: stage for stage in lab_stages() if stage.score and stage.data == "digits"}
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", nargs="+", default=sorted(stages), choices=sorted(stages))
    parser.add_argument("--steps", nargs="+", type=int, help="lengths to try (default: the lab's and the reference)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time, one thread each (default: 2)")
    parser.add_argument("--work", type=Path, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--audit", action="store_true", help="measure the lab's audit instead")
    parser.add_argument("--audit-steps", nargs="+", type=int, help="audit training lengths (default: the lab's "
                                                                    "and the reference)")
    parser.add_argument("--sample-steps", type=int, default=25, help="the audit's denoising steps (default: 25)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="lab-steps-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.audit:
            from synthscope.lab import LAB_AUDIT_STEPS

            lengths = args.audit_steps or sorted({LAB_AUDIT_STEPS, AUDIT_REFERENCE_STEPS})
            with ThreadPoolExecutor(args.parallel) as pool:
                rows = list(pool.map(lambda steps: audit(steps, args.sample_steps, work), lengths))
            print(f"the lab's audit (lab: {LAB_AUDIT_STEPS} training steps, reference {AUDIT_REFERENCE_STEPS}; "
                  f"{args.sample_steps} denoising steps):")
            for row in rows:
                print(f"  {row['steps']:5d} steps: Spearman {row['rho']:.2f} between the world's and the perceived "
                      f"share of women, {row['same_side']}/{row['professions']} professions on the world's side of "
                      f"one half, {row['amplified']}/{row['comparisons']} comparisons amplified, "
                      f"{row['seconds']:.0f} s")
            return
        # The judge first, alone: every run after it reads the same one.
        train(args.stages[0], 1, args.seeds[0], work)
        jobs = []
        for name in args.stages:
            lengths = args.steps or sorted({stages[name].steps, REFERENCE_STEPS.get(name, stages[name].steps)})
            jobs += [(name, steps, seed) for steps in lengths for seed in args.seeds]
        with ThreadPoolExecutor(args.parallel) as pool:
            rows = list(pool.map(lambda job: train(*job, work), jobs))
        for name in args.stages:
            reference = REFERENCE_STEPS.get(name, stages[name].steps)
            mine = [row for row in rows if row["stage"] == name]
            base = [row for row in mine if row["steps"] == reference]
            base_fd = sum(row["fd"] for row in base) / len(base) if base else None
            base_s = sum(row["seconds"] for row in base) / len(base) if base else None
            print(f"{name} (lab: {stages[name].steps} steps, reference {reference}):")
            for row in mine:
                against = (f"  FD {row['fd'] / base_fd:.2f}x, time {row['seconds'] / base_s:.2f}x the reference"
                           + ("" if row["fd"] <= 1.1 * base_fd else "  (over the 10 % bar)")) if base else ""
                print(f"  {row['steps']:5d} steps, seed {row['seed']}: FD {row['fd']:7.2f}, {row['seconds']:6.1f} s"
                      + against)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
