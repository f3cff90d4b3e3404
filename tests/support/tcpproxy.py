"""A loopback TCP proxy that injects network faults between an IMAP client and its server.

Why: the gateway must survive connections that die mid-command (mid-FETCH literal, during
IDLE, at connect). Killing the server cannot produce those cuts at a chosen byte; a proxy in
between can, deterministically.

Design: one background thread runs a ``selectors`` loop over non-blocking sockets and owns
every socket. Control calls (``drop_all``, ``drop_after(live=True)``, ``stop``) are queued
to that thread and wait until it has applied them, so when they return the effect has
happened, and no socket is ever closed under another thread's feet (no fd-reuse races).
Faults close with an RST (SO_LINGER 0), like a broken network path, not a polite FIN.

Byte-pattern triggers (``cut_on``) place a fault at a protocol step rather than a byte
count: "cut once the server has sent ``BODY[] {`` and 1000 bytes more" (inside a FETCH
literal), "cut before the client's ``UID MOVE`` reaches the server", "stop forwarding once
the server has sent the tagged OK". A trigger sees the stream, not the chunks it arrives
in (a pattern split across reads is found), fires a set number of times over all
connections and then disarms itself, so the proxy heals by itself and a retry gets through.
"""

from __future__ import annotations

import contextlib
import ipaddress
import queue
import selectors
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

__all__ = ["TcpProxy", "Trigger"]

_CHUNK = 65536
_HIGH_WATER = 256 * 1024  # stop reading a side while its peer has this much unsent
_RST = struct.pack("ii", 1, 0)
_TAIL = 512  # bytes of each direction kept to find a pattern split across reads (patterns are shorter)
Direction = Literal["s2c", "c2s"]
Action = Literal["cut", "stall"]


@dataclass
class Trigger:
    """A fault armed on a byte pattern in one direction of the stream.

    ``at="before"``: the bytes before the pattern are forwarded, the pattern is not (when
    the pattern arrives split over two reads, its first part has already gone: the peer
    never sees it whole either way).
    ``at="after"``: the pattern and ``extra`` bytes more are forwarded. Then ``action``:
    ``cut`` (flush what is owed to both sides, then RST both) or ``stall`` (stop
    forwarding both ways and keep the sockets open: the client's own timeout must end it).
    ``fired`` counts the connections it hit; it disarms after ``times``.
    """

    pattern: bytes
    direction: Direction
    at: Literal["before", "after"]
    extra: int
    action: Action
    times: int
    fired: int = 0

    @property
    def armed(self) -> bool:
        return self.fired < self.times


def _is_loopback(host: str) -> bool:
    """Whether every address ``host`` resolves to is loopback; the proxy must not reach out."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def _match(window: bytes, pattern: bytes, old: int) -> int | None:
    """Where ``pattern`` first occurs in ``window`` ending in its new part (after ``old`` bytes)."""
    at = window.find(pattern)
    while at >= 0 and at + len(pattern) <= old:
        at = window.find(pattern, at + 1)
    return at if at >= 0 else None


def _abort_socket(sock: socket.socket) -> None:
    """Close with RST: the peer sees ECONNRESET (or EOF) at once, like a dead path."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
    sock.close()


class _End:
    """One side of a proxied connection: its socket and the bytes waiting to be sent to it."""

    def __init__(self, sock: socket.socket, conn: _Conn, is_client: bool) -> None:
        self.sock = sock
        self.conn = conn
        self.is_client = is_client
        self.out = bytearray()
        self.eof_in = False  # we read EOF from this socket
        self.shut_out = False  # we sent FIN to this socket
        self.peer: _End = self  # set right after both ends exist


