"""The IDLE reader against a scripted peer: however the server's bytes are cut into reads,
an EXISTS or RECENT next to the continuation ends the wait as news, and DONE's answer is
read, so the connection is ready for the next command.

The peer is a loopback socket that sends the server's side of the exchange in the pieces
hypothesis chooses; the client is imaplib itself (as inside imapclient). The renewal is
30 s: a wait that missed the news would return ``renew`` only after it, and fail.
"""

from __future__ import annotations

import imaplib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise

import imapclient  # noqa: F401 - registers IDLE with imaplib
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.inbound import idle

RENEW = 30.0


def _read_line(conn: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\r\n"):
        byte = conn.recv(1)
        if not byte:
            raise ConnectionError("client went away")
        line += byte
    return line


@contextmanager
def scripted_peer(pieces: list[bytes]) -> Iterator[imaplib.IMAP4]:
    """A client connected to a peer that answers CAPABILITY, then IDLE with ``pieces`` (``TAG`` = the IDLE's tag)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"* OK scripted peer ready\r\n")
                tag = _read_line(conn).split(b" ")[0]
                conn.sendall(b"* CAPABILITY IMAP4rev1 IDLE\r\n" + tag + b" OK done\r\n")
                tag = _read_line(conn).split(b" ")[0]  # the IDLE
                for piece in pieces:
                    conn.sendall(piece.replace(b"TAG", tag))
                assert _read_line(conn) == b"DONE\r\n"
                conn.sendall(tag + b" OK Idle completed\r\n")
                tag = _read_line(conn).split(b" ")[0]  # the client's next command (a NOOP)
                conn.sendall(b"* 7 EXISTS\r\n" + tag + b" OK NOOP completed\r\n")
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    client.state = "SELECTED"
    try:
        yield client
    finally:
        client.shutdown()
        server.close()
        thread.join(10)
    assert not errors, errors


def _cut(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    bounds = [0, *points, len(stream)]
    return [stream[a:b] for a, b in pairwise(bounds) if b > a]


@settings(max_examples=40)
@given(
    news=st.sampled_from([b"* 3 EXISTS\r\n", b"* 1 RECENT\r\n"]),
    before=st.booleans(),
    noise=st.lists(st.sampled_from([b"* 2 FETCH (FLAGS (\\Seen))\r\n", b"* OK Still here\r\n"]), max_size=3),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6),
)
def test_news_next_to_the_continuation_ends_the_wait_however_the_bytes_are_cut(
    news: bytes, before: bool, noise: list[bytes], cuts: list[int]
) -> None:
    head = b"".join(noise)
    stream = head + (news + b"+ idling\r\n" if before else b"+ idling\r\n" + news)
    with scripted_peer(_cut(stream, cuts)) as client:
        assert idle.idle(client, renew=RENEW, wake_fd=None, timeout=10) == "mail"
        idle.forget_news(client)
        typ, _ = client.noop()  # the connection is ready for the next command
        assert typ == "OK"


def test_a_wake_up_descriptor_ends_the_wait_at_once() -> None:
    read_end, write_end = socket.socketpair()
    try:
        write_end.send(b"x")
        with scripted_peer([b"+ idling\r\n"]) as client:
            assert idle.idle(client, renew=RENEW, wake_fd=read_end.fileno(), timeout=10) == "stop"
            client.send(b"DONE\r\n")  # the peer's script expects the IDLE to end
            while True:
                if client._get_response() is not None and any(client.tagged_commands.values()):
                    break
            client.tagged_commands.clear()
            idle.forget_news(client)
            assert client.noop()[0] == "OK"
    finally:
        read_end.close()
        write_end.close()
