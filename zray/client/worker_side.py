"""The worker's side of the client (mixed into CoreClient): taking tasks from
the inbox, and batching their results to the raylet and to their owners."""

from __future__ import annotations

import threading
import time
from typing import Any

import zmq

from zray.client.peer_links import PeerOutlets
from zray.common import wire
from zray.common.messages.base import construct
from zray.common.messages.raylet import FinishedTask, ObjectsReady, TaskFinished
from zray.common.messages.task import ObjectLoc

MAX_OWNER_LINKS = 64
# Results of calls that came straight from their callers (already answered,
# never retried) reach the raylet this late at most, or once this many wait,
# or before anything else this worker tells it: the raylet is off those
# calls' path, so telling it need not cost the next call its wake-up. Had the
# worker died meanwhile, the raylet fails calls whose callers have their
# answers; a call that could be retried is told at once (a retry would run it
# twice).
TOLD_LATER_SECONDS = 0.002
TOLD_LATER_MAX_AGE = 0.02
TOLD_LATER_BATCH = 64


class WorkerSide:
    lock: threading.RLock
    closed: bool
    threaded: bool
    poller: zmq.Poller
    tasks_inbox: list[tuple[Any, list[Any]]]
    finished: list[FinishedTask]
    finished_bufs: list[Any]
    finished_owners: list[str]
    owner_first: dict[str, bool]
    owner_links: PeerOutlets  # to the owners of the tasks this worker runs
    calls_retried: bool

    def _flush_submits(self) -> None:
        raise NotImplementedError

    def _flush_refs(self, force: bool = False) -> None:
        raise NotImplementedError

    def _pump(self, timeout: float | None) -> bool:
        raise NotImplementedError

    def _process(self, events: list[tuple[Any, int]]) -> None:
        raise NotImplementedError

    def _nothing_buffered(self) -> None:
        raise NotImplementedError

    def _flush_reports(self, linger: float = 0.0) -> None:
        raise NotImplementedError

    def release_held(self, contains: dict[str, list[str]]) -> None:
        raise NotImplementedError

    def send(self, msg: Any, buffers: Any = ()) -> None:
        raise NotImplementedError

    def _transmit(self, frames: list[Any]) -> None:
        raise NotImplementedError

    def next_task(self, flush_after: float) -> tuple[Any, list[Any]]:
        """The next task to run; buffered results and submissions go out before any wait."""
        with self.lock:
            self._flush_submits()
            if not self.tasks_inbox:
                self._pump(0)
            if not self.tasks_inbox or (self.finished and time.monotonic() > flush_after):
                self.flush_finished(tell_later=True)
            while not self.tasks_inbox:
                self._flush_reports()
                self._flush_refs(force=True)
                if self.threaded:
                    break
                if not self._told_later:
                    self._pump(None)
                elif not self._pump(TOLD_LATER_SECONDS):
                    self._send_told_later()  # idle: now is a good time
            if self.tasks_inbox:
                return self.tasks_inbox.pop(0)
        while True:  # concurrent actor: poll without the lock, so calls' threads can queue
            events = self.poller.poll(-1)
            with self.lock:
                self._process(events)
                if self.tasks_inbox:
                    return self.tasks_inbox.pop(0)

    def add_finished(self, result: FinishedTask, owner: str, final: bool) -> None:
        """Buffer a result; its ObjectLoc.buf values index `finished_bufs`.

        `final`: no retry can replace this result, so its owner may have it at once.
        """
        with self.lock:
            self.finished.append(result)
            self.finished_owners.append(owner if final else "")
            if len(self.finished) >= 64:
                self.flush_finished()

    def add_finished_frames(self, result: FinishedTask, frames: list[Any], owner: str,
                            final: bool) -> None:
        """add_finished for a result whose ObjectLoc.buf values index `frames`."""
        if frames:
            base = len(self.finished_bufs)
            result = result.model_copy(update={"returns": [
                loc.model_copy(update={"buf": loc.buf + base}) if loc.buf >= 0 else loc
                for loc in result.returns]})
            self.finished_bufs.extend(frames)
        self.add_finished(result, owner, final)

    def _init_told_later(self) -> None:
        self._told_later: list[FinishedTask] = []
        self._told_later_bufs: list[Any] = []
        self._told_since = 0.0

    def _send_told_later(self) -> None:
        """Tell the raylet of the answered direct calls whose results it has not heard of."""
        if self._told_later and not self.closed:
            results, bufs = self._told_later, self._told_later_bufs
            self._init_told_later()
            self._transmit(wire.encode(construct(TaskFinished, kind="TaskFinished", results=results),
                                       bufs))

    def _tell_later(self, results: list[FinishedTask], bufs: list[Any]) -> None:
        if not self._told_later:
            self._told_since = time.monotonic()
        base = len(self._told_later_bufs)
        if base:
            results = [construct(FinishedTask, **{**r.__dict__, "returns": [
                construct(ObjectLoc, **{**loc.__dict__, "buf": loc.buf + base}) if loc.buf >= 0
                else loc for loc in r.returns]}) for r in results]
        self._told_later.extend(results)
        self._told_later_bufs.extend(bufs)
        if len(self._told_later) >= TOLD_LATER_BATCH or \
                time.monotonic() - self._told_since > TOLD_LATER_MAX_AGE:
            self._send_told_later()

    def flush_finished(self, tell_later: bool = False) -> None:
        """Send buffered results to their owners and the raylet; with `tell_later`,
        the raylet may hear of answered direct calls a moment later (_tell_later)."""
        with self.lock:  # the flusher thread sends them too
            self._flush_finished(tell_later)

    def _flush_finished(self, tell_later: bool) -> None:
        if not self.finished or self.closed:
            if not tell_later:
                self._send_told_later()
            return
        results, bufs, owners = self.finished, self.finished_bufs, self.finished_owners
        self.finished, self.finished_bufs, self.finished_owners = [], [], []
        self._nothing_buffered()
        # Only to owners whose link is open and not backed up: those sends reach
        # the kernel now. The others hear from the raylet.
        reachable = {o: self.owner_links.ready(o) for o in set(owners) if o}
        by_owner: dict[str, list[FinishedTask]] = {}
        for result, owner in zip(results, owners, strict=True):
            if reachable.get(owner):
                by_owner.setdefault(owner, []).append(result)
        delivered = {r.task_id for owned in by_owner.values() for r in owned}
        if delivered:
            results = [construct(FinishedTask, **{**r.__dict__, "delivered": True})
                       if r.task_id in delivered else r for r in results]
        # The owner hears first when nothing it may do on seeing the results
        # depends on the raylet having heard: calls that came straight from
        # their callers (the raylet is off their path, and their callers
        # ignore a later answer), and plain tasks whose results nest no refs
        # (a release of an unsealed result waits for its seal; a cancel of a
        # task whose result its owner has is not sent). Otherwise the raylet
        # hears first: e.g. an actor call whose caller then kills the actor, or
        # any call of an actor whose calls are retried (answered over a peer
        # link, its caller's next call could kill this worker before the
        # raylet heard, which would then run the answered call again).
        first = self.owner_first
        owner_first = bool(first) and not self.calls_retried and \
            all(r.task_id in first and not r.contains for r in results)
        if owner_first:
            self._deliver_to_owners(by_owner, bufs)
            if tell_later and not self.threaded and all(first[r.task_id] for r in results) \
                    and len(delivered) == len(results):
                for result in results:
                    del first[result.task_id]
                self._tell_later(results, bufs)
                return
        self.send(construct(TaskFinished, kind="TaskFinished", results=results), bufs)
        for result in results:
            first.pop(result.task_id, None)
            if result.contains:
                self.release_held(result.contains)
        if not owner_first:
            self._deliver_to_owners(by_owner, bufs)

    def _deliver_to_owners(self, by_owner: dict[str, list[FinishedTask]], bufs: list[Any]) -> None:
        for owner, owned in by_owner.items():
            locs: list[ObjectLoc] = []
            frames: list[Any] = []
            for result in owned:
                for loc in result.returns:
                    if loc.buf >= 0:
                        locs.append(construct(ObjectLoc, **{**loc.__dict__, "buf": len(frames)}))
                        frames.append(bufs[loc.buf])
                    else:
                        locs.append(loc)
            msg = construct(ObjectsReady, kind="ObjectsReady", objects=locs)
            # False: the owner went away since the check, and nobody waits for these.
            self.owner_links.send(owner, wire.encode(msg, frames))

