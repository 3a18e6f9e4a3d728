"""The GCS stays the size of what is still reachable: the specs of finished
tasks whose results were dropped are removed, however many tasks ran."""

from __future__ import annotations

import pytest

import zray
from tests.conftest import poll_for, zray_cluster
from zray.services.gcs.client import GcsClient

pytestmark = pytest.mark.timeout(180)


@zray.remote
def tiny(x: int) -> int:
    return x


@zray.remote
def blob(size: int) -> bytes:
    return b"x" * size


@zray.remote
def extend(data: bytes, more: int) -> bytes:
    return data + b"y" * more


def test_task_specs_are_removed_once_their_results_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    # A small task-event history, full after the first batch: what is left to
    # grow is what the run leaks (the default history grows to 80,000 events).
    monkeypatch.setenv("ZRAY_TASK_EVENTS_MAX", "2000")
    with zray_cluster(num_cpus=2) as info:
        gcs = GcsClient(info["address"], timeout=10.0)
        try:
            def tasks_rows() -> int:
                # A call lets the driver send the releases it batches up.
                assert zray.get(tiny.remote(0)) == 0
                return gcs.ping().entries["tasks"]

            for _ in range(8):
                assert sum(zray.get([tiny.remote(i) for i in range(1000)])) == sum(range(1000))
            poll_for(lambda: tasks_rows() < 50, 30, interval=0.1,
                     what="the specs of 8,000 finished tasks to be removed",
                     on_timeout=lambda: f"{tasks_rows()} task rows left")
            first_pages = gcs.ping().data_bytes
            # LMDB reuses the freed pages: the file does not keep growing. Its
            # high-water mark follows how many specs were live at once, which
            # varies from batch to batch, so it may rise once or twice (~1.7x
            # seen); a leak would add about first_pages with every round.
            for _ in range(3):
                for _ in range(8):
                    zray.get([tiny.remote(i) for i in range(1000)])
                poll_for(lambda: tasks_rows() < 50, 30, interval=0.1,
                         what="the next 8,000 to go too")
            assert gcs.ping().data_bytes <= first_pages * 2.2, (
                f"{gcs.ping().data_bytes} bytes after 32,000 tasks, {first_pages} after 8,000")

            # A spec whose result in the object store is still referenced stays (lineage
            # to rebuild it), and so does the producer of its argument.
            first = blob.remote(300_000)
            second = extend.remote(first, 10)
            assert len(zray.get(second)) == 300_010
            first_task, second_task = first.hex()[:32], second.hex()[:32]

            def specs() -> set[str]:
                return {k for k, _ in gcs.scan("tasks")}

            # Specs reach the GCS a moment after submission (write-behind).
            poll_for(lambda: {first_task, second_task} <= specs(), 10, interval=0.05,
                     what="both specs in the GCS")
            del first
            assert tasks_rows() >= 2  # the driver has sent its releases by now
            assert {first_task, second_task} <= specs(), "a referenced result keeps its lineage"
            del second
            poll_for(lambda: tasks_rows() >= 0 and not {first_task, second_task} & specs(),
                     30, interval=0.1, what="the lineage to go with the last reference")
        finally:
            gcs.close()
