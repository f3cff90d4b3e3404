"""A loopback proxy for plain IMAP that lets a test see the client's commands and rewrite the server's lines.

Why: the IDLE races of issue 15 depend on which bytes arrive in which read (an EXISTS in
the same packet as ``+ idling``, or inside the answer to a SEARCH). A real Dovecot decides
that by timing; the proxy decides it by construction. ``on_command`` runs on each complete
command line *before* it is forwarded (so the test can change the mailbox at exactly that
point), and ``rewrite`` gets every batch of complete server lines and returns the lines to
send, in one ``sendall`` (one read for the client on loopback).

Message bodies travel as literals through the same line splitter; the tests' rewrites
match only status lines that no test message contains.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

Rewrite = Callable[[list[bytes]], list[bytes]]
OnCommand = Callable[[bytes], None]


def _keep(lines: list[bytes]) -> list[bytes]:
    return lines


class LineProxy:
    """Forward ``127.0.0.1:port`` to a loopback IMAP port, one pair of threads per connection."""

    def __init__(
        self, target_port: int, *, rewrite: Rewrite = _keep, on_command: OnCommand | None = None, cut_first: int = 0
    ) -> None:
        self.target_port = target_port
        self.cut_first = cut_first  # this many connections are closed at once, before any greeting
        self.rewrite = rewrite
        self.on_command = on_command
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="line-proxy", daemon=True)

    def __enter__(self) -> LineProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cut(self) -> None:
        """Close every live connection (the client sees the end of the stream); keep accepting new ones."""
        with self._lock:
            socks, self._socks = self._socks, []
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            socks, self._socks = self._socks, []
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.cut_first > 0:
                self.cut_first -= 1
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        pending = b""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                pending += data
                cut = pending.rfind(b"\r\n") + 2
                if cut < 2:
                    continue
                lines, pending = pending[:cut].split(b"\r\n")[:-1], pending[cut:]
                if from_client:
                    if self.on_command is not None:
                        for line in lines:
                            self.on_command(line)
                else:
                    lines = self.rewrite(lines)
                if lines:
                    dst.sendall(b"".join(line + b"\r\n" for line in lines))
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
