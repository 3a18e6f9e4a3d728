"""Peer links: records over real Unix sockets, backlogs, gone peers, bad input."""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from zray.client import peer_links
from zray.client.peer_links import (
    PeerInbox,
    PeerOutlets,
    decode_records,
    encode_record,
    peer_path,
)
from zray.common.errors import ProtocolError

pytestmark = pytest.mark.timeout(20)

PEER = "ab" * 14


class Side:
    """An inbox and the poller it lives on, read the way the client reads it."""

    def __init__(self, session: Path) -> None:
        self.poller = zmq.Poller()
        self.inbox = PeerInbox(peer_path(str(session), PEER), self.poller)

    def read(self, want: int, sender: PeerOutlets | None = None,
             timeout_ms: int = 5000) -> list[list[bytes]]:
        """`want` messages; `sender`'s backlog is written as the reads make room."""
        got: list[list[bytes]] = []
        while len(got) < want:
            if sender is not None:
                sender.flush()
            events = self.poller.poll(timeout_ms)
            assert events, f"only {len(got)} of {want} messages arrived"
            for fd, _ in events:
                if self.inbox.owns(fd):
                    got.extend(self.inbox.receive(fd))
        return got


@pytest.fixture(autouse=True, params=["small", "asked"])
def send_buffer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test with a small send buffer (a host's default cap) and with what zray asks for."""
    if request.param == "small":
        monkeypatch.setattr(peer_links, "SEND_BUFFER", 32 * 1024)


@pytest.fixture
def side(tmp_path: Path) -> Iterator[Side]:
    s = Side(tmp_path)
    yield s
    s.inbox.close()


def outlets(session: Path, **kw: object) -> PeerOutlets:
    links = PeerOutlets(zmq.Poller(), **kw)  # type: ignore[arg-type]
    links.session_dir = str(session)
    return links


def test_records_round_trip_frames_of_every_shape() -> None:
    frames = [b"", b"ZRAY/1", memoryview(b"\x00view\xff"), bytearray(b"ba"), b"x" * 70_000]
    data = b"".join(bytes(p) for p in encode_record(frames))
    records, used = decode_records(memoryview(data + data[:9]))
    assert used == len(data)  # the partial second record waits for the rest
    assert records == [[b"", b"ZRAY/1", b"\x00view\xff", b"ba", b"x" * 70_000]]


def test_a_malformed_header_names_the_cause() -> None:
    bad = struct.pack("<II", 12, 1) + struct.pack("<I", 99) + b"12345678"
    with pytest.raises(ProtocolError, match="frame sizes add up to 99"):
        decode_records(memoryview(bad))
    with pytest.raises(ProtocolError, match="malformed"):
        decode_records(memoryview(struct.pack("<II", 2**31, 1)))


def test_messages_arrive_in_order_on_one_link(side: Side, tmp_path: Path) -> None:
    links = outlets(tmp_path)
    sent = [[b"v", b"k", str(i).encode(), b"p" * (i % 7)] for i in range(500)]
    for frames in sent:
        assert links.send(PEER, frames)
    assert side.read(500, links) == sent
    links.close_all()


def test_a_message_of_many_frames_goes_in_one_piece(side: Side, tmp_path: Path) -> None:
    links = outlets(tmp_path)
    frames = [str(i).encode() for i in range(3000)]  # more than one sendmsg takes
    assert links.send(PEER, frames)
    assert side.read(1, links) == [frames]
    links.close_all()


def test_a_reader_that_falls_behind_loses_nothing(side: Side, tmp_path: Path) -> None:
    woke = []
    links = outlets(tmp_path, on_backed_up=lambda: woke.append(1))
    payload = b"z" * 50_000
    count = 0
    while PEER not in links.links or not links.links[PEER].backed_up:
        assert links.send(PEER, [count.to_bytes(4, "big"), payload])
        count += 1
        assert count < 10_000, "the kernel took everything: nothing was backed up"
    for i in range(count, count + 50):  # queued behind the backlog, in order
        assert links.send(PEER, [i.to_bytes(4, "big"), payload])
    total = count + 50
    assert woke == [1] and not links.ready(PEER) and not links.flush()
    got = side.read(total, links)
    assert [int.from_bytes(f[0], "big") for f in got] == list(range(total))
    assert all(f[1] == payload for f in got)
    assert links.flush() and links.ready(PEER)
    links.close_all()


def test_closing_with_linger_delivers_the_backlog(tmp_path: Path) -> None:
    path = peer_path(str(tmp_path), PEER)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    links = outlets(tmp_path, linger=5.0)
    for _ in range(200):
        links.send(PEER, [b"y" * 60_000])
    assert links.links[PEER].backed_up
    conn, _ = listener.accept()
    conn.settimeout(10)
    received = bytearray()

    def drain() -> None:
        while chunk := conn.recv(1 << 20):
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    links.close(PEER)  # waits while the reader drains, then closes: the reader sees the end
    reader.join(10)
    assert len(decode_records(memoryview(bytes(received)))[0]) == 200
    conn.close()
    listener.close()


def test_a_gone_peer_is_not_reachable(side: Side, tmp_path: Path) -> None:
    links = outlets(tmp_path)
    assert links.link("cd" * 14) is None  # nobody listens there
    assert not links.send("cd" * 14, [b"x"])
    assert links.send(PEER, [b"first"])
    assert side.read(1) == [[b"first"]]
    side.inbox.close()
    # The first send after the peer closed may still land in its buffer; later ones fail.
    results = [links.send(PEER, [b"late"]) for _ in range(3)]
    assert results[-1] is False and not links.ready(PEER)
    side.inbox = PeerInbox(peer_path(str(tmp_path), PEER), side.poller)
    assert links.send(PEER, [b"again"])  # a new peer at that address is linked anew
    assert side.read(1) == [[b"again"]]
    links.close_all()


def test_a_peer_that_sends_garbage_is_dropped_and_others_go_on(
        side: Side, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    links = outlets(tmp_path)
    rogue = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    rogue.connect(side.inbox.path)
    rogue.sendall(struct.pack("<II", 2**31, 1))
    rogue.settimeout(5)
    accepted = False
    deadline = time.monotonic() + 5
    with caplog.at_level(logging.WARNING, logger="zray.client.peer_links"):
        while not (accepted and not side.inbox.readers):  # accepted, read, dropped
            assert time.monotonic() < deadline, "the rogue link was not dropped"
            for fd, _ in side.poller.poll(100):
                assert side.inbox.receive(fd) == []
            accepted = accepted or bool(side.inbox.readers)
    assert "malformed" in caplog.text
    assert rogue.recv(1) == b""  # its link was closed
    assert links.send(PEER, [b"still"])
    assert side.read(1) == [[b"still"]]
    rogue.close()
    links.close_all()


def test_a_record_longer_than_one_read_is_put_together(side: Side, tmp_path: Path) -> None:
    links = outlets(tmp_path)
    big = os.urandom(3 << 20)  # a dozen reads
    for i in range(3):
        assert links.send(PEER, [b"k", i.to_bytes(1, "big"), big])
    assert side.read(3, links) == [[b"k", bytes([i]), big] for i in range(3)]
    links.close_all()
