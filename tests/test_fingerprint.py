"""The one JSON encoder and the one "reuse if unchanged" check."""

import dataclasses
import hashlib
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import torch

from synthscope.fingerprint import Reuse, fingerprint
from synthscope.jsondata import canonical_json, json_data
from synthscope.lab import lab_stages, stage_fingerprint


@dataclasses.dataclass
class Settings:
    size: int
    sigma: tuple


def test_json_data_unwraps_what_the_toolkit_records():
    value = {1: (1, 2), "path": Path("a/b.png"), "set": {"b", "a"}, "np": np.float32(0.5),
             "array": np.arange(3), "tensor": torch.tensor([1.5, 2.5]), "scalar": torch.tensor(7),
             "when": datetime(2026, 1, 2, tzinfo=timezone.utc), "bytes": b"\x01\xff",
             "settings": Settings(16, (0.0, 3.0)), "flag": np.bool_(True)}
    assert json_data(value) == {
        "1": [1, 2], "path": "a/b.png", "set": ["a", "b"], "np": 0.5, "array": [0, 1, 2],
        "tensor": [1.5, 2.5], "scalar": 7, "when": "2026-01-02T00:00:00+00:00", "bytes": "01ff",
        "settings": {"size": 16, "sigma": [0.0, 3.0]}, "flag": True}
    json.dumps(json_data(value), allow_nan=False)


def test_non_finite_numbers_and_unknown_objects_follow_the_asked_policy():
    assert math.isnan(json_data(float("nan")))
    assert json_data([float("nan"), float("inf")], nonfinite="null") == [None, None]
    assert json_data({"x": float("-inf")}, nonfinite="text") == {"x": "-inf"}
    with pytest.raises(TypeError, match="object is not JSON serialisable"):
        json_data({"x": object()})
    assert json_data({"x": object()}, lenient=True)["x"].startswith("<object object")


def test_canonical_json_keeps_the_keys_computed_before():
    # Cache folders were named by sha256(json.dumps(settings, sort_keys=True)): still found.
    settings = {"seed": 3, "distribution": {"b": [0.2, 0.8], "a": "x"}, "steps": 1500, "options": {}}
    assert canonical_json(settings) == json.dumps(settings, sort_keys=True)
    assert fingerprint(settings) == hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def test_fingerprint_is_the_same_for_equal_data_and_differs_for_any_change():
    a = fingerprint({"options": {"latent_dim": 2, "mode": "plain"}, "sizes": (16, 32)})
    assert a == fingerprint({"sizes": [16, 32], "options": {"mode": "plain", "latent_dim": 2}})
    assert a != fingerprint({"options": {"latent_dim": 3, "mode": "plain"}, "sizes": (16, 32)})
    with pytest.raises(ValueError):
        fingerprint({"x": float("nan")})  # a NaN setting would never equal itself


def test_reuse_matches_only_the_recorded_fingerprint(tmp_path):
    reuse = Reuse(tmp_path / "result")
    assert reuse.recorded() is None and not reuse.matches("abc")
    reuse.record("abc", steps=10)
    assert reuse.matches("abc") and not reuse.matches("abd")
    assert json.loads(reuse.path.read_text()) == {"fingerprint": "abc", "steps": 10}
    reuse.forget()
    assert not reuse.matches("abc")  # a result being replaced is not the one recorded before
    reuse.forget()  # nothing to forget is fine
    reuse.record("abc")
    reuse.path.write_text("{not json")
    assert not reuse.matches("abc")  # an unreadable record means "make it again"


def test_a_lab_stage_is_made_again_when_anything_it_depends_on_changes():
    stage = lab_stages()[0]
    base = stage_fingerprint(stage, 150, 0, 200)
    assert base == stage_fingerprint(lab_stages()[0], 150, 0, 200)
    changed = dataclasses.replace(stage, options={**stage.options, "latent_dim": 3})
    assert len({base, stage_fingerprint(stage, 151, 0, 200), stage_fingerprint(stage, 150, 1, 200),
                stage_fingerprint(stage, 150, 0, 1000), stage_fingerprint(changed, 150, 0, 200)}) == 5
