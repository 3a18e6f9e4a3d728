"""The embedded cluster `zray.init()` starts: one GCS shard, one global
scheduler and one raylet, each a child process, all on ipc:// sockets in a
private session folder (nothing listens on the network)."""

from __future__ import annotations

import ctypes
import datetime
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from zray.common.errors import ConnectionFailedError

SESSION_ROOT = os.environ.get("ZRAY_SESSION_ROOT", "/tmp/zray_sessions")


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def new_session_dir() -> str:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    path = os.path.join(SESSION_ROOT, f"session_{stamp}_{os.getpid()}_{os.urandom(2).hex()}")
    os.makedirs(os.path.join(path, "sockets"), mode=0o700)
    os.makedirs(os.path.join(path, "logs"), mode=0o700)
    return path


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
        session = new_session_dir()
        sockets = os.path.join(session, "sockets")
        cluster = cls(session_dir=session, gcs_address=f"ipc://{sockets}/gcs",
                      raylet_address=f"ipc://{sockets}/raylet",
                      store_dir=f"/dev/shm/zray_{os.path.basename(session)}")
        env = {"ZRAY_GCS_ADDRESS": cluster.gcs_address, "ZRAY_SESSION_DIR": session}
        cluster._spawn("gcs", ["zray.services.gcs", "start", "--address", cluster.gcs_address,
                               "--data-dir", os.path.join(session, "gcs")], env, bound_to_parent)
        cluster._spawn("global-sched", ["zray.services.global_sched", "start", "--address",
                                        f"ipc://{sockets}/global-sched"], env, bound_to_parent)
        raylet_args = ["zray.services.raylet", "start", "--local-address", cluster.raylet_address,
                       "--store-dir", cluster.store_dir]
        if num_cpus is not None:
            raylet_args += ["--num-cpus", str(num_cpus)]
        if num_gpus is not None:
            raylet_args += ["--num-gpus", str(num_gpus)]
        if resources:
            import json

            raylet_args += ["--resources", json.dumps(resources)]
        if object_store_memory is not None:
            raylet_args += ["--object-store-memory", str(int(object_store_memory))]
        cluster._spawn("raylet", raylet_args, env, bound_to_parent)
        return cluster

    def _spawn(self, name: str, args: list[str], env: dict[str, str], bound: bool) -> None:
        log_path = os.path.join(self.session_dir, "logs", f"{name}.log")
        with open(log_path, "ab") as out:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", *args], env=dict(os.environ, **env),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if bound else None)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            code = proc.poll()
            if code is not None:
                log_path = os.path.join(self.session_dir, "logs", f"{name}.log")
                tail = ""
                try:
                    with open(log_path, errors="replace") as f:
                        tail = "".join(f.readlines()[-20:])
                except OSError:
                    pass
                raise ConnectionFailedError(
                    f"embedded {name} exited with code {code} during start; log {log_path}:\n{tail}")

    def stop(self, timeout: float = 5.0) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.store_dir, ignore_errors=True)
        shutil.rmtree(self.session_dir, ignore_errors=True)
