"""Memory format: a training step of each built-in network with its 4-D weights and inputs stored as
torch stores them by default (NCHW) and channels-last (NHWC), on the lab's image sizes.

On a CPU, PyTorch's NCHW max-pooling of small feature maps is slow (a third of the small detector's
step at 32 px), and oneDNN's convolutions prefer NHWC; a 1-channel input alone is the same in both
formats, so only weights stored channels-last switch a grey model over. Printed, measured in this run,
one thread, the two formats interleaved: milliseconds per step in each and the ratio
(channels-last / NCHW; below 1 is faster), and the relative difference of the loss after the same
steps from the same start (the same arithmetic in another order: rounding only).

    python benchmarks/memory_format.py [--steps 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

Step = Callable[[], float]


def detector_case(channels: int, size: int, memory_format: torch.memory_format) -> Step:
    """The lab's small CNN detector: one Adam step of real-vs-fake logistic loss on a batch of 64."""
    from synthscope.detectors.cnn import CNNDetector

    torch.manual_seed(0)
    detector = CNNDetector("small", channels, size).to(memory_format=memory_format).train()
    optimizer = torch.optim.Adam(detector.parameters(), lr=1e-3)
    images = torch.rand(64, channels, size, size).contiguous(memory_format=memory_format)
    labels = (torch.arange(64) % 2).float()

    def step() -> float:
        loss = F.binary_cross_entropy_with_logits(detector(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


def judge_case(data_spec: str, size: int, memory_format: torch.memory_format) -> Step:
    """The quality judge (and the audit's probe): one Adam step of its attribute heads, batch of 128."""
    from synthscope.generators.data import load_data
    from synthscope.generators.quality import FeatureClassifier

    data = load_data(data_spec, size=size, n=256, seed=0)
    torch.manual_seed(0)
    judge = FeatureClassifier(data.vocabulary, data.images.shape[1], size).to(memory_format=memory_format).train()
    optimizer = torch.optim.Adam(judge.parameters(), lr=1e-3)
    images = data.images[:128].contiguous(memory_format=memory_format)
    targets = data.condition_ids()[:128]

    def step() -> float:
        loss = sum(F.cross_entropy(logits, targets[:, i]) for i, logits in enumerate(judge(images)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


def generator_case(kind: str, data_spec: str, options: dict, memory_format: torch.memory_format,
                   conditional: bool = False, translate: str | None = None) -> Step:
    """One of the lab's generators: its own ``training_step`` on batches of its own size."""
    from synthscope.generators.workflow import new_generator

    if translate:
        from synthscope.generators.translate_run import load_translation_data

        data = load_translation_data(kind, data_spec, translate, size=32, n=200, seed=0)
    else:
        from synthscope.generators.data import load_data

        data = load_data(data_spec, size=16 if data_spec == "digits" else 32, n=512, seed=0)
    torch.manual_seed(0)
    model = new_generator(kind, data, conditional, **options).to(memory_format=memory_format).train()
    optimizers = model.make_optimizers()
    batch = int(model.options["batch_size"])
    images = data.images[:batch].contiguous(memory_format=memory_format)
    inputs_of = getattr(model, "training_inputs", None)
    condition = inputs_of(data)[:batch].contiguous(memory_format=memory_format) if inputs_of else (
        data.condition_ids()[:batch] if conditional else None)

    def step() -> float:
        return float(sum(model.training_step(images, condition, optimizers).values()))
    return step


CASES: dict[str, Callable[[torch.memory_format], Step]] = {
    "detector, digits 16 px grey": lambda f: detector_case(1, 16, f),
    "detector, portraits 32 px": lambda f: detector_case(3, 32, f),
    "judge, digits 16 px grey": lambda f: judge_case("digits", 16, f),
    "judge (probe), portraits 16 px": lambda f: judge_case("portraits", 16, f),
    "judge, portraits 32 px": lambda f: judge_case("portraits", 32, f),
    "autoencoder, digits": lambda f: generator_case("ae", "digits", {"latent_dim": 5}, f),
    "colourising autoencoder, portraits": lambda f: generator_case(
        "ae", "portraits", {"latent_dim": 32, "mode": "colourising"}, f),
    "VAE, digits": lambda f: generator_case("vae", "digits", {}, f),
    "GAN, digits": lambda f: generator_case("gan", "digits", {}, f),
    "diffusion, digits": lambda f: generator_case("diffusion", "digits", {}, f, conditional=True),
    "pix2pix, portraits": lambda f: generator_case("pix2pix", "portraits", {}, f, translate="age:young->older"),
    "CycleGAN, portraits": lambda f: generator_case("cyclegan", "portraits", {}, f, translate="age:young->older"),
}


def timed(step: Step, steps: int) -> tuple[float, float]:
    """Milliseconds per step over ``steps`` steps, and the last loss."""
    started = time.perf_counter()
    for _ in range(steps):
        loss = step()
    return (time.perf_counter() - started) / steps * 1000, loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per format and repeat")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (the fastest counts)")
    parser.add_argument("--only", nargs="*", help="case names containing any of these words")
    args = parser.parse_args()
    torch.set_num_threads(1)
    formats = {"NCHW": torch.contiguous_format, "channels-last": torch.channels_last}
    print(f"{'network':38} {'NCHW ms':>8} {'NHWC ms':>8} {'ratio':>6} {'loss diff':>9}")
    for name, case in CASES.items():
        if args.only and not any(word.lower() in name.lower() for word in args.only):
            continue
        steps = {label: case(memory_format) for label, memory_format in formats.items()}
        # Each format draws its own random numbers (noise, dropout) from the same start, so that the
        # losses differ by rounding only.
        generators = {label: torch.get_rng_state() for label in formats}

        def run(label: str, count: int) -> tuple[float, float]:
            torch.set_rng_state(generators[label])
            result = timed(steps[label], count)
            generators[label] = torch.get_rng_state()
            return result

        for label in formats:  # warm-up: oneDNN picks its kernels on the first calls
            run(label, 2)
        best = {label: float("inf") for label in formats}
        losses = {}
        for _ in range(args.repeats):
            for label in formats:
                ms, losses[label] = run(label, args.steps)
                best[label] = min(best[label], ms)
        ratio = best["channels-last"] / best["NCHW"]
        print(f"{name:38} {best['NCHW']:8.1f} {best['channels-last']:8.1f} {ratio:6.2f} "
              f"{abs(losses['NCHW'] - losses['channels-last']) / abs(losses['NCHW']):9.1e}", flush=True)


if __name__ == "__main__":
    main()
