"""The one JSON encoder: anything the toolkit records (settings, provenance, results, fingerprints)
as plain JSON data, so that a value reads back the same way whichever file it was written to.

Dict keys become text, tuples lists, sets sorted lists, paths POSIX text, numpy and torch scalars and
arrays Python numbers and lists, dates ISO 8601 text, bytes hex, dataclasses dicts. This module
imports nothing heavy (numpy and torch are looked up only when a value holds them), so any module,
the command line included, may use it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from datetime import date, datetime
from pathlib import PurePath
from typing import Any, Literal

NonFinite = Literal["keep", "null", "text"]


def json_data(value: Any, *, nonfinite: NonFinite = "keep", lenient: bool = False) -> Any:
    """``value`` as plain JSON data (see the module docstring).

    ``nonfinite`` says what NaN and infinities become: kept as floats (Python's JSON writes them as
    ``NaN``/``Infinity``), ``None``, or their text ("nan"). An object of any other type is a
    ``TypeError`` naming the type, or its ``str()`` when ``lenient`` (provenance, where a readable
    record beats none).
    """
    def convert(item: Any) -> Any:
        if item is None or isinstance(item, (bool, str)):
            return item
        if isinstance(item, int):
            return int(item)  # an IntEnum or numpy-derived int as a plain int
        if isinstance(item, float):
            if math.isfinite(item) or nonfinite == "keep":
                return float(item)
            return None if nonfinite == "null" else str(item)
        if isinstance(item, dict):
            return {str(key): convert(element) for key, element in item.items()}
        if isinstance(item, (list, tuple)):
            return [convert(element) for element in item]
        if isinstance(item, (set, frozenset)):
            return [convert(element) for element in sorted(item, key=str)]
        if isinstance(item, PurePath):
            return item.as_posix()
        if isinstance(item, (datetime, date)):
            return item.isoformat()
        if isinstance(item, bytes):
            return item.hex()
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            return convert(dataclasses.asdict(item))
        array = _array_data(item)
        if array is not None:
            return convert(array)
        if lenient:
            return str(item)
        raise TypeError(f"{type(item).__name__} is not JSON serialisable")

    return convert(value)


def _array_data(item: Any) -> Any:
    """A numpy or torch scalar or array as Python data; None for anything else. The modules are
    looked up, not imported: a value cannot hold an array of a library nobody imported."""
    numpy, torch = sys.modules.get("numpy"), sys.modules.get("torch")
    if numpy is not None and isinstance(item, (numpy.generic, numpy.ndarray)):
        return item.tolist()
    if torch is not None and isinstance(item, torch.Tensor):
        return item.detach().cpu().tolist()
    return None


def canonical_json(value: Any) -> str:
    """One text for equal data (keys sorted; non-finite floats refused): Python's default JSON
    layout, so that text written this way before reads the same."""
    return json.dumps(json_data(value), sort_keys=True, allow_nan=False)
