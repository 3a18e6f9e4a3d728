"""The embedded cluster `zray.init()` starts: one GCS shard, one global
scheduler and one raylet, each a child process, all on ipc:// sockets in a
private session folder (nothing listens on the network).

The helpers above `LocalCluster` (session folders, service command lines,
spawning, log tails) are shared with `zray start` (zray/cli/cluster.py).
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from zray.common.errors import ConfigError, ConnectionFailedError

SESSION_ROOT = os.environ.get("ZRAY_SESSION_ROOT", "/tmp/zray_sessions")
STORE_ROOT = "/dev/shm"


PARENT_PID_ENV = "ZRAY_DIE_WITH_PID"


def new_session_dir() -> str:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    path = os.path.join(SESSION_ROOT, f"session_{stamp}_{os.getpid()}_{os.urandom(2).hex()}")
    os.makedirs(os.path.join(path, "sockets"), mode=0o700)
    os.makedirs(os.path.join(path, "logs"), mode=0o700)
    return path


def remove_stale_sessions() -> None:
    """Remove session folders (and their stores) whose creating process is gone.

    A driver killed with SIGKILL cannot clean up; the next one does. A session
    folder is named session_<date>_<time>_<pid>_<rand>.
    """
    try:
        names = os.listdir(SESSION_ROOT)
    except FileNotFoundError:
        return
    for name in names:
        parts = name.split("_")
        if not name.startswith("session_") or len(parts) < 5 or not parts[3].isdigit():
            continue
        if _pid_alive(int(parts[3])):
            continue
        path = os.path.join(SESSION_ROOT, name)
        if _in_use(path):
            continue
        shutil.rmtree(store_dir_for(path), ignore_errors=True)
        shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _in_use(session_dir: str) -> bool:
    """Whether a service started in this session folder still runs."""
    try:
        with open(os.path.join(session_dir, "pids")) as f:
            pids = [int(line) for line in f if line.strip().isdigit()]
    except OSError:
        return False
    return any(_pid_alive(pid) for pid in pids)


def store_dir_for(session_dir: str) -> str:
    """The shared-memory folder of the raylet whose session folder this is."""
    return os.path.join(STORE_ROOT, f"zray_{os.path.basename(session_dir)}")


def log_path(session_dir: str, name: str) -> str:
    return os.path.join(session_dir, "logs", f"{name}.log")


def raylet_args(gcs_address: str, local_address: str, store_dir: str, *,
                num_cpus: float | None = None, num_gpus: float | None = None,
                resources: dict[str, float] | None = None, object_store_memory: int | None = None,
                session_dir: str = "", node_name: str = "", spill_dir: str = "",
                node_address: str = "") -> list[str]:
    """`python -m` arguments that start a raylet."""
    args = ["zray.services.raylet", "start", "--gcs-address", gcs_address,
            "--local-address", local_address, "--store-dir", store_dir]
    if session_dir:
        args += ["--session-dir", session_dir]
    if node_name:
        args += ["--node-name", node_name]
    if num_cpus is not None:
        args += ["--num-cpus", str(num_cpus)]
    if num_gpus is not None:
        args += ["--num-gpus", str(num_gpus)]
    if resources:
        args += ["--resources", json.dumps(resources)]
    if object_store_memory is not None:
        args += ["--object-store-memory", str(int(object_store_memory))]
    if spill_dir:
        args += ["--spill-dir", spill_dir]
    if node_address:
        args += ["--node-address", node_address]
    return args


def spawn_service(args: list[str], log_file: str, env: dict[str, str] | None = None, *,
                  bound_to_parent: bool = False, detached: bool = False) -> subprocess.Popen[bytes]:
    """Run `python -m <args>` with stdout and stderr appended to `log_file`.

    bound_to_parent: the child gets SIGTERM when this process dies (embedded cluster).
    detached: the child gets its own session, so it outlives this process and its
    terminal (`zray start`).
    The child's pid is added to the session's `pids` file (the session folder is
    the log folder's parent), which tells the stale-session sweep it is in use.
    """
    child_env = dict(os.environ, **(env or {}))
    child_env.pop(PARENT_PID_ENV, None)
    if bound_to_parent:
        # The child arms PR_SET_PDEATHSIG itself (zray.common.lifetime): no
        # preexec_fn, so the spawn stays on the fast vfork path.
        child_env[PARENT_PID_ENV] = str(os.getpid())
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", *args], env=child_env,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=detached)
    with open(os.path.join(os.path.dirname(os.path.dirname(log_file)), "pids"), "a") as f:
        f.write(f"{proc.pid}\n")
    return proc


def stop_session(procs: list[subprocess.Popen[bytes]], session_dir: str, store_dir: str,
                 timeout: float = 5.0) -> None:
    """SIGTERM the processes, SIGKILL those still running at the deadline, then
    remove the session and store folders."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    shutil.rmtree(store_dir, ignore_errors=True)
    shutil.rmtree(session_dir, ignore_errors=True)


def log_tail(path: str, lines: int = 20) -> str:
    """The last lines of a log file, or '' when it cannot be read."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def embedded_wanted(address: str | None) -> bool:
    """Whether `init(address)` starts an embedded cluster rather than joining one."""
    return (address or os.environ.get("ZRAY_ADDRESS") or "local") == "local"


def check_options(num_cpus: Any, num_gpus: Any, resources: Any, object_store_memory: Any) -> None:
    """ConfigError naming the first bad option of a new embedded cluster, before
    any process starts (a service would only fail on it in its own log)."""
    for name, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus)):
        if value is not None and not _amount(value):
            raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    if object_store_memory is not None and (
            isinstance(object_store_memory, bool) or not isinstance(object_store_memory, int)
            or object_store_memory <= 0):
        raise ConfigError(f"object_store_memory must be a number of bytes > 0, "
                          f"got {object_store_memory!r}")
    if resources is None:
        return
    if not isinstance(resources, dict):
        raise ConfigError(f"resources must be a dict of name to amount, got {resources!r}")
    for key, value in resources.items():
        if key in ("CPU", "GPU"):
            raise ConfigError(f"give {key} as num_{key.lower()}s=..., not in resources")
        if not isinstance(key, str) or not key:
            raise ConfigError(f"resource names must be non-empty strings, got {key!r}")
        if not _amount(value):
            raise ConfigError(f"resource {key!r} must be a finite number >= 0, got {value!r}")


def _amount(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) and value >= 0


def _warn_small_shm(capacity: int | None) -> None:
    from zray.services.raylet.object_store import check_shm, default_capacity

    folder = os.path.dirname(os.environ.get("ZRAY_STORE_DIR", "")) or "/dev/shm"
    warning = check_shm(folder, capacity or default_capacity(folder), explicit=capacity is not None)
    if warning:
        logging.getLogger(__name__).warning("zray: %s", warning)


@dataclass
class LocalCluster:
    session_dir: str
    gcs_address: str
    raylet_address: str
    store_dir: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @classmethod
    def start(cls, num_cpus: float | None = None, num_gpus: float | None = None,
              resources: dict[str, float] | None = None,
              object_store_memory: int | None = None, bound_to_parent: bool = True) -> LocalCluster:
        check_options(num_cpus, num_gpus, resources, object_store_memory)
        remove_stale_sessions()
        _warn_small_shm(object_store_memory)
        session = new_session_dir()
        sockets = os.path.join(session, "sockets")
        cluster = cls(session_dir=session, gcs_address=f"ipc://{sockets}/gcs",
                      raylet_address=f"ipc://{sockets}/raylet", store_dir=store_dir_for(session))
        # Settings travel as ZRAY_* variables to the services' launch entry,
        # which skips the CLI layer to start faster.
        env = {"ZRAY_GCS_ADDRESS": cluster.gcs_address, "ZRAY_SESSION_DIR": session,
               "ZRAY_GCS_DATA_DIR": os.path.join(session, "gcs"),
               "ZRAY_SCHED_ADDRESS": f"ipc://{sockets}/global-sched",
               "ZRAY_LOCAL_ADDRESS": cluster.raylet_address, "ZRAY_STORE_DIR": cluster.store_dir}
        for key, value in (("ZRAY_NUM_CPUS", num_cpus), ("ZRAY_NUM_GPUS", num_gpus),
                           ("ZRAY_OBJECT_STORE_MEMORY", object_store_memory)):
            if value is not None:
                env[key] = str(int(value) if key == "ZRAY_OBJECT_STORE_MEMORY" else value)
        if resources:
            env["ZRAY_RESOURCES"] = json.dumps(resources)
        # One process serves the GCS and the global scheduler and forks the
        # raylet (see launch.py); their logs are gcs.log and raylet.log.
        cluster._spawn("gcs", ["zray.services.launch", "embedded"], env, bound_to_parent)
        return cluster

    def _spawn(self, name: str, args: list[str], env: dict[str, str], bound: bool) -> None:
        self.procs[name] = spawn_service(args, log_path(self.session_dir, name), env,
                                         bound_to_parent=bound)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            code = proc.poll()
            if code is not None:
                paths = [log_path(self.session_dir, n) for n in ("gcs", "raylet")]
                tails = "".join(f"\n--- {p}:\n{log_tail(p)}" for p in paths)
                raise ConnectionFailedError(
                    f"embedded cluster ({name}) exited with code {code} during start:{tails}")

    def stop(self, timeout: float = 5.0) -> None:
        stop_session(list(self.procs.values()), self.session_dir, self.store_dir, timeout)
