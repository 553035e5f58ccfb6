"""Detector accuracy on the lab's corpora: does the CNN detector reach in-distribution AP >= 0.99?

Runs the lab's detector stage (``synthscope.lab.detector_stage``: every corpus split 70/30 once, one
small CNN per generator, one on all of them, one per left-out generator, trained as the lab trains
them) on the corpora of a finished lab and prints

- the train x test matrix of average precision (the diagonal is in-distribution),
- the detector trained on all generators on every held-out image, with 95 % bootstrap intervals,
- leave-one-generator-out (transfer to a generator never seen),

then the verdict on the target (in-distribution AP >= 0.99 for every generator and for the detector
trained on all of them). Detectors are trained afresh in a temporary folder unless ``--out`` is given.

    synthscope lab --out lab-report
``--patience 5 8`` trains the stage once per early-stopping patience (the rest of the lab's settings
kept) and prints each one's results and seconds, and the time ratio to the first.

    python benchmarks/detector_accuracy.py --lab lab-report [--quick] [--out DIR] [--seed 0] [--patience 5 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

TARGET_AP = 0.99


def written_corpora(lab: Path) -> dict[str, Path]:
    """The lab's digits corpora (``synthscope.lab.lab_corpora``, in the lab's own order: the order of
    the training images decides the training batches) that this lab folder holds."""
    from synthscope.lab import REAL_CORPUS, lab_corpora

    corpora = {name: path for name, path in lab_corpora(lab).items() if (path / "manifest.csv").is_file()}
    if REAL_CORPUS not in corpora or len(corpora) < 2:
        sys.exit(f"{lab}: no lab corpora here; run 'synthscope lab --out {lab}' first")
    return corpora


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", type=Path, required=True, help="output folder of 'synthscope lab'")
    parser.add_argument("--out", type=Path, default=None, help="keep the detectors here (default: a temp dir)")
    parser.add_argument("--quick", action="store_true", help="the quick lab's shorter training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--patience", type=int, nargs="+", help="early-stopping patience(s) to compare "
                                                                 "(default: the lab's)")
    args = parser.parse_args()
    from synthscope.lab import LAB_DETECTOR_TRAINING

    seconds = {}
    for patience in args.patience or [LAB_DETECTOR_TRAINING["patience"]]:
        print(f"=== patience {patience} ===")
        seconds[patience] = assess(args, patience)
    first = next(iter(seconds.values()))
    if len(seconds) > 1:
        print("\n" + ", ".join(f"patience {patience}: {took:.0f} s ({took / first:.2f}x)"
                               for patience, took in seconds.items()))


def assess(args: argparse.Namespace, patience: int) -> float:
    """The lab's detector stage with one patience, printed; its seconds."""
    from synthscope.detectors.generalisation import ALL
    from synthscope.lab import detector_stage

    corpora = written_corpora(args.lab)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out / f"patience-{patience}" if args.out else Path(tmp)
        began = time.perf_counter()
        result = detector_stage(out, corpora, quick=args.quick, seed=args.seed, device="cpu", progress=False,
                                training={"patience": patience})
        seconds = time.perf_counter() - began
    matrix = result.generalisation.pivot("ap")
    sizes = {name: sum(1 for _ in (path / "images").iterdir()) for name, path in corpora.items()}
    print("corpora: " + ", ".join(f"{name} ({n} images)" for name, n in sizes.items()))
    print(f"detector stage: {seconds:.0f} s\n\naverage precision, train (rows) x test (columns):")
    print(matrix.round(4).to_string())

    report = result.assessment.report
    print(f"\ndetector trained on {ALL}, all held-out images ({report.n_real} real, {report.n_fake} fake):")
    print(report.table()[["metric", "value", "ci_low", "ci_high"]].round(4).to_string(index=False))

    print("\nleave one generator out:")
    print(result.generalisation.leave_one_out[["held_out", "ap", "fake_accuracy", "ap_seen"]].round(3)
          .to_string(index=False))

    diagonal = {name: float(matrix.loc[name, name]) for name in matrix.columns}
    in_distribution = {**diagonal, ALL: float(report["ap"])}
    failing = {name: ap for name, ap in in_distribution.items() if ap < TARGET_AP}
    print("\nin-distribution AP: " + ", ".join(f"{name} {ap:.4f}" for name, ap in in_distribution.items()))
    print(f"target AP >= {TARGET_AP}: " + ("met" if not failing else
                                           "NOT met for " + ", ".join(sorted(failing))))
    return seconds


if __name__ == "__main__":
    main()
