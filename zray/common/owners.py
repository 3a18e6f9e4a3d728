"""Who owns an object: the owner's worker id and the node it runs on.

A pickled ObjectRef carries its owner as one key, `WORKER@NODE` (both hex),
so that whichever node ends up holding the ref knows which raylet counts
its references and keeps the value. A key without a node (`WORKER`) names an
owner on the holder's own node.
"""

from __future__ import annotations

SEPARATOR = "@"


def owner_key(worker_hex: str, node_id: str) -> str:
    return f"{worker_hex}{SEPARATOR}{node_id}" if node_id else worker_hex


def split_owner(key: str) -> tuple[str, str]:
    """(worker id hex, node id) of an owner key; the node is '' when not named."""
    worker, _, node = key.partition(SEPARATOR)
    return worker, node
