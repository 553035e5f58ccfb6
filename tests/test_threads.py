"""CPU threads: chosen per workload from the CPUs the process may use, overridable with --threads."""

from __future__ import annotations

import json

import pytest
import torch
from synthscope.cli import _workload, build_parser, main
from synthscope.runtime import LARGE, TINY, available_cpus, choose_threads


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def no_launcher(monkeypatch):
    for name in ("OMP_NUM_THREADS", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)


def test_available_cpus_follow_affinity_and_the_cgroup_quota(monkeypatch, tmp_path):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    assert available_cpus(tmp_path) == 6  # no cgroup files: the affinity mask
    (tmp_path / "cpu.max").write_text("200000 100000\n")  # cgroup v2: 2 CPUs of quota
    assert available_cpus(tmp_path) == 2
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs: one thread, never throttled
    assert available_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")  # unlimited
    assert available_cpus(tmp_path) == 6
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()  # cgroup v1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert available_cpus(tmp_path) == 3
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    assert available_cpus(tmp_path) == 6


def test_tiny_models_get_one_thread_and_large_ones_the_usable_cpus(monkeypatch, no_launcher):
    monkeypatch.setattr("synthscope.runtime.available_cpus", lambda: 8)
    assert choose_threads(TINY) == 1
    assert choose_threads(LARGE) == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # four processes launched on this machine share them
    assert choose_threads(LARGE) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # set by the user or the launcher: respected
    assert choose_threads(TINY) == 3 and choose_threads(LARGE) == 3
    assert choose_threads(LARGE, requested=5) == 5  # --threads wins
    with pytest.raises(ValueError, match="--threads must be at least 1"):
        choose_threads(TINY, requested=0)
    with pytest.raises(ValueError, match="unknown workload"):
        choose_threads("huge")


def test_commands_are_sorted_into_workloads(tmp_path):
    parse = build_parser().parse_args
    assert _workload(parse(["generate", "train", "--model", "ae", "--out", str(tmp_path / "r")])) == TINY
    assert _workload(parse(["lab", "--out", str(tmp_path / "lab")])) == TINY
    assert _workload(parse(["detect", "train", "--kind", "clip", "--real", "r", "--fake", "f", "--out", "o"])) == LARGE
    assert _workload(parse(["detect", "train", "--arch", "resnet18", "--real", "r", "--fake", "f", "--out", "o"])) \
        == LARGE
    for kind, expected in (("clip", LARGE), ("cnn", TINY)):
        detector = tmp_path / kind
        detector.mkdir()
        (detector / "detector.json").write_text(json.dumps({"model": {"kind": kind, "arch": "small"}}))
        assert _workload(parse(["detect", "scan", str(detector), "folder", "--out", "s.csv"])) == expected
    spec = tmp_path / "audit.toml"
    spec.write_text('[backend]\nkind = "diffusers"\nmodel = "x"\n')
    assert _workload(parse(["audit", "run", str(spec), "--out", str(tmp_path / "a")])) == LARGE
    spec.write_text('[backend]\nkind = "builtin"\n')
    assert _workload(parse(["audit", "run", str(spec), "--out", str(tmp_path / "a")])) == TINY


def test_the_command_line_sets_the_threads(tmp_path, restore_threads, no_launcher):
    assert main(["data", "export", "digits", "--n", "8", "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert torch.get_num_threads() == 1  # the default for built-in data and models
    assert main(["data", "export", "digits", "--n", "8", "--out", str(tmp_path / "b"), "--quiet",
                 "--threads", "3"]) == 0
    assert torch.get_num_threads() == 3
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "export", "digits", "--out", str(tmp_path / "c"), "--threads", "0"])
    assert exit_info.value.code == 2
