"""GCS throughput: acknowledged writes/s and reads/s for 1, 2 and 4 shards.

    python benchmarks/gcs_bench.py [--shards 1,2,4] [--clients 1,4] [--duration 3]
                                   [--warmup 0.5] [--value-bytes 100] [--window 256]
                                   [--batch 100] [--batch-window 16]
                                   [--ops write,write_batched,read,read_batched] [--out rows.json]

Every (shards, clients) configuration gets a fresh GCS (`python -m zray.services.gcs
start`) on ipc sockets in a new folder under /tmp, which is stopped and removed
afterwards. Each client is its own process with one DEALER socket per shard.
It keeps `--window` requests in flight (`--batch-window` for the batched ops),
so the shard's group commit sees many writes per loop turn, and counts the
requests answered between the end of the warm-up and the end of the run. All
clients of a run share one start time.

Operations (one row each):
- write: a GcsWrite with one op (a new key `c{client}-{i}`, a value of --value-bytes).
- write_batched: GcsWrites with --batch ops, all keys of one shard.
- read: a GcsRead of one key that exists (each client writes its read keys
  before the clock starts).
- read_batched: GcsReads of --batch keys of one shard.

JSON rows go to stdout (and --out), a table to stderr. ops_per_s counts keys
written or read, not requests. The `cpu` fields are cores in use during the
timed window (CPU seconds per second): the shard processes, the clients, and
the whole machine (the rest is other work on the host).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import zmq

from zray.common import wire
from zray.common.lifetime import die_with_parent
from zray.common.messages.base import ErrorReply
from zray.common.messages.gcs import GCS_REPLIES, GcsRead, GcsReadReply, GcsWrite, WriteOp
from zray.common.messages.tables import KV
from zray.common.sockets import configure, readable, recv_frames, send_frames
from zray.services.gcs.sharding import shard_address, shard_of

OPS = ("write", "write_batched", "read", "read_batched")
READ_KEYS = 10_000  # keys per client that the read operations cycle through
START_TIMEOUT = 30.0  # seconds for a new GCS to answer `check`
STALL_TIMEOUT = 10.0  # seconds without any reply before a client gives up
REPLIES = wire.Protocol("gcs-bench", GCS_REPLIES)

Request = tuple[int, int, int, list[Any]]  # req_id, shard, number of keys, frames


@dataclasses.dataclass(frozen=True)
class Phase:
    op: str
    start_at: float  # time.monotonic() values; CLOCK_MONOTONIC is the same in every process
    measure_from: float
    end_at: float


# --- client process ---------------------------------------------------------------------------


class Client:
    """One benchmark client: a DEALER per shard and a window of requests in flight."""

    def __init__(self, index: int, address: str, num_shards: int, value_bytes: int, window: int,
                 batch: int, batch_window: int) -> None:
        self.index = index
        self.num_shards = num_shards
        self.value = os.urandom(value_bytes)
        self.window = window
        self.batch = batch
        self.batch_window = batch_window
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.socks: list[zmq.Socket[Any]] = []
        self.poller = zmq.Poller()
        for i in range(num_shards):
            sock = configure(self.ctx.socket(zmq.DEALER))
            sock.connect(shard_address(address, i))
            self.socks.append(sock)
            self.poller.register(sock, zmq.POLLIN)
        self.next_req = 0
        self.next_key = 0
        # The keys reads cycle through, by shard.
        self.read_keys: list[list[str]] = [[] for _ in range(num_shards)]
        for i in range(READ_KEYS):
            key = f"c{index}-r{i}"
            self.read_keys[shard_of(key, num_shards)].append(key)

    def close(self) -> None:
        for sock in self.socks:
            sock.close(0)
        self.ctx.term()

    # requests: each is (req_id, shard, number of keys, frames) -------------------------------
    def _req_id(self) -> int:
        self.next_req += 1
        return self.next_req

    def _new_key(self) -> str:
        self.next_key += 1
        return f"c{self.index}-{self.next_key}"

    def _write(self, shard: int, keys: list[str]) -> Request:
        req_id = self._req_id()
        msg = GcsWrite(req_id=req_id, ops=[WriteOp(table=KV, key=k, buf=i) for i, k in enumerate(keys)])
        return req_id, shard, len(keys), wire.encode(msg, [self.value] * len(keys))

    def _read(self, shard: int, keys: list[str]) -> Request:
        req_id = self._req_id()
        return req_id, shard, len(keys), wire.encode(GcsRead(req_id=req_id, table=KV, keys=keys))

    def single_writes(self) -> Iterator[Request]:
        while True:
            key = self._new_key()
            yield self._write(shard_of(key, self.num_shards), [key])

    def batched_writes(self) -> Iterator[Request]:
        buckets: list[list[str]] = [[] for _ in range(self.num_shards)]
        while True:
            key = self._new_key()
            shard = shard_of(key, self.num_shards)
            bucket = buckets[shard]
            bucket.append(key)
            if len(bucket) == self.batch:
                buckets[shard] = []
                yield self._write(shard, bucket)

    def single_reads(self) -> Iterator[Request]:
        while True:
            for i in range(max(len(keys) for keys in self.read_keys)):
                for shard, keys in enumerate(self.read_keys):
                    if keys:
                        yield self._read(shard, [keys[i % len(keys)]])

    def batched_reads(self) -> Iterator[Request]:
        while True:
            for shard, keys in enumerate(self.read_keys):
                if keys:
                    start = (self.next_req * self.batch) % len(keys)
                    yield self._read(shard, [keys[(start + j) % len(keys)] for j in range(self.batch)])

    def preload(self) -> None:
        """Write the keys the reads will ask for (untimed)."""
        requests = [self._write(shard, keys[i:i + 500])
                    for shard, keys in enumerate(self.read_keys) for i in range(0, len(keys), 500)]
        self.run(iter(requests), Phase("preload", 0.0, float("inf"), float("inf")), self.batch_window)

    # the loop ---------------------------------------------------------------------------------
    def run(self, requests: Iterator[Request], phase: Phase, window: int) -> dict[str, Any]:
        """Send from `requests` keeping `window` requests in flight until phase.end_at (or until
        `requests` runs out); count answers that arrive in [measure_from, end_at)."""
        while (wait := phase.start_at - time.monotonic()) > 0:
            time.sleep(wait)
        outstanding: dict[int, tuple[int, int]] = {}  # req_id -> (shard, keys)
        by_shard = [0] * self.num_shards
        counted_requests = errors = misses = 0
        cpu_start = cpu_end = 0.0
        measuring = False
        exhausted = False
        last_reply = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= phase.end_at or (exhausted and not outstanding):
                break
            if not measuring and now >= phase.measure_from:
                measuring = True
                cpu_start = time.process_time()
            while not exhausted and len(outstanding) < window:
                try:
                    req_id, shard, nkeys, frames = next(requests)
                except StopIteration:
                    exhausted = True
                    break
                outstanding[req_id] = (shard, nkeys)
                send_frames(self.socks[shard], frames)
            if not self.poller.poll(100):
                if time.monotonic() - last_reply > STALL_TIMEOUT:
                    raise TimeoutError(f"client {self.index}: no reply for {STALL_TIMEOUT:.0f}s "
                                       f"with {len(outstanding)} requests outstanding")
                continue
            last_reply = now = time.monotonic()
            count = measuring and now < phase.end_at
            for sock in self.socks:
                while readable(sock):
                    reply = REPLIES.decode(recv_frames(sock, zmq.NOBLOCK))[0]
                    shard, nkeys = outstanding.pop(getattr(reply, "req_id", -1), (-1, 0))
                    if shard < 0:
                        continue  # an answer to an earlier phase
                    if isinstance(reply, ErrorReply):
                        errors += 1
                        continue
                    if isinstance(reply, GcsReadReply):
                        misses += reply.found.count(False)
                    if count:
                        by_shard[shard] += nkeys
                        counted_requests += 1
        if measuring:
            cpu_end = time.process_time()
        self._drain(outstanding)
        return {"by_shard": by_shard, "requests": counted_requests, "errors": errors,
                "misses": misses, "cpu_s": cpu_end - cpu_start}

    def _drain(self, outstanding: dict[int, tuple[int, int]]) -> None:
        """Wait for the answers still due, so they do not load the next phase."""
        deadline = time.monotonic() + STALL_TIMEOUT
        while outstanding and time.monotonic() < deadline:
            if not self.poller.poll(100):
                continue
            for sock in self.socks:
                while readable(sock):
                    reply = REPLIES.decode(recv_frames(sock, zmq.NOBLOCK))[0]
                    outstanding.pop(getattr(reply, "req_id", -1), None)


def client_main(config: dict[str, Any]) -> int:
    """A client process (this file run with --client): preload, say ready, then run
    each phase read from stdin and write its result to stdout, as JSON lines."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    client = Client(**config)
    try:
        client.preload()
        print(json.dumps("ready"), flush=True)
        generators: dict[str, Callable[[], Iterator[Request]]] = {
            "write": client.single_writes, "write_batched": client.batched_writes,
            "read": client.single_reads, "read_batched": client.batched_reads}
        while line := sys.stdin.readline():  # EOF: the parent is done with us
            phase = Phase(**json.loads(line))
            window = client.batch_window if phase.op.endswith("_batched") else client.window
            print(json.dumps(client.run(generators[phase.op](), phase, window)), flush=True)
    except BrokenPipeError:  # the parent stopped the run
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit flush
    finally:
        client.close()
    return 0


