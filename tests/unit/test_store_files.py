"""Object files across reruns and raylet restarts: a rerun of a task on the
node that already has (part of) its output file writes it anew, and a store
opened on the folder of a killed raylet starts without its files."""

from __future__ import annotations

import os
from pathlib import Path

from zray.client.store import write_object
from zray.common import serialization
from zray.services.raylet.object_store import SharedMemoryStore

OID = "3b4bfafc5325e372b3ae067f0000000100000001"


def test_a_rerun_replaces_an_earlier_attempts_file(tmp_path: Path) -> None:
    path = tmp_path / OID
    path.write_bytes(b"half of an earlier attempt")
    ser = serialization.serialize(b"x" * 100_000)
    write_object(str(path), ser)
    assert path.stat().st_size == ser.total_size
    assert serialization.deserialize(path.read_bytes())[1] == b"x" * 100_000
    assert os.listdir(tmp_path) == [OID]  # no partial file left beside it


def test_a_store_on_a_killed_raylets_folder_removes_its_object_files(tmp_path: Path) -> None:
    (tmp_path / OID).write_bytes(b"left by a killed raylet")
    (tmp_path / f"{OID}.tmp-123").write_bytes(b"partial")
    (tmp_path / "notes.txt").write_text("not an object: kept")
    store = SharedMemoryStore(str(tmp_path), capacity=1 << 20)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]
    assert store.used == 0 and len(store) == 0
    path = store.reserve(OID, 10)
    write_object(path, serialization.serialize(b"fresh"))
    assert OID in store
