"""One benchmark process: start one system's 2-CPU local cluster, run every
case on it, shut it down, and write the raw numbers as JSON.

run.py starts this script once per (system, repeat), so clusters of different
systems never share the machine.  It is not meant to be run by hand, but can
be, e.g. to reproduce a failure:

    PYTHONPATH=benchmarks python benchmarks/bench_worker.py --system zray \
        --config '{"quick": true}' --out /tmp/zray.json

Results are rewritten to --out after every case, so a crash or a timeout
(a watchdog dumps all stacks to stderr, kills the cluster and exits 3)
still leaves everything measured so far, the case that was running and the
pids of the processes the cluster started.
"""

from __future__ import annotations

import argparse
import faulthandler
import gc
import json
import logging
import os
import sys
import threading
import time
import traceback
from typing import Any

import bench_tasks
import numpy as np
import psutil

NCPUS = 2

DEFAULT_CONFIG: dict[str, Any] = {
    "quick": False,
    "tiny_n": 10_000,
    "rtt_n": 1_000,
    "chain_n": 1_000,
    "actor_n": 10_000,
    "actor_rtt_n": 1_000,
    "array_len": 12_500_000,  # float64 -> 100 MB
    "putget_iters": 3,
    "largearg_calls": 10,
    "warmup_n": 50,
    "mem_interval_s": 0.05,
    "case_timeout_s": 180.0,
    "cases": ["start", "tiny", "memory", "rtt", "chain", "actor", "actor_rtt", "putget", "largearg"],
}
QUICK_OVERRIDES: dict[str, Any] = {
    "tiny_n": 1_000, "rtt_n": 200, "chain_n": 200, "actor_n": 1_000, "actor_rtt_n": 200,
    "array_len": 1_250_000,
    "putget_iters": 2, "largearg_calls": 3, "warmup_n": 10, "case_timeout_s": 120.0,
}


def make_config(given: dict[str, Any]) -> dict[str, Any]:
    cfg = dict(DEFAULT_CONFIG)
    if given.get("quick"):
        cfg.update(QUICK_OVERRIDES)
    cfg.update(given)
    return cfg


class NotSupported(Exception):
    """The system has no way to express this case."""


# --------------------------------------------------------------------------
# adapters: the same small surface over each system

class Adapter:
    name = "?"
    # what is measured in the "put/get" case for this system
    put_api = ""

    def prepare(self) -> None:
        """Imports and decorating; not timed as part of start."""

    def start(self) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        raise NotImplementedError

    def submit_noop(self) -> Any:
        raise NotImplementedError

    def submit_inc(self, x: Any) -> Any:
        raise NotSupported("cannot pass a task's result by reference to another task")

    def submit_total(self, ref: Any) -> Any:
        raise NotSupported("cannot pass an object by reference to a task")

    def get_one(self, handle: Any) -> Any:
        raise NotImplementedError

    def gather(self, handles: list[Any]) -> list[Any]:
        raise NotImplementedError

    def put(self, value: Any) -> Any:
        raise NotSupported("has no object store to put into")

    # actors: one bench_tasks.Noop instance, its no-op method called by handle
    def start_actor(self) -> Any:
        """Create the actor and return its handle, without waiting for it to be up."""
        raise NotSupported("has no actors")

    def submit_actor_noop(self, actor: Any) -> Any:
        raise NotSupported("has no actors")

    def gather_actor(self, handles: list[Any]) -> list[Any]:
        return self.gather(handles)

    def stop_actor(self, actor: Any) -> None:
        raise NotSupported("has no actors")

    def get_obj(self, ref: Any) -> Any:
        return self.get_one(ref)

    def info(self) -> dict[str, Any]:
        return {}


