"""Default-settings quality of the four generators on digits, and prompt adherence on portraits.

For each generator: wall time of `generate train` with its default steps, the Fréchet distance of its
samples to held-out digits next to the real-vs-real and noise references (ratio printed), and
precision/recall. With --portraits, also the conditional diffusion model on the portraits world and
its prompt adherence for profession. Sample grids land in --out for a person to look at.

    python benchmarks/generator_quality.py --out bench-runs [--kinds ae vae gan diffusion] [--portraits]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from synthscope.generators.workflow import train_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-runs"))
    parser.add_argument("--kinds", nargs="+", default=["ae", "vae", "gan", "diffusion"])
    parser.add_argument("--portraits", action="store_true", help="also conditional diffusion on portraits")
    parser.add_argument("--portrait-steps", type=int, default=6000)
    parser.add_argument("--portrait-size", type=int, default=16,
                        help="px; 32 px needs several times the CPU budget")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    for kind in args.kinds:
        start = time.perf_counter()
        train_run(kind, "digits", args.out / f"{kind}-digits", seed=args.seed, force=True, progress=False)
        wall = time.perf_counter() - start
        rows.append(report(kind, "digits", args.out / f"{kind}-digits", wall))
    if args.portraits:
        start = time.perf_counter()
        train_run("diffusion", "portraits", args.out / "diffusion-portraits", conditional=True,
                  steps=args.portrait_steps, size=args.portrait_size, seed=args.seed, force=True,
                  progress=True, eval_samples=400)
        wall = time.perf_counter() - start
        rows.append(report("diffusion (conditional)", "portraits", args.out / "diffusion-portraits", wall))
    (args.out / "summary.json").write_text(json.dumps(rows, indent=2))


def report(kind: str, data: str, run_dir: Path, wall: float) -> dict:
    quality = json.loads((run_dir / "quality.json").read_text())
    fd, rr, noise = quality["fd"], quality["fd_real_vs_real"], quality["fd_noise"]
    # Where the score lies between real-vs-real (0) and noise (1), on a log scale.
    import math
    position = math.log(fd / rr) / math.log(noise / rr)
    line = (f"{kind:24s} {data:9s} steps {quality['step']:5d}  wall {wall:6.1f} s  "
            f"FD {fd:8.1f}  real-vs-real {rr:6.1f}  noise {noise:8.1f}  "
            f"log-position {position:.2f} (0 = real, 1 = noise)  "
            f"precision {quality['prdc']['precision']:.2f} recall {quality['prdc']['recall']:.2f}")
    adherence_file = run_dir / "prompt_adherence.csv"
    row = {"kind": kind, "data": data, "wall_s": wall, **{k: quality[k] for k in ("fd", "fd_real_vs_real", "fd_noise")}}
    if adherence_file.exists():
        from synthscope.generators.evaluation import read_adherence

        adherence = read_adherence(adherence_file)
        by_value = adherence.by_group
        for _, r in adherence.overall(["requested"], keep=["judge_accuracy"]).by_group.iterrows():
            line += (f"\n    adherence {r['attribute']}: {r['adherence']:.3f} "
                     f"[{r['adherence_ci_low']:.3f}, {r['adherence_ci_high']:.3f}] "
                     f"n={r['n']}  (judge's held-out accuracy {r['judge_accuracy']:.3f})")
            row[f"adherence_{r['attribute']}"] = r["adherence"]
            row[f"adherence_{r['attribute']}_ci"] = [r["adherence_ci_low"], r["adherence_ci_high"]]
            row[f"judge_accuracy_{r['attribute']}"] = r["judge_accuracy"]
            for _, v in by_value[by_value["attribute"] == r["attribute"]].iterrows():
                line += (f"\n      {v['requested']:20s} {v['adherence']:.3f} "
                         f"[{v['adherence_ci_low']:.3f}, {v['adherence_ci_high']:.3f}] n={v['n']}")
    print(line, flush=True)
    return row


if __name__ == "__main__":
    main()
