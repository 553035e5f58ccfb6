"""Several processes, one result: audits, samples and scans sharded by a stable key under Accelerate.

The multi-process tests launch real processes (``accelerate launch --multi_gpu --num_processes N``,
which starts them through torchrun; with ``--device cpu`` they talk over gloo) and compare what they
wrote with one process: the same image bytes for every key, the same tables, the same scan rows,
each item exactly once, also after a process is killed mid-run and the run is finished with
another number of processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from synthscope.distributed import Shard, current_shard, launched_processes
from synthscope.generators.corpus import PARTS_DIR, CorpusError, CorpusWriter, open_part, read_corpus

from tiny_clip import TINY, TINY_TEXT

TESTS = Path(__file__).parent
DRIVER = TESTS / "distributed_driver.py"


# ------------------------------------------------------------------------------- sharding rules


def test_every_unit_goes_to_exactly_one_process_in_even_shares():
    keys = [f"prompt-{p}#{i}" for p in range(7) for i in range(0, 40, 8)]  # 35 batches, keyed by first image
    for count in (1, 2, 3, 5, 40):  # 40: more processes than units, some get none
        shards = [Shard(index=i, count=count) for i in range(count)]
        shares = [s.select(keys, key=str) for s in shards]
        assert sorted(k for share in shares for k in share) == sorted(keys)  # each once, none lost
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
        # what a process gets depends on the keys, not on the order they are listed in
        assert [sorted(s.select(keys[::-1], key=str)) for s in shards] == [sorted(share) for share in shares]
        assert all(share == [k for k in keys if k in share] for share in shares)  # in the given order
    with pytest.raises(ValueError, match="distinct keys"):
        Shard(index=0, count=2).select(["a", "a"], key=str)


def test_one_process_needs_no_launcher(monkeypatch):
    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert launched_processes() == 1
    shard = current_shard("cpu")
    assert (shard.index, shard.count, shard.is_main, shard.distributed) == (0, 1, True, False)
    assert shard.select(["a", "b", "c"], key=str) == ["a", "b", "c"]
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert launched_processes() == 4
    assert Shard(index=1, count=2).device("cpu") == torch.device("cpu")


# ------------------------------------------------------------------------------- corpus parts


def _images(n: int, offset: int = 0) -> torch.Tensor:
    return torch.arange(n * 3 * 4 * 4, dtype=torch.float32).reshape(n, 3, 4, 4).add(offset).remainder(255) / 255


def _by_key(root: Path) -> dict[str, str]:
    corpus = read_corpus(root)
    return {key: hashlib.sha256(path.read_bytes()).hexdigest()
            for key, path in zip(corpus.manifest["key"], corpus.paths())}


def test_parts_merge_in_plan_order_into_the_corpus_one_process_writes(tmp_path):
    order = [f"k{i}" for i in range(6)]
    alone = CorpusWriter(tmp_path / "alone", {"generator": "toy"})
    alone.append(_images(6), [{"key": k} for k in order])

    main = CorpusWriter(tmp_path / "sharded", {"generator": "toy"})
    first, second = open_part(tmp_path / "sharded", "rank-000"), open_part(tmp_path / "sharded", "rank-001")
    images = _images(6)
    second.append(images[[1, 4]], [{"key": "k1"}, {"key": "k4"}])  # written in any order
    first.append(images[[5, 0]], [{"key": "k5"}, {"key": "k0"}])
    second.append(images[[3, 2]], [{"key": "k3"}, {"key": "k2"}])
    assert main.merge_parts(order) == 6
    assert not (tmp_path / "sharded" / PARTS_DIR).exists()
    assert (read_corpus(tmp_path / "sharded").manifest[["file", "key", "source"]]
            .equals(read_corpus(tmp_path / "alone").manifest[["file", "key", "source"]]))
    assert _by_key(tmp_path / "sharded") == _by_key(tmp_path / "alone")
    merged = json.loads((tmp_path / "sharded" / "corpus.json").read_text())["merged"]
    assert merged[0]["parts"] == ["rank-000", "rank-001"] and merged[0]["rows"] == 6


def test_a_merge_interrupted_after_its_commit_adds_nothing_twice(tmp_path):
    root = tmp_path / "c"
    main = CorpusWriter(root, {"generator": "toy"})
    part = open_part(root, "rank-001")
    part.append(_images(3), [{"key": f"k{i}"} for i in range(3)])
    kept = tmp_path / "kept"
    shutil.copytree(root / PARTS_DIR, kept)
    assert main.merge_parts() == 3
    shutil.copytree(kept, root / PARTS_DIR)  # as if the process died before removing the parts
    main.close()  # as when the process that merged has ended
    reopened = CorpusWriter(root)
    assert reopened.merge_parts() == 0
    assert len(read_corpus(root)) == 3 and not (root / PARTS_DIR).exists()


def test_a_part_made_another_way_is_refused_and_an_empty_one_skipped(tmp_path):
    root = tmp_path / "c"
    main = CorpusWriter(root, {"generator": "toy", "seed": 1})
    open_part(root, "rank-002")  # a process killed before its first batch leaves an empty part
    stray = CorpusWriter(root / PARTS_DIR / "rank-001", {"generator": "other"})
    stray.append(_images(1), [{"key": "x"}])
    with pytest.raises(CorpusError, match=r"rank-001: a part made with other generator"):
        main.merge_parts()
    assert len(read_corpus(root)) == 0  # nothing was mixed in
    shutil.rmtree(root / PARTS_DIR / "rank-001")
    assert main.merge_parts() == 0 and not (root / PARTS_DIR).exists()
    with pytest.raises(ValueError, match="part names"):
        open_part(root, "../escape")


def test_replacing_a_corpus_also_drops_its_parts(tmp_path):
    root = tmp_path / "c"
    CorpusWriter(root, {"generator": "toy"})
    open_part(root, "rank-001").append(_images(2), [{"key": "a"}, {"key": "b"}])
    CorpusWriter(root, {"generator": "toy"}, mode="overwrite")
    assert not (root / PARTS_DIR).exists()


# ------------------------------------------------------------------------------- real processes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(jobs: list[dict], folder: Path, processes: int) -> subprocess.CompletedProcess:
    """Run the jobs as ``processes`` processes (1: plain python, no launcher)."""
    path = folder / f"jobs-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps(jobs))
    if processes == 1:
        command = [sys.executable, str(DRIVER), str(path)]
    else:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                   str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", str(_free_port()), str(DRIVER), str(path)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(TESTS))
    return subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, cwd=folder)


def _ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]


AUDIT_SPEC = """
[audit]
name = "sharded"

