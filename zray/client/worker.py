"""Worker process main loop: run tasks the raylet sends, one at a time.

Started by the raylet as `python -m zray.client.worker`; dies with it.
"""

from __future__ import annotations

import inspect
import os
import signal
import sys
import time
import traceback
from typing import Any

import cloudpickle
import zmq

from zray.client import api
from zray.client.concurrency import (
    ASYNC_DEFAULT_CONCURRENCY,
    AsyncCalls,
    ConcurrentCalls,
    Outcome,
    ThreadedCalls,
)
from zray.client.core import CoreClient
from zray.client.output import LogForwarder
from zray.common import serialization, wire
from zray.common.errors import (
    ObjectStoreFullError,
    ProtocolError,
    TaskCancelledError,
    TaskError,
    ZrayError,
)
from zray.common.ids import TaskID
from zray.common.lifetime import die_with_parent
from zray.common.messages.base import construct
from zray.common.messages.raylet import (
    CancelTask,
    ExecuteTask,
    ExitWorker,
)
from zray.common.messages.tables import JobInfo
from zray.common.messages.task import ObjectLoc, direct_owner
from zray.common.sockets import configure, connect, readable

CONTROL_SUFFIX = b"/ctl"
# Results of back-to-back short tasks go out together, at most this late.
RESULT_BATCH_SECONDS = 0.002
_CONTROL = wire.Protocol("worker-control", [CancelTask])


