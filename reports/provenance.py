"""What produced a result: versions, machine, time, and the hashes of data and checkpoints."""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone
from typing import Any

from synthscope.errors import UserError
from synthscope.runtime import package_version, sha256_file

__all__ = ["collect_provenance", "file_sha256", "PROVENANCE_PACKAGES"]

# Distribution names (as pip knows them) whose versions every report records.
PROVENANCE_PACKAGES: tuple[str, ...] = (
    "synthscope", "torch", "torchvision", "diffusers", "open_clip_torch", "scikit-learn", "numpy", "pandas",
)


def _package_version(name: str) -> str:
    return package_version(name) or "not installed"


def _timestamp(value: datetime | float | int) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.astimezone()
    return datetime.fromtimestamp(float(value), tz=timezone.utc)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``; nested dicts merge key by key, so a caller can add one package."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _accelerator() -> str | None:
    """The GPU in use, only if torch is already imported (a report never pays for importing torch)."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # a broken driver must not stop a report from being written
        return None
    return None


def collect_provenance(extra: dict[str, Any] | None = None, *,
                       started_at: datetime | float | None = None,
                       packages: tuple[str, ...] = PROVENANCE_PACKAGES) -> dict[str, Any]:
    """A provenance record: time, Python, platform, CPU count, package versions, merged with ``extra``.

    ``extra`` carries what only the caller knows (seeds, config, data and checkpoint hashes, the
    command line); its keys win over the collected ones, nested dicts merge. With ``started_at`` (a
    datetime or a ``time.time()`` value) the run's start and duration are recorded too. The host
    name is deliberately left out: reports get handed in and shared.
    """
    now = datetime.now(timezone.utc)
    record: dict[str, Any] = {"created_at": now.replace(microsecond=0).isoformat()}
    if started_at is not None:
        start = _timestamp(started_at)
        record["started_at"] = start.replace(microsecond=0).isoformat()
        record["run_time_s"] = round((now - start).total_seconds(), 1)
    machine: dict[str, Any] = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "architecture": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    accelerator = _accelerator()
    if accelerator:
        machine["accelerator"] = accelerator
    record["machine"] = machine
    record["packages"] = {name: _package_version(name) for name in packages}
    if extra:
        if not isinstance(extra, dict):
            raise TypeError(f"collect_provenance: extra must be a dict, got {type(extra).__name__}")
        record = _merge(record, extra)
    return record


def file_sha256(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """The SHA-256 of a file (a data set, a checkpoint), as ``sha256:<hex>``."""
    try:
        return "sha256:" + sha256_file(path, chunk_size)
    except OSError as error:
        raise UserError(f"cannot hash {str(path)!r}: {error.strerror or error}") from None
