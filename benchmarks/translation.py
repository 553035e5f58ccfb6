"""Image-to-image translation on held-out portraits: does pix2pix age a face towards the truth, and
what does the shared training loop cost?

1. Accuracy. pix2pix trained on ``--n`` paired portraits (young -> older) for ``--steps`` steps;
   CycleGAN on as many unpaired ones (no pairs shown). On 200 held-out people (another seed), the
   per-pixel L1 of each model's output to the true older image, against the input's own L1 to it
   (the identity baseline: a model that changes nothing); CycleGAN's round trip A -> B -> A as well;
   the judge's Fréchet distance to the true older images, and attribute preservation: the share of
   held-out people whose perceived profession, gender and skin tone the judge (trained on both
   domains of the paired training set) reads the same on input and output, beside the share it reads
   the same on the true older image (its own noise) and its held-out accuracy.
2. Cost. Seconds per step of each model through ``train_generator`` (batching, progress, checkpoints)
   against a bare loop calling ``training_step`` on the same model and batches.

    python benchmarks/translation.py [--steps 2500] [--n 800] [--size 32] [--kinds pix2pix cyclegan]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from synthscope.generators.pairs import portrait_pairs, translation_set
from synthscope.generators.quality import train_feature_classifier
from synthscope.generators.training import train_generator
from synthscope.generators.translation_eval import evaluate_translation, judge_set, l1
from synthscope.registry import resolve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--n", type=int, default=800)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--timing-steps", type=int, default=60)
    parser.add_argument("--kinds", nargs="+", default=["pix2pix", "cyclegan"], choices=["pix2pix", "cyclegan"])
    args = parser.parse_args()

    a, b = portrait_pairs(args.n, "age:young->older", seed=0, size=args.size)
    paired = translation_set(a, b, paired=True)
    ua, ub = portrait_pairs(args.n, "age:young->older", seed=0, size=args.size, paired=False)
    unpaired = translation_set(ua, ub, paired=False)
    test_a, test_b = portrait_pairs(200, "age:young->older", seed=12345, size=args.size)

    results = {"identity (input unchanged)": l1(test_a.images, test_b.images)}
    judge = train_feature_classifier(judge_set(paired), seed=0)
    evaluations = {}
    for kind, data in (("pix2pix", paired), ("cyclegan", unpaired)):
        if kind not in args.kinds:
            continue
        torch.manual_seed(0)
        model = resolve("generator", kind)(channels=3, size=args.size)
        with tempfile.TemporaryDirectory() as run_dir:
            run = train_generator(model, data, run_dir, steps=args.steps, progress=False)
        evaluation = evaluate_translation(model, test_a.images, test_b.images, judge, changed="age",
                                          translation="age:young->older")
        evaluations[kind] = evaluation
        results[f"{kind} ({args.steps} steps, {run.seconds:.0f} s)"] = evaluation.l1
        if kind == "cyclegan":
            results["cyclegan round trip A -> B -> A"] = evaluation.round_trip_l1
    print(f"held-out young -> older portraits, {args.size} px, {len(test_a)} people; per-pixel L1 to the truth:")
    for name, value in results.items():
        print(f"  {name:45s} {value:.4f}")
    for kind, evaluation in evaluations.items():
        print(f"{kind}:")
        for line in evaluation.summary_lines():
            print(f"  {line}")
        for row in evaluation.changed().to_dict("records"):
            print(f"  changed {row['attribute']}: {row['input_value']} -> {row['output_value']} x{row['count']}")

    # Cost: the same model, batches and number of steps, through the loop and bare.
    for kind, data in (("pix2pix", paired), ("cyclegan", unpaired)):
        if kind not in args.kinds:
            continue
        looped, bare, batch = seconds_per_step(kind, data, args.size, args.timing_steps)
        print(f"{kind} seconds per step ({args.timing_steps} steps, batch {batch}): training loop {looped:.4f}, "
              f"bare loop {bare:.4f} ({looped / bare:.2f}x)")


def seconds_per_step(kind: str, data, size: int, steps: int) -> tuple[float, float, int]:
    """Seconds per step of ``kind`` through ``train_generator`` (checkpoint at the end only) and through a
    bare loop calling ``training_step`` on the same batches; the batch size."""
    torch.manual_seed(0)
    model = resolve("generator", kind)(channels=3, size=size)
    with tempfile.TemporaryDirectory() as run_dir:
        started = time.perf_counter()
        train_generator(model, data, run_dir, steps=steps, progress=False, checkpoint_every=steps)
        looped = (time.perf_counter() - started) / steps
    torch.manual_seed(0)
    model = resolve("generator", kind)(channels=3, size=size).train()
    optimizers = model.make_optimizers()
    batch = int(model.options["batch_size"])
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    for _ in range(steps):
        index = torch.randperm(len(data), generator=generator)[:batch]
        model.training_step(data.images[index], data.inputs[index], optimizers)
    bare = (time.perf_counter() - started) / steps
    return looped, bare, batch

if __name__ == "__main__":
    main()
