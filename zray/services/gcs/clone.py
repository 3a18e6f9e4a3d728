"""A subscriber's replica of one GCS table, kept by the ZeroMQ Clone pattern.

Pure state, no sockets: the caller feeds it publications, heartbeats and
snapshots, and does what it answers (apply, resync). Per shard:

- subscribe first, then snapshot; publications arriving before the snapshot
  are buffered and those it already holds (seq <= snapshot seq) dropped;
- live, a publication must carry the next table sequence: older ones are
  stale and dropped, a jump means something was missed: resync;
- a heartbeat with a newer sequence than seen (the last change of a quiet
  table was lost) or a new incarnation (the shard restarted) means resync.

A resync compares the new snapshot with what the replica held, so even
deletions missed while out of sync reach the caller as changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zray.services.gcs.sharding import shard_of


@dataclass(frozen=True)
class RowChange:
    key: str
    old: bytes | None
    new: bytes | None  # None: deleted


@dataclass
class _ShardState:
    seq: int | None = None  # None: waiting for a snapshot
    incarnation: str | None = None
    buffered: list[tuple[int, str, bytes | None]] = field(default_factory=list)
    resyncs: int = 0


class TableReplica:
    def __init__(self, table: str, num_shards: int) -> None:
        self.table = table
        self.num_shards = num_shards
        self.rows: dict[str, bytes] = {}
        self.shards = [_ShardState() for _ in range(num_shards)]

    def synced(self) -> bool:
        return all(s.seq is not None for s in self.shards)

    def needs_snapshot(self, shard: int) -> bool:
        return self.shards[shard].seq is None

    def resyncs(self) -> int:
        return sum(s.resyncs for s in self.shards)

    def _resync(self, state: _ShardState) -> None:
        state.seq = None
        state.buffered.clear()
        state.resyncs += 1

    def _apply(self, key: str, value: bytes | None) -> RowChange | None:
        old = self.rows.get(key)
        if value is None:
            if old is None:
                return None
            del self.rows[key]
        else:
            if old == value:
                return None
            self.rows[key] = value
        return RowChange(key, old, value)

    def on_publication(self, shard: int, seq: int, key: str,
                       value: bytes | None) -> tuple[list[RowChange], bool]:
        """(changes to act on, whether the shard needs a new snapshot)."""
        state = self.shards[shard]
        if state.seq is None:
            state.buffered.append((seq, key, value))
            return [], False
        if seq <= state.seq:
            return [], False  # stale: the snapshot or an earlier publication holds it
        if seq != state.seq + 1:
            self._resync(state)
            return [], True
        state.seq = seq
        change = self._apply(key, value)
        return ([change] if change else []), False

    def on_heartbeat(self, shard: int, incarnation: str, seq: int) -> bool:
        """Whether the shard needs a new snapshot."""
        state = self.shards[shard]
        if state.incarnation is not None and state.incarnation != incarnation:
            state.incarnation = incarnation
            self._resync(state)
            return True
        state.incarnation = incarnation
        if state.seq is not None and seq > state.seq:
            self._resync(state)
            return True
        return False

    def on_snapshot(self, shard: int, rows: list[tuple[str, bytes]],
                    seq: int) -> tuple[list[RowChange], bool]:
        """Replace the shard's rows; replay what was buffered after the snapshot.
        (changes, whether yet another snapshot is needed)."""
        state = self.shards[shard]
        fresh = dict(rows)
        changes: list[RowChange] = []
        for key in [k for k in self.rows
                    if shard_of(k, self.num_shards) == shard and k not in fresh]:
            change = self._apply(key, None)
            if change:
                changes.append(change)
        for key, value in rows:
            change = self._apply(key, value)
            if change:
                changes.append(change)
        state.seq = seq
        buffered, state.buffered = state.buffered, []
        for pub_seq, pub_key, pub_value in sorted(buffered, key=lambda b: b[0]):
            more, resync = self.on_publication(shard, pub_seq, pub_key, pub_value)
            changes.extend(more)
            if resync:
                return changes, True
        return changes, False
