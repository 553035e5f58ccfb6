"""Shared plumbing: seeding, device choice and small file helpers used by every module."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import time
import uuid
from importlib import metadata
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from synthscope.errors import UserError
from synthscope.jsondata import json_data


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# Workloads, for the number of CPU threads torch uses (:func:`choose_threads`).
TINY = "tiny"  # the built-in models and small CNNs: overhead-bound, fastest with one thread
LARGE = "large"  # CLIP ViTs, ResNets, diffusers pipelines on a CPU: enough work per call for every core


def available_cpus(cgroup_root: Path | str = "/sys/fs/cgroup") -> int:
    """The CPUs this process may actually use: its affinity mask, capped by a cgroup CPU quota (a
    container limited to 2 CPUs on a 64-core host has 2), never the host's core count alone."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        count = os.cpu_count() or 1
    quota = _cgroup_cpu_quota(Path(cgroup_root))
    if quota is not None:
        count = min(count, max(1, int(quota)))  # 1.5 CPUs of quota: 1 thread keeps busy without throttling
    return max(1, count)


def _cgroup_cpu_quota(root: Path) -> float | None:
    """CPUs allowed by the cgroup (v2 ``cpu.max``, else v1 ``cpu.cfs_quota_us``), None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_memory(cgroup_root: Path | str = "/sys/fs/cgroup") -> int | None:
    """Bytes of memory this process may use: the machine's, capped by a cgroup limit (None: unknown)."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        total = None
    try:
        limit = (Path(cgroup_root) / "memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, int(limit)) if total else int(limit)
    except OSError:
        pass
    return total


def _readable_bytes(count: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if count < 1000 or unit == "PB":
            return f"{count:,.0f} {unit}" if unit == "bytes" else f"{count:,.1f} {unit}"
        count /= 1000
    return f"{count:,.1f} PB"


def check_memory(needed: float, what: str, share: float = 0.8) -> None:
    """Refuse, with one clear error, work whose arrays alone would need more than ``share`` of the
    memory this process may use (instead of allocating until the machine runs out)."""
    total = available_memory()
    if total is not None and needed > share * total:
        raise UserError(f"{what} needs about {_readable_bytes(needed)} of memory; this machine has "
                         f"{_readable_bytes(total)}")


def check_disk(needed: float, folder: Path | str, what: str) -> None:
    """Refuse, with one clear error, writing about ``needed`` bytes under ``folder`` when its disk has
    less free space (instead of failing half-way through a long run)."""
    probe = Path(folder).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return
    if needed > free:
        raise UserError(f"{what} needs about {_readable_bytes(needed)} of disk in {folder}; "
                         f"{_readable_bytes(free)} are free")


def _cpu_jiffies(cpus: set[int], stat: str) -> float:
    """Busy jiffies of ``cpus`` in a ``/proc/stat`` text (user, nice, system, irq, softirq, steal)."""
    busy = 0.0
    for line in stat.splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            values = [float(v) for v in fields[:8]] + [0.0] * max(0, 8 - len(fields))
            busy += values[0] + values[1] + values[2] + values[5] + values[6] + values[7]
    return busy


class CpuLoad:
    """How many of this process's CPUs other processes keep busy, measured between two calls of
    :meth:`others_busy` from ``/proc/stat`` (all processes) minus this process's own CPU time."""

    def __init__(self, read_stat=lambda: Path("/proc/stat").read_text(), clock=time.monotonic,
                 own_seconds=lambda: sum(os.times()[:2])) -> None:
        try:
            self.cpus = set(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            self.cpus = set(range(os.cpu_count() or 1))
        self._read, self._clock, self._own = read_stat, clock, own_seconds
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._last = self._sample()

    def _sample(self) -> tuple[float, float, float] | None:
        try:
            return _cpu_jiffies(self.cpus, self._read()) / self._tick, self._own(), self._clock()
        except (OSError, ValueError, IndexError):
            return None  # not Linux, or an unreadable /proc: no measurement

    def others_busy(self) -> float | None:
        """CPUs other processes kept busy since the last call (None when it cannot be measured)."""
        now, last = self._sample(), self._last
        self._last = now
        if now is None or last is None or now[2] - last[2] <= 0:
            return None
        others = (now[0] - last[0]) - (now[1] - last[1])  # all busy CPU-seconds minus our own
        return max(0.0, others / (now[2] - last[2]))


def choose_threads(workload: str = TINY, requested: int | None = None, load: CpuLoad | None = None,
                   window: float = 0.2) -> int:
    """How many CPU threads torch should use for ``workload`` (:data:`TINY` or :data:`LARGE`).

    ``requested`` (``--threads``) wins, then ``OMP_NUM_THREADS`` when set (a launcher such as torchrun
    sets it). Large models (CLIP, ResNets, diffusers) get the CPUs this process may use, shared with
    the other processes launched on this machine (``LOCAL_WORLD_SIZE``). Tiny models get the CPUs
    that other processes leave free, measured over ``window`` seconds, at least one: alone on an
    idle machine that is every usable CPU, beside other work one thread, so that jobs share the
    cores instead of fighting over them (:class:`ThreadGovernor` keeps adjusting while they run)."""
    if workload not in (TINY, LARGE):
        raise UserError(f"unknown workload {workload!r}; use {TINY!r} or {LARGE!r}")
    if requested is not None:
        if requested < 1:
            raise UserError(f"--threads must be at least 1, got {requested}")
        return int(requested)
    from_env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if from_env.isdigit() and int(from_env) > 0:
        return int(from_env)
    usable = available_cpus()
    if workload == LARGE:
        local = os.environ.get("LOCAL_WORLD_SIZE", "").strip()
        processes = int(local) if local.isdigit() and int(local) > 0 else 1
        return max(1, usable // processes)
    load = load or CpuLoad()
    time.sleep(window)
    busy = load.others_busy()
    return 1 if busy is None else _free_threads(usable, busy)


def _free_threads(usable: int, others_busy: float) -> int:
    return max(1, min(usable, int(usable - others_busy + 0.5)))


_AUTOMATIC_THREADS = False  # whether the thread count was chosen by synthscope (not --threads / OMP)


def use_threads(count: int, automatic: bool = False) -> None:
    """Make torch compute with ``count`` CPU threads in this process. ``automatic``: the count was
    synthscope's choice, so a :class:`ThreadGovernor` may adjust it while long loops run."""
    global _AUTOMATIC_THREADS
    torch.set_num_threads(int(count))
    _AUTOMATIC_THREADS = bool(automatic)


def threads_are_automatic() -> bool:
    """Whether torch's thread count was synthscope's choice (so it may change with the machine's load)
    rather than fixed by ``--threads`` or ``OMP_NUM_THREADS``."""
    return _AUTOMATIC_THREADS


class ThreadGovernor:
    """Keeps torch's CPU threads, while a long loop of tiny-model steps runs, at what other processes
    leave free: call :meth:`tick` once a step; every ``interval`` seconds it measures the machine and
    sets the thread count (all usable CPUs alone, fewer beside other jobs). It does nothing unless
    the count was chosen automatically (``--threads`` and ``OMP_NUM_THREADS`` are left alone)."""

    def __init__(self, interval: float = 1.0, enabled: bool | None = None, load: CpuLoad | None = None,
                 clock=time.monotonic) -> None:
        self.enabled = _AUTOMATIC_THREADS if enabled is None else enabled
        self.interval, self._clock = interval, clock
        self._load = (load or CpuLoad()) if self.enabled else None
        self._next = clock() + interval
        self.changes: list[int] = []  # the thread counts it set, for tests and benchmarks

    def tick(self) -> None:
        if not self.enabled or self._clock() < self._next:
            return
        self._next = self._clock() + self.interval
        busy = self._load.others_busy()
        if busy is None:
            return
        threads = _free_threads(available_cpus(), busy)
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
            self.changes.append(threads)


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device that is absent is an error."""
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine (use cpu or auto)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("--device mps: MPS is not available on this machine (use cpu or auto)")
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise UserError(f"--device {name}: {error}") from None


ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


def channels_last(module: ModuleT) -> ModuleT:
    """``module`` with its 4-D weights stored channels-last (NHWC), returned for chaining.

    On a CPU, oneDNN's convolutions and above all max-pooling of small feature maps run faster on
    NHWC: one training step of a small detector or judge takes 0.6-0.7x the time, an autoencoder's,
    GAN's or translator's 0.85-0.9x (benchmarks/memory_format.py). Weights stored this way pull every
    activation after them into NHWC, even from a 1-channel image (the same bytes in both formats, so
    converting inputs alone would not). The arithmetic is the same up to rounding, and saved weights
    are unchanged: :func:`save_weights` stores tensors contiguous, loading copies into this layout.
    """
    return module.to(memory_format=torch.channels_last)


@contextlib.contextmanager
def evaluating(module: torch.nn.Module) -> Iterator[None]:
    """Eval mode (BatchNorm running statistics) and no gradients; the previous mode comes back
    even if the body raises."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


def fsync_dir(folder: Path) -> None:
    """Make renames in ``folder`` durable; best effort (not possible on every platform)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, sync_dir: bool = True) -> None:
    """Write a file so that readers see either the old or the new content, never half of it.

    ``sync_dir=False`` skips the folder fsync, for callers that write many files and sync the
    folder once (a corpus batch)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # open(..., "xb") rather than mkstemp: the file gets the usual umask permissions, not 0600.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def sha256_file(path: Path | str, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (checkpoints can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def save_weights(module: torch.nn.Module, path: Path) -> str:
    """A module's state as safetensors, written atomically; returns the file's SHA-256."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_write_bytes(Path(path), save(state))
    return sha256_file(path)


def load_weights(module: torch.nn.Module, path: Path, expected_sha256: str | None = None) -> None:
    """Load safetensors weights into ``module`` (no pickled code can run); a missing, corrupt,
    changed or mismatched file is one clear error naming it."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing weight file")
    if expected_sha256 and sha256_file(path) != expected_sha256:
        raise UserError(f"{path}: does not match the weights_sha256 recorded beside it "
                         f"(changed, or a save was interrupted); retrain or restore the file")
    try:
        state = load_file(str(path), device="cpu")
    except Exception as error:  # safetensors raises its own error types
        raise UserError(f"{path}: not a readable safetensors file ({error})") from None
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise UserError(f"{path}: weights do not match the model's config ({error})") from None
    if missing or unexpected:
        raise UserError(f"{path}: weights do not match the model's config "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")


def package_version(distribution: str) -> str | None:
    """The installed version of a distribution (as pip names it), None when not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def atomic_write_json(path: Path, payload: Any) -> None:
    """``payload`` as indented JSON (through the one encoder, :func:`synthscope.jsondata.json_data`)."""
    text = json.dumps(json_data(payload, lenient=True), indent=2, sort_keys=True)
    atomic_write_bytes(path, (text + "\n").encode())


def read_json(path: Path) -> Any:
    """Read a JSON file; a broken one is one clear error naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None
