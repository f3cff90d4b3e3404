"""The running daemon's state, kept in memory and as a small JSON file for ``poststelle status``.

The ledger says what happened to each message; this says what the process is doing now:
its pid, since when, with which configuration, per mailbox whether it is connected and
idling, its last success and error, the outbox's figures, and why the daemon stopped.

The file is rewritten only when something an operator would look for changes (a mailbox
connects, fails, recovers or files mail; the outbox sends; the configuration is
reloaded; the daemon stops), never because time passed: an idle daemon with hundreds of
mailboxes writes nothing. A poll that found nothing updates ``last_success`` in memory
(where the metrics endpoint reads it) and reaches the file with the next change. The
file is not evidence, so it is replaced atomically but not flushed: a crash may leave the
version before, never a torn one.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog

from gateway.clock import iso, utcnow
from gateway.filing.durable import atomic_write

log = structlog.get_logger("poststelle.daemon")

MailboxPhase = Literal["starting", "ok", "error", "auth-failed"]


@dataclass
class MailboxView:
    """One mailbox as its worker last reported it."""

    state: MailboxPhase = "starting"
    connected: bool = False
    idle: bool = False
    last_success: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None


@dataclass
class OutboxView:
    """The outbox thread's figures since the daemon started."""

    state: Literal["starting", "ok", "error"] = "starting"
    sent: int = 0
    deferred: int = 0
    bounced: int = 0
    last_error: str | None = None
    next_attempt_at: str | None = None


@dataclass
class _Document:
    pid: int
    started_at: str
    config_sha256: str
    version: str
    running: bool = True
    stopped_at: str | None = None
    stopped_because: str | None = None
    mailboxes: dict[str, MailboxView] = field(default_factory=dict)
    outbox: OutboxView | None = None


def _material(doc: dict[str, Any]) -> dict[str, Any]:
    """The document without what changes by time alone (a quiet poll's ``last_success``)."""
    out = dict(doc)
    mailboxes = doc["mailboxes"].items()
    out["mailboxes"] = {name: {k: v for k, v in mb.items() if k != "last_success"} for name, mb in mailboxes}
    return out


class StatusBoard:
    """Thread-safe: every mailbox worker and the outbox thread report here; ``path`` None keeps it in memory."""

    def __init__(self, path: Path | None, *, pid: int, config_sha256: str, version: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._doc = _Document(pid=pid, started_at=iso(utcnow()), config_sha256=config_sha256, version=version)
        self._written: dict[str, Any] | None = None
        self._write_failed = False

    # -- reports from the workers ----------------------------------------------------------------------
    def register(self, names: list[str]) -> None:
        """List mailboxes as starting, without a write of its own (their first connection writes)."""
        with self._lock:
            for name in names:
                self._doc.mailboxes.setdefault(name, MailboxView())

    def mailbox(self, name: str, **changes: Any) -> None:
        """Set fields of one mailbox's view (``MailboxView``'s names); written when that changes anything."""
        with self._lock:
            view = self._doc.mailboxes.setdefault(name, MailboxView())
            for key, value in changes.items():
                setattr(view, key, value)
            self._save(force=False)

    def polled(self, name: str, *, idle: bool, worked: bool) -> None:
        """A pass over the mailbox succeeded; ``worked``: it filed or moved mail (then the file is refreshed too)."""
        with self._lock:
            view = self._doc.mailboxes.setdefault(name, MailboxView())
            view.state, view.connected, view.idle = "ok", True, idle
            view.last_success = iso(utcnow())
            view.last_error = view.last_error_at = None
            self._save(force=worked)

    def failed(self, name: str, state: MailboxPhase, error: str) -> None:
        with self._lock:
            view = self._doc.mailboxes.setdefault(name, MailboxView())
            view.state, view.connected, view.idle = state, False, False
            view.last_error, view.last_error_at = error, iso(utcnow())
            self._save(force=True)

    def forget(self, name: str) -> None:
        """A mailbox the reloaded configuration no longer has."""
        with self._lock:
            self._doc.mailboxes.pop(name, None)
            self._save(force=False)

    def outbox(
        self,
        *,
        sent: int = 0,
        deferred: int = 0,
        bounced: int = 0,
        next_attempt_at: str | None = None,
        error: str | None = None,
    ) -> None:
        """One outbox pass: its figures are added; ``error`` marks a failed pass."""
        with self._lock:
            view = self._doc.outbox or OutboxView()
            self._doc.outbox = view
            if error is not None:
                view.state, view.last_error = "error", error
            else:
                view.state, view.last_error = "ok", None
                view.sent += sent
                view.deferred += deferred
                view.bounced += bounced
                view.next_attempt_at = next_attempt_at
            self._save(force=False)

    def no_outbox(self) -> None:
        with self._lock:
            self._doc.outbox = None
            self._save(force=False)

    def started(self) -> None:
        """The first write: from now on ``status`` sees this run (the signal handlers are in place)."""
        with self._lock:
            self._save(force=True)

    def configured(self, sha256: str) -> None:
        with self._lock:
            self._doc.config_sha256 = sha256
            self._save(force=False)

    def stopped(self, because: str) -> None:
        """The daemon ends: the file keeps saying why, for ``status`` after the process is gone."""
        with self._lock:
            self._doc.running = False
            self._doc.stopped_at = iso(utcnow())
            self._doc.stopped_because = because
            for view in self._doc.mailboxes.values():
                view.connected = view.idle = False
            self._save(force=True)

    # -- reading ---------------------------------------------------------------------------------------
    def view(self) -> dict[str, Any]:
        """The current state, ``last_success`` up to the last poll (what the metrics serve)."""
        with self._lock:
            return asdict(self._doc)

    def _save(self, *, force: bool) -> None:
        if self.path is None:
            return
        doc = asdict(self._doc)
        material = _material(doc)
        if not force and material == self._written:
            return
        try:
            atomic_write(self.path, json.dumps(doc, indent=2).encode("utf-8") + b"\n", overwrite=True, sync=False)
        except OSError as exc:  # a full disk must not stop a worker; the log and the ledger say the rest
            if not self._write_failed:
                log.warning("could not write the status file", path=str(self.path), error=exc.strerror or str(exc))
            self._write_failed = True
            return
        self._write_failed = False
        self._written = material


def read_status(path: Path) -> dict[str, Any] | None:
    """The snapshot as the daemon last wrote it; None when there is none (or it is unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
