"""The end of a job, known on every node: its actors there end with it.

A job ends when its driver leaves the raylet it is connected to. That
raylet records the end time in the job's row of the GCS jobs table; every
raylet follows the table and ends the non-detached actors of ended jobs it
hosts, wherever they were created or restarted. An actor of an ended job is
not restarted after its node dies.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from zray.common.messages.base import Message
from zray.common.messages.gcs import GcsRead
from zray.common.messages.tables import JOBS, JobInfo

if TYPE_CHECKING:
    from zray.services.gcs.clone import RowChange
    from zray.services.gcs.subscriber import ServiceSubscriber
    from zray.services.raylet.server import Raylet


class JobEnds:
    def __init__(self, raylet: Raylet) -> None:
        self.raylet = raylet
        self.ended: set[str] = set()

    def follow(self, subscriber: ServiceSubscriber) -> None:
        subscriber.follow(JOBS, self._on_changes)

    def record(self, job_id: str) -> None:
        """This node's driver of the job left: mark the job ended in the GCS."""
        self.ended.add(job_id)
        gcs = self.raylet.gcs

        def read(reply: Message, bufs: list[Any]) -> None:
            if getattr(reply, "found", [False])[0] and bufs:
                info = JobInfo.model_validate_json(bytes(bufs[0]))
                if info.end_time is None:
                    ended = info.model_copy(update={"end_time": time.time()})
                    gcs.write(JOBS, job_id, ended.model_dump_json().encode())

        gcs.request(lambda r: GcsRead(req_id=r, table=JOBS, keys=[job_id]), (), read,
                    shard=gcs.shard_of(job_id))

    def _on_changes(self, changes: list[RowChange]) -> None:
        for change in changes:
            if change.new is None:
                self.ended.discard(change.key)
                continue
            info = JobInfo.model_validate_json(change.new)
            if info.end_time is not None and info.job_id not in self.ended:
                self.ended.add(info.job_id)
                self.raylet.actors.job_ended(info.job_id)
