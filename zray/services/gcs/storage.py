"""LMDB tables of one shard: one named database per table, batched writes.

Every change gets two numbers, stored in the same transaction as the writes
they number, so a restarted shard resumes both: the shard's sequence (all
tables) and its table's sequence. Subscribers follow single tables, so they
detect gaps with the table sequence.

No value is stored on LMDB overflow pages. A value too big for a B-tree page
would need a run of contiguous free pages each time it is written, and the
churn of small rows (task specs put and deleted) fragments the free list, so
the file would grow without bound. Big values are split into page-sized parts
in a separate database instead; every page is then reusable.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass

import lmdb

from zray.common.messages.tables import TABLES

_META = b"__meta__"
_SEQ_KEY = b"seq"
_TABLE_SEQ_PREFIX = b"seq:"
_U64 = struct.Struct(">Q")
_PART_INDEX = struct.Struct(">I")
_PARTS = b"__parts__"
MAX_TABLES = 64
# A value is stored inline after one tag byte, or as a list of parts.
_INLINE = b"\x00"
_SPLIT = b"\x01"
# Key + value bytes of a node such that two nodes fill a 4 KiB page (LMDB puts
# a value of more than 2,038 bytes with its key and 8-byte header on overflow
# pages).
NODE_ROOM = 2_020


@dataclass(frozen=True, slots=True)
class Change:
    table: str
    key: bytes
    value: bytes | None  # None: deleted
    seq: int  # shard sequence
    table_seq: int


TXN_OPS = 256


class ShardStorage:
    def __init__(self, path: str, map_size: int = 1 << 36, fsync: bool = False) -> None:
        os.makedirs(path, mode=0o700, exist_ok=True)
        # sync=False: a commit reaches the page cache, which outlives a killed
        # process; flush() forces it to disk periodically. fsync=True makes
        # every (group) commit durable against power loss too.
        self.env = lmdb.open(path, map_size=map_size, max_dbs=MAX_TABLES,
                             sync=fsync, metasync=fsync, readahead=False)
        self._dbs = {name: self.env.open_db(name.encode()) for name in TABLES}
        self._meta = self.env.open_db(_META)
        self._parts = self.env.open_db(_PARTS)
        self.table_seqs = dict.fromkeys(TABLES, 0)
        with self.env.begin(db=self._meta) as txn:
            raw = txn.get(_SEQ_KEY)
            for table in TABLES:
                value = txn.get(_TABLE_SEQ_PREFIX + table.encode())
                if value:
                    self.table_seqs[table] = _U64.unpack(value)[0]
        self.seq = _U64.unpack(raw)[0] if raw else 0

    def _next(self, table: str, touched: set[str]) -> tuple[int, int]:
        self.seq += 1
        self.table_seqs[table] += 1
        touched.add(table)
        return self.seq, self.table_seqs[table]

    def _store_seqs(self, txn: lmdb.Transaction, touched: set[str]) -> None:
        txn.put(_SEQ_KEY, _U64.pack(self.seq), db=self._meta)
        for table in touched:
            txn.put(_TABLE_SEQ_PREFIX + table.encode(), _U64.pack(self.table_seqs[table]),
                    db=self._meta)

    def db(self, table: str) -> lmdb._Database:
        try:
            return self._dbs[table]
        except KeyError:
            raise KeyError(f"unknown GCS table {table!r}; tables: {', '.join(TABLES)}") from None

    def _get(self, txn: lmdb.Transaction, table: str, key: bytes) -> bytes | None:
        raw = txn.get(key, db=self.db(table))
        return None if raw is None else self._value(txn, table, key, raw)

    def _value(self, txn: lmdb.Transaction, table: str, key: bytes, raw: bytes) -> bytes:
        if raw[:1] == _INLINE:
            return raw[1:]
        count = _PART_INDEX.unpack(raw[1:5])[0]
        prefix = _part_prefix(table, key)
        return b"".join(txn.get(prefix + _PART_INDEX.pack(i), db=self._parts)
                        for i in range(count))

    def _put(self, txn: lmdb.Transaction, table: str, key: bytes, value: bytes) -> None:
        db = self.db(table)
        if len(key) + len(value) < NODE_ROOM:  # the tag byte fits in the slack
            old = txn.replace(key, _INLINE + value, db=db)
        else:
            prefix = _part_prefix(table, key)
            size = NODE_ROOM - len(prefix) - _PART_INDEX.size
            count = 0
            for count, start in enumerate(range(0, len(value), size), 1):
                txn.put(prefix + _PART_INDEX.pack(count - 1), value[start:start + size],
                        db=self._parts)
            old = txn.replace(key, _SPLIT + _PART_INDEX.pack(count), db=db)
            if old is not None and old[:1] == _SPLIT:  # keep the parts just written
                self._drop_parts(txn, table, key, old, first=count)
                return
        if old is not None and old[:1] == _SPLIT:
            self._drop_parts(txn, table, key, old)

    def _delete(self, txn: lmdb.Transaction, table: str, key: bytes) -> bool:
        old = txn.pop(key, db=self.db(table))
        if old is None:
            return False
        if old[:1] == _SPLIT:
            self._drop_parts(txn, table, key, old)
        return True

    def _drop_parts(self, txn: lmdb.Transaction, table: str, key: bytes, raw: bytes,
                    first: int = 0) -> None:
        prefix = _part_prefix(table, key)
        for i in range(first, _PART_INDEX.unpack(raw[1:5])[0]):
            txn.delete(prefix + _PART_INDEX.pack(i), db=self._parts)

    def write(self, ops: Iterable[tuple[str, bytes, bytes | None]]) -> list[Change]:
        """Apply (table, key, value-or-None) ops, in transactions of at most TXN_OPS.

        A bigger transaction holds more dirty pages at once (malloc'd, and kept
        by LMDB for reuse) and grows the file more, since the pages it frees are
        reused only by later transactions: 10,000 task specs in one cost the
        process three times the memory they cost in transactions of 256."""
        ops = list(ops)
        for table in {table for table, _, _ in ops}:
            self.db(table)  # an unknown table fails the whole batch, before any write
        changes: list[Change] = []
        for start in range(0, max(len(ops), 1), TXN_OPS):
            changes.extend(self._write_txn(ops[start:start + TXN_OPS]))
        return changes

    def _write_txn(self, ops: list[tuple[str, bytes, bytes | None]]) -> list[Change]:
        changes: list[Change] = []
        touched: set[str] = set()
        before = self.seq, dict(self.table_seqs)
        try:
            with self.env.begin(write=True) as txn:
                for table, key, value in ops:
                    if value is None:
                        if not self._delete(txn, table, key):
                            continue
                    else:
                        self._put(txn, table, key, value)
                    seq, table_seq = self._next(table, touched)
                    changes.append(Change(table, key, value, seq, table_seq))
                self._store_seqs(txn, touched)
        except BaseException:
            self.seq, self.table_seqs = before  # the transaction was rolled back
            raise
        return changes

    def increment(self, key: bytes) -> int:
        with self.env.begin(write=True) as txn:
            raw = self._get(txn, "counters", key)
            value = (_U64.unpack(raw)[0] if raw else 0) + 1
            self._put(txn, "counters", key, _U64.pack(value))
        return value

    def put_if_absent(self, table: str, key: bytes, value: bytes, expected: bytes | None = None
                      ) -> tuple[bool, bytes | None, list[Change]]:
        """Store unless the key holds something other than `expected` (None: absent).
        (stored, existing value, the change to publish), in one transaction."""
        self.db(table)
        touched: set[str] = set()
        before = self.seq, dict(self.table_seqs)
        try:
            with self.env.begin(write=True) as txn:
                existing = self._get(txn, table, key)
                if existing is not None and (expected is None or existing != expected):
                    return False, existing, []
                self._put(txn, table, key, value)
                seq, table_seq = self._next(table, touched)
                self._store_seqs(txn, touched)
        except BaseException:
            self.seq, self.table_seqs = before
            raise
        return True, None, [Change(table, key, value, seq, table_seq)]

    def read(self, table: str, keys: Iterable[bytes]) -> list[bytes | None]:
        self.db(table)
        with self.env.begin() as txn:
            return [self._get(txn, table, k) for k in keys]

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        with self.env.begin() as txn:
            return {name: int(txn.stat(db)["entries"]) for name, db in self._dbs.items()}

    def scan(self, table: str, prefix: bytes = b"", limit: int = 0) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        with self.env.begin() as txn:
            cur = txn.cursor(db=self.db(table))
            if not cur.set_range(prefix):
                return out
            for key, raw in cur:
                if not key.startswith(prefix):
                    break
                out.append((key, self._value(txn, table, key, raw)))
                if limit and len(out) >= limit:
                    break
        return out

    def meta_put(self, key: bytes, value: bytes) -> None:
        """Shard bookkeeping (e.g. the shard map) outside the user-visible tables."""
        with self.env.begin(write=True, db=self._meta) as txn:
            txn.put(b"meta:" + key, value)

    def meta_scan(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        full = b"meta:" + prefix
        with self.env.begin(db=self._meta) as txn:
            cur = txn.cursor()
            if not cur.set_range(full):
                return []
            return [(bytes(k[5:]), bytes(v)) for k, v in cur if k.startswith(full)]

    def data_bytes(self) -> int:
        info = self.env.info()
        stat = self.env.stat()
        return int(info["last_pgno"] + 1) * int(stat["psize"])

    def flush(self) -> None:
        self.env.sync(True)

    def close(self) -> None:
        self.env.sync(True)
        self.env.close()


def _part_prefix(table: str, key: bytes) -> bytes:
    return table.encode() + b"\x00" + key + b"\x00"