class RayApiAdapter(Adapter):
    """zray and Ray share one API: the adapter differs only in the module and init."""

    api: Any

    def _bind(self, api: Any) -> None:
        self.api = api
        self.noop = api.remote(bench_tasks.noop)
        self.inc = api.remote(bench_tasks.inc)
        self.total = api.remote(bench_tasks.total)
        self.actor_cls = api.remote(bench_tasks.Noop)

    def shutdown(self) -> None:
        self.api.shutdown()

    def submit_noop(self) -> Any:
        return self.noop.remote()

    def submit_inc(self, x: Any) -> Any:
        return self.inc.remote(x)

    def submit_total(self, ref: Any) -> Any:
        return self.total.remote(ref)

    def get_one(self, handle: Any) -> Any:
        return self.api.get(handle)

    def gather(self, handles: list[Any]) -> list[Any]:
        return self.api.get(handles)

    def put(self, value: Any) -> Any:
        return self.api.put(value)

    def start_actor(self) -> Any:
        return self.actor_cls.remote()

    def submit_actor_noop(self, actor: Any) -> Any:
        return actor.noop.remote()

    def stop_actor(self, actor: Any) -> None:
        self.api.kill(actor)


class ZrayAdapter(RayApiAdapter):
    name = "zray"
    put_api = "zray.put / zray.get"

    def prepare(self) -> None:
        import zray

        self._bind(zray)

    def start(self) -> None:
        self.api.init(num_cpus=NCPUS)

    def info(self) -> dict[str, Any]:
        return {"zray_file": self.api.__file__}


class RayAdapter(RayApiAdapter):
    name = "ray"
    put_api = "ray.put / ray.get"

    def prepare(self) -> None:
        import ray

        self._bind(ray)

    def start(self) -> None:
        self.api.init(num_cpus=NCPUS, include_dashboard=False)


