"""LMDB tables of one shard: one named database per table, batched writes.

Every change gets two numbers, stored in the same transaction as the writes
they number, so a restarted shard resumes both: the shard's sequence (all
tables) and its table's sequence. Subscribers follow single tables, so they
detect gaps with the table sequence.
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
MAX_TABLES = 64


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
                    db = self.db(table)
                    if value is None:
                        if not txn.delete(key, db=db):
                            continue
                    else:
                        txn.put(key, value, db=db)
                    seq, table_seq = self._next(table, touched)
                    changes.append(Change(table, key, value, seq, table_seq))
                self._store_seqs(txn, touched)
        except BaseException:
            self.seq, self.table_seqs = before  # the transaction was rolled back
            raise
        return changes

    def increment(self, key: bytes) -> int:
        db = self.db("counters")
        with self.env.begin(write=True, db=db) as txn:
            raw = txn.get(key)
            value = (_U64.unpack(raw)[0] if raw else 0) + 1
            txn.put(key, _U64.pack(value))
        return value

    def put_if_absent(self, table: str, key: bytes, value: bytes, expected: bytes | None = None
                      ) -> tuple[bool, bytes | None, list[Change]]:
        """Store unless the key holds something other than `expected` (None: absent).
        (stored, existing value, the change to publish), in one transaction."""
        db = self.db(table)
        touched: set[str] = set()
        before = self.seq, dict(self.table_seqs)
        try:
            with self.env.begin(write=True) as txn:
                existing = txn.get(key, db=db)
                if existing is not None and (expected is None or bytes(existing) != expected):
                    return False, bytes(existing), []
                txn.put(key, value, db=db)
                seq, table_seq = self._next(table, touched)
                self._store_seqs(txn, touched)
        except BaseException:
            self.seq, self.table_seqs = before
            raise
        return True, None, [Change(table, key, value, seq, table_seq)]

    def read(self, table: str, keys: Iterable[bytes]) -> list[bytes | None]:
        with self.env.begin(db=self.db(table), buffers=False) as txn:
            return [txn.get(k) for k in keys]

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        with self.env.begin() as txn:
            return {name: int(txn.stat(db)["entries"]) for name, db in self._dbs.items()}

    def scan(self, table: str, prefix: bytes = b"", limit: int = 0) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        with self.env.begin(db=self.db(table)) as txn:
            cur = txn.cursor()
            if not cur.set_range(prefix):
                return out
            for key, value in cur:
                if not key.startswith(prefix):
                    break
                out.append((key, value))
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
