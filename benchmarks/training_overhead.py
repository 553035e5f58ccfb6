"""Training-loop overhead: synthscope's train_generator vs a bare PyTorch loop, same model/data/batch.

Prints seconds per step for both and their ratio (target: <= 1.05). The bare loop is written out by
hand from torch primitives (no sampler object, no progress bar, no checkpoints, no history).

    python benchmarks/training_overhead.py [--steps 300] [--kinds vae diffusion]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
import torch.nn.functional as F

from synthscope.generators.data import load_digits
from synthscope.generators.training import train_generator
from synthscope.generators.workflow import new_generator


def bare_vae_step(model, images, optimizer):
    mean, log_var = model.posterior(images)
    z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
    logits = model.decoder(z)
    loss = (F.binary_cross_entropy_with_logits(logits, images, reduction="sum")
            - 0.5 * torch.sum(1 + log_var - mean.pow(2) - log_var.exp())) / images.shape[0]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def bare_diffusion_step(model, images, optimizer):
    x0 = images * 2 - 1
    noise = torch.randn_like(x0)
    t = torch.randint(0, 1000, (x0.shape[0],))
    loss = F.mse_loss(model.unet(model.scheduler.add_noise(x0, noise, t), t).sample, noise)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


BARE = {"vae": (bare_vae_step, torch.optim.Adam), "diffusion": (bare_diffusion_step, torch.optim.AdamW)}


def time_bare(kind, data, steps, seed):
    torch.manual_seed(seed)
    model = new_generator(kind, data).train()
    step_fn, opt_cls = BARE[kind]
    optimizer = opt_cls(model.parameters(), lr=model.options["lr"])
    batch = model.options["batch_size"]
    images = data.images
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(images), (batch,))
        step_fn(model, images[idx], optimizer)
    return (time.perf_counter() - start) / steps


def time_ours(kind, data, steps, seed):
    torch.manual_seed(seed)
    model = new_generator(kind, data)
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        train_generator(model, data, run_dir, steps=steps, seed=seed, progress=True, checkpoint_every=500)
        return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--kinds", nargs="+", default=list(BARE), choices=list(BARE))
    parser.add_argument("--repeats", type=int, default=2, help="alternating repeats; the best of each is kept")
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = load_digits(16)
    for kind in args.kinds:
        time_bare(kind, data, 10, 0)  # warm-up
        bare = min(time_bare(kind, data, args.steps, 0) for _ in range(args.repeats))
        ours = min(time_ours(kind, data, args.steps, 0) for _ in range(args.repeats))
        print(f"{kind:10s} bare {bare * 1e3:7.1f} ms/step   synthscope {ours * 1e3:7.1f} ms/step   "
              f"ratio {ours / bare:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