class Worker:
    def __init__(self, client: CoreClient) -> None:
        self.client = client
        self.functions: dict[str, Any] = {}
        self.actor: Any = None
        self.jobs_seen: set[str] = set()
        self.calls: ConcurrentCalls | None = None
        self.cancelled: set[str] = set()
        self.running = ""
        # Cancel requests arrive on their own socket so the SIGINT handler can
        # read them without touching the main socket mid-message.
        self.control = configure(client.ctx.socket(zmq.DEALER),
                                 identity=client.worker_id + CONTROL_SUFFIX)
        connect(self.control, client.raylet_address)
        signal.signal(signal.SIGINT, self._on_sigint)

    def _read_control(self, wait_ms: int) -> None:
        while readable(self.control) or (wait_ms and self.control.poll(wait_ms)):
            wait_ms = 0
            try:
                msg, _ = _CONTROL.decode(self.control.recv_multipart())
            except ProtocolError:
                continue
            if isinstance(msg, CancelTask):
                self.cancelled.add(msg.task_id)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self._read_control(200)
        if self.running and self.running in self.cancelled:
            raise KeyboardInterrupt

    def _join_job(self, job_id: str) -> None:
        """First task of a job here: make the driver's own modules importable."""
        self.jobs_seen.add(job_id)
        raw = self.client.gcs.get("jobs", job_id)
        if raw is None:
            return
        for path in JobInfo.model_validate_json(raw).code_paths:
            if path not in sys.path and os.path.isdir(path):
                sys.path.append(path)

    def _callable(self, spec: Any) -> Any:
        if spec.method is not None:
            if self.actor is None:
                raise ZrayError(f"method {spec.method} sent to a worker that hosts no actor")
            return getattr(self.actor, spec.method)
        return self.load_function(spec.function_id)

    def load_function(self, function_id: str) -> Any:
        fn = self.functions.get(function_id)
        if fn is None:
            pickled = self.client.gcs.get("functions", function_id)
            if pickled is None:
                raise ZrayError(f"function {function_id} was never exported to the GCS")
            fn = self.functions[function_id] = cloudpickle.loads(pickled)
        return fn

    def run_forever(self) -> None:
        flush_after = 0.0
        while True:
            try:
                msg, bufs = self.client.next_task(flush_after)
            except KeyboardInterrupt:
                continue  # a cancel that arrived after its task ended
            if isinstance(msg, ExitWorker):
                self.client.flush_finished()
                return
            assert isinstance(msg, ExecuteTask)
            if self.calls is not None and msg.spec.method is not None:
                self.calls.submit(msg, bufs)
                continue
            if not self.client.finished:
                flush_after = time.monotonic() + RESULT_BATCH_SECONDS
            elif not self.client.tasks_inbox:
                # Nothing queued behind this task, which may run long: results of
                # the ones before it go now rather than wait for it.
                self.client.flush_finished()
            self._read_control(0)
            self.execute(msg, bufs)

    def execute(self, msg: ExecuteTask, bufs: list[Any]) -> None:
        """Run a task on this thread; its result joins the worker's next batch."""
        spec = msg.spec
        client = self.client
        client.enter_task(TaskID.from_hex(spec.task_id), spec.function_name)
        if msg.gpu_ids:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in msg.gpu_ids)
        try:
            outcome = self.call(msg, bufs)
        finally:
            sys.stdout.flush()  # while the task's job is current: partial lines go to its driver
            sys.stderr.flush()
            client.leave_task()
        # Packaged after the call (a nested get may have flushed and replaced the
        # buffer) and under the lock (the flusher thread sends the buffer too).
        with client.lock:
            returns = self.package(spec, outcome, client.finished_bufs)
            client.add_finished(outcome.finished(spec.task_id, returns), direct_owner(spec),
                                outcome.final(spec))
        if spec.actor_creation is not None and outcome.error is None:
            self._start_concurrency(spec.actor_creation)

    def call(self, msg: ExecuteTask, bufs: list[Any]) -> Outcome:
        spec = msg.spec
        try:
            if spec.job_id not in self.jobs_seen:
                self._join_job(spec.job_id)
            if spec.task_id in self.cancelled:
                raise KeyboardInterrupt
            self.running = spec.task_id
            error_payload, args, kwargs = self._arguments(msg, bufs)
            if error_payload is not None:
                return Outcome(error=error_payload, app_error=True)
            result = self._callable(spec)(*args, **kwargs)
            self.running = ""
            return self._outcome_of(spec, result)
        except KeyboardInterrupt:
            return Outcome(error=_cancelled_payload(spec), cancelled=True)
        except Exception as exc:
            return Outcome(error=self._error_payload(spec, exc), app_error=True)
        finally:
            self.running = ""
            self.cancelled.discard(spec.task_id)

    async def call_async(self, msg: ExecuteTask, bufs: list[Any]) -> Outcome:
        spec = msg.spec
        try:
            if spec.job_id not in self.jobs_seen:
                self._join_job(spec.job_id)
            error_payload, args, kwargs = self._arguments(msg, bufs)
            if error_payload is not None:
                return Outcome(error=error_payload, app_error=True)
            result = self._callable(spec)(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return self._outcome_of(spec, result)
        except Exception as exc:
            return Outcome(error=self._error_payload(spec, exc), app_error=True)

    def _outcome_of(self, spec: Any, result: Any) -> Outcome:
        if spec.actor_creation is not None:
            self.actor = result
            self.client.actor_id = spec.actor_creation.actor_id
            self.client.calls_retried = spec.actor_creation.max_task_retries != 0
            result = None
        return Outcome(values=self._split(result, spec.num_returns, spec.function_name))

    def _error_payload(self, spec: Any, exc: Exception) -> bytes:
        err = TaskError(spec.function_name, traceback.format_exc(), exc, os.getpid(),
                        self.client.node_id)
        return serialization.serialize_error(err).to_bytes()

    def package(self, spec: Any, outcome: Outcome, out: list[Any]) -> list[ObjectLoc]:
        if outcome.error is not None:
            return self._error_returns(spec.task_id, spec.num_returns, outcome.error, out)
        assert outcome.values is not None
        mark = len(out)
        try:
            return self._store_returns(spec.task_id, outcome.values, out, outcome.contains)
        except ObjectStoreFullError as exc:
            # The result cannot be stored: the task fails with the store's reason.
            del out[mark:]
            self.client.release_held(outcome.contains)
            outcome.contains.clear()
            err = TaskError(spec.function_name, f"ObjectStoreFullError: {exc}\n", exc,
                            os.getpid(), self.client.node_id)
            outcome.app_error = True
            return self._error_returns(spec.task_id, spec.num_returns,
                                       serialization.serialize_error(err).to_bytes(), out)

    def _start_concurrency(self, creation: Any) -> None:
        if creation.is_async:
            self.calls = AsyncCalls(self, creation.max_concurrency if creation.max_concurrency > 1
                                    else ASYNC_DEFAULT_CONCURRENCY)
        elif creation.max_concurrency > 1:
            self.calls = ThreadedCalls(self, creation.max_concurrency)
        if self.calls is not None:
            self.client.enable_threads(self.calls.report)

    def _arguments(self, msg: ExecuteTask, bufs: list[Any]) -> tuple[Any, list[Any], dict[str, Any]]:
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        refs = iter(msg.arg_objects)
        for arg in msg.spec.args:
            if arg.ref is None:
                kind, value = serialization.deserialize(bufs[arg.buf])
            else:
                loc = next(refs)
                raw = self.client.raw_object(loc, bufs)
                if loc.is_error:
                    return bytes(raw), [], {}
                kind, value = serialization.deserialize(raw)
            if arg.kw is None:
                args.append(value)
            else:
                kwargs[arg.kw] = value
        return None, args, kwargs

    @staticmethod
    def _split(result: Any, num_returns: int, name: str) -> list[Any]:
        if num_returns == 1:
            return [result]
        if not isinstance(result, (tuple, list)) or len(result) != num_returns:
            got = len(result) if isinstance(result, (tuple, list)) else type(result).__name__
            raise ValueError(f"task {name} declared num_returns={num_returns} but returned {got}")
        return list(result)

    def _store_returns(self, task_id: str, values: list[Any], out: list[Any],
                       contains: dict[str, list[str]]) -> list[ObjectLoc]:
        locs: list[ObjectLoc] = []
        for i, value in enumerate(values, start=1):
            oid = f"{task_id}{i:08x}"
            ser = self.client.serialize_value(value)
            if ser.contained_refs:
                # The result keeps its nested refs alive; until it reaches the
                # raylet this process must (its own refs may go first).
                self.client.hold_refs(ser.contained_refs)
                contains[oid] = ser.contained_refs
            if ser.total_size > self.client.inline_limit:
                locs.append(self.client.store_object(oid, ser))
            else:
                data = ser.to_bytes()
                locs.append(construct(ObjectLoc, object_id=oid, size=len(data), buf=len(out)))
                out.append(data)
        return locs

    @staticmethod
    def _error_returns(task_id: str, num_returns: int, payload: bytes, out: list[Any]) -> list[ObjectLoc]:
        index = len(out)
        out.append(payload)
        return [ObjectLoc(object_id=f"{task_id}{i:08x}", size=len(payload), buf=index, is_error=True)
                for i in range(1, num_returns + 1)]


def _cancelled_payload(spec: Any) -> bytes:
    err = TaskCancelledError(f"task {spec.function_name} ({spec.task_id[:12]}) was cancelled")
    return serialization.serialize_error(err).to_bytes()


def main() -> None:
    die_with_parent(int(os.environ.get("ZRAY_RAYLET_PID", "0")), signal.SIGKILL)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    worker_id = bytes.fromhex(os.environ["ZRAY_WORKER_ID"])
    client = CoreClient(os.environ["ZRAY_RAYLET_ADDRESS"], worker_id, is_driver=False)
    api._attach_worker(client)
    LogForwarder.install(client)
    Worker(client).run_forever()


if __name__ == "__main__":
    main()
