"""Whether a worker that died of SIGKILL was killed by the kernel's
out-of-memory killer, and under which limit.

The kernel counts its OOM kills: per memory cgroup (cgroup v2
`memory.events` and v1 `memory.oom_control`, field `oom_kill`) and for the
whole machine (`/proc/vmstat` `oom_kill`). The raylet reads the counters of
the memory cgroups that hold its workers (the worker's and each ancestor:
the limit that was hit may be a container's, above it) and of the machine
when it starts and after each worker death; a SIGKILL it did not send that
comes with a counter that went up is an OOM kill. The text names the limit
and the peak usage of the cgroup whose counter rose, when the kernel says.

`Counters` in, verdict out (`OomVerdict.judge`); reading /proc and /sys is
kept to `read_counters` and `describe_cgroup`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CGROUP_ROOTS = {"v2": ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"), "v1": ("/sys/fs/cgroup/memory",)}
MACHINE = "machine"
UNLIMITED = 1 << 60  # v1 reports "no limit" as a huge number

Counters = dict[str, int]  # counter source (cgroup folder or MACHINE) -> oom kills so far


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _field(text: str | None, name: str) -> int | None:
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == name:
            try:
                return int(parts[1])
            except ValueError:
                return None
    return None


def cgroup_folders(pid: int) -> list[str]:
    """The memory cgroup folders of a process, innermost first, up to the
    highest one visible here."""
    text = _read(f"/proc/{pid}/cgroup") or ""
    for line in text.splitlines():
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if "memory" in controllers.split(","):
            return _chain(CGROUP_ROOTS["v1"], path, "memory.oom_control")
    for line in text.splitlines():
        if line.startswith("0::"):
            return _chain(CGROUP_ROOTS["v2"], line[3:], "memory.events")
    return []


def _chain(roots: tuple[str, ...], path: str, probe: str) -> list[str]:
    for root in roots:
        folders = []
        parts = [p for p in path.strip().split("/") if p]
        for depth in range(len(parts), -1, -1):
            folder = os.path.join(root, *parts[:depth])
            if os.path.exists(os.path.join(folder, probe)):
                folders.append(folder)
        if folders:
            return folders
    return []


def read_counters(folders: list[str]) -> Counters:
    counts: Counters = {}
    machine = _field(_read("/proc/vmstat"), "oom_kill")
    if machine is not None:
        counts[MACHINE] = machine
    for folder in folders:
        text = (_read(os.path.join(folder, "memory.events"))
                or _read(os.path.join(folder, "memory.oom_control")))
        value = _field(text, "oom_kill")
        if value is not None:
            counts[folder] = value
    return counts


def describe_cgroup(folder: str) -> str:
    """'memory cgroup X (limit 300 MiB, peak 299 MiB)' from what the kernel says."""
    if folder == MACHINE:
        total = _field(_read("/proc/meminfo"), "MemTotal:")
        return "the machine's memory" + (f" ({total // 1024} MiB)" if total else "")
    limit = _number(_read(os.path.join(folder, "memory.max")) or
                    _read(os.path.join(folder, "memory.limit_in_bytes")))
    peak = _number(_read(os.path.join(folder, "memory.peak")) or
                   _read(os.path.join(folder, "memory.max_usage_in_bytes")))
    facts = []
    if limit is not None and limit < UNLIMITED:
        facts.append(f"limit {_mib(limit)}")
    if peak is not None:
        facts.append(f"peak usage {_mib(peak)}")
    return f"memory cgroup {folder}" + (f" ({', '.join(facts)})" if facts else "")


def _number(text: str | None) -> int | None:
    try:
        return int((text or "").split()[0])
    except (ValueError, IndexError):
        return None


def _mib(n: int) -> str:
    return f"{n / 1024**2:.0f} MiB"


@dataclass
class OomVerdict:
    """Which counters rose between two readings: the cgroups (innermost
    first) or the machine whose OOM killer struck."""

    rose: list[str]

    @staticmethod
    def judge(before: Counters, after: Counters) -> OomVerdict:
        return OomVerdict([k for k, v in after.items() if v > before.get(k, v)])

    @property
    def oom(self) -> bool:
        return bool(self.rose)

    @property
    def where(self) -> str:
        """The cgroup whose limit was hit: the innermost that counted it (cgroup
        v2 also counts a child's kills in its parents), else the machine."""
        cgroups = [k for k in self.rose if k != MACHINE]
        return cgroups[0] if cgroups else MACHINE


class OomWatch:
    """The counters as last read; `check` after a worker's SIGKILL death."""

    def __init__(self, pid: int | None = None) -> None:
        self.folders = cgroup_folders(pid or os.getpid())
        self.counters = read_counters(self.folders)

    def check(self) -> str | None:
        """Why the worker that just died of SIGKILL died, if for memory."""
        now = read_counters(self.folders)
        verdict = OomVerdict.judge(self.counters, now)
        self.counters = now
        if not verdict.oom:
            return None
        return ("killed by the kernel's out-of-memory killer (SIGKILL) when "
                f"{describe_cgroup(verdict.where)} ran out")
