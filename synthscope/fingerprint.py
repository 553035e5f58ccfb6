"""The one "reuse if unchanged" check: a fingerprint of what a result depends on, kept beside it.

- :func:`fingerprint` is the SHA-256 of the canonical JSON (:func:`synthscope.jsondata.canonical_json`)
  of what a result depends on: its inputs, its settings and the format version of the code that
  made it (each kind of result keeps its own version number, bumped when the meaning changes).
  Canonical JSON is Python's ``json.dumps(..., sort_keys=True)`` text, so keys computed that way
  before stay the same and caches made by earlier versions are still found.
- :class:`Reuse` keeps that fingerprint beside a result in a folder: the result is reused only when
  the fingerprint asked for now is the one recorded when it was made; any difference, or a missing
  or unreadable record, means "make it again". The record is written after the result, atomically,
  so a result interrupted half-way is never taken for a finished one; :meth:`Reuse.forget` removes
  the record before a result is replaced.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from synthscope.jsondata import canonical_json
from synthscope.runtime import atomic_write_json


def fingerprint(value: Any) -> str:
    """The SHA-256 (hex) of ``value``'s canonical JSON: put in everything the result depends on."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


class Reuse:
    """The record of what a result in ``folder`` was made from (``folder/<name>``).

    ``matches(fp)`` is true only when the result was finished with the same fingerprint;
    ``record(fp)`` is called once the result is complete.
    """

    def __init__(self, folder: Path | str, name: str = "fingerprint.json"):
        self.path = Path(folder) / name

    def recorded(self) -> str | None:
        """The fingerprint recorded with the result, None when there is none or it is unreadable."""
        try:
            value = json.loads(self.path.read_text(encoding="utf-8")).get("fingerprint")
        except (OSError, ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None

    def matches(self, fingerprint_now: str) -> bool:
        return self.recorded() == fingerprint_now

    def forget(self) -> None:
        """Remove the record before a result is replaced: a replacement interrupted half-way must not
        pass for the result the old record described."""
        self.path.unlink(missing_ok=True)

    def record(self, fingerprint_now: str, **described: Any) -> None:
        """Write the fingerprint (and, for people reading the folder, what it was made from)."""
        atomic_write_json(self.path, {"fingerprint": fingerprint_now, **described})
