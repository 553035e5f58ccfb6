"""Where the lab's minutes go: the default (or ``--quick``) lab's wall time and each part's share, and
with ``--notebooks`` each lecture notebook's run time at its own (lecture) sizes.

The lab runs in a fresh folder in a subprocess, exactly as a student starts it (``synthscope lab``);
each part's seconds come from the report's provenance (``run.part_seconds``). Run it on a quiet
machine: the lab's training stages share the cores with anything else running.

    python benchmarks/lab_time.py [--quick] [--notebooks] [--seed 0] [--keep DIR]
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


def time_lab(out: Path, quick: bool, seed: int) -> tuple[float, dict[str, float]]:
    """The lab's wall time from the outside, and each part's seconds from its report."""
    command = [sys.executable, "-m", "synthscope", "lab", "--out", str(out), "--seed", str(seed), "--quiet"]
    if quick:
        command.append("--quick")
    started = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - started
    provenance = json.loads((out / "report.json").read_text())["provenance"]
    return wall, provenance["run"]["part_seconds"]


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="time synthscope lab --quick")
    parser.add_argument("--notebooks", action="store_true", help="also time every notebook at lecture sizes")
    parser.add_argument("--no-lab", action="store_true", help="skip the lab (with --notebooks)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="write the lab here and keep it (must not exist)")
    args = parser.parse_args()

    if not args.no_lab:
        if args.keep is not None and args.keep.exists():
            parser.error(f"--keep {args.keep}: exists; the lab must start from an empty folder to be timed")
        scratch = Path(tempfile.mkdtemp(prefix="lab-time-"))
        out = args.keep or scratch / "lab"
        try:
            wall, parts = time_lab(out, args.quick, args.seed)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        measured = sum(parts.values())
        label = "synthscope lab" + (" --quick" if args.quick else "")
        print(f"{label}: {wall:.0f} s wall ({wall / 60:.1f} min; target {LAB_TARGET[args.quick]:.0f} s: "
              f"{wall / LAB_TARGET[args.quick]:.2f}x of it), {os.cpu_count()} cores")
        for name, seconds in sorted(parts.items(), key=lambda item: -item[1]):
            print(f"  {name:16s} {seconds:7.1f} s  {seconds / wall:6.1%}")
        print(f"  {'(start, report)':16s} {wall - measured:7.1f} s  {(wall - measured) / wall:6.1%}")

    if args.notebooks:
        print("notebooks at lecture sizes:")
        for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
            with tempfile.TemporaryDirectory() as work:
                seconds = time_notebook(path, Path(work))
            print(f"  {path.stem:32s} {seconds:6.0f} s  ({seconds / NOTEBOOK_TARGET:.2f}x the "
                  f"{NOTEBOOK_TARGET:.0f} s target)")


if __name__ == "__main__":
    main()
