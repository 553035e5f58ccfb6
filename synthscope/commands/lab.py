"""``synthscope lab``: every stage on built-in data, then one HTML report (the stages are in synthscope.lab)."""

from __future__ import annotations

import argparse
from pathlib import Path

from synthscope.commands.common import Subcommands, add_command, add_common, output_folder


def register(commands: Subcommands) -> None:
    lab = add_command(commands, "lab", handler, help="the main job: every stage on built-in data, then an HTML report")
    lab.add_argument("--out", type=output_folder, default=Path("lab-report"), help="output folder (default: lab-report)")
    lab.add_argument("--quick", action="store_true", help="a tenth of the training, same stages (about a minute and a half on 2 cores)")
    lab.add_argument("--force", action="store_true", help="redo finished stages")
    lab.add_argument("--jobs", type=int, choices=(1, 2), default=None,
                     help="processes: with 2, a second one makes the parts that need no other, from the last one "
                          "back (audit, translation models, ...), then detectors once what they read is made, while "
                          "the first works from the top (default: 2 when 2 or more CPUs are usable)")
    add_common(lab)


def handler(args: argparse.Namespace, progress: bool) -> None:
    """Train the built-in generators on built-in data (offline), write their corpora and one
    self-contained HTML report (DIR/index.html). Re-running into the same DIR reuses finished stages;
    --force redoes them."""
    from synthscope.lab import run_lab
    from synthscope.runtime import available_cpus

    jobs = args.jobs if args.jobs is not None else min(2, available_cpus())
    result = run_lab(args.out, quick=args.quick, force=args.force, seed=args.seed, device=args.device,
                     progress=progress, jobs=jobs)
    print("\n".join(result.summary))
