"""The one training loop every built-in generator uses: batching, progress, checkpoints, resume."""

from __future__ import annotations

import hashlib
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from synthscope.errors import UserError
from synthscope.images import to_uint8
from synthscope.runtime import ThreadGovernor, atomic_write_bytes, read_json

from .base import CONFIG_FILE, SNAPSHOT_IMAGES, SNAPSHOTS, Generator
from .imageset import ImageSet

STATE_FILE = "training_state.pt"
HISTORY_FILE = "history.csv"


@dataclass
class TrainingRun:
    """What a finished (or resumed) training run leaves: the model, its loss history, its folder."""

    model: Generator
    history: pd.DataFrame
    run_dir: Path
    step: int
    seconds: float
    resumed_from: int


class BatchSampler:
    """Seeded shuffling without replacement, epoch after epoch, whose position can be saved."""

    def __init__(self, n: int, batch_size: int, seed: int):
        if n == 0:
            raise UserError("cannot train on an empty data set")
        self.n, self.batch_size = n, min(batch_size, n)
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(n, generator=self.generator)
        self.position = 0

    def next(self) -> torch.Tensor:
        if self.position + self.batch_size > self.n:  # drop the ragged end of an epoch
            self.order = torch.randperm(self.n, generator=self.generator)
            self.position = 0
        batch = self.order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return batch

    def state(self) -> dict[str, Any]:
        return {"rng": self.generator.get_state(), "order": self.order, "position": self.position}

    def restore(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["rng"])
        self.order, self.position = state["order"], int(state["position"])


def data_fingerprint(data: ImageSet) -> str:
    """SHA-256 of the training pixels, for provenance and to refuse resuming on other data."""
    digest = hashlib.sha256(to_uint8(data.images).contiguous().numpy().tobytes())
    inputs = getattr(data, "inputs", None)  # a translation set: its inputs are training data too
    if inputs is not None:
        digest.update(to_uint8(inputs).contiguous().numpy().tobytes())
    return digest.hexdigest()


