"""IMAP access for one mailbox: connect, list, fetch by UID, and tidy up afterwards.

Only this module speaks IMAP. It never decides anything about a message; it reports
what the server holds and carries out the disposal that ``intake`` asks for *after* the
ledger has committed. Every server or network failure surfaces as ``TransientError``
(blame the server: retry with backoff), except a login the server rejects
(``LoginRejected``: the same credentials will not work on the next try); an empty or short
FETCH answer is an error, never "no mail".
"""

from __future__ import annotations

import contextlib
import imaplib
import socket
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

import imapclient
import imapclient.exceptions
import structlog

from gateway.clock import utcnow
from gateway.config import MailboxConfig
from gateway.errors import LoginRejected, TransientError
from gateway.inbound import idle
from gateway.inbound.arrival import Arrival
from gateway.inbound.failures import explain

log = structlog.get_logger("poststelle.fetch")
DONE_KEYWORD = "$PoststelleDone"
IMAP_ERRORS: tuple[type[BaseException], ...] = (
    imaplib.IMAP4.error,
    imaplib.IMAP4.abort,
    imapclient.exceptions.IMAPClientError,
    OSError,
    socket.timeout,
    ssl.SSLError,
    EOFError,
)


@dataclass(frozen=True)
class Fetched:
    uid: int
    raw: bytes
    arrival: Arrival


#: Bytes per partial fetch of a message streamed to disk (``fetch_stream``).
STREAM_CHUNK = 512 * 1024


def _arrival(item: dict[bytes, Any]) -> Arrival:
    """INTERNALDATE with the offset the server gave, and now as the fetch moment.

    The client runs with ``normalise_times = False`` (see ``connect``): imapclient's default
    converts to the host's local time and drops the zone, which loses what the server said.
    A missing or zone-less INTERNALDATE is not guessed: the arrival is then unknown and the
    fetch moment stands in for it, recorded as such. The offset is kept as a plain
    ``datetime.timezone`` so that the value pickles into the analysis workers.
    """
    when = item.get(b"INTERNALDATE")
    fetched = utcnow()
    if not isinstance(when, datetime) or when.utcoffset() is None:
        return Arrival(received=None, fetched=fetched)
    offset = when.utcoffset()
    assert offset is not None
    return Arrival(received=when.replace(tzinfo=timezone(offset)), fetched=fetched)


def chunks(uids: Sequence[int], size: int = 500) -> Iterator[list[int]]:
    """UID lists short enough for any server's command-line limit (imapclient sends them uncompressed)."""
    for i in range(0, len(uids), size):
        yield list(uids[i : i + size])


def ssl_context(cfg: MailboxConfig) -> ssl.SSLContext:
    """Certificate and host name verification always on; a private CA may be added."""
    ctx = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def quiet_protocol_trace(client: imapclient.IMAPClient) -> None:
    """Turn off the protocol trace imapclient switches on in imaplib.

    imapclient sets imaplib's debug level to 5 and sends the trace to its
    ``imapclient.imaplib`` logger. At that level imaplib formats the ``repr`` of every
    literal it receives, twice (once as it arrives, once when the command's answer is
    collected), whether or not anything logs at DEBUG, which costs more CPU than the
    rest of fetching. The trace would also log the LOGIN
    command with the password and every message's content at DEBUG, which the gateway's
    logs must never hold. imapclient's own debug lines (commands, truncated) remain.
    """
    imap = getattr(client, "_imap", None)
    if imap is not None:
        imap.debug = 0


