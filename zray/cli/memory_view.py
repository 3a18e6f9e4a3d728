"""`zray memory`: ask each raylet on this host for its largest live objects,
and render them (rendering is pure)."""

from __future__ import annotations

import os
from typing import Any

from zray.cli.status_view import human_bytes
from zray.common.errors import ConnectionFailedError
from zray.common.messages.raylet import (
    RAYLET_TO_CLIENT,
    ListObjectsReply,
    ListObjectsRequest,
)
from zray.common.messages.tables import NodeInfo


def query_objects(node: NodeInfo, limit: int, timeout: float = 3.0) -> ListObjectsReply:
    """One request to the node's raylet over its local socket."""
    import zmq

    from zray.common import wire
    from zray.common.sockets import configure, connect

    ctx: zmq.Context[Any] = zmq.Context.instance()
    sock = configure(ctx.socket(zmq.DEALER), identity=b"memory-" + os.urandom(6).hex().encode())
    try:
        connect(sock, node.local_address)
        sock.send_multipart(wire.encode(ListObjectsRequest(req_id=1, limit=limit)))
        if not sock.poll(int(timeout * 1000)):
            raise ConnectionFailedError(f"raylet of node {node.node_id[:12]} at "
                                        f"{node.local_address} did not answer in {timeout:.0f}s")
        msg, _ = wire.Protocol("memory", RAYLET_TO_CLIENT).decode(sock.recv_multipart())
    finally:
        sock.close(0)
    if not isinstance(msg, ListObjectsReply):
        raise ConnectionFailedError(f"raylet of node {node.node_id[:12]} answered {msg.kind}")
    return msg


def format_memory(node: NodeInfo, reply: ListObjectsReply) -> list[str]:
    lines = [f"node {node.node_id[:12]}  store {human_bytes(node.store_used)} / "
             f"{human_bytes(node.store_capacity)}, spilled {human_bytes(node.spilled_bytes)}; "
             f"{reply.total} objects, largest {len(reply.objects)}:"]
    for o in reply.objects:
        keep = list(o.holders)
        if o.pinned_by_tasks:
            keep.append(f"{o.pinned_by_tasks} pending task arg(s)")
        if o.contained_in:
            keep.append(f"nested in {o.contained_in} object(s)")
        lines.append(f"  {o.object_id}  {human_bytes(o.size):>10}  {o.where:<8} "
                     f"owner {o.owner or '?'}; kept by {', '.join(keep) or 'nothing (being freed)'}")
    return lines