[prompts]
templates = ["a photo of a {{profession}}"]
professions = ["doctor", "nurse", "engineer"]
images_per_prompt = {n}
seed = 3

[backend]
{backend}
device = "cpu"

[[annotators]]
{annotator}

[reference]
source = "none"
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Specs, a small trained generator, a detector and a folder to scan, and every job run by one
    process: the reference the sharded runs must reproduce."""
    from synthscope.detectors.training import train_detector
    from synthscope.generators.data import load_digits
    from synthscope.generators.workflow import train_run
    from tiny_clip import TINY_TEXT, TINY_TEXT_CONFIG, make_tiny_clip
    from tiny_diffusers import save_tiny_pipeline

    root = tmp_path_factory.mktemp("distributed")
    pipeline = save_tiny_pipeline(root / "tiny-sd")
    clip = make_tiny_clip(root / "tiny-clip", TINY_TEXT, TINY_TEXT_CONFIG)
    make_tiny_clip(root / "tiny-clip-image")  # an image tower for the CLIP detector
    probe = 'kind = "probe"\nattributes = ["gender", "skin_tone"]\nabstain_below = 0.6'
    zero_shot = f'kind = "clip"\nmodel = "{TINY_TEXT}"\npretrained = "{clip.as_posix()}"\nabstain_below = 0.3'
    diffusers = f'kind = "diffusers"\nmodel = "{pipeline.as_posix()}"\nsteps = 2\nbatch_size = 2'
    specs = {
        "builtin": AUDIT_SPEC.format(n=5, annotator=probe, backend=f'kind = "builtin"\ntrain_steps = 20\nsteps = 10\n'
                                     f'checkpoint = "{(root / "builtin-model").as_posix()}"'),
        # 7 images per prompt in batches of 2: every process writes several batches
        "diffusers": AUDIT_SPEC.format(n=7, annotator=zero_shot, backend=diffusers),
        # one image in all: fewer items than processes
        "single": AUDIT_SPEC.format(n=1, annotator=zero_shot, backend=diffusers).replace(
            '["doctor", "nurse", "engineer"]', '["doctor"]'),
    }
    for name, text in specs.items():
        (root / f"{name}.toml").write_text(text)

    train_run("ae", "digits", root / "ae", steps=3, n=64, device="cpu", evaluate=False, progress=False)
    digits = load_digits(16).images
    real, fake = root / "real", root / "fake"
    CorpusWriter(real, {"generator": "real"}).append(digits[:64], [{"source": "real"}] * 64)
    CorpusWriter(fake, {"generator": "toy"}).append((1 - digits[64:128]), [{"source": "toy"}] * 64)
    train_detector(real, [fake], root / "detector", size=16, epochs=1, batch_size=32, p_blur=0.0, p_jpeg=0.0,
                   seed=0, device="cpu", progress=False)
    folder = root / "inbox"
    (folder / "nested").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(41):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype="uint8")).save(folder / ("nested" if i % 3 else "")
                                                                                 / f"{i:03d}.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")

    _ok(launch(jobs(root, "one"), root, processes=1))
    return root


def jobs(root: Path, tag: str) -> list[dict]:
    """Every job, writing under ``root/<tag>``: three audits, samples with fewer and one more batch
    than processes, and a scan."""
    out = root / tag
    clip_config = str(root / "tiny-clip" / f"{TINY_TEXT}.json")  # registered with open_clip in each process
    return [{"job": "audit", "spec": str(root / f"{name}.toml"), "out": str(out / f"audit-{name}"),
             "open_clip_config": clip_config}
            for name in ("builtin", "diffusers", "single")] + [
        {"job": "sample", "run_dir": str(root / "ae"), "out": str(out / "sample-1"), "n": 5},  # one batch
        {"job": "sample", "run_dir": str(root / "ae"), "out": str(out / "sample-3"), "n": 17},  # three batches
        {"job": "scan", "detector": str(root / "detector"), "folder": str(root / "inbox"),
         "out": str(out / "scores.csv")},
        # a cache of its own per run, so that each run encodes every image
        {"job": "clip-train", "real": str(root / "real"), "fake": str(root / "fake"), "out": str(out / "clip"),
         "model": TINY, "checkpoint": str(root / "tiny-clip-image" / "open_clip_model.safetensors"),
         "cache": str(out / "features"), "open_clip_config": str(root / "tiny-clip-image" / f"{TINY}.json")},
        {"job": "clip-eval", "detector": str(out / "clip"), "real": str(root / "real"), "fake": str(root / "fake"),
         "out": str(out / "clip-eval"), "open_clip_config": str(root / "tiny-clip-image" / f"{TINY}.json")}]


def assert_same_audit(one: Path, other: Path, resumed: bool = False) -> None:
    """The same images (by key), manifest rows, tables and annotations. ``resumed``: the other run was
    killed and finished later, so its manifest lists the images in another order (what a killed run
    left is merged first) and the annotator read other batches: confidences agree to float precision."""
    assert _by_key(other / "images") == _by_key(one / "images")  # every image once, the same bytes
    assert (read_corpus(one / "images").manifest.drop(columns="file").sort_values("key").reset_index(drop=True)
            .equals(read_corpus(other / "images").manifest.drop(columns="file").sort_values("key")
                    .reset_index(drop=True)))
    for table in sorted((one / "audit_tables").glob("*.csv")):
        assert (other / "audit_tables" / table.name).read_bytes() == table.read_bytes(), table.name
    key = ["image_id", "annotator", "attribute"]
    a, b = (pd.read_csv(path / "annotations.csv", keep_default_na=False).sort_values(key).reset_index(drop=True)
            for path in (one, other))
    if resumed:
        a, b = a.drop(columns="file"), b.drop(columns="file")
        assert a.drop(columns="confidence").equals(b.drop(columns="confidence"))
        np.testing.assert_allclose(b["confidence"], a["confidence"], rtol=1e-5)
    else:  # the same batches were read whatever the process count: the same confidences, to the bit
        assert a.equals(b)
    assert not (other / "images" / PARTS_DIR).exists()
    assert not list((other / "annotator_cache").glob("*.rank-*.csv"))


def read_keys(path: Path) -> torch.Tensor:
    from safetensors.torch import load_file

    return load_file(str(path))["keys"]


def assert_same_scan(one: Path, other: Path) -> None:
    a, b = (pd.read_csv(path, keep_default_na=False) for path in (one, other))
    assert list(b["path"]) == list(a["path"]) and len(set(b["path"])) == len(b)  # one row per file, sorted
    assert b.equals(a)  # scores to the bit: every file is scored in the same batch
    assert not Path(f"{other}.parts").exists()


def test_two_processes_write_what_one_process_writes(workspace):
    _ok(launch(jobs(workspace, "two"), workspace, processes=2))
    one, two = workspace / "one", workspace / "two"
    for name in ("builtin", "diffusers", "single"):
        assert_same_audit(one / f"audit-{name}", two / f"audit-{name}")
    assert len(read_corpus(two / "audit-single" / "images")) == 1
    for name, n in (("sample-1", 5), ("sample-3", 17)):
        assert _by_key(two / name) == _by_key(one / name) and len(_by_key(two / name)) == n
        # merged in plan order: the very manifest one process writes
        assert (read_corpus(two / name).manifest.equals(read_corpus(one / name).manifest))
    assert_same_scan(one / "scores.csv", two / "scores.csv")
    assert (two / "audit-builtin" / "index.html").is_file()
    # the CLIP detector: the same features, so the same probe, threshold, scores and robustness
    assert (two / "clip" / "probe.safetensors").read_bytes() == (one / "clip" / "probe.safetensors").read_bytes()
    config = [json.loads((run / "clip" / "detector.json").read_text()) for run in (one, two)]
    assert config[0]["threshold"] == config[1]["threshold"]
    for name in ("scores.csv", "robustness.csv"):
        assert (two / "clip-eval" / name).read_bytes() == (one / "clip-eval" / name).read_bytes(), name
    # every image encoded once: the two processes' shards hold as many features as one process's
    assert len(list((two / "features").rglob("*.safetensors"))) >= 2
    assert (sum(len(read_keys(path)) for path in (two / "features").rglob("*.safetensors"))
            == sum(len(read_keys(path)) for path in (one / "features").rglob("*.safetensors")))


def test_a_killed_process_loses_nothing_when_one_process_finishes_the_run(workspace):
    killed = jobs(workspace, "killed")[1]  # the diffusers audit: several batches per process
    killed["die_after"] = 1
    result = launch([killed], workspace, processes=2)
    assert result.returncode != 0  # the launcher stops every process when one dies
    left = workspace / "killed" / "audit-diffusers" / "images"
    assert (left / PARTS_DIR).is_dir() and len(read_corpus(left)) == 0  # only parts, nothing merged yet
    _ok(launch([jobs(workspace, "killed")[1]], workspace, processes=1))
    assert_same_audit(workspace / "one" / "audit-diffusers", workspace / "killed" / "audit-diffusers", resumed=True)


@pytest.mark.slow
def test_killed_runs_finish_with_three_processes(workspace):
    # the main process of a one-batch sample (the other has nothing to do), a sample, a scan
    for index, rank, die_after in ((3, 0, 0), (4, 1, 0), (5, 1, 0)):
        killed = jobs(workspace, "three")[index]
        killed.update(die_after=die_after, die_rank=rank)
        assert launch([killed], workspace, processes=2).returncode != 0
        _ok(launch([jobs(workspace, "three")[index]], workspace, processes=3))
    for name in ("sample-1", "sample-3"):
        assert _by_key(workspace / "three" / name) == _by_key(workspace / "one" / name)
    assert_same_scan(workspace / "one" / "scores.csv", workspace / "three" / "scores.csv")
