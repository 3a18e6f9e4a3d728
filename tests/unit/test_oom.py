"""The OOM-kill verdict: which kernel counters rose between two readings."""

from __future__ import annotations

from pathlib import Path

from zray.services.raylet.oom import MACHINE, OomVerdict, describe_cgroup, read_counters


def test_no_counter_rose_is_no_oom() -> None:
    verdict = OomVerdict.judge({MACHINE: 3, "/cg/a": 1}, {MACHINE: 3, "/cg/a": 1})
    assert not verdict.oom


def test_the_innermost_cgroup_that_counted_is_the_limit_hit() -> None:
    verdict = OomVerdict.judge({MACHINE: 3, "/cg/a/b": 0, "/cg/a": 0},
                               {MACHINE: 4, "/cg/a/b": 1, "/cg/a": 1})
    assert verdict.oom and verdict.where == "/cg/a/b"


def test_a_machine_wide_oom_kill_names_the_machine() -> None:
    verdict = OomVerdict.judge({MACHINE: 3, "/cg/a": 0}, {MACHINE: 4, "/cg/a": 0})
    assert verdict.oom and verdict.where == MACHINE


def test_a_counter_first_seen_now_does_not_count() -> None:
    assert not OomVerdict.judge({}, {"/cg/new": 5}).oom


def test_v1_and_v2_files_are_read(tmp_path: Path) -> None:
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    v1.mkdir()
    v2.mkdir()
    (v1 / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (v1 / "memory.limit_in_bytes").write_text(str(300 * 1024**2))
    (v1 / "memory.max_usage_in_bytes").write_text(str(299 * 1024**2))
    (v2 / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n")
    (v2 / "memory.max").write_text("max\n")
    counts = read_counters([str(v1), str(v2)])
    assert counts[str(v1)] == 2 and counts[str(v2)] == 1
    assert describe_cgroup(str(v1)) == f"memory cgroup {v1} (limit 300 MiB, peak usage 299 MiB)"
    assert describe_cgroup(str(v2)) == f"memory cgroup {v2}"
