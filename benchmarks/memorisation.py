"""The memorisation check: is it known to work, and what does it cost?

1. Positive control. A diffusion model deliberately overfit on a few dozen digits (``--n-train``
   images, ``--steps`` steps) draws 200 samples, checked against its training images (target: >= 90 %
   flagged in pixels). A model trained with the same settings on all digits is checked alongside and
   reported as it is.
2. Cost. 500 samples against the 1,797 digits (16 px): the check in pixels against a bare
   ``torch.cdist`` + ``topk`` over the same tensors, measured in the same run (the ratio is printed),
   and the judge's feature space on top.

Run it on an otherwise idle machine (about 12 minutes on 2 CPU cores with the defaults).

    python benchmarks/memorisation.py [--steps 4000] [--n-train 40] [--work DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from timing import best_of


def train(out: Path, steps: int, n: int | None) -> None:
    """A diffusion run on digits as its own process (one thread: the model is tiny)."""
    command = [sys.executable, "-m", "synthscope", "generate", "train", "--model", "diffusion", "--data", "digits",
               "--steps", str(steps), "--out", str(out), "--no-eval", "--quiet", "--device", "cpu", "--threads", "1"]
    if n is not None:
        command += ["--n", str(n)]
    subprocess.run(command, check=True)


def main() -> int:
    import torch

    from synthscope.generators.data import load_data
    from synthscope.generators.evaluation import judge_for
    from synthscope.generators.memorisation import FEATURES, PIXELS, check_memorisation, check_run, summary_lines

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4000, help="training steps of both models (default: 4000)")
    parser.add_argument("--n-train", type=int, default=40,
                        help="digits drawn for the overfit model; 80 %% of them train it (default: 40)")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed after)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = args.work or Path(tempfile.mkdtemp(prefix="synthscope-memorisation-"))
    try:
        print("1. positive control")
        for name, n in (("overfit", args.n_train), ("normal", None)):
            run = work / name
            train(run, args.steps, n)
            check = check_run(run, work / f"{name}-check", n=200, seed=1, device="cpu")
            print(f"   {name} ({check.n_train} training images, {args.steps} steps):")
            for line in summary_lines(check):
                print(f"     {line}")
            if name == "overfit":
                share = check.flagged_share(PIXELS)[0]
                print(f"     target >= 90 % flagged in pixels: {'met' if share >= 0.9 else 'NOT met'}")

        print("2. cost: 500 samples against 1,797 training images (digits, 16 px)")
        digits = load_data("digits", size=16).images
        samples = torch.rand(500, *digits.shape[1:], generator=torch.Generator().manual_seed(0))

        def bare() -> None:
            distances = torch.cdist(samples.reshape(500, -1), digits.reshape(len(digits), -1),
                                    compute_mode="donot_use_mm_for_euclid_dist")
            torch.topk(distances, 50, dim=1, largest=False)

        baseline = best_of(3, bare)
        pixels = best_of(3, lambda: check_memorisation(samples, digits))
        print(f"   pixels: {pixels:.2f} s; bare cdist + topk {baseline:.2f} s; ratio {pixels / baseline:.2f}")
        from synthscope.generators.data import load_digits

        judge = judge_for(work / "judge", load_digits(16), seed=0)
        both = best_of(3, lambda: check_memorisation(samples, digits, judge=judge))
        print(f"   pixels + {FEATURES}: {both:.2f} s ({both / baseline:.2f}x the bare pixel search)")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