class ClientProcess:
    """The parent's handle on one client process: JSON lines over its stdin and stdout."""

    def __init__(self, config: dict[str, Any]) -> None:
        command = [sys.executable, os.path.abspath(__file__), "--client", json.dumps(config)]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     preexec_fn=functools.partial(die_with_parent, os.getpid()))
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout

    def send(self, obj: Any) -> None:
        self.stdin.write(json.dumps(obj) + "\n")
        self.stdin.flush()

    def receive(self, timeout: float, what: str) -> Any:
        if not select.select([self.stdout], [], [], timeout)[0]:
            raise RuntimeError(f"client {self.proc.pid} did not send {what} within {timeout:.0f}s")
        line = self.stdout.readline()
        if not line:
            raise RuntimeError(f"client {self.proc.pid} exited with code {self.proc.wait()} before "
                               f"sending {what}")
        return json.loads(line)

    def stop(self, timeout: float) -> None:
        try:
            self.stdin.close()  # EOF: a client waiting for a phase exits
        except BrokenPipeError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stdout.close()


# --- GCS process ------------------------------------------------------------------------------


class Gcs:
    """A fresh GCS of `shards` shards in a temporary folder; `stop` removes every trace."""

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self.dir = tempfile.mkdtemp(prefix="zgb-", dir="/tmp")  # ipc paths must stay short
        self.address = f"ipc://{self.dir}/gcs"
        self.log_path = os.path.join(self.dir, "gcs.log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.procs: list[psutil.Process] = []

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            # Its own session keeps Ctrl-C away from it: we stop it. It gets SIGTERM if we die.
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "zray.services.gcs", "start", "--shards", str(self.shards),
                 "--address", self.address, "--data-dir", os.path.join(self.dir, "data"),
                 "--log-level", "WARNING"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=functools.partial(die_with_parent, os.getpid()))
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            check = subprocess.run([sys.executable, "-m", "zray.services.gcs", "check", self.address,
                                    "--timeout", "1"], capture_output=True)
            if check.returncode == 0:
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"GCS exited with code {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"GCS did not answer within {START_TIMEOUT:.0f}s: "
                                   f"{check.stderr.decode().strip()}\n{self.log_tail()}")
        root = psutil.Process(self.proc.pid)
        self.procs = [root, *root.children(recursive=True)]
        if len(self.procs) != self.shards:
            raise RuntimeError(f"expected {self.shards} shard processes, found {len(self.procs)}")

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.procs:
            times = proc.cpu_times()
            total += times.user + times.system
        return total

    def log_tail(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-20:])
        except OSError:
            return ""

    def stop(self) -> None:
        try:
            if self.proc is None:
                return
            if self.proc.poll() is None:
                try:  # include shards start() did not get to see, if it failed early
                    root = psutil.Process(self.proc.pid)
                    self.procs += [p for p in [root, *root.children(recursive=True)] if p not in self.procs]
                except psutil.NoSuchProcess:
                    pass
                self.proc.terminate()  # shard 0 stops the shards it forked
                try:
                    self.proc.wait(15.0)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            _, alive = psutil.wait_procs(self.procs, timeout=5.0)
            for proc in alive:
                proc.kill()  # psutil checks the start time, so a reused pid is never hit
            psutil.wait_procs(alive, timeout=5.0)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