class DaskAdapter(Adapter):
    name = "dask"
    put_api = "client.scatter(hash=False) / future.result()"

    def prepare(self) -> None:
        import distributed

        self.distributed = distributed
        self.cluster = self.client = None
        self.actor_futures: dict[int, Any] = {}

    def start(self) -> None:
        d = self.distributed
        self.cluster = d.LocalCluster(n_workers=NCPUS, threads_per_worker=1, processes=True,
                                      dashboard_address=None)
        self.client = d.Client(self.cluster)

    def shutdown(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    # pure=False: identical calls must still be separate tasks (dask would
    # otherwise deduplicate them by key).
    def submit_noop(self) -> Any:
        return self.client.submit(bench_tasks.noop, pure=False)

    def submit_inc(self, x: Any) -> Any:
        return self.client.submit(bench_tasks.inc, x, pure=False)

    def submit_total(self, ref: Any) -> Any:
        return self.client.submit(bench_tasks.total, ref, pure=False)

    def get_one(self, handle: Any) -> Any:
        return handle.result()

    def gather(self, handles: list[Any]) -> list[Any]:
        return self.client.gather(handles)

    def put(self, value: Any) -> Any:
        return self.client.scatter(value, hash=False)

    # The actor lives on a worker as long as the future of its creation task.
    # Method calls go from the client straight to that worker (not through the
    # scheduler) and return ActorFutures, which client.gather returns unresolved.
    def start_actor(self) -> Any:
        fut = self.client.submit(bench_tasks.Noop, actor=True)
        actor = fut.result()
        self.actor_futures[id(actor)] = fut
        return actor

    def submit_actor_noop(self, actor: Any) -> Any:
        return actor.noop()

    def gather_actor(self, handles: list[Any]) -> list[Any]:
        return [h.result() for h in handles]

    def stop_actor(self, actor: Any) -> None:
        self.actor_futures.pop(id(actor)).release()

    def info(self) -> dict[str, Any]:
        return {"scheduler": "in the driver process (LocalCluster default)",
                "workers": f"{NCPUS} worker processes, 1 thread each, with nannies"}


class ProcessPoolAdapter(Adapter):
    name = "processpool"

    def prepare(self) -> None:
        import concurrent.futures
        import multiprocessing

        self.cf = concurrent.futures
        self.start_method = multiprocessing.get_start_method()
        self.ex = None

    def start(self) -> None:
        self.ex = self.cf.ProcessPoolExecutor(max_workers=NCPUS)

    def shutdown(self) -> None:
        if self.ex is not None:
            self.ex.shutdown(wait=True, cancel_futures=True)

    def submit_noop(self) -> Any:
        return self.ex.submit(bench_tasks.noop)

    def get_one(self, handle: Any) -> Any:
        return handle.result()

    def gather(self, handles: list[Any]) -> list[Any]:
        return [h.result() for h in handles]

    def info(self) -> dict[str, Any]:
        return {"start_method": self.start_method}


class IpyparallelAdapter(Adapter):
    """ipyparallel: a controller (hub and schedulers) and 2 engines, all local processes.

    Tasks go through a LoadBalancedView (the controller's task scheduler picks
    the engine). ipyparallel has no object store and no actors; the nearest
    equivalents use a DirectView on one engine and names in that engine's
    namespace (see benchmarks/README.md)."""

    name = "ipyparallel"
    put_api = "dview.push(block=True) / dview.pull(block=True), one engine"
    # put stores the array under this name on the engine; each put replaces
    # the previous one, so at most one large array lives there at a time.
    obj_name = "bench_obj"

    def prepare(self) -> None:
        import tempfile

        import ipyparallel

        self.ipp = ipyparallel
        # Profile, connection files and logs go to a folder removed at
        # shutdown, not to ~/.ipython (IPYTHONDIR is inherited by the engines).
        self.profile_root = tempfile.mkdtemp(prefix="zray_bench_ipp_")
        os.environ["IPYTHONDIR"] = self.profile_root
        self.cluster: Any = None
        self.client: Any = None
        self.actors = 0

    def start(self) -> None:
        # Controller and engines are started with Popen(start_new_session=True):
        # outside the worker's process group, but descendants of the worker.
        self.cluster = self.ipp.Cluster(n=NCPUS, profile_dir=os.path.join(self.profile_root, "profile"),
                                        log_level=logging.WARNING)
        self.client = self.cluster.start_and_connect_sync()
        self.lview = self.client.load_balanced_view()
        # put/get, large argument and actors: a DirectView on the first engine
        self.dview = self.client[self.client.ids[0]]

    def shutdown(self) -> None:
        import shutil

        # Each engine starts a nanny in a session of its own; once the engine
        # is gone the nanny is no longer our descendant, but tells the hub and
        # exits (up to ~3 s of zmq linger). Wait for all of them here.
        procs = descendants()
        try:
            if self.client is not None:
                self.client.close()
            if self.cluster is not None:
                self.cluster.stop_cluster_sync()
            psutil.wait_procs(procs, timeout=10)
        finally:
            shutil.rmtree(self.profile_root, ignore_errors=True)

    def submit_noop(self) -> Any:
        return self.lview.apply_async(bench_tasks.noop)

    def submit_inc(self, x: Any) -> Any:
        raise NotSupported("cannot pass a task's result by reference to another task "
                           "(after= orders tasks but passes no data)")

    def get_one(self, handle: Any) -> Any:
        return handle.get()

    def gather(self, handles: list[Any]) -> list[Any]:
        return [h.get() for h in handles]

    def put(self, value: Any) -> Any:
        self.dview.push({self.obj_name: value}, block=True)
        return self.ipp.Reference(self.obj_name)

    def get_obj(self, ref: Any) -> Any:
        return self.dview.pull(ref.name, block=True)

    def submit_total(self, ref: Any) -> Any:
        # runs on the engine holding the pushed array; the Reference is resolved there
        return self.dview.apply_async(bench_tasks.total, ref)

    # The "actor": a bench_tasks.Noop instance created in the first engine's
    # namespace; its method is called through the DirectView by a Reference,
    # which the engine resolves to the bound method and calls.
    def start_actor(self) -> Any:
        self.actors += 1
        name = f"bench_actor_{self.actors}"
        self.dview.execute(f"import bench_tasks\n{name} = bench_tasks.Noop()", block=False)
        return name

    def submit_actor_noop(self, actor: Any) -> Any:
        return self.dview.apply_async(self.ipp.Reference(f"{actor}.noop"))

    def stop_actor(self, actor: Any) -> None:
        self.dview.execute(f"del {actor}", block=True)

    def info(self) -> dict[str, Any]:
        return {"version": self.ipp.__version__,
                "controller": "ipcontroller process (hub and schedulers), default task scheme",
                "engines": f"{NCPUS} ipengine processes",
                "tasks": "LoadBalancedView.apply_async",
                "put_get_actor_engine": "DirectView on the first engine"}


ADAPTERS = {a.name: a for a in (ZrayAdapter, RayAdapter, DaskAdapter, ProcessPoolAdapter,
                                IpyparallelAdapter)}


# --------------------------------------------------------------------------
# process accounting

def descendants() -> list[psutil.Process]:
    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


def label(p: psutil.Process) -> str:
    """A short human name: the executable, or for python the module/script it runs."""
    name = p.name()
    try:
        cmd = p.cmdline()
    except psutil.Error:
        return name
    if name.startswith("python") and len(cmd) > 1:
        args = [a for a in cmd[1:] if a not in ("-u", "-B", "-E", "-s", "-S", "-I")]
        if args and args[0] == "-m" and len(args) > 1:
            # e.g. "zray.services.launch raylet", "zray.client.worker"
            return args[1] + (f" {args[2]}" if len(args) > 2 and not args[2].startswith("-") else "")
        if args and args[0] == "-c":
            code = " ".join(args[1:])
            if "resource_tracker" in code:
                return "multiprocessing.resource_tracker"
            if "spawn_main" in code or "forkserver" in code:
                return "multiprocessing child"
            return "python -c " + code[:60]
        if args:
            return os.path.basename(args[0])
    return name


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores, from /proc/stat)."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:9]]
    return (sum(vals) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds used by this process, its reaped children and its live descendants."""
    t = psutil.Process().cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for p in descendants():
        try:
            c = p.cpu_times()
            total += c.user + c.system
        except psutil.Error:
            pass
    return total


def describe(p: psutil.Process) -> dict[str, Any] | None:
    try:
        with p.oneshot():
            return {"pid": p.pid, "create_time": p.create_time(), "name": label(p),
                    "cmdline": " ".join(p.cmdline())[:200]}
    except psutil.Error:
        return None


class MemorySampler(threading.Thread):
    """Samples RSS of the driver and of all its descendants (recursively)."""

    def __init__(self, interval: float) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.stop_event = threading.Event()
        self.me = psutil.Process()
        self.samples = 0
        self.peak_cluster = 0
        self.peak_total = 0
        self.peak_driver = 0
        self.max_procs = 0
        self.peak_breakdown: list[tuple[str, float]] = []
        self.seen: dict[int, dict[str, Any]] = {}

    def sample(self) -> None:
        driver = self.me.memory_info().rss
        cluster = 0
        parts = []
        procs = descendants()
        for p in procs:
            try:
                rss = p.memory_info().rss
                name = label(p)
            except psutil.Error:
                continue
            cluster += rss
            parts.append((name, rss / 1e6))
            if p.pid not in self.seen:
                d = describe(p)
                if d:
                    self.seen[p.pid] = d
        self.samples += 1
        self.peak_driver = max(self.peak_driver, driver)
        self.peak_total = max(self.peak_total, driver + cluster)
        self.max_procs = max(self.max_procs, len(parts))
        if cluster > self.peak_cluster:
            self.peak_cluster = cluster
            self.peak_breakdown = sorted(parts, key=lambda x: -x[1])

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.interval)

    def stop(self) -> None:
        self.stop_event.set()
        self.join()
        self.sample()


def shared_mapping(arr: np.ndarray) -> tuple[str, str] | None:
    """(permissions, path) of the mapping in /proc/self/maps holding arr's data."""
    addr = arr.__array_interface__["data"][0]
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if lo <= addr < hi:
                return parts[1], (parts[5].strip() if len(parts) > 5 else "")
    return None


class Watchdog:
    """Ends a hung case: dumps every thread's stack to stderr, records and
    kills the cluster's processes, saves what was measured, and exits 3.
    faulthandler's own exit is the backstop if this thread cannot run."""

    def __init__(self, on_timeout: Any) -> None:
        self.on_timeout = on_timeout
        self.timer: threading.Timer | None = None

    def arm(self, seconds: float) -> None:
        self.cancel()
        self.timer = threading.Timer(seconds, self._fire)
        self.timer.daemon = True
        self.timer.start()
        faulthandler.dump_traceback_later(seconds + 30, exit=True)

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        faulthandler.cancel_dump_traceback_later()

    def _fire(self) -> None:
        print("\n*** case timed out; stacks of all threads:", file=sys.stderr, flush=True)
        faulthandler.dump_traceback(all_threads=True)
        try:
            self.on_timeout()
        finally:
            os._exit(3)


# --------------------------------------------------------------------------
# cases

def case_start(sys_: Adapter, cfg: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    sys_.start()
    t1 = time.perf_counter()
    result = sys_.get_one(sys_.submit_noop())
    t2 = time.perf_counter()
    assert result is None, result
    return {"seconds": t2 - t0, "init_s": t1 - t0, "first_task_s": t2 - t1}


def warmup(sys_: Adapter, cfg: dict[str, Any]) -> None:
    sys_.gather([sys_.submit_noop() for _ in range(cfg["warmup_n"])])
    for _ in range(5):
        sys_.get_one(sys_.submit_noop())


def run_tiny(sys_: Adapter, n: int) -> float:
    t0 = time.perf_counter()
    handles = [sys_.submit_noop() for _ in range(n)]
    results = sys_.gather(handles)
    dt = time.perf_counter() - t0
    assert len(results) == n and all(r is None for r in results)
    del handles, results
    return dt


def case_tiny(sys_: Adapter, cfg: dict[str, Any]) -> dict[str, Any]:
    n = cfg["tiny_n"]
    dt = run_tiny(sys_, n)
    return {"tasks_per_s": n / dt, "seconds": dt, "n": n}


def case_memory(sys_: Adapter, cfg: dict[str, Any]) -> dict[str, Any]:
    n = cfg["tiny_n"]
    gc.collect()
    sampler = MemorySampler(cfg["mem_interval_s"])
    sampler.sample()
    base_cluster, base_driver = sampler.peak_cluster, sampler.peak_driver
    sampler.start()
    try:
        dt = run_tiny(sys_, n)
    finally:
        sampler.stop()
    return {
        "cluster_rss_mb": sampler.peak_cluster / 1e6,
        "total_rss_mb": sampler.peak_total / 1e6,
        "driver_rss_mb": sampler.peak_driver / 1e6,
        "procs": sampler.max_procs,
        "before_cluster_rss_mb": base_cluster / 1e6,
        "before_driver_rss_mb": base_driver / 1e6,
        "samples": sampler.samples,
        "tasks_per_s_while_sampling": n / dt,
        "peak_breakdown_mb": [[name, round(mb, 1)] for name, mb in sampler.peak_breakdown],
        "processes_seen": list(sampler.seen.values()),
    }


def case_rtt(sys_: Adapter, cfg: dict[str, Any]) -> dict[str, Any]:
    samples = []
    for _ in range(cfg["rtt_n"]):
        t0 = time.perf_counter()
        sys_.get_one(sys_.submit_noop())
        samples.append((time.perf_counter() - t0) * 1e3)
    arr = np.array(samples)
    return {"median_ms": float(np.median(arr)), "p99_ms": float(np.percentile(arr, 99)),
            "mean_ms": float(arr.mean()), "samples_ms": [round(s, 4) for s in samples]}


def case_chain(sys_: Adapter, cfg: dict[str, Any]) -> dict[str, Any]:
    n = cfg["chain_n"]
    t0 = time.perf_counter()
    h = sys_.submit_inc(0)
    for _ in range(n - 1):
        h = sys_.submit_inc(h)
    t1 = time.perf_counter()
    result = sys_.get_one(h)
    t2 = time.perf_counter()
    assert result == n, (result, n)
    return {"seconds": t2 - t0, "submit_s": t1 - t0, "n": n}


def start_actor(sys_: Adapter, cfg: dict[str, Any]) -> tuple[Any, float]:
    """Create an actor and warm it up, outside the timed part of an actor case.
    Returns the handle and the seconds from creation to its first method result."""
    t0 = time.perf_counter()
    actor = sys_.start_actor()
    result = sys_.get_one(sys_.submit_actor_noop(actor))
    creation_s = time.perf_counter() - t0
    assert result is None, result
    sys_.gather_actor([sys_.submit_actor_noop(actor) for _ in range(cfg["warmup_n"])])
    for _ in range(5):
        sys_.get_one(sys_.submit_actor_noop(actor))
    return actor, creation_s


def case_actor(sys_: Adapter, cfg: dict[str, Any]) -> dict[str, Any]:
    n = cfg["actor_n"]
    actor, creation_s = start_actor(sys_, cfg)
    try:
        t0 = time.perf_counter()
        handles = [sys_.submit_actor_noop(actor) for _ in range(n)]
        t1 = time.perf_counter()
        results = sys_.gather_actor(handles)
        dt = time.perf_counter() - t0
        assert len(results) == n and all(r is None for r in results)
        del handles, results
    finally:
        sys_.stop_actor(actor)
    return {"calls_per_s": n / dt, "seconds": dt, "submit_s": t1 - t0, "n": n,
            "actor_creation_s": creation_s}


def case_actor_rtt(sys_: Adapter, cfg: dict[str, Any]) -> dict[str, Any]:
    actor, creation_s = start_actor(sys_, cfg)
    samples = []
    try:
        for _ in range(cfg["actor_rtt_n"]):
            t0 = time.perf_counter()
            sys_.get_one(sys_.submit_actor_noop(actor))
            samples.append((time.perf_counter() - t0) * 1e3)
    finally:
        sys_.stop_actor(actor)
    arr = np.array(samples)
    return {"median_ms": float(np.median(arr)), "p99_ms": float(np.percentile(arr, 99)),
            "mean_ms": float(arr.mean()), "samples_ms": [round(s, 4) for s in samples],
            "actor_creation_s": creation_s}


def case_putget(sys_: Adapter, cfg: dict[str, Any]) -> dict[str, Any]:
    arr = np.arange(float(cfg["array_len"]))
    nbytes = arr.nbytes
    put_s, get_s, zero_copy, writeable, mappings = [], [], [], [], []
    for _ in range(cfg["putget_iters"]):
        gc.collect()
        t0 = time.perf_counter()
        ref = sys_.put(arr)
        t1 = time.perf_counter()
        out = sys_.get_obj(ref)
        t2 = time.perf_counter()
        assert out.shape == arr.shape and out[-1] == arr[-1] and out[12345] == arr[12345]
        m = shared_mapping(out)
        put_s.append(t1 - t0)
        get_s.append(t2 - t1)
        zero_copy.append(bool(m and m[0][3] == "s"))
        writeable.append(bool(out.flags.writeable))
        mappings.append(list(m) if m else None)
        del ref, out
    return {
        "put_gbps": float(np.median([nbytes / s / 1e9 for s in put_s])),
        "get_ms": float(np.median(get_s) * 1e3),
        "zero_copy": all(zero_copy),
        "nbytes": nbytes, "api": sys_.put_api,
        "put_s": put_s, "get_s": get_s, "zero_copy_each": zero_copy,
        "writeable_each": writeable, "mapping_each": mappings,
    }


def case_largearg(sys_: Adapter, cfg: dict[str, Any]) -> dict[str, Any]:
    arr = np.arange(float(cfg["array_len"]))
    expected = float(arr.sum())
    ref = sys_.put(arr)
    samples = []
    for _ in range(cfg["largearg_calls"]):
        t0 = time.perf_counter()
        got = sys_.get_one(sys_.submit_total(ref))
        samples.append((time.perf_counter() - t0) * 1e3)
        assert got == expected, (got, expected)
    del ref
    return {"ms_per_call": float(np.median(samples)), "samples_ms": samples,
            "nbytes": arr.nbytes}


CASES = {"start": case_start, "tiny": case_tiny, "memory": case_memory, "rtt": case_rtt,
         "chain": case_chain, "actor": case_actor, "actor_rtt": case_actor_rtt,
         "putget": case_putget, "largearg": case_largearg}


# --------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--system", required=True, choices=sorted(ADAPTERS))
    ap.add_argument("--config", default="{}")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    cfg = make_config(json.loads(args.config))

    out: dict[str, Any] = {"system": args.system, "pid": os.getpid(), "config": cfg,
                           "loadavg_before": os.getloadavg(), "cases": {}, "errors": {},
                           "running": None, "processes": {}}

    def record_processes() -> None:
        for p in descendants():
            if p.pid not in out["processes"]:
                d = describe(p)
                if d:
                    out["processes"][p.pid] = d

    def save() -> None:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f)
        os.replace(tmp, args.out)

    sys_ = ADAPTERS[args.system]()
    busy0, own0, wall0 = machine_busy_s(), own_cpu_s(), time.monotonic()
    t0 = time.perf_counter()
    sys_.prepare()
    out["prepare_s"] = time.perf_counter() - t0
    out["system_info"] = sys_.info()
    save()

    def on_timeout() -> None:
        procs = descendants()
        record_processes()
        out["errors"][out["running"]] = (f"timed out after {cfg['case_timeout_s']:g}s "
                                         f"(stacks in the log)")
        out["killed_on_timeout"] = [d for d in (describe(p) for p in procs) if d]
        save()
        for p in procs:
            try:
                p.kill()
            except psutil.Error:
                pass

    watchdog = Watchdog(on_timeout)
    cases = [c for c in cfg["cases"] if c in CASES]
    if "start" not in cases:
        cases.insert(0, "start")
    started = False
    try:
        for name in cases:
            out["running"] = name
            save()
            watchdog.arm(cfg["case_timeout_s"])
            try:
                if name != "start" and not started:
                    raise RuntimeError("cluster did not start")
                out["cases"][name] = CASES[name](sys_, cfg)
                if name == "start":
                    started = True
                    record_processes()
                    warmup(sys_, cfg)
            except NotSupported as e:
                out["cases"][name] = {"not_supported": str(e)}
            except Exception as e:  # noqa: BLE001
                out["errors"][name] = "".join(traceback.format_exception(e))
                print(f"[{args.system}] case {name} failed:\n{out['errors'][name]}", file=sys.stderr)
            finally:
                watchdog.cancel()
                gc.collect()
            if name == "memory" and name in out["cases"]:
                for d in out["cases"][name]["processes_seen"]:
                    out["processes"].setdefault(d["pid"], d)
            record_processes()
            save()
    finally:
        # CPU the rest of the machine used meanwhile: a sign the numbers were disturbed.
        busy, own, wall = machine_busy_s() - busy0, own_cpu_s() - own0, time.monotonic() - wall0
        out["cpu_accounting"] = {"wall_s": wall, "machine_busy_s": busy, "own_cpu_s": own,
                                 "foreign_cpu_s": max(0.0, busy - own),
                                 "foreign_share": max(0.0, busy - own) / (wall * (os.cpu_count() or 1))}
        out["running"] = "shutdown"
        save()
        watchdog.arm(60)
        t0 = time.perf_counter()
        try:
            sys_.shutdown()
        except Exception as e:  # noqa: BLE001
            out["errors"]["shutdown"] = "".join(traceback.format_exception(e))
        out["shutdown_s"] = time.perf_counter() - t0
        # Give the cluster a moment to exit, then list whatever is still alive.
        deadline = time.monotonic() + 10
        left = descendants()
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = descendants()
        out["left_after_shutdown"] = [d for d in (describe(p) for p in left) if d]
        watchdog.cancel()
        out["running"] = None
        save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