class _Conn:
    """A client connection and its upstream twin, with the server->client byte budget."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = _End(client, self, is_client=True)
        self.upstream = _End(upstream, self, is_client=False)
        self.client.peer, self.upstream.peer = self.upstream, self.client
        self.s2c_bytes = 0
        self.c2s_bytes = 0
        self.cut_at: int | None = None  # absolute s2c byte count at which to cut
        self.c2s_limit: tuple[int, Action] | None = None  # absolute c2s count, then this fault
        self.s2c_action: Action = "cut"  # what reaching ``cut_at`` does
        self.cutting = False  # budget reached: flush what is owed, then RST
        self.stalled = False  # budget reached: forward nothing more, either way
        self.tails: dict[Direction, bytes] = {"s2c": b"", "c2s": b""}
        self.closed = False


class TcpProxy:
    """Forward ``host:port`` to a loopback target, with faults on demand.

    ``drop_all`` kills live connections, ``drop_after`` cuts connections after N bytes from
    server to client (mid-response), ``refuse`` turns new connections away. Stops by itself
    at interpreter exit (daemon thread), but call ``stop`` or use ``with``.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        if not _is_loopback(target_host):
            raise ValueError(f"target {target_host!r} is not a loopback address")
        self.target_host = target_host
        self.target_port = target_port
        self.host = "127.0.0.1"
        self.port = 0
        self._lock = threading.Lock()
        self._limit = 0  # for new connections; 0 = unarmed
        self._refusing = False
        self._accepted = 0
        self._refused = 0
        self._conns: set[_Conn] = set()
        self._triggers: list[Trigger] = []
        self._commands: queue.SimpleQueue[tuple[Callable[[], None], threading.Event]] = queue.SimpleQueue()
        self._sel: selectors.DefaultSelector | None = None
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> TcpProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Bind a free loopback port (kept across stop/start) and start forwarding."""
        if self._thread is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(listener, selectors.EVENT_READ)
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"TcpProxy:{self.port}->{self.target_port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """RST every connection, close the listener, join the thread."""
        thread = self._thread
        if thread is None:
            return
        self._call(self._shutdown)
        thread.join(timeout=5.0)
        self._thread = None
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._wake_r = self._wake_w = None
        if self._sel is not None:
            self._sel.close()
            self._sel = None

    # ----------------------------------------------------------------- faults

    def drop_all(self) -> None:
        """Abruptly close every live connection, both sides (returns after they are closed)."""
        self._call(self._abort_all)

    def drop_after(self, server_to_client_bytes: int, *, live: bool = False) -> None:
        """Cut connections once this many bytes went server->client on each of them.

        Applies to connections accepted from now on (count includes the greeting). With
        ``live=True`` also arms the live connections, counting from now (log in first, then
        cut in the middle of the next big FETCH). The exact budget reaches the client before
        the RST. ``drop_after(0)`` disarms new and live connections. Bytes are counted on the
        wire: behind TLS that is ciphertext, so pick budgets with headroom.
        """
        if server_to_client_bytes < 0:
            raise ValueError("byte count must be >= 0")
        with self._lock:
            self._limit = server_to_client_bytes
        if live or server_to_client_bytes == 0:

            def arm_live() -> None:
                for conn in list(self._conns):
                    conn.cut_at = conn.s2c_bytes + server_to_client_bytes if server_to_client_bytes else None
                    self._update(conn)

            self._call(arm_live)

    def cut_on(
        self,
        pattern: bytes,
        *,
        direction: Direction = "s2c",
        at: Literal["before", "after"] = "after",
        extra: int = 0,
        action: Action = "cut",
        times: int = 1,
    ) -> Trigger:
        """Arm a fault at the first ``pattern`` seen in ``direction`` (see ``Trigger``).

        Applies to live and new connections; only bytes read from now on are searched.
        Returns the trigger, whose ``fired`` says whether the fault really happened.
        """
        if not pattern or len(pattern) >= _TAIL:
            raise ValueError(f"pattern must be 1..{_TAIL - 1} bytes")
        if extra < 0 or times < 1:
            raise ValueError("extra must be >= 0 and times >= 1")
        trigger = Trigger(pattern, direction, at, extra, action, times)
        with self._lock:
            self._triggers.append(trigger)
        return trigger

    def refuse(self, on: bool) -> None:
        """While on, accept and immediately RST new connections (live ones are untouched)."""
        with self._lock:
            self._refusing = on

    def reset(self) -> None:
        """Back to a faithful proxy: no refusing, no byte budgets, no triggers (live connections stay)."""
        self.refuse(False)
        with self._lock:
            self._triggers.clear()
        self.drop_after(0)

    @property
    def accepted(self) -> int:
        """Connections accepted and forwarded so far (not counting refused ones)."""
        with self._lock:
            return self._accepted

    @property
    def refused(self) -> int:
        """Connections turned away by ``refuse`` or an unreachable target."""
        with self._lock:
            return self._refused

    @property
    def active(self) -> int:
        """Live forwarded connections right now."""
        with self._lock:
            return len(self._conns)

    # ----------------------------------------------------------------- loop thread

    def _call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop thread and wait for it, or directly when not running."""
        thread = self._thread
        if thread is None or not thread.is_alive() or thread is threading.current_thread():
            fn()
            return
        done = threading.Event()
        self._commands.put((fn, done))
        wake = self._wake_w
        if wake is not None:
            with contextlib.suppress(OSError):
                wake.send(b"x")
        if not done.wait(timeout=5.0):
            raise TimeoutError("TcpProxy loop did not answer")

    def _run(self) -> None:
        sel = self._sel
        if sel is None:
            return
        try:
            while not self._stopping:
                for key, mask in sel.select():
                    if key.fileobj is self._wake_r:
                        self._drain_commands()
                    elif key.fileobj is self._listener:
                        self._accept()
                    elif isinstance(key.data, _End) and not key.data.conn.closed:
                        self._service(key.data, mask)
                    if self._stopping:
                        break
        finally:
            self._drain_commands()
            self._shutdown()

    def _drain_commands(self) -> None:
        if self._wake_r is not None:
            with contextlib.suppress(OSError):
                while self._wake_r.recv(4096):
                    pass
        while True:
            try:
                fn, done = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                fn()
            finally:
                done.set()

    def _shutdown(self) -> None:
        self._stopping = True
        self._abort_all()
        if self._listener is not None:
            if self._sel is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._sel.unregister(self._listener)
            self._listener.close()
            self._listener = None

    def _accept(self) -> None:
        while self._listener is not None and self._sel is not None:
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            with self._lock:
                refusing, limit = self._refusing, self._limit
            if refusing:
                with self._lock:
                    self._refused += 1
                _abort_socket(client)
                continue
            try:
                upstream = socket.create_connection((self.target_host, self.target_port), timeout=5.0)
            except OSError:
                with self._lock:
                    self._refused += 1
                _abort_socket(client)
                continue
            for sock in (client, upstream):
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(client, upstream)
            conn.cut_at = limit or None
            with self._lock:
                self._conns.add(conn)
                self._accepted += 1
            self._sel.register(client, selectors.EVENT_READ, conn.client)
            self._sel.register(upstream, selectors.EVENT_READ, conn.upstream)

    def _service(self, end: _End, mask: int) -> None:
        conn = end.conn
        try:
            if mask & selectors.EVENT_WRITE:
                self._flush(end)
            if mask & selectors.EVENT_READ and not conn.closed:
                self._read(end)
        except OSError:
            self._abort(conn)
            return
        if not conn.closed:
            self._after_io(conn)

    def _read(self, end: _End) -> None:
        conn = end.conn
        try:
            data = end.sock.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            end.eof_in = True
            return
        direction: Direction = "c2s" if end.is_client else "s2c"
        self._arm_from_triggers(conn, direction, data)
        if end.is_client:
            if conn.c2s_limit is not None:
                limit, action = conn.c2s_limit
                room = limit - conn.c2s_bytes
                if room <= len(data):
                    data = data[: max(room, 0)]
                    self._fault(conn, action)
            conn.c2s_bytes += len(data)
        else:
            if conn.cut_at is not None:
                room = conn.cut_at - conn.s2c_bytes
                if room <= len(data):
                    data = data[: max(room, 0)]
                    self._fault(conn, conn.s2c_action)
            conn.s2c_bytes += len(data)
        end.peer.out += data
        self._flush(end.peer)

    def _fault(self, conn: _Conn, action: Action) -> None:
        if action == "stall":
            conn.stalled = True
        else:
            conn.cutting = True

    def _arm_from_triggers(self, conn: _Conn, direction: Direction, data: bytes) -> None:
        """Turn the earliest matching trigger in ``data`` into a byte budget for this connection."""
        tail = conn.tails[direction]
        with self._lock:
            idle = not any(t.armed and t.direction == direction for t in self._triggers)
        if idle:  # nothing to look for: keep the tail only (a trigger armed later sees what follows)
            conn.tails[direction] = (tail + data[-(_TAIL - 1) :])[-(_TAIL - 1) :]
            return
        window = tail + data
        conn.tails[direction] = window[-(_TAIL - 1) :]
        sent = conn.c2s_bytes if direction == "c2s" else conn.s2c_bytes
        best: tuple[int, Trigger] | None = None
        with self._lock:
            for trigger in self._triggers:
                if trigger.direction != direction or not trigger.armed:
                    continue
                at = _match(window, trigger.pattern, len(tail))
                if at is None:
                    continue
                offset = at if trigger.at == "before" else at + len(trigger.pattern) + trigger.extra
                limit = sent + max(offset - len(tail), 0)
                if best is None or limit < best[0]:
                    best = (limit, trigger)
            if best is None:
                return
            limit, trigger = best
            trigger.fired += 1
        if direction == "c2s":
            conn.c2s_limit = (limit, trigger.action)
        else:
            conn.cut_at, conn.s2c_action = limit, trigger.action

    def _flush(self, end: _End) -> None:
        while end.out:
            try:
                sent = end.sock.send(end.out)
            except (BlockingIOError, InterruptedError):
                return
            del end.out[:sent]

    def _after_io(self, conn: _Conn) -> None:
        """Propagate EOFs, finish cuts and closes, then refresh what we wait for."""
        if conn.cutting and not conn.client.out and not conn.upstream.out:
            self._abort(conn)
            return
        if conn.stalled:
            self._update(conn)
            return
        for end in (conn.client, conn.upstream):
            if end.peer.eof_in and not end.out and not end.shut_out:
                with contextlib.suppress(OSError):
                    end.sock.shutdown(socket.SHUT_WR)
                end.shut_out = True
        if conn.client.shut_out and conn.upstream.shut_out:
            self._close(conn)
            return
        self._update(conn)

    def _update(self, conn: _Conn) -> None:
        if conn.closed:
            return
        if conn.cutting and not conn.client.out and not conn.upstream.out:
            self._abort(conn)
            return
        if self._sel is None:
            return
        for end in (conn.client, conn.upstream):
            events = 0
            reading = not (end.eof_in or conn.cutting or conn.stalled)
            if reading and len(end.peer.out) < _HIGH_WATER:
                events |= selectors.EVENT_READ
            if end.out:
                events |= selectors.EVENT_WRITE
            key = self._sel.get_map().get(end.sock)
            if events and key is None:
                self._sel.register(end.sock, events, end)
            elif events and key is not None and key.events != events:
                self._sel.modify(end.sock, events, end)
            elif not events and key is not None:
                self._sel.unregister(end.sock)

    def _forget(self, conn: _Conn) -> None:
        conn.closed = True
        with self._lock:
            self._conns.discard(conn)
        if self._sel is not None:
            for end in (conn.client, conn.upstream):
                with contextlib.suppress(KeyError, ValueError):
                    self._sel.unregister(end.sock)

    def _abort(self, conn: _Conn) -> None:
        if conn.closed:
            return
        self._forget(conn)
        _abort_socket(conn.client.sock)
        _abort_socket(conn.upstream.sock)

    def _close(self, conn: _Conn) -> None:
        if conn.closed:
            return
        self._forget(conn)
        conn.client.sock.close()
        conn.upstream.sock.close()

    def _abort_all(self) -> None:
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            self._abort(conn)
