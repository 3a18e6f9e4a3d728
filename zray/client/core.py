"""The core client: one per driver or worker process, talking to its raylet.

Blocking and single-threaded by design (no I/O thread between user code and
the socket): results the raylet pushes are collected whenever the process
waits for anything, so a submit costs one non-blocking send.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import zmq

from zray.client.direct_calls import DIRECT_LINGER, REPORT_LINGER, DirectCaller
from zray.client.object_ref import ObjectRef, set_tracker
from zray.client.peer_links import PeerInbox, PeerOutlets, peer_path
from zray.client.raylet_watch import CHECK_SECONDS, RayletWatch
from zray.client.references import References
from zray.client.store import map_object, write_object
from zray.client.submit_window import DEFAULT_LIMIT, SubmitWindow, windowed
from zray.client.task_context import TaskContext, TaskContextMixin
from zray.client.worker_side import MAX_OWNER_LINKS, WorkerSide
from zray.common import serialization, wire
from zray.common.errors import (
    ConnectionFailedError,
    GetTimeoutError,
    ObjectLostError,
    ObjectStoreFullError,
    RayletDiedError,
    RequestError,
    TaskError,
    ZrayError,
)
from zray.common.ids import JobID, TaskID, return_object_hex
from zray.common.messages.base import ErrorReply, Message
from zray.common.messages.raylet import (
    RAYLET_TO_CLIENT,
    ActorMoved,
    CancelTask,
    ClientRegistered,
    CreateObject,
    DisconnectClient,
    ExecuteTask,
    ExecuteTasks,
    ExitWorker,
    FinishedTask,
    GetObjects,
    KillActor,
    LeaseEnded,
    LeaseReturned,
    ObjectCreated,
    ObjectsReady,
    PutObject,
    RegisterClient,
    SubmitTasks,
    WorkerBlocked,
    WorkerLeased,
    WorkerUnblocked,
    split_frames,
)
from zray.common.messages.task import ActorCreation, ArgSpec, ObjectLoc, TaskSpec, plain_task
from zray.common.sockets import NOBLOCK, configure, connect, readable, recv_frames, send_frames
from zray.services.gcs.client import GcsClient

log = logging.getLogger(__name__)

_PROTOCOL = wire.Protocol("raylet-client", RAYLET_TO_CLIENT)
_DEFAULT_PLACEMENT = {"strategy": "DEFAULT"}
PUT_FLAG = 0x8000_0000
# Submissions closer together than SUBMIT_GAP go out in batches of up to
# SUBMIT_BATCH, at most SUBMIT_LINGER late; a lone submission, or the first
# after a wait for results, goes at once.
SUBMIT_BATCH = 64
SUBMIT_GAP = 0.0005
SUBMIT_LINGER = 0.001
RESTORE_ATTEMPTS = 5
RELEASE_CHECK_SECONDS = 0.1
# While tasks are held back (submit_window.py), the flusher collects results
# and sends more this often when the driver's own thread is busy elsewhere.
HELD_CHECK_SECONDS = 0.005


class _FileGone(Exception):
    """A store object's file is gone: spilled since the raylet said where it was."""


class _Result:
    __slots__ = ("loc", "data")

    def __init__(self, loc: ObjectLoc, data: Any) -> None:
        self.loc = loc
        self.data = data