def train_generator(model: Generator, data: ImageSet, run_dir: Path, steps: int, seed: int = 0,
                    device: str | torch.device = "cpu", checkpoint_every: int = 500,
                    snapshot_every: int | None = None, log_every: int = 1, progress: bool = True,
                    run_info: dict[str, Any] | None = None) -> TrainingRun:
    """Train ``model`` on ``data`` for ``steps`` optimiser steps in total, checkpointing to ``run_dir``.

    A run folder that already holds a checkpoint of the same model and data is resumed from its
    last step: model, optimisers, random-number generators and batch order are all restored, so
    5 + 5 steps give the same weights as 10. ``snapshot_every`` saves a grid of samples from fixed
    noise, to show training progress.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    torch.manual_seed(seed)
    model.to(device).train()
    optimizers = model.make_optimizers()
    sampler = BatchSampler(len(data), int(model.options["batch_size"]), seed)
    images = data.images.to(device)
    conditions = _conditions(model, data)
    conditions = None if conditions is None else conditions.to(device)
    fingerprint = data_fingerprint(data)
    info = {**(run_info or {}), "data_sha256": fingerprint, "seed": seed}

    start, seconds, records = 0, 0.0, []
    state_path = run_dir / STATE_FILE
    if state_path.exists():
        start, seconds, records = _restore(state_path, model, optimizers, sampler, fingerprint, seed)
    resumed_from = start
    if start >= steps:
        return TrainingRun(model.eval(), pd.DataFrame(records), run_dir, start, seconds, resumed_from)

    bar = tqdm(total=steps, initial=start, desc=f"train {model.kind}", unit="step", disable=not progress,
               dynamic_ncols=True)
    began = time.perf_counter()
    governor = ThreadGovernor()  # fewer threads while other jobs share the CPUs, all of them alone
    for step in range(start + 1, steps + 1):
        governor.tick()
        batch = sampler.next()
        losses = model.training_step(images[batch], None if conditions is None else conditions[batch], optimizers)
        if step % log_every == 0 or step == steps:
            records.append({"step": step, **losses})
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
        snapshot_due = bool(snapshot_every) and (step % snapshot_every == 0 or step == steps)
        if snapshot_due or step == steps:
            # What sampling needs but training only settles at its end (the autoencoder's latent
            # Gaussian); it leaves the training state untouched, so snapshots show real samples.
            model.finish_training(data.images)
        if snapshot_due:
            _save_snapshot(model, run_dir, step, seed, data)
        if step % checkpoint_every == 0 or step == steps:
            _checkpoint(model, optimizers, sampler, run_dir, step,
                        seconds + time.perf_counter() - began, records, info)
    bar.close()
    seconds += time.perf_counter() - began
    return TrainingRun(model.eval(), pd.DataFrame(records), run_dir, steps, seconds, resumed_from)


def _conditions(model: Generator, data: ImageSet) -> torch.Tensor | None:
    """What each training image is conditioned on: its class ids for a conditional model, its input
    image for a translation model (which defines ``training_inputs``), nothing otherwise."""
    inputs_of = getattr(model, "training_inputs", None)
    if inputs_of is not None:
        return inputs_of(data)
    return data.condition_ids() if model.conditional else None


def _checkpoint(model, optimizers, sampler, run_dir: Path, step: int, seconds: float,
                records: list[dict], info: dict[str, Any]) -> None:
    # The resume state (weights included) is written first and atomically, so a crash at any
    # point leaves a consistent state to resume from; the safetensors export follows.
    state = {
        "step": step, "seconds": seconds,
        "model": model.state_dict(),
        "model_training": model.training_state(),
        "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
        "sampler": sampler.state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "history": records,
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(run_dir / STATE_FILE, buffer.getvalue())
    atomic_write_bytes(run_dir / HISTORY_FILE, pd.DataFrame(records).to_csv(index=False).encode())
    model.save(run_dir, extra={**info, "step": step, "train_seconds": round(seconds, 3)})


def _restore(path: Path, model, optimizers, sampler, fingerprint: str, seed: int) -> tuple[int, float, list]:
    config = read_json(path.parent / CONFIG_FILE) if (path.parent / CONFIG_FILE).exists() else {}
    if config.get("seed") is not None and config["seed"] != seed:
        raise UserError(f"{path.parent}: was trained with --seed {config['seed']}, not {seed}; use the same "
                         f"seed to resume, another --out folder, or --force to start over")
    if config.get("model") and config["model"] != model.config():
        raise UserError(f"{path.parent}: holds a run of a different model configuration; "
                         f"use another --out folder or --force to start over")
    if config.get("data_sha256") and config["data_sha256"] != fingerprint:
        raise UserError(f"{path.parent}: was trained on different data; use another --out folder "
                         f"or --force to start over")
    try:
        # On the CPU first: RNG states must stay CPU tensors; the optimisers move their own state.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"{path}: unreadable training state ({error}); use --force to start over") from None
    _check_state(state, path, optimizers)
    try:
        model.load_state_dict(state["model"])  # copies onto the model's device
        model.load_training_state(state.get("model_training", {}))  # absent from older checkpoints
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        sampler.restore(state["sampler"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as error:  # shapes or contents
        raise UserError(f"{path}: does not match this run's model ({' '.join(str(error).split())[:300]}); "
                         f"use --force to start over") from None
    return int(state["step"]), float(state["seconds"]), list(state["history"])


# What a training state holds (see _checkpoint): key -> the types its value may have.
_STATE_TYPES: dict[str, tuple[type, ...]] = {
    "model": (dict,), "optimizers": (dict,), "sampler": (dict,), "torch_rng": (torch.Tensor,),
    "cuda_rng": (list, tuple), "step": (int,), "seconds": (int, float), "history": (list,),
}


def _check_state(state: Any, path: Path, optimizers: dict[str, torch.optim.Optimizer]) -> None:
    """One clear error for a training state that lacks keys or holds the wrong types."""
    if not isinstance(state, dict):
        raise UserError(f"{path}: not a training state (a {type(state).__name__}, not a dictionary); "
                         f"use --force to start over")
    for key, types in _STATE_TYPES.items():
        if key not in state:
            raise UserError(f"{path}: training state lacks {key!r}; use --force to start over")
        if not isinstance(state[key], types) or isinstance(state[key], bool):
            raise UserError(f"{path}: training state {key!r} is a {type(state[key]).__name__}; "
                             f"use --force to start over")
    if not isinstance(state.get("model_training", {}), dict):  # optional: older checkpoints lack it
        raise UserError(f"{path}: training state 'model_training' is a {type(state['model_training']).__name__}; "
                         f"use --force to start over")
    missing = sorted(set(optimizers) - set(state["optimizers"]))
    if missing or not {"rng", "order", "position"} <= set(state["sampler"]):
        raise UserError(f"{path}: training state lacks optimiser or sampler entries "
                         f"({', '.join(missing) or 'sampler'}); use --force to start over")


SNAPSHOT_SHARE = 0.25  # training snapshots take at most about this share of a run's time


def snapshot_interval(model: Generator, steps: int, snapshots: int = SNAPSHOTS) -> int:
    """Steps between training snapshots: at most ``snapshots`` per run, the last one at the final step
    (the run's final samples), and never so many that drawing them costs more than
    :data:`SNAPSHOT_SHARE` of the training (a 20-step diffusion run would otherwise spend most of its
    time drawing 64-image grids). Runs longer than (snapshots - 1)² steps get exactly ``snapshots``."""
    cost = model.sampling_cost(SNAPSHOT_IMAGES)
    return max(1, math.ceil(steps / max(1, snapshots)), math.ceil(cost / SNAPSHOT_SHARE))


def _save_snapshot(model: Generator, run_dir: Path, step: int, seed: int, data: ImageSet) -> None:
    from torchvision.utils import save_image

    folder = run_dir / "snapshots"
    folder.mkdir(exist_ok=True)
    images, nrow = model.snapshot(data, seed)
    save_image(images, folder / f"step_{step:06d}.png", nrow=nrow, padding=1)
