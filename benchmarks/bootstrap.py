"""The detector report's bootstrap: each of its resamples draws one ROC curve (AP, ROC-AUC, TPR at
1 % / 0.1 % FPR and the EER come from it). The curve is computed by ``metrics._resample_roc``, the
same arithmetic as scikit-learn's ``roc_curve`` without its argument checks; the baseline, in the
same run, is the same report with ``roc_curve`` drawing every resample's curve. Printed: seconds of
each (best of ``--repeats``), the ratio, and whether the two reports are identical (they must be).

    python benchmarks/bootstrap.py [--n 600] [--n-boot 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    from synthscope.detectors import metrics

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=600, help="test images, a quarter of them fake")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    labels = (np.arange(args.n) >= args.n * 3 // 4).astype(int)
    scores = np.clip(rng.normal(0.3 + 0.4 * labels, 0.2), 0, 1).astype(np.float32)

    def best(curve) -> tuple[float, object]:
        metrics_curve, metrics._resample_roc = metrics._resample_roc, curve
        try:
            times = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                report = metrics.evaluate_scores(labels, scores, 0.5, probs=scores, n_boot=args.n_boot, seed=0)
                times.append(time.perf_counter() - started)
        finally:
            metrics._resample_roc = metrics_curve
        return min(times), report

    fast, fast_report = best(metrics._resample_roc)
    slow, slow_report = best(metrics._roc)
    print(f"{args.n} scores x {args.n_boot} resamples: {fast:.2f} s with the resample curve, {slow:.2f} s with "
          f"scikit-learn's roc_curve: {slow / fast:.1f}x faster; identical reports: "
          f"{fast_report.metrics == slow_report.metrics}")


if __name__ == "__main__":
    main()
