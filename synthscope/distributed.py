"""One command, one or many processes: sharding work under Hugging Face Accelerate.

Every long command (``audit run``, ``generate sample``, ``detect scan``) runs alone, as always, or
under ``accelerate launch --num_processes N -m synthscope ...`` (or ``torchrun``), on one machine or
several sharing a filesystem. :func:`current_shard` tells a command which process it is. The rules
every sharded command follows:

- **Split by a stable key, never by position.** Work comes in units (a planned batch of audit
  images, a batch of samples, a chunk of scanned files), each with a stable key. Every process
  orders the units by a hash of their key and deals them out in turn (:meth:`Shard.select`), so
  each unit goes to exactly one process, the shares differ by at most one unit, and no process
  needs to hear from another. Accelerate's ``split_between_processes`` pads uneven splits with
  duplicates; a duplicate must never be counted twice, so we do not use it. Units are whole
  batches of the one-process plan, so a batch holds the same images whatever the number of
  processes, and the outputs are the same bytes.
- **Each process writes only its own files** (a corpus part, a CSV part); the main process merges
  them when all are done, and a later run merges whatever a killed run left. No two processes ever
  rewrite the same file.
- **What must happen once happens on the main process** (training a model on first use, creating a
  corpus, writing the report) while the others wait (:meth:`Shard.main_first`, :meth:`Shard.wait`).

Accelerate is imported only when the command was launched as several processes, so a one-process
command starts as fast as before.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from synthscope.errors import UserError
from synthscope.runtime import resolve_device

T = TypeVar("T")

BARRIER_TIMEOUT_HOURS = 24

# Variables a launcher (torchrun, accelerate launch, mpirun) sets to the number of processes.
_WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_processes() -> int:
    """How many processes the launcher started for this command (1 when run directly)."""
    for name in _WORLD_SIZE_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def key_rank(key: str) -> bytes:
    """The order in which units are dealt out: a hash of the key, the same in every process."""
    return hashlib.sha256(str(key).encode("utf-8")).digest()


@dataclass(frozen=True)
class Shard:
    """This process's place in a command: ``index`` of ``count`` processes (``local_index`` on its
    machine). A one-process command is ``Shard()``: index 0 of 1, every item its own."""

    index: int = 0
    count: int = 1
    local_index: int = 0
    state: Any = None  # accelerate's PartialState when distributed

    @property
    def is_main(self) -> bool:
        return self.index == 0

    @property
    def distributed(self) -> bool:
        return self.count > 1

    @property
    def part(self) -> str:
        """The name of this process's own output part (e.g. ``rank-001``)."""
        return f"rank-{self.index:03d}"

    def select(self, units: Iterable[T], key: Callable[[T], str]) -> list[T]:
        """The units this process does, in their given order. Units are ordered by a hash of their
        key and dealt out to the processes in turn: every unit to exactly one process, whatever order
        each process lists them in, and shares that differ by at most one unit. Every process must
        pass the same units (e.g. those still to do after the main process merged earlier work)."""
        units = list(units)
        if not self.distributed:
            return units
        keys = [str(key(unit)) for unit in units]
        if len(set(keys)) != len(keys):
            raise UserError("units to share out need distinct keys")
        dealt = sorted(range(len(units)), key=lambda i: key_rank(keys[i]))
        mine = set(dealt[self.index::self.count])
        return [unit for i, unit in enumerate(units) if i in mine]

    def wait(self) -> None:
        """Wait until every process reaches this point (nothing to wait for when alone)."""
        if self.distributed:
            self.state.wait_for_everyone()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Run the body on the main process first, then on the others (e.g. train, then load)."""
        if not self.distributed:
            yield
            return
        with self.state.main_process_first():
            yield

    def device(self, name: str | torch.device | None = "auto") -> torch.device:
        """The device this process computes on: ``cuda`` (or ``auto`` with GPUs) becomes this
        process's own GPU, ``cuda:<local index>``, so that N processes use N GPUs."""
        device = resolve_device(name)
        if self.distributed and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_index % max(1, torch.cuda.device_count()))
        return device

    def progress(self, enabled: bool) -> bool:
        """Progress bars on the main process only, so that N bars do not overwrite each other."""
        return enabled and self.is_main


def _wants_cpu(device: str | torch.device | None) -> bool:
    if os.environ.get("ACCELERATE_USE_CPU", "").strip().lower() in ("1", "true", "yes"):
        return True
    try:
        return resolve_device(device).type != "cuda"
    except ValueError:
        return True  # the command reports the bad device itself


_SHARD: Shard | None = None


def current_shard(device: str | torch.device | None = "auto") -> Shard:
    """This process's :class:`Shard`. Launched as several processes, the process group is set up
    through Accelerate (gloo between CPU processes, NCCL between GPUs) on first call."""
    global _SHARD
    if _SHARD is not None:
        return _SHARD
    if launched_processes() <= 1:
        if os.environ.get("ACCELERATE_USE_CPU") and os.environ.get("MASTER_ADDR") and not os.environ.get("RANK"):
            # `accelerate launch --cpu --num_processes N` starts one process unless mpirun is configured.
            warnings.warn("running as one process: `accelerate launch --cpu` starts several processes only through "
                          "mpirun; on one machine use `accelerate launch --multi_gpu --num_processes N -m synthscope "
                          "... --device cpu` (torchrun), which runs CPU processes when --device is cpu", stacklevel=2)
        _SHARD = Shard()
        return _SHARD
    from accelerate import InitProcessGroupKwargs, PartialState

    # The others wait while the main process does what must happen once (training the builtin model
    # on first use can take longer than the usual 10-30 minute barrier timeout).
    timeout = InitProcessGroupKwargs(timeout=datetime.timedelta(hours=BARRIER_TIMEOUT_HOURS)).to_kwargs()
    state = PartialState(cpu=_wants_cpu(device), **timeout)
    _SHARD = Shard(index=state.process_index, count=state.num_processes,
                   local_index=state.local_process_index, state=state)
    return _SHARD