class CoreClient(DirectCaller, References, WorkerSide, TaskContextMixin):
    def __init__(self, raylet_address: str, worker_id: bytes, is_driver: bool,
                 job_id: JobID | None = None, connect_timeout: float = 30.0) -> None:
        self.worker_id = worker_id
        self.is_driver = is_driver
        self.ctx: zmq.Context[Any] = zmq.Context.instance()
        self.sock = configure(self.ctx.socket(zmq.DEALER), identity=worker_id)
        connect(self.sock, raylet_address)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.inbox: PeerInbox | None = None
        # Set in workers of concurrent actors (enable_threads).
        self.threaded = False
        self.on_wake: Any = None
        self._io_thread = 0
        self._wake_r = self._wake_w = -1
        self._outq: deque[list[Any]] = deque()
        self.raylet_address = raylet_address
        self.results: dict[str, _Result] = {}
        self.ready: set[str] = set()
        self.expected: set[str] = set()
        self.fetch_needed: set[str] = set()
        self.fetch_requested: set[str] = set()
        self.wait_requested: set[str] = set()
        self.replies: dict[int, Message] = {}
        self.tasks_inbox: list[tuple[Any, list[Any]]] = []
        self.refcounts: dict[str, int] = {}
        self.owned: set[str] = set()
        self.to_release: list[str] = []
        self.borrowed: dict[str, str] = {}
        self.to_borrow: list[tuple[str, str]] = []
        self.exported: set[str] = set()
        self.finished: list[FinishedTask] = []
        self.finished_bufs: list[Any] = []
        self.finished_owners: list[str] = []
        self.blocked = False
        # The socket is used by the calling thread and the submit flusher thread.
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self._pending_specs: list[TaskSpec] = []
        self._pending_bufs: list[Any] = []
        self._pending_counts: list[int] = []
        self._last_submit = 0.0
        self._flush_event = threading.Event()
        self._flusher: threading.Thread | None = None
        self._last_release = 0.0
        self._release_scanned = 0
        self._init_direct()
        self._init_told_later()
        # Backed-up links drain on each poll, and from the flusher while this
        # thread runs user code. They know the session's folder once registered.
        self.direct_links = PeerOutlets(self.poller, linger=DIRECT_LINGER,
                                        on_backed_up=self._flush_soon)
        self.owner_links = PeerOutlets(self.poller, limit=MAX_OWNER_LINKS,
                                       on_backed_up=self._flush_soon)
        # Drivers send at most ZRAY_SUBMIT_WINDOW plain tasks ahead of their results.
        self.window = SubmitWindow(int(os.environ.get("ZRAY_SUBMIT_WINDOW", DEFAULT_LIMIT))) \
            if is_driver else None
        # Releases that wait for the held tasks naming their objects: oid -> count.
        self._deferred_releases: dict[str, int] = {}
        self._next_req = 0
        self.closed = False
        self.watch: RayletWatch | None = None
        reg = self._register(job_id, connect_timeout)
        self.node_id = reg.node_id
        self.job_id = JobID.from_hex(reg.job_id) if reg.job_id else None
        self.session_dir = reg.session_dir
        self.store_dir = reg.store_dir
        self.log_address = reg.log_address
        self.inline_limit = reg.inline_limit
        self.store_full_timeout = reg.store_full_timeout
        self.gcs = GcsClient(reg.gcs_address, ctx=self.ctx)
        if is_driver:
            self.watch = RayletWatch(self.sock, reg.raylet_pid, reg.node_id, raylet_address)
            self.poller.register(self.watch.monitor, zmq.POLLIN)
        # Workers send the results of tasks this process owns straight here, and
        # callers their calls to the actor or lease this worker serves.
        self.inbox = PeerInbox(peer_path(self.session_dir, worker_id.hex()), self.poller)
        self.direct_links.session_dir = self.owner_links.session_dir = self.session_dir
        self._root_context = TaskContext(
            TaskID.for_driver(self.job_id) if self.job_id else TaskID.nil(),
            "driver" if is_driver else "")
        self.actor_id: str | None = None
        self.calls_retried = False  # the hosted actor's calls run again after a crash
        set_tracker(self)
        if is_driver:
            self._flush_soon()

    # connection ----------------------------------------------------------
    def _register(self, job_id: JobID | None, timeout: float) -> ClientRegistered:
        reply = self.request(lambda r: RegisterClient(
            req_id=r, worker_id=self.worker_id.hex(), pid=os.getpid(), is_driver=self.is_driver,
            job_id=job_id.hex() if job_id else None), timeout=timeout, resend=True)
        assert isinstance(reply, ClientRegistered)
        return reply

    def send(self, msg: Message, buffers: Sequence[Any] = ()) -> None:
        if self.watch is not None and self.watch.lost:
            raise RayletDiedError(self.watch.lost)
        with self.lock:
            self._send_told_later()
            self._flush_submits()
            self._flush_reports()
            self._flush_refs()
            self._transmit(wire.encode(msg, buffers))

    def _transmit(self, frames: list[Any]) -> None:
        """Send on the raylet socket; in threaded mode only the I/O thread touches it."""
        if self.threaded and threading.get_ident() != self._io_thread:
            self._outq.append(frames)
            os.write(self._wake_w, b"\0")
        else:
            send_frames(self.sock, frames)

    def enable_threads(self, on_wake: Any) -> None:
        """Calls now run on other threads: the calling thread becomes the only one
        that touches sockets; the others queue what they send and wait on `cond`."""
        with self.lock:
            self._io_thread = threading.get_ident()
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            self.poller.register(self._wake_r, zmq.POLLIN)
            self.on_wake = on_wake
            self.threaded = True

    def wake(self) -> None:
        os.write(self._wake_w, b"\0")

    def _off_io_thread(self) -> bool:
        return self.threaded and threading.get_ident() != self._io_thread

    def _queue_submit(self, spec: TaskSpec, bufs: list[Any], direct_to: str = "") -> None:
        with self.lock:
            now = time.monotonic()
            window = self.window
            if window is not None:
                if windowed(spec):
                    if not window.admit(spec, bufs):
                        return  # the flusher or the next wait sends it when a slot frees
                elif window.held and self._names_held(spec):
                    self._send_held(everything=True)
            if direct_to:
                count = self.queue_direct(spec, bufs, direct_to)
            else:
                self._pending_specs.append(spec)
                self._pending_bufs.extend(bufs)
                self._pending_counts.append(len(bufs))
                count = len(self._pending_specs)
            if count >= SUBMIT_BATCH or now - self._last_submit > SUBMIT_GAP:
                self._flush_submits()
            elif count == 1:  # the flusher takes all that follow with it
                self._flush_soon()
            self._last_submit = now

    def _names_held(self, spec: TaskSpec) -> bool:
        assert self.window is not None
        return any(self.window.pins(a.ref) for a in spec.args if a.ref is not None) or \
            any(self.window.pins(o) for o in spec.nested_refs)

    def _send_held(self, everything: bool = False) -> None:
        """Send held tasks the window has room for (or all of them)."""
        assert self.window is not None
        released = self.window.release(everything)
        if not released:
            return
        deferred = self._deferred_releases
        for spec, bufs in released:
            self._pending_specs.append(spec)
            self._pending_bufs.extend(bufs)
            self._pending_counts.append(len(bufs))
            if deferred:
                for oid in [return_object_hex(spec.task_id, i) for i in range(1, spec.num_returns + 1)] \
                        + [a.ref for a in spec.args if a.ref is not None] + list(spec.nested_refs):
                    count = deferred.pop(oid, 0)
                    if count and not self.window.pins(oid):
                        self.to_release.extend([oid] * count)
                    elif count:
                        deferred[oid] = count
        self._flush_submits()

    def _release_waits(self, oid: str) -> bool:
        """A release of `oid` must wait: a held task names it (the raylet does not know it yet)."""
        window = self.window
        if window is None or not window.held:
            return False
        if self.refcounts.get(oid, 0) <= 1:
            window.arrived(oid)  # its last ref: no get will wait for the result
        if not window.pins(oid):
            return False
        self._deferred_releases[oid] = self._deferred_releases.get(oid, 0) + 1
        return True

    def _flush_soon(self) -> None:
        """Have the flusher thread send buffered submissions and results shortly,
        even while this thread runs user code."""
        self._start_flusher()
        self._flush_event.set()

    def _start_flusher(self) -> None:
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_loop, daemon=True,
                                             name="zray-flusher")
            self._flusher.start()

    def _flush_submits(self) -> None:
        self._flush_direct()
        if self._pending_specs:
            self._flush_reports()  # the raylet hears of earlier direct calls first
            msg = SubmitTasks.model_construct(kind="SubmitTasks", specs=self._pending_specs,
                                              buf_counts=self._pending_counts)
            frames = wire.encode(msg, self._pending_bufs)
            self._pending_specs, self._pending_bufs, self._pending_counts = [], [], []
            # Borrows before the tasks that may carry the refs; releases only
            # after them, since these tasks may pin the released objects.
            self._flush_borrows()
            self._transmit(frames)
            self._nothing_buffered()

    def _flush_loop(self) -> None:
        while not self.closed:
            # Also wakes on its own now and then: refs a busy or idle driver
            # dropped are released even if it sends nothing else (dropping a
            # ref may run inside garbage collection, which must not signal).
            if self._flush_event.wait(self._flusher_timeout()):
                time.sleep(SUBMIT_LINGER)
            # A thread inside the client flushes before it blocks: never wait for it.
            if not self.lock.acquire(blocking=False):
                continue
            try:
                if not self.closed:
                    if (self.window is not None and self.window.held) or self.may_be_leased:
                        # Results free slots (_process sends what they admit); an
                        # ended lease is returned even while the driver computes.
                        self._pump(0)
                    self._flush_submits()
                    self._flush_reports()
                    self.flush_finished()
                    self._flush_links()
                    if self.to_release:
                        self._flush_refs()
                    self._nothing_buffered()  # else the next wait returns at once: a 1 ms spin
            finally:
                self.lock.release()

    def _flusher_timeout(self) -> float:
        if self.window is not None and self.window.held:
            return HELD_CHECK_SECONDS
        return RELEASE_CHECK_SECONDS

    def _nothing_buffered(self) -> None:
        # Reports of direct calls need no wake-up: the next wait, the next
        # message to the raylet or the flusher's periodic round sends them.
        if not self._pending_specs and not self.finished and not self.direct_links.backed_up \
                and not self.owner_links.backed_up:
            self._flush_event.clear()

    def request(self, build: Any, buffers: Sequence[Any] = (), timeout: float = 60.0,
                resend: bool = False) -> Message:
        with self.lock:
            if self._off_io_thread():
                self._next_req += 1
                req_id = self._next_req
                msg = build(req_id)
                self.send(msg, buffers)
                if not self.cond.wait_for(lambda: req_id in self.replies, timeout):
                    raise ConnectionFailedError(f"raylet at {self.raylet_address} did not answer "
                                                f"{msg.kind} within {timeout:.0f}s")
                return self._reply(msg, self.replies.pop(req_id))
            return self._request(build, buffers, timeout, resend)

    def _request(self, build: Any, buffers: Sequence[Any], timeout: float, resend: bool) -> Message:
        self._next_req += 1
        req_id = self._next_req
        msg = build(req_id)
        self.send(msg, buffers)
        deadline = time.monotonic() + timeout
        next_resend = time.monotonic() + 1.0
        while req_id not in self.replies:
            now = time.monotonic()
            if now >= deadline:
                raise ConnectionFailedError(
                    f"raylet at {self.raylet_address} did not answer {msg.kind} within {timeout:.0f}s")
            if resend and now >= next_resend:
                self.send(msg, buffers)
                next_resend = now + 1.0
            self._pump(min(deadline, next_resend if resend else deadline) - now)
        return self._reply(msg, self.replies.pop(req_id))

    def _reply(self, msg: Message, reply: Message) -> Message:
        if isinstance(reply, ErrorReply):
            if "object store full" in reply.error:
                raise ObjectStoreFullError(reply.error.split(": ", 1)[-1])
            raise RequestError(f"raylet refused {msg.kind}: {reply.error}")
        return reply

    def _pump(self, timeout: float | None) -> bool:
        """Handle every message that arrives within `timeout` seconds; True if any did."""
        ms = -1 if timeout is None else max(0, int(timeout * 1000))
        events = self.poller.poll(ms)
        if not events:
            if self.watch is not None:
                self.watch.check()
            return False
        self._process(events)
        return True

    def _process(self, events: list[tuple[Any, int]]) -> None:
        if self.threaded and any(fd == self._wake_r for fd, _ in events):
            try:
                os.read(self._wake_r, 65536)
            except BlockingIOError:
                pass
            while self._outq:
                send_frames(self.sock, self._outq.popleft())
            self.on_wake()
        polled = {sock for sock, _ in events}
        if self.watch is not None and self.watch.monitor in polled:
            self.watch.on_event()
        inbox, sock = self.inbox, self.sock
        if inbox is not None:
            for fd in polled:
                if inbox.owns(fd):
                    for frames in inbox.receive(fd):
                        self._handle(frames, direct=True)
        self._flush_links()
        # The poll said the raylet's socket has a message: it is drained before
        # the next poll (zmq_poll is level-triggered), without an EVENTS query
        # per message on every wait.
        if sock in polled:
            while self._receive(sock) and readable(sock):
                pass
        if self.window is not None and self.window.held:
            self._send_held()
        if self.leases_to_return:
            returned, self.leases_to_return = self.leases_to_return, []
            self._flush_reports()  # the raylet hears of every task sent there first
            self._transmit(wire.encode(LeaseReturned(workers=returned)))
        if self.threaded:
            self.cond.notify_all()

    def _receive(self, sock: zmq.Socket[Any]) -> bool:
        """Handle the socket's next message; False if it has none (a poll made
        without the lock may have seen one the flusher took since)."""
        try:
            frames = recv_frames(sock, NOBLOCK)
        except zmq.Again:
            return False
        self._handle(frames)
        return True

    def _flush_links(self) -> bool:
        """Write what waits on backed-up peer links; True once none is."""
        return self.direct_links.flush() & self.owner_links.flush()

    def _handle(self, frames: list[bytes], direct: bool = False) -> None:
        msg, bufs = _PROTOCOL.decode(frames)
        if isinstance(msg, ObjectsReady):
            window = self.window
            for loc in msg.objects:
                oid = loc.object_id
                if window is not None:
                    window.arrived(oid)
                was_expected = oid in self.expected
                self.expected.discard(oid)
                if oid not in self.refcounts:
                    continue  # every ref to it was dropped and released: keeping it would leak
                self.ready.add(oid)
                # The first result wins: a call's worker may answer it and then die, and
                # the raylet, not told yet, fail or retry it.
                if (loc.buf >= 0 or loc.in_store) and oid not in self.results:
                    self.results[oid] = _Result(loc, bufs[loc.buf] if loc.buf >= 0 else None)
                elif was_expected or oid in self.fetch_requested:
                    # One of our results, kept on the node that made it: a get must ask
                    # for it. Asked already (before its node died and it was rebuilt on
                    # another): the raylet answered the owner with where it is, so again.
                    self.fetch_requested.discard(oid)
                    self.fetch_needed.add(oid)
        elif isinstance(msg, ExecuteTasks):
            if self.blocked and self.actor_id is None:
                # Queued behind a task that now waits in get: hand them back to run elsewhere.
                self.send(WorkerBlocked(returned=[t.spec.task_id for t in msg.tasks]))
            else:
                # True: the raylet may hear of the result later (a direct call to
                # an actor whose calls are never retried: a crash cannot replay
                # it; a plain task sent here directly: its owner ignores the
                # result of a rerun after a crash).
                later = direct and not self.calls_retried
                self.owner_first.update((t.spec.task_id, later)
                                        for t in msg.tasks if direct or plain_task(t.spec))
                self.tasks_inbox.extend(zip(msg.tasks, split_frames(bufs, msg.buf_counts), strict=True))
        elif isinstance(msg, ExitWorker):
            self.tasks_inbox.append((msg, bufs))
        elif isinstance(msg, ActorMoved):
            self.on_actor_moved(msg)
        elif isinstance(msg, WorkerLeased):
            self.on_worker_leased(msg)
        elif isinstance(msg, LeaseEnded):
            self.on_lease_ended(msg)
        else:
            self.replies[getattr(msg, "req_id", 0)] = msg

    # serialization helpers -----------------------------------------------
    def serialize_value(self, value: Any) -> serialization.SerializedObject:
        """The value's bytes; `contained_refs` lists the refs nested inside it."""
        return serialization.serialize(value)

    def store_object(self, oid: str, ser: serialization.SerializedObject) -> ObjectLoc:
        """Write an object into the node's store; returns its location.

        The raylet may hold the request while it spills or waits for memory,
        at most `store_full_timeout`, then answers ObjectStoreFullError."""
        reply = self.request(lambda r: CreateObject(req_id=r, object_id=oid, size=ser.total_size),
                             timeout=self.store_full_timeout + 60.0)
        assert isinstance(reply, ObjectCreated)
        write_object(reply.path, ser)
        return ObjectLoc(object_id=oid, size=ser.total_size, in_store=True,
                         is_error=ser.kind == serialization.KIND_ERROR)

    def put(self, value: Any) -> ObjectRef:
        if isinstance(value, ObjectRef):
            raise TypeError("put() of an ObjectRef is not allowed; pass the ref itself")
        oid = self.current_task_id.hex() + f"{self.next_put_counter() | PUT_FLAG:08x}"
        ser = self.serialize_value(value)
        ref = ObjectRef(oid, owned=True)
        self._before_naming(ser.contained_refs)
        if ser.total_size > self.inline_limit:
            loc = self.store_object(oid, ser)
            self.send(PutObject(object_id=oid, size=loc.size, in_store=True,
                                contains=ser.contained_refs))
            self.results[oid] = _Result(loc, None)
        else:
            data = ser.to_bytes()
            self.send(PutObject(object_id=oid, size=len(data), in_store=False,
                                contains=ser.contained_refs), [data])
            self.results[oid] = _Result(ObjectLoc(object_id=oid, size=len(data), buf=0), data)
        self.ready.add(oid)
        return ref

    # tasks ---------------------------------------------------------------
    def export_function(self, function_id: str, pickled: bytes) -> None:
        if function_id in self.exported:
            return
        if self.gcs.get("functions", function_id) is None:
            self.gcs.put("functions", function_id, pickled)
        self.exported.add(function_id)

    def next_task_id(self) -> str:
        return TaskID.for_child(self.current_task_id, self.next_child_counter()).hex()

    def submit(self, function_id: str, function_name: str, args: Sequence[Any],
               kwargs: dict[str, Any], num_returns: int, resources: dict[str, float],
               max_retries: int, retry_exceptions: bool, name: str | None, *,
               task_id: str | None = None, actor_creation: ActorCreation | None = None,
               actor_id: str | None = None, method: str | None = None,
               placement: dict[str, Any] | None = None) -> list[ObjectRef]:
        task_id = task_id or self.next_task_id()
        specs: list[ArgSpec] = []
        bufs: list[Any] = []
        keep: list[ObjectRef] = []
        nested: list[str] = []
        items = [(None, a) for a in args] + list(kwargs.items())
        for kw, value in items:
            if isinstance(value, ObjectRef):
                specs.append(ArgSpec(ref=value.hex(), kw=kw))
                continue
            ser = self.serialize_value(value)
            if ser.total_size > self.inline_limit:
                ref = self._put_serialized(ser)
                keep.append(ref)
                specs.append(ArgSpec(ref=ref.hex(), kw=kw))
            else:
                specs.append(ArgSpec(buf=len(bufs), kw=kw))
                bufs.append(ser.to_bytes())
                nested.extend(ser.contained_refs)
        # Built without validation: every field is produced here, typed.
        spec = TaskSpec.construct(task_id=task_id, job_id=self.current_task_id.hex()[24:],
                        parent_task_id=self.current_task_id.hex(), function_id=function_id,
                        function_name=function_name, args=specs, num_returns=num_returns,
                        resources=resources, max_retries=max_retries,
                        retry_exceptions=retry_exceptions, owner=self.worker_id.hex(), name=name,
                        attempt=0, actor_creation=actor_creation, actor_id=actor_id, method=method,
                        nested_refs=nested, **(placement or {}))
        returns = [return_object_hex(task_id, i) for i in range(1, num_returns + 1)]
        by_ref = bool(nested) or any(a.ref is not None for a in specs)
        if actor_id is not None:
            direct_to = "" if method is None else self.direct_target(actor_id, by_ref, returns)
        else:
            held = self.window is not None and self.window.held
            direct_to = "" if by_ref or actor_creation is not None or retry_exceptions or held \
                or (placement and placement != _DEFAULT_PLACEMENT) or not self.leased \
                else self.lease_target(resources, returns)
            if self.is_driver and actor_creation is None:
                if not direct_to and returns:
                    self.sent_via_raylet(returns[0])
                if not self.may_be_leased:
                    # The raylet may lease a worker once this task ran: the flusher
                    # then hears of that, and of the lease's end, while the driver
                    # runs its own code.
                    self.may_be_leased = True
                    self._start_flusher()
        self._queue_submit(spec, bufs, direct_to)
        refs = []
        for oid in returns:
            self.expected.add(oid)
            refs.append(ObjectRef(oid, owned=True))
        del keep  # the raylet pins them for the task now
        return refs

    def _put_serialized(self, ser: serialization.SerializedObject) -> ObjectRef:
        oid = self.current_task_id.hex() + f"{self.next_put_counter() | PUT_FLAG:08x}"
        ref = ObjectRef(oid, owned=True)
        loc = self.store_object(oid, ser)
        self.send(PutObject(object_id=oid, size=loc.size, in_store=True,
                            contains=ser.contained_refs))
        self.ready.add(oid)
        return ref

    def kill_actor(self, actor_id: str, no_restart: bool) -> None:
        # Calls after the kill go through the raylet, which sees the kill first
        # (one ordered channel): never straight to a worker that is about to die.
        with self.lock:
            self.actor_routes.pop(actor_id, None)
        self.send(KillActor(actor_id=actor_id, no_restart=no_restart))

    def cancel(self, ref: ObjectRef, force: bool) -> None:
        if ref.hex() in self.results:
            return  # it ended (its worker may be running another task): nothing to cancel
        self._before_naming([ref.hex()])
        self.send(CancelTask(task_id=ref.task_id(), force=force))

    def _before_naming(self, oids: Sequence[str]) -> None:
        """A message about to name these objects: held tasks that make or take them go first."""
        window = self.window
        if window is not None and window.held and any(window.pins(o) for o in oids):
            with self.lock:
                self._send_held(everything=True)

    # get and wait --------------------------------------------------------
    def _request_missing(self, oids: Sequence[str], fetch: bool) -> None:
        asked = self.fetch_requested if fetch else self.wait_requested
        have = self.results if fetch else self.ready
        new = [o for o in dict.fromkeys(oids)
               if o not in have and o not in self.expected and o not in asked]
        if new:
            asked.update(new)
            borrowed = self.borrowed
            owners = {o: borrowed[o] for o in new if o in borrowed} if borrowed else {}
            self.send(GetObjects(object_ids=new, fetch=fetch, owners=owners))

    def _wait_until(self, done: Any, timeout: float | None) -> bool:
        with self.lock:
            self._flush_submits()
            if not self.threaded:
                return self._wait_locked(done, timeout)
            # A call's thread: the I/O thread receives, this one waits to be told.
            self._flush_refs(force=True)
            return self.cond.wait_for(done, timeout)

    def _wait_locked(self, done: Any, timeout: float | None) -> bool:
        if done():
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        blocked = False
        if not self.is_driver:
            self.flush_finished()
            returned: list[str] = []
            if self.actor_id is None:  # an actor's calls can only run on its own worker
                returned = [m.spec.task_id for m, _ in self.tasks_inbox if isinstance(m, ExecuteTask)]
                for task_id in returned:
                    self.owner_first.pop(task_id, None)
                self.tasks_inbox = [(m, b) for m, b in self.tasks_inbox
                                    if not isinstance(m, ExecuteTask)]
            self.send(WorkerBlocked(returned=returned))
            self.blocked = blocked = True
        try:
            while not done():
                # A caller that waits is not in a burst: its next submission goes at once.
                self._last_submit = 0.0
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._flush_reports(REPORT_LINGER)
                self._flush_refs()
                wait = min(remaining, CHECK_SECONDS) if remaining is not None else CHECK_SECONDS
                self._pump(min(wait, REPORT_LINGER) if self._reports else wait)
            return True
        finally:
            if blocked:
                self.blocked = False
                self.send(WorkerUnblocked())

    def get(self, refs: Sequence[ObjectRef], timeout: float | None) -> list[Any]:
        oids = [r.hex() for r in refs]
        self._request_missing(oids, fetch=True)
        results = self.results
        pending = [o for o in oids if o not in results]

        def arrived() -> bool:
            # Scan from the end and trim: each id is checked once when it arrives.
            while pending and pending[-1] in results:
                pending.pop()
            if self.fetch_needed:
                need, self.fetch_needed = self.fetch_needed, set()
                self._request_missing([o for o in need if o not in results], fetch=True)
            return not pending

        if not self._wait_until(arrived, timeout):
            missing = sum(1 for o in oids if o not in results)
            raise GetTimeoutError(f"get timed out after {timeout}s: {missing} of {len(oids)} "
                                  f"objects not ready")
        values = []
        for oid in oids:
            self.fetch_requested.discard(oid)
            values.append(self._read(oid, timeout))
        return values

    def _read(self, oid: str, timeout: float | None) -> Any:
        """The value of a received object. Its store file may have been spilled
        between the raylet's answer and this read: then ask again, and the
        raylet restores it first."""
        for _ in range(RESTORE_ATTEMPTS):
            try:
                return self._value(self.results[oid])
            except _FileGone:
                self.results.pop(oid, None)
                self._request_missing([oid], fetch=True)
                if not self._wait_until(lambda: oid in self.results, timeout):
                    raise GetTimeoutError(f"get timed out after {timeout}s restoring object "
                                          f"{oid}") from None
                self.fetch_requested.discard(oid)
        raise ObjectLostError(f"object {oid} was spilled again each time it was restored "
                              f"({RESTORE_ATTEMPTS} attempts): the store is too small for the "
                              "objects in use; raise --object-store-memory")

    def _value(self, result: _Result) -> Any:
        loc = result.loc
        if loc.in_store:
            try:
                view = map_object(os.path.join(self.store_dir, loc.object_id), loc.size)
            except FileNotFoundError:
                raise _FileGone(loc.object_id) from None
            kind, value = serialization.deserialize(view)
        else:
            kind, value = serialization.deserialize(result.data)
        if kind == serialization.KIND_ERROR:
            if isinstance(value, TaskError):
                raise value.as_instanceof_cause()
            if isinstance(value, BaseException):
                raise value
            raise ZrayError(f"object {loc.object_id} holds an error of unknown form: {value!r}")
        return value

    def raw_object(self, loc: ObjectLoc, bufs: list[Any]) -> Any:
        """The bytes of an object given to a task, inline or mapped from the store."""
        if loc.in_store:
            return map_object(os.path.join(self.store_dir, loc.object_id), loc.size)
        return bufs[loc.buf]

    def wait(self, refs: Sequence[ObjectRef], num_returns: int, timeout: float | None,
             fetch_local: bool) -> tuple[list[ObjectRef], list[ObjectRef]]:
        oids = [r.hex() for r in refs]
        self._request_missing(oids, fetch=fetch_local)
        ready = self.ready if not fetch_local else self.results

        def enough() -> bool:
            return sum(1 for o in oids if o in ready or o in self.ready) >= num_returns

        self._wait_until(enough, timeout)
        done: list[ObjectRef] = []
        pending: list[ObjectRef] = []
        for ref in refs:
            if (ref.hex() in self.ready or ref.hex() in ready) and len(done) < num_returns:
                done.append(ref)
            else:
                pending.append(ref)
        return done, pending

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            try:
                self.send(DisconnectClient())
            except (zmq.ZMQError, RayletDiedError):
                pass
            self.closed = True
            set_tracker(None)
            self._flush_event.set()  # let the flusher thread see `closed` and end
            if self.watch is not None:
                self.watch.close()
            self.sock.setsockopt(zmq.LINGER, 200)
            self.sock.close()
            self._close_direct()
            self.owner_links.close_all()
            if self.inbox is not None:
                self.inbox.close()
            self.gcs.close()