# --- one configuration ------------------------------------------------------------------------


def machine_busy_seconds() -> float:
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def sleep_until(when: float) -> None:
    while (wait := when - time.monotonic()) > 0:
        time.sleep(wait)


def run_config(shards: int, clients: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    gcs = Gcs(shards)
    procs: list[ClientProcess] = []
    rows: list[dict[str, Any]] = []
    try:
        gcs.start()
        for i in range(clients):
            procs.append(ClientProcess({
                "index": i, "address": gcs.address, "num_shards": shards, "value_bytes": args.value_bytes,
                "window": args.window, "batch": args.batch, "batch_window": args.batch_window}))
        for proc in procs:
            if proc.receive(60.0, "ready") != "ready":
                raise RuntimeError(f"client {proc.proc.pid} sent something other than ready")
        for op in args.ops:
            start = time.monotonic() + 0.2
            phase = Phase(op, start, start + args.warmup, start + args.warmup + args.duration)
            for proc in procs:
                proc.send(dataclasses.asdict(phase))
            sleep_until(phase.measure_from)
            gcs_cpu, busy = gcs.cpu_seconds(), machine_busy_seconds()
            sleep_until(phase.end_at)
            gcs_cpu, busy = gcs.cpu_seconds() - gcs_cpu, machine_busy_seconds() - busy
            results = [proc.receive(2 * STALL_TIMEOUT, f"its {op} result") for proc in procs]
            rows.append(make_row(shards, clients, op, args, results, gcs_cpu, busy))
            print(format_row(rows[-1]), file=sys.stderr, flush=True)
    finally:
        for proc in procs:  # a client in the middle of a phase finishes it first
            proc.stop(args.warmup + args.duration + STALL_TIMEOUT)
        gcs.stop()
    return rows


def make_row(shards: int, clients: int, op: str, args: argparse.Namespace, results: list[dict[str, Any]],
             gcs_cpu: float, busy: float) -> dict[str, Any]:
    duration = args.duration
    batched = op.endswith("_batched")
    by_shard = [sum(r["by_shard"][i] for r in results) / duration for i in range(shards)]
    ops_per_s = sum(by_shard)
    client_cpu = sum(r["cpu_s"] for r in results)
    row: dict[str, Any] = {
        "shards": shards,
        "clients": clients,
        "op": op,
        "batch": args.batch if batched else 1,
        "window": args.batch_window if batched else args.window,
        "ops_per_s": round(ops_per_s),
        "per_shard_ops_per_s": round(ops_per_s / shards),
        "by_shard_ops_per_s": [round(x) for x in by_shard],
        "requests_per_s": round(sum(r["requests"] for r in results) / duration),
        "cpu": {"gcs": round(gcs_cpu / duration, 2), "clients": round(client_cpu / duration, 2),
                "machine": round(busy / duration, 2)},
        "gcs_us_per_op": round(1e6 * gcs_cpu / max(1.0, ops_per_s * duration), 2),
        "client_us_per_op": round(1e6 * client_cpu / max(1.0, ops_per_s * duration), 2),
    }
    errors = sum(r["errors"] for r in results)
    misses = sum(r["misses"] for r in results)
    if errors or misses:
        row["errors"] = errors
        row["misses"] = misses
    return row


HEADER = (f"{'shards':>6} {'clients':>7} {'op':<14} {'ops/s':>10} {'per shard':>10} "
          f"{'cpu gcs':>7} {'clients':>7} {'machine':>7} {'gcs us/op':>9}")


def format_row(row: dict[str, Any]) -> str:
    cpu = row["cpu"]
    text = (f"{row['shards']:>6} {row['clients']:>7} {row['op']:<14} {row['ops_per_s']:>10,} "
            f"{row['per_shard_ops_per_s']:>10,} {cpu['gcs']:>7.2f} {cpu['clients']:>7.2f} "
            f"{cpu['machine']:>7.2f} {row['gcs_us_per_op']:>9.2f}")
    if "errors" in row:
        text += f"  errors {row['errors']}, misses {row['misses']}"
    return text


def int_list(text: str) -> list[int]:
    values = [int(x) for x in text.split(",") if x.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers, e.g. 1,2,4")
    return values


def op_list(text: str) -> list[str]:
    ops = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [op for op in ops if op not in OPS]
    if not ops or unknown:
        raise argparse.ArgumentTypeError(f"unknown ops {unknown}; choose from {', '.join(OPS)}")
    return ops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--shards", type=int_list, default=[1, 2, 4], help="shard counts (default 1,2,4)")
    parser.add_argument("--clients", type=int_list, default=[1, 4],
                        help="client process counts (default 1,4)")
    parser.add_argument("--duration", type=float, default=3.0, help="timed seconds per row (default 3)")
    parser.add_argument("--warmup", type=float, default=0.5, help="untimed seconds first (default 0.5)")
    parser.add_argument("--value-bytes", type=int, default=100, help="bytes per value (default 100)")
    parser.add_argument("--window", type=int, default=256,
                        help="requests in flight per client (default 256)")
    parser.add_argument("--batch", type=int, default=100,
                        help="keys per request in the *_batched ops (default 100)")
    parser.add_argument("--batch-window", type=int, default=16,
                        help="requests in flight per client in the *_batched ops (default 16)")
    parser.add_argument("--ops", type=op_list, default=list(OPS),
                        help=f"operations (default {','.join(OPS)})")
    parser.add_argument("--out", help="also write the JSON rows to this file")
    parser.add_argument("--client", help=argparse.SUPPRESS)  # internal: run as a client process
    args = parser.parse_args(argv)
    if args.client:
        return client_main(json.loads(args.client))
    # SIGTERM unwinds like Ctrl-C, so every GCS and client is stopped and its folder removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    print(HEADER, file=sys.stderr, flush=True)
    rows: list[dict[str, Any]] = []
    for shards in args.shards:
        for clients in args.clients:
            rows.extend(run_config(shards, clients, args))
    text = json.dumps(rows, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
