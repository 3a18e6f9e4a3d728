"""Socket set-up shared by every service and client."""

from __future__ import annotations

import os
import tempfile

import zmq

from zray.common.sockets import IPC_RECONNECT_MAX_MS, IPC_RECONNECT_MS, connect


def test_an_ipc_connect_retries_soon_while_its_peer_has_not_bound_yet() -> None:
    ctx = zmq.Context()
    folder = tempfile.mkdtemp(prefix="zs-")
    path = os.path.join(folder, "peer.sock")
    client, server = ctx.socket(zmq.DEALER), ctx.socket(zmq.ROUTER)
    try:
        client.setsockopt(zmq.LINGER, 0)
        server.setsockopt(zmq.LINGER, 0)
        connect(client, f"ipc://{path}")  # nothing listens there yet
        assert client.getsockopt(zmq.RECONNECT_IVL) == IPC_RECONNECT_MS
        assert client.getsockopt(zmq.RECONNECT_IVL_MAX) == IPC_RECONNECT_MAX_MS
        client.send(b"queued before the peer bound")
        server.bind(f"ipc://{path}")
        assert server.poll(10_000), "the message queued before the bind arrives"
        assert server.recv_multipart()[1] == b"queued before the peer bound"
    finally:
        client.close()
        server.close()
        ctx.term()
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(folder)
