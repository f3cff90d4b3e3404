"""IMAP IDLE (RFC 2177) that never sleeps on news it has already received.

Why not imapclient's ``idle()``/``idle_check()``: imaplib reads the connection through a
buffered file. When the server sends ``* 3 EXISTS`` in the same packet as ``+ idling``,
the EXISTS line lands in that buffer while ``idle()`` reads the continuation, and
``idle_check()`` then polls the *socket*, which has nothing more to say: the news waits
unread until the next renewal. The same happens to an EXISTS that came with the answer to
an earlier command (a SEARCH): imaplib files it under ``untagged_responses`` and nobody
looks. Here every wait first looks at what is already known or buffered, and only polls
the socket (together with the caller's wake-up descriptor) when nothing is.

News is an untagged ``EXISTS`` or ``RECENT``, whenever it arrived. ``forget_news`` is
called just before the caller looks at the folder (UID SEARCH): whatever was announced
before that command is in its answer, whatever comes with or after it is news again.

This module uses imaplib's internals (``_command``, ``_get_response``,
``untagged_responses``, ``tagged_commands``), as imapclient itself does for IDLE.
"""

from __future__ import annotations

import select
import ssl
import time
from typing import Any, Literal

from gateway.errors import TransientError

Wake = Literal["mail", "renew", "stop"]
NEWS = ("EXISTS", "RECENT")


def has_news(imap: Any) -> bool:
    """Whether the server announced messages the caller has not looked for yet."""
    return any(imap.untagged_responses.get(name) for name in NEWS)


def forget_news(imap: Any) -> None:
    """Called right before the folder is searched: what was announced so far is in that answer."""
    for name in NEWS:
        imap.untagged_responses.pop(name, None)


def idle(imap: Any, *, renew: float, wake_fd: int | None, timeout: float | None) -> Wake:
    """IDLE until news arrives (``mail``), ``renew`` seconds pass, or ``wake_fd`` is readable (``stop``).

    Returns at once, without IDLE, when news is already known. The IDLE is ended (DONE
    and its tagged answer) before returning, so the connection is ready for the next
    command, except at ``stop``: the connection is then still in IDLE and only good for
    closing. Anything the server says on the way is kept for ``has_news``.
    ``timeout`` is the connection's read timeout, used for reading a response the server
    has begun to send. Raises ``TransientError`` for a refused IDLE, a BYE or a dead
    connection.
    """
    if has_news(imap):
        return "mail"
    tag = imap._command("IDLE")
    while True:  # untagged responses may come before the continuation
        if imap._get_response() is None:
            break
        _raise_if_finished(imap, tag)
    why: Wake = "renew"
    try:
        why = _watch(imap, renew=renew, wake_fd=wake_fd, timeout=timeout)
        return why
    finally:
        if why != "stop":  # a stopping process drops the connection instead (``MailboxSession.wait_for_mail``)
            _done(imap, tag)


def _watch(imap: Any, *, renew: float, wake_fd: int | None, timeout: float | None) -> Wake:
    deadline = time.monotonic() + renew
    sock = imap.sock
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    if wake_fd is not None:
        poller.register(wake_fd, select.POLLIN)
    while True:
        while _ahead(imap, timeout):
            imap._get_response()
        if "BYE" in imap.untagged_responses:
            raise TransientError("the server ended the connection during IDLE (BYE)")
        if has_news(imap):
            return "mail"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "renew"
        ready = {fd for fd, _ in poller.poll(remaining * 1000)}
        if wake_fd is not None and wake_fd in ready:
            return "stop"
        if sock.fileno() in ready and _ahead(imap, timeout) == b"":
            # Readable, yet nothing to read: the end of the stream (TLS records of its own
            # give ``None`` and are polled past).
            raise TransientError("the server closed the connection during IDLE")


def _ahead(imap: Any, timeout: float | None) -> bytes | None:
    """What can be read without waiting: imaplib's buffer, else what the socket (or TLS) holds now.

    ``b""`` when nothing is there (or, after a poll said readable, the end of the stream);
    ``None`` when TLS read only a record of its own (a session ticket). ``peek`` fills an
    empty buffer from the socket, which is non-blocking for that moment.
    """
    sock = imap.sock
    sock.settimeout(0)
    try:
        return bytes(imap.file.peek(1))
    except (BlockingIOError, ssl.SSLWantReadError):
        return None
    finally:
        sock.settimeout(timeout)


def _raise_if_finished(imap: Any, tag: bytes) -> None:
    """A tagged answer to IDLE before the continuation means the server refused it."""
    done = imap.tagged_commands.get(tag)
    if done:
        imap.tagged_commands.pop(tag)
        typ, data = done
        raise TransientError(f"the server refused IDLE: {typ} {_text(data)}")


def _done(imap: Any, tag: bytes) -> None:
    """End the IDLE: DONE, then read up to its tagged answer (untagged ones are kept)."""
    try:
        if not imap.tagged_commands.get(tag):
            imap.send(b"DONE\r\n")
            while not imap.tagged_commands.get(tag):
                imap._get_response()
    except OSError as exc:  # TimeoutError included
        raise TransientError(f"ending IDLE failed: {type(exc).__name__}: {exc}") from None
    typ, data = imap.tagged_commands.pop(tag)
    if typ != "OK":
        raise TransientError(f"IDLE ended with {typ} {_text(data)}")


def _text(data: list[Any]) -> str:
    first = data[0] if data else b""
    return first.decode("utf-8", "replace") if isinstance(first, bytes) else str(first)
