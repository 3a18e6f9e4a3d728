"""Hosts on one Ethernet segment, made of Linux namespaces (root only).

A `Segment` is a private "switch" network namespace holding a bridge, and one
network namespace per host with a veth into that bridge, an address in
198.18.0.0/24 (the benchmarking range, used by nothing outside this machine)
and `/etc/netns/<ns>/hosts` naming every host. Every process runs with
`ip netns exec` plus its own mount and UTS namespaces, in which the host's
name is set and its private folders are mounted: the host's /tmp and
/dev/shm (folders of the segment, the same for every process of that host, so
a health check sees the sockets of the service it checks) and its volumes.
This is what a container gives a service, minus the image: processes use this
machine's Python and the repository on PYTHONPATH.

Nothing outlives `close()`: it kills every process in the host namespaces,
deletes the namespaces (and with them the veths and the bridge), the
/etc/netns folders and the segment's folders. Nothing is added to the root
network namespace.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUBNET = "198.18.0"
NETNS_ETC = Path("/etc/netns")


def available() -> str | None:
    """Why namespaces cannot be used here, or None."""
    if os.geteuid() != 0:
        return "needs root (ip netns, mount)"
    for tool in ("ip", "unshare", "mount", "hostname"):
        if shutil.which(tool) is None:
            return f"`{tool}` is missing"
    return None


def _ip(*args: str, netns: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Host:
    name: str
    netns: str
    address: str
    aliases: list[str]
    root: Path  # this host's folders: tmp/, volumes are bound into it
    shm: Path
    mounts: list[tuple[Path, str]] = field(default_factory=list)  # (folder here, target there)

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"


class Segment:
    def __init__(self, tag: str = "zc") -> None:
        self.prefix = f"{tag}{os.getpid() % 10000}{os.urandom(2).hex()}"
        self.switch = f"{self.prefix}-sw"
        self.root = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-", dir="/tmp"))
        self.shm_root = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-", dir="/dev/shm"))
        self.hosts: dict[str, Host] = {}
        self.procs: list[subprocess.Popen[Any]] = []
        self._namespaces: list[str] = []
        self._made_netns_etc = not NETNS_ETC.exists()
        try:
            self._namespaces.append(self.switch)
            _ip("netns", "add", self.switch)
            _ip("link", "add", "br0", "type", "bridge", netns=self.switch)
            _ip("link", "set", "br0", "up", netns=self.switch)
        except BaseException:
            self.close()
            raise

    # topology -------------------------------------------------------------------

    def add_host(self, name: str, aliases: list[str] | None = None) -> Host:
        """A namespace with an address; call `write_hosts()` once all are added."""
        index = len(self.hosts) + 1
        if index > 250:
            raise ValueError("a /24 holds 250 hosts here")
        netns = f"{self.prefix}-{index}"
        host = Host(name, netns, f"{SUBNET}.{index + 1}", aliases or [], self.root / name,
                    self.shm_root / name)
        (host.root / "tmp").mkdir(parents=True)
        host.tmp.chmod(0o1777)
        host.shm.mkdir()
        host.shm.chmod(0o1777)
        self._namespaces.append(netns)  # first: close() deletes it even if `add` half-fails
        _ip("netns", "add", netns)
        peer = f"v{index}"
        _ip("link", "add", "eth0", "type", "veth", "peer", "name", peer, "netns", self.switch, netns=netns)
        _ip("link", "set", peer, "master", "br0", "up", netns=self.switch)
        _ip("addr", "add", f"{host.address}/24", "dev", "eth0", netns=netns)
        _ip("link", "set", "eth0", "up", netns=netns)
        _ip("link", "set", "lo", "up", netns=netns)
        self.hosts[name] = host
        return host

    def write_hosts(self) -> None:
        lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
        lines += [f"{h.address} {' '.join([h.name, *h.aliases])}" for h in self.hosts.values()]
        for host in self.hosts.values():
            folder = NETNS_ETC / host.netns
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "hosts").write_text("\n".join(lines) + "\n")

    def add_volume(self, host: Host, name: str, target: str) -> Path:
        """A folder of the segment, mounted at `target` in every process of `host`."""
        source = self.root / "volumes" / name
        source.mkdir(parents=True, exist_ok=True)
        host.mounts.append((source, target))
        return source

    # processes ------------------------------------------------------------------

    def _wrap(self, host: Host, argv: list[str], cwd: str) -> list[str]:
        """argv run in the host's namespaces with its folders mounted."""
        steps = [f"hostname {shlex.quote(host.name)}"]
        covered: set[Path] = set()
        for source, target in host.mounts:
            steps += _mount_target(target, covered)
            steps.append(f"mount --bind {shlex.quote(str(source))} {shlex.quote(target)}")
        steps.append(f"mount --bind {shlex.quote(str(host.shm))} /dev/shm")
        if cwd.startswith("/tmp/"):
            # The working folder (e.g. a checkout under /tmp) stays visible under the
            # private /tmp: bound into it first, carried along by the recursive bind.
            inner = host.tmp / cwd[len("/tmp/"):]
            steps.append(f"mkdir -p {shlex.quote(str(inner))}")
            steps.append(f"mount --bind {shlex.quote(cwd)} {shlex.quote(str(inner))}")
        steps.append(f"mount --rbind {shlex.quote(str(host.tmp))} /tmp")  # last: sources may be in /tmp
        steps.append(f"cd {shlex.quote(cwd)}")
        script = " && ".join(steps) + ' && exec "$@"'
        return ["ip", "netns", "exec", host.netns, "unshare", "--mount", "--uts", "--propagation",
                "private", "sh", "-c", script, host.name, *argv]

    def spawn(self, host: Host, argv: list[str], env: dict[str, str], cwd: str,
              log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            proc = subprocess.Popen(self._wrap(host, argv, cwd), env=env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def popen(self, host: Host, argv: list[str], env: dict[str, str], cwd: str) -> subprocess.Popen[str]:
        """A short command (stdout and stderr together in a pipe)."""
        proc = subprocess.Popen(self._wrap(host, argv, cwd), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
        self.procs.append(proc)
        return proc

    def run(self, host: Host, argv: list[str], env: dict[str, str], cwd: str,
            timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self._wrap(host, argv, cwd), env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    # teardown -------------------------------------------------------------------

    def pids(self) -> list[int]:
        """Processes in any host namespace (services and what they started)."""
        found: list[int] = []
        for netns in self._namespaces:
            out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
            found += [int(p) for p in out.stdout.split()]
        return found

    def close(self, timeout: float = 10.0) -> None:
        try:
            self._stop_processes(timeout)
        finally:
            for netns in reversed(self._namespaces):
                subprocess.run(["ip", "netns", "del", netns], capture_output=True)
                shutil.rmtree(NETNS_ETC / netns, ignore_errors=True)
            self._namespaces.clear()
            if self._made_netns_etc:
                with contextlib.suppress(OSError):  # another segment may still use it
                    NETNS_ETC.rmdir()
            shutil.rmtree(self.root, ignore_errors=True)
            shutil.rmtree(self.shm_root, ignore_errors=True)

    def _stop_processes(self, timeout: float) -> None:
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            pids = self.pids()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while self.pids() and time.monotonic() < deadline:
                self._reap()
                time.sleep(0.1)
            if not self.pids():
                break
        self._reap()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5.0)

    def _reap(self) -> None:
        for proc in self.procs:
            proc.poll()

    def __enter__(self) -> Segment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mount_target(target: str, covered: set[Path]) -> list[str]:
    """Shell steps that make `target` exist in a private mount namespace
    without touching this machine's file system: a tmpfs over its deepest
    existing ancestor, which must be empty here (e.g. /srv) so nothing is hidden."""
    path = Path(target)
    if path.exists():
        return []
    ancestor = next(p for p in path.parents if p.exists())
    if ancestor == Path("/") or any(ancestor.iterdir()):
        raise ValueError(f"cannot emulate a mount at {target}: {ancestor} is not an empty folder here")
    steps = [] if ancestor in covered else [f"mount -t tmpfs -o mode=0755 tmpfs {shlex.quote(str(ancestor))}"]
    covered.add(ancestor)
    return steps + [f"mkdir -p {shlex.quote(target)}"]

