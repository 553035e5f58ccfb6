"""Where the lab's minutes go: the default (or ``--quick``) lab's wall time and each part's share, and
with ``--notebooks`` each lecture notebook's run time at its own (lecture) sizes.

The lab runs in a fresh folder in a subprocess, exactly as a student starts it (``synthscope lab``);
each part's seconds come from the report's provenance (``run.part_seconds``). With ``--jobs 2`` (the
default on 2 or more CPUs) the parts marked "2nd" were made by the second process at the same time,
so the shares add up to more than the wall time; each process's total is printed. ``--compare-jobs``
runs the lab once with ``--jobs 1`` and once with ``--jobs 2`` and prints the ratio. The lab starts with
an empty cache, as a first run does (``--warm-cache``: the usual one). Run it on a quiet
machine: the lab's training stages share the cores with anything else running.

    python benchmarks/lab_time.py [--quick] [--notebooks] [--seed 0] [--keep DIR] [--jobs N] [--compare-jobs]
                                  [--warm-cache]
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

ROOT = Path(__file__).resolve().parents[1]
LAB_TARGET = {False: 300.0, True: 90.0}  # seconds: the default lab and --quick
NOTEBOOK_TARGET = 180.0


def time_lab(out: Path, quick: bool, seed: int, jobs: int | None = None,
             cache: Path | None = None) -> tuple[float, dict[str, float], list[str]]:
    """The lab's wall time from the outside, each part's seconds from its report, and the parts the
    second process made. ``cache``: synthscope's cache folder (the audit probe is kept there); an
    empty one times a first run, as a student's."""
    command = [sys.executable, "-m", "synthscope", "lab", "--out", str(out), "--seed", str(seed), "--quiet"]
    if quick:
        command.append("--quick")
    if jobs is not None:
        command += ["--jobs", str(jobs)]
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}  # the lab's own choice
    if cache is not None:
        env["SYNTHSCOPE_CACHE"] = str(cache)
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    wall = time.perf_counter() - started
    run = json.loads((out / "report.json").read_text())["provenance"]["run"]
    return wall, run["part_seconds"], run.get("parts_alongside", [])


def print_lab(label: str, wall: float, parts: dict[str, float], second: list[str], quick: bool) -> None:
    print(f"{label}: {wall:.0f} s wall ({wall / 60:.1f} min; target {LAB_TARGET[quick]:.0f} s: "
          f"{wall / LAB_TARGET[quick]:.2f}x of it), {os.cpu_count()} cores")
    for name, seconds in sorted(parts.items(), key=lambda item: -item[1]):
        print(f"  {name:16s} {seconds:7.1f} s  {seconds / wall:6.1%}" + ("  2nd" if name in second else ""))
    first = sum(seconds for name, seconds in parts.items() if name not in second)
    if second:
        print(f"  {'first process':16s} {first:7.1f} s; second process {sum(parts[name] for name in second):.1f} s")
    print(f"  {'(start, report)':16s} {max(0.0, wall - first):7.1f} s")


def time_notebook(path: Path, work: Path) -> float:
    """One notebook executed top to bottom at its own sizes (its trained models go to ``work``)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    tagged = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.get("metadata", {}).get("tags", [])]
    nb.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(f"WORK_DIR = {str(work)!r}"))
    client = NotebookClient(nb, timeout=1200, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    started = time.perf_counter()
    client.execute()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="time synthscope lab --quick")
    parser.add_argument("--notebooks", action="store_true", help="also time every notebook at lecture sizes")
    parser.add_argument("--no-lab", action="store_true", help="skip the lab (with --notebooks)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="write the lab here and keep it (must not exist)")
    parser.add_argument("--jobs", type=int, choices=(1, 2), help="the lab's --jobs (default: its own)")
    parser.add_argument("--warm-cache", action="store_true",
                        help="keep synthscope's usual cache (a kept audit probe); default: an empty one, as a first run")
    parser.add_argument("--compare-jobs", action="store_true", help="time --jobs 1, then --jobs 2, and compare")
    args = parser.parse_args()

    if not args.no_lab:
        if args.keep is not None and args.keep.exists():
            parser.error(f"--keep {args.keep}: exists; the lab must start from an empty folder to be timed")
        label = "synthscope lab" + (" --quick" if args.quick else "")
        walls = {}
        for jobs in ((1, 2) if args.compare_jobs else (args.jobs,)):
            scratch = Path(tempfile.mkdtemp(prefix="lab-time-"))
            out = (args.keep / f"jobs-{jobs}" if args.compare_jobs else args.keep) if args.keep else scratch / "lab"
            try:
                wall, parts, second = time_lab(out, args.quick, args.seed, jobs,
                                               cache=None if args.warm_cache else scratch / "cache")
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            walls[jobs] = wall
            print_lab(label + (f" --jobs {jobs}" if jobs else ""), wall, parts, second, args.quick)
        if args.compare_jobs:
            print(f"--jobs 2 against --jobs 1: {walls[1] / walls[2]:.2f}x faster")

    if args.notebooks:
        print("notebooks at lecture sizes:")
        for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
            with tempfile.TemporaryDirectory() as work:
                seconds = time_notebook(path, Path(work))
            print(f"  {path.stem:32s} {seconds:6.0f} s  ({seconds / NOTEBOOK_TARGET:.2f}x the "
                  f"{NOTEBOOK_TARGET:.0f} s target)")


if __name__ == "__main__":
    main()
