"""Which shard holds a key: a stable hash, the same in every process and release."""

from __future__ import annotations

import zlib


def shard_of(key: str, num_shards: int) -> int:
    if num_shards <= 1:
        return 0
    return zlib.crc32(key.encode()) % num_shards


def shard_address(base: str, index: int) -> str:
    """Where shard i of a group started together serves, given shard 0's address:
    tcp port P + 2i (its PUB takes the next port), or the ipc path with "-i"."""
    if index == 0:
        return base
    if base.startswith("ipc://"):
        return f"{base}-{index}"
    host, port = base.rsplit(":", 1)
    return f"{host}:{int(port) + 2 * index}"


def group_by_shard(keys: list[str], num_shards: int) -> dict[int, list[int]]:
    """Shard -> positions of its keys in `keys`, in order."""
    groups: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(shard_of(key, num_shards), []).append(i)
    return groups
