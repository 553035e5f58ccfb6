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


def test_large_models_get_the_usable_cpus_and_requests_win(monkeypatch, no_launcher):
    monkeypatch.setattr("synthscope.runtime.available_cpus", lambda: 8)
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
    from synthscope import runtime

    assert main(["data", "export", "digits", "--n", "8", "--out", str(tmp_path / "a"), "--quiet"]) == 0
    # synthscope's choice (the CPUs others leave free), which the training loops may adjust
    assert 1 <= torch.get_num_threads() <= available_cpus() and runtime._AUTOMATIC_THREADS
    assert main(["data", "export", "digits", "--n", "8", "--out", str(tmp_path / "b"), "--quiet",
                 "--threads", "3"]) == 0
    assert torch.get_num_threads() == 3 and not runtime._AUTOMATIC_THREADS  # the user's choice stays
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "export", "digits", "--out", str(tmp_path / "c"), "--threads", "0"])
    assert exit_info.value.code == 2


class FakeMachine:
    """/proc/stat of a 2-CPU machine whose CPUs other processes keep ``others`` busy, and our own
    CPU time, advancing by one second of wall time per measurement."""

    def __init__(self, others: float, ours: float = 0.0, tick: int = 100):
        self.others, self.ours, self.tick, self.now, self.busy, self.own = others, ours, tick, 0.0, 0.0, 0.0

    def advance(self, seconds: float = 1.0):
        self.now += seconds
        self.busy += (self.others + self.ours) * seconds
        self.own += self.ours * seconds

    def stat(self):
        per_cpu = self.busy * self.tick / 2
        return "".join(f"cpu{i} {per_cpu:.0f} 0 0 1000 0 0 0 0 0 0\n" for i in (0, 1))

    def load(self):
        from synthscope.runtime import CpuLoad

        load = CpuLoad(read_stat=self.stat, clock=lambda: self.now, own_seconds=lambda: self.own)
        load.cpus, load._tick = {0, 1}, self.tick
        load._last = load._sample()
        return load


def test_tiny_models_take_the_cpus_other_processes_leave_free(monkeypatch, no_launcher):
    monkeypatch.setattr("synthscope.runtime.available_cpus", lambda: 2)
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    for others, expected in ((0.0, 2), (0.4, 2), (1.0, 1), (2.0, 1)):
        machine = FakeMachine(others)
        load = machine.load()
        machine.advance()
        assert choose_threads(TINY, load=load) == expected
    machine = FakeMachine(others=0.0)
    load = machine.load()
    machine.advance()
    machine.ours = 2.0  # our own two busy threads are not someone else's work
    assert choose_threads(TINY, load=load) == 2


def test_the_governor_follows_other_jobs_while_a_loop_runs(monkeypatch, restore_threads):
    from synthscope.runtime import ThreadGovernor

    monkeypatch.setattr("synthscope.runtime.available_cpus", lambda: 2)
    machine = FakeMachine(others=0.0, ours=2.0)
    torch.set_num_threads(2)
    governor = ThreadGovernor(interval=5.0, enabled=True, load=machine.load(), clock=lambda: machine.now)
    for second in range(30):
        machine.others = 1.5 if 10 <= second < 20 else 0.0  # another job runs from second 10 to 20
        machine.ours = torch.get_num_threads()
        machine.advance()
        governor.tick()
    assert governor.changes == [1, 2] and torch.get_num_threads() == 2
    off = ThreadGovernor(enabled=False)
    off.tick()
    assert off.changes == []