class MailboxSession:
    """A logged-in IMAP connection with the configured folder selected read-write."""

    def __init__(self, cfg: MailboxConfig) -> None:
        self.cfg = cfg
        self.client: imapclient.IMAPClient | None = None
        self.uidvalidity = 0
        self.capabilities: set[bytes] = set()

    # -- connection -----------------------------------------------------------------------
    def connect(self) -> MailboxSession:
        """Connect, log in, make sure the disposal folders exist and select the folder.

        A failure says which mailbox, which setting and the likely fix (``failures.explain``):
        ``LoginRejected`` when the server refused the credentials, else ``TransientError``.
        """
        cfg = self.cfg
        step = "connecting"
        try:
            client = imapclient.IMAPClient(
                cfg.host,
                port=cfg.port,
                ssl=cfg.security == "tls",
                ssl_context=ssl_context(cfg) if cfg.security == "tls" else None,
                timeout=cfg.timeout,
            )
            self.client = client
            quiet_protocol_trace(client)
            client.normalise_times = False  # INTERNALDATE with the server's zone (``_arrival``)
            if cfg.security == "starttls":
                step = "starting TLS (STARTTLS)"
                client.starttls(ssl_context(cfg))
            step = "logging in"
            client.login(cfg.username, cfg.password.reveal())
            step = "preparing the folders"
            self.capabilities = set(client.capabilities())
            for folder in (cfg.processed_folder, cfg.quarantine_folder):
                if not client.folder_exists(folder):
                    client.create_folder(folder)
            step = f"selecting the folder {cfg.folder!r}"
            self.select()
        except IMAP_ERRORS as exc:
            self.close()
            failure = explain(exc, cfg, step=step)
            text = cfg.password.mask(failure.text)
            if failure.permanent:
                raise LoginRejected(text) from None
            raise TransientError(text) from None
        return self

    def select(self) -> None:
        """Select the folder; its message count is not news (the caller looks at the whole folder next)."""
        info = self._c.select_folder(self.cfg.folder)
        self.uidvalidity = int(info[b"UIDVALIDITY"])
        self.forget_news()

    def __enter__(self) -> MailboxSession:
        return self.connect() if self.client is None else self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.close()

    def close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        try:
            client.logout()
        except Exception:  # noqa: BLE001 - closing a broken connection must not raise
            with contextlib.suppress(Exception):
                client.shutdown()

    def abort(self) -> None:
        """Drop the connection without LOGOUT (a stopping daemon); the server sees it close."""
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.shutdown()

    @property
    def _c(self) -> imapclient.IMAPClient:
        if self.client is None:
            raise TransientError("not connected")
        return self.client

    def has(self, cap: str) -> bool:
        return cap.encode() in self.capabilities

    # -- reading --------------------------------------------------------------------------
    def list_uids(self) -> list[int]:
        """UIDs still waiting in the folder (those not yet disposed of)."""
        try:
            criteria: list[Any] = ["UNKEYWORD", DONE_KEYWORD] if not self._can_remove() else ["ALL"]
            return sorted(int(u) for u in self._c.search(criteria))
        except IMAP_ERRORS as exc:
            raise TransientError(f"SEARCH failed: {type(exc).__name__}: {exc}") from None

    def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        """RFC822.SIZE per UID, so that batches can be bounded in bytes, not just in count."""
        out: dict[int, int] = {}
        for chunk in chunks(uids):
            try:
                resp = self._c.fetch(chunk, ["RFC822.SIZE"])
            except IMAP_ERRORS as exc:
                raise TransientError(f"FETCH RFC822.SIZE failed: {type(exc).__name__}: {exc}") from None
            out.update({int(uid): int(item.get(b"RFC822.SIZE", 0)) for uid, item in resp.items()})
        return out

    def fetch(self, uids: Sequence[int]) -> Iterator[Fetched]:
        """BODY.PEEK[] for exactly these UIDs; a missing or empty answer is an error."""
        if not uids:
            return
        try:
            resp = self._c.fetch(list(uids), ["BODY.PEEK[]", "INTERNALDATE"])
        except IMAP_ERRORS as exc:
            raise TransientError(f"FETCH failed: {type(exc).__name__}: {exc}") from None
        missing = [u for u in uids if u not in resp]
        if missing:
            raise TransientError(f"short FETCH answer: {len(missing)} of {len(uids)} UIDs missing (e.g. {missing[0]})")
        for uid in uids:
            item = resp[uid]
            raw = item.get(b"BODY[]")
            if not isinstance(raw, bytes) or not raw:
                raise TransientError(f"empty FETCH answer for UID {uid}")
            yield Fetched(uid=uid, raw=raw, arrival=_arrival(item))

    def fetch_stream(self, uid: int, *, chunk: int = STREAM_CHUNK) -> tuple[Arrival, Iterator[bytes]]:
        """One message's arrival (INTERNALDATE) and its bytes as pieces, never the whole message at once.

        For a message larger than the gateway will hold in memory: each piece is a partial
        fetch ``BODY.PEEK[]<offset.chunk>`` (RFC 3501 6.4.5), asked for only when the
        previous one has been consumed, so memory stays at a few pieces whatever the size.
        The first piece is fetched now, with INTERNALDATE; the message ends with the first
        piece shorter than ``chunk``. The pieces must be consumed on the thread that owns
        the connection, before any other command.
        """
        first, item = self._piece(uid, 0, chunk, extra=["INTERNALDATE"])
        if not first:
            raise TransientError(f"empty FETCH answer for UID {uid}")
        return _arrival(item), self._pieces(uid, first, chunk)

    def _pieces(self, uid: int, piece: bytes, chunk: int) -> Iterator[bytes]:
        offset = 0
        while True:
            n = len(piece)
            offset += n
            yield piece
            if n < chunk:
                return
            del piece  # not held while the next one arrives
            piece, _ = self._piece(uid, offset, chunk)
            if not piece:
                return

    def _piece(self, uid: int, offset: int, chunk: int, extra: Sequence[str] = ()) -> tuple[bytes, dict[bytes, Any]]:
        try:
            resp = self._c.fetch([uid], [f"BODY.PEEK[]<{offset}.{chunk}>", *extra])
        except IMAP_ERRORS as exc:
            raise TransientError(f"FETCH BODY[]<{offset}> failed: {type(exc).__name__}: {exc}") from None
        item = resp.get(uid)
        data = item.get(f"BODY[]<{offset}>".encode()) if item is not None else None
        if item is None or not isinstance(data, bytes):
            raise TransientError(f"short FETCH answer for UID {uid} at offset {offset}")
        return data, item

    # -- disposal -------------------------------------------------------------------------
    def _can_remove(self) -> bool:
        return self.has("MOVE") or self.has("UIDPLUS")

    def dispose(self, uids: Sequence[int], folder: str) -> str:
        """Move ``uids`` to ``folder``: MOVE, else UIDPLUS COPY + UID EXPUNGE, else a keyword.

        Returns the method used (recorded in the audit trail).
        """
        if not uids:
            return "none"
        c = self._c
        method = "move" if self.has("MOVE") else "copy-expunge" if self.has("UIDPLUS") else "keyword"
        try:
            for chunk in chunks(uids):
                if method == "move":
                    c.move(chunk, folder)
                elif method == "copy-expunge":
                    c.copy(chunk, folder)
                    c.add_flags(chunk, [imapclient.DELETED])
                    c.uid_expunge(chunk)
                else:
                    c.copy(chunk, folder)
                    c.add_flags(chunk, [DONE_KEYWORD.encode()])
            return method
        except IMAP_ERRORS as exc:
            raise TransientError(f"disposing of {len(uids)} messages failed: {type(exc).__name__}: {exc}") from None

    # -- the Sent folder (outbound) ---------------------------------------------------------
    def sent_folder(self) -> str:
        """The folder flagged ``\\Sent`` (RFC 6154), else ``Sent`` (created when missing)."""
        c = self._c
        try:
            for flags, _, name in c.list_folders():
                if b"\\Sent" in flags:
                    return str(name)
            if not c.folder_exists("Sent"):
                c.create_folder("Sent")
            return "Sent"
        except IMAP_ERRORS as exc:
            raise TransientError(f"finding the Sent folder failed: {type(exc).__name__}: {exc}") from None

    def append_once(self, folder: str, raw: bytes, message_id: str) -> bool:
        """APPEND ``raw`` (seen) unless a message with ``message_id`` is there; True if appended.

        The search makes a repeat after a crash harmless: the copy is not made twice.
        """
        c = self._c
        try:
            c.select_folder(folder)
            if c.search(["HEADER", "Message-ID", f"<{message_id}>"]):
                return False
            c.append(folder, raw, flags=[imapclient.SEEN])
            return True
        except IMAP_ERRORS as exc:
            raise TransientError(f"APPEND to {folder} failed: {type(exc).__name__}: {exc}") from None
        finally:
            with contextlib.suppress(*IMAP_ERRORS):
                self.select()

    # -- waiting --------------------------------------------------------------------------
    def idling(self) -> bool:
        """Whether this mailbox waits with IDLE (enabled and offered), else by polling."""
        return self.cfg.idle and self.has("IDLE")

    def forget_news(self) -> None:
        """Called before the folder is searched: news announced so far is in that answer."""
        if self.client is not None:
            idle.forget_news(self.client._imap)

    def has_news(self) -> bool:
        """Whether the server announced new messages (EXISTS, RECENT) since ``forget_news``."""
        return self.client is not None and idle.has_news(self.client._imap)

    def wait_for_mail(self, renew: float, *, wake_fd: int | None = None) -> idle.Wake:
        """IDLE until news (``mail``), ``renew`` seconds (``renew``) or ``wake_fd`` readable (``stop``).

        News that came with an earlier answer returns ``mail`` at once (``gateway.inbound.idle``).
        At ``stop`` the connection is dropped without DONE or LOGOUT: with hundreds of
        mailboxes, two round trips each made a stop take seconds, and the server loses
        nothing by a closed IDLE.
        Without IDLE: ``mail`` when news is known, else a NOOP and ``renew`` (the caller
        sleeps its poll interval).
        """
        c = self._c
        try:
            if self.idling():
                why = idle.idle(c._imap, renew=renew, wake_fd=wake_fd, timeout=self.cfg.timeout)
                if why == "stop":
                    self.abort()
                return why
            if self.has_news():
                return "mail"
            c.noop()
            return "mail" if self.has_news() else "renew"
        except IMAP_ERRORS as exc:
            raise TransientError(f"IDLE/NOOP failed: {type(exc).__name__}: {exc}") from None

    def noop(self) -> None:
        try:
            self._c.noop()
        except IMAP_ERRORS as exc:
            raise TransientError(f"NOOP failed: {exc}") from None
