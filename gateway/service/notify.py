"""The systemd notification protocol (``sd_notify``), spoken without a library.

``Type=notify`` lets systemd tell "started" from "ready": the unit counts as up only once
the daemon says ``READY=1``, so ``systemctl start`` returns after the mailboxes are being
read, and a daemon that dies during start-up fails the start instead of a later poll.
The protocol is one datagram of ``KEY=value`` lines to the ``AF_UNIX`` socket named in
``$NOTIFY_SOCKET`` (a path, or an abstract name written with a leading ``@``). It is
small enough to speak here, so no new dependency carries it.

Without ``$NOTIFY_SOCKET`` (a terminal, ``run --once``, the tests) every call is a no-op
that returns ``False``: notifying is never a reason to fail. A send that fails is logged
once per kind and otherwise ignored for the same reason.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping

import structlog

log = structlog.get_logger("poststelle.notify")
MAX_STATUS = 1000  # characters; systemctl status shows one line, a long one helps nobody


class Notifier:
    """One daemon's channel to the service manager, read from the environment once."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = _watchdog_interval(env)
        self._lock = threading.Lock()
        self._warned: set[str] = set()

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; ``True`` when the manager got them."""
        if self.address is None:
            return False
        payload = "\n".join(f"{key}={value}" for key, value in fields.items()).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(payload, self.address)
        except OSError as exc:
            kind = ",".join(fields)
            with self._lock:
                first = kind not in self._warned
                self._warned.add(kind)
            if first:
                log.warning("could not notify the service manager", fields=kind, error=exc.strerror or str(exc))
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """The daemon serves: intake and outbox threads run (also the end of a reload)."""
        fields = {"READY": "1"}
        if status:
            fields["STATUS"] = _one_line(status)
        return self.send(**fields)

    def reloading(self) -> bool:
        """A configuration reload begins; ``ready()`` ends it.

        ``MONOTONIC_USEC`` is what newer managers (``Type=notify-reload``) require with it;
        older ones ignore the extra field.
        """
        return self.send(RELOADING="1", MONOTONIC_USEC=str(time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000))

    def stopping(self) -> bool:
        """The daemon winds down: finishing the message in hand, sealing the trail."""
        return self.send(STOPPING="1", STATUS="stopping")

    def status(self, text: str) -> bool:
        """Free text that ``systemctl status`` shows under the unit."""
        return self.send(STATUS=_one_line(text))

    def watchdog(self) -> bool:
        """Tell the manager this process still works; only the supervisor calls it."""
        return self.send(WATCHDOG="1")


def _address(value: str) -> str | bytes | None:
    """The socket address: a path, or ``@name`` for the abstract namespace (a leading NUL)."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode("utf-8")
    if not value.startswith("/"):
        return None  # vsock and other families: not used by systemd for services here
    return value


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds, as sd_watchdog_enabled(3) advises; ``None`` when off.

    ``$WATCHDOG_PID`` names the process meant; a child that inherited the variables
    (a gpg started by us) must not ping in our name.
    """
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_STATUS else flat[: MAX_STATUS - 1] + "…"


def default() -> Notifier:
    """A notifier for this process's environment as it is now (cheap: two variables read)."""
    return Notifier()


def ready(status: str | None = None) -> bool:
    """``READY=1`` through the process's notifier (start-up done, or a reload done)."""
    return default().ready(status)


def reloading() -> bool:
    """``RELOADING=1`` through the process's notifier, before a new configuration is read."""
    return default().reloading()


def stopping() -> bool:
    """``STOPPING=1`` through the process's notifier."""
    return default().stopping()


def status(text: str) -> bool:
    """``STATUS=`` through the process's notifier."""
    return default().status(text)
