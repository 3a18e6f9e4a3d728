"""`docker compose up` and `docker compose run` of docker-compose.yml, on a
tests/netns.py segment instead of a Docker engine.

Each container (a service replica) is a host of the segment, named like
Compose names it on its network: the service name resolves to its first
replica (so `gcs0:6379` works), and `<service>-<i>` to replica i, which is
also the host name of a replicated service's containers. Services start in
`depends_on` order; a `service_healthy` dependency waits until the
dependency's own health check command, run inside its container, exits 0.
The image is this machine's Python with the repository on PYTHONPATH; the
image's WORKDIR is the repository root (the Dockerfile copies examples/
there) and its ENTRYPOINT and ENV come from the Dockerfile. Health checks are
polled every HEALTH_POLL seconds rather than at the compose file's intervals.
Restart policies are not emulated.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests import compose_file
from tests.compose_file import Service
from tests.netns import Host, Segment

HEALTH_POLL = 1.0  # the compose file's start_interval


class ComposeProject:
    def __init__(self, compose_path: Path, env: dict[str, str] | None = None,
                 project: str = "zray") -> None:
        self.path = compose_path
        self.repo = compose_path.parent
        self.project = project
        self.services = compose_file.load(compose_path, env)
        self.segment = Segment()
        self.containers: dict[str, list[Host]] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.healthy: set[str] = set()
        self.log_dir = self.segment.root / "logs"
        self.log_dir.mkdir()
        self.started = time.monotonic()
        self.events: list[tuple[float, str]] = []  # (seconds since creation, what happened)
        try:
            for service in self.services.values():
                self._create(service)
            self.segment.write_hosts()
        except BaseException:
            self.segment.close()
            raise

    def _create(self, service: Service) -> None:
        hosts = []
        for i in range(1, service.replicas + 1):
            names = [f"{service.name}-{i}", f"{self.project}-{service.name}-{i}"]
            if i == 1:  # the service name resolves (to the first replica)
                names.insert(0 if service.replicas == 1 else 1, service.name)
            host = self.segment.add_host(names[0], names[1:])
            for volume, target in service.volumes:
                self.segment.add_volume(host, volume, target)
            hosts.append(host)
        self.containers[service.name] = hosts

    def volume(self, name: str) -> Path:
        return self.segment.root / "volumes" / name

    def env(self, service: Service) -> dict[str, str]:
        python_bin = str(Path(sys.executable).parent)
        return {"PATH": f"{python_bin}:/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": str(self.repo),
                "HOME": "/tmp", "LANG": "C.UTF-8", **service.environment}

    # up ---------------------------------------------------------------------------

    def up(self, timeout: float) -> None:
        """Start every service without a profile, dependencies first and healthy."""
        deadline = time.monotonic() + timeout
        for name in compose_file.start_order(self.services):
            self._wait_dependencies(self.services[name], deadline)
            for host in self.containers[name]:
                self.procs[host.name] = self.segment.spawn(
                    host, self.services[name].argv, self.env(self.services[name]), str(self.repo),
                    self.log_path(host.name))
                self.mark(f"started {host.name}")
        for name in compose_file.start_order(self.services):
            if self.services[name].healthcheck:
                self.wait_healthy(name, deadline)

    def _wait_dependencies(self, service: Service, deadline: float) -> None:
        for dep, condition in service.depends_on.items():
            if condition == "service_healthy":
                self.wait_healthy(dep, deadline)
            elif condition == "service_completed_successfully":
                for host in self.containers[dep]:
                    code = self.procs[host.name].wait(max(0.0, deadline - time.monotonic()))
                    if code != 0:
                        raise AssertionError(f"{host.name} exited with {code}:\n{self.log_tail(host.name)}")

    def wait_healthy(self, name: str, deadline: float) -> None:
        """Until every replica's health check exits 0 (checked together, each
        container once: a healthy container is taken to stay healthy)."""
        service = self.services[name]
        assert service.healthcheck, f"{name} has no health check"
        pending = [h for h in self.containers[name] if h.name not in self.healthy]
        while pending:
            for host in pending:
                proc = self.procs.get(host.name)
                if proc is not None and proc.poll() is not None:
                    raise AssertionError(f"{host.name} exited with {proc.returncode} before it was "
                                         f"healthy:\n{self.log_tail(host.name)}")
            checks = {host.name: self._start_check(host, service) for host in pending}
            said = {}
            for host_name, check in checks.items():
                try:
                    out, _ = check.communicate(timeout=10.0)
                except subprocess.TimeoutExpired:
                    check.kill()
                    out, _ = check.communicate()
                if check.returncode == 0:
                    self.healthy.add(host_name)
                    self.mark(f"{host_name} healthy")
                said[host_name] = out.strip()
            pending = [h for h in pending if h.name not in self.healthy]
            if pending and time.monotonic() > deadline:
                host = pending[0]
                raise AssertionError(f"{host.name} did not become healthy; its check said: "
                                     f"{said[host.name]}\n{self.log_tail(host.name)}")
            if pending:
                time.sleep(HEALTH_POLL)

    def _start_check(self, host: Host, service: Service) -> subprocess.Popen[str]:
        assert service.healthcheck
        return self.segment.popen(host, service.healthcheck, self.env(service), str(self.repo))

    # run / exec -------------------------------------------------------------------

    def host(self, name: str) -> Host:
        for hosts in self.containers.values():
            for host in hosts:
                if host.name == name:
                    return host
        raise KeyError(name)

    def service_of(self, host_name: str) -> Service:
        for name, hosts in self.containers.items():
            if any(h.name == host_name for h in hosts):
                return self.services[name]
        raise KeyError(host_name)

    def exec(self, host_name: str, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """`docker compose exec`: argv in a running container, with its environment."""
        service = self.service_of(host_name)
        return self.segment.run(self.host(host_name), argv, self.env(service), str(self.repo), timeout)

    def run(self, name: str, command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """`docker compose run NAME COMMAND...` (dependencies already up)."""
        service = self.services[name]
        self._wait_dependencies(service, time.monotonic() + timeout)
        host = self.containers[name][0]
        return self.segment.run(host, service.run_argv(command), self.env(service), str(self.repo),
                                timeout)

    def mark(self, what: str) -> None:
        if not any(e == what for _, e in self.events):
            self.events.append((time.monotonic() - self.started, what))

    def timeline(self) -> str:
        return "\n".join(f"{t:6.1f}s {what}" for t, what in self.events)

    # logs and teardown -------------------------------------------------------------

    def log_path(self, host_name: str) -> Path:
        return self.log_dir / f"{host_name}.log"

    def log_tail(self, host_name: str, lines: int = 30) -> str:
        try:
            text = self.log_path(host_name).read_text(errors="replace")
        except OSError:
            return f"(no log for {host_name})"
        return f"--- last lines of {host_name}'s output:\n" + "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        self.segment.close()

    def __enter__(self) -> ComposeProject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
