"""The daemon: one worker thread per mailbox, and one draining the outbox when ``[smtp]`` is set.

One failing mailbox never stops the others: each worker has its own IMAP session and
store connection, and its errors go to its own status row and log lines. A thread per
mailbox (with a small stack, and no second thread while the mailbox is idle) rather than
one event loop: a server that stalls in the middle of a command then holds only its own
thread, never a worker that other mailboxes wait for. Logins ramp up with at most
``LOGINS_IN_FLIGHT`` at a time, so a server with a login queue does not drop the
connections of a start-up with hundreds of mailboxes. At a stop (SIGTERM) the workers
that are filing finish their batch; the others are not waited for, and a pipe that every
IDLE polls beside its socket ends their waits once the trail is sealed. ``once`` mode
processes what is waiting and returns; the exit status says whether every mailbox
succeeded. Start-up (``service.startup``) takes the state directory's lock first, so a
second daemon on the same state refuses before it writes anything.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import signal
import socket
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Protocol

import structlog

from gateway.clock import iso, utcnow
from gateway.config import Config, MailboxConfig
from gateway.errors import LoginRejected, TransientError
from gateway.inbound.failures import explain
from gateway.inbound.imap import MailboxSession
from gateway.inbound.intake import BatchOutcome, Intake
from gateway.inbound.workers import Analyser
from gateway.records.chain import AuditEvent
from gateway.records.messages import MailboxState
from gateway.records.open import open_store
from gateway.records.store import Store
from gateway.service import outbox_worker
from gateway.service.startup import start
from gateway.unwrap import UnwrapContext

log = structlog.get_logger("poststelle.daemon")
BACKOFF_MIN = 1.0
BACKOFF_MAX = 300.0
ONCE_ATTEMPTS = 3
#: Logins (connect, TLS, LOGIN, SELECT) under way at once; the others wait their turn.
LOGINS_IN_FLIGHT = 20
#: Stack of a mailbox thread: address space, not memory (only touched pages are resident),
#: but hundreds of the default 8 MiB reserve gigabytes for nothing.
MAILBOX_STACK = 1024 * 1024


@dataclass
class RunReport:
    outcomes: dict[str, BatchOutcome] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures


class Listener(Protocol):
    """A service that runs beside the intake in daemon mode (the SMTP submission listener)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Daemon:
    def __init__(self, config: Config, *, once: bool = False, listeners: Sequence[Listener] = ()) -> None:
        self.config = config
        self.once = once
        # Listeners wait for clerks, so a batch run (once) has no use for them.
        self.listeners = () if once else tuple(listeners)
        self.stop = threading.Event()
        self.report = RunReport()
        self._lock = threading.Lock()
        self._logins = threading.BoundedSemaphore(LOGINS_IN_FLIGHT)
        self._in_pass: set[str] = set()  # mailboxes whose worker is processing mail (waited for at a stop)
        # Written once at the end of a run; every IDLE polls the read end beside its socket.
        # Never closed after a run: a worker may still be about to poll it.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self.state_lock = start(config)  # one daemon per state directory; raises before writing anything
        try:
            self.ctx = UnwrapContext.from_config(config)  # key material problems stop start-up here
            # One pool for all mailboxes, started before any worker thread exists; none
            # without mailboxes (a gateway that only sends has nothing to analyse).
            workers = config.processing.analysis_workers if config.mailboxes else 0
            self.analyser = Analyser(config, self.ctx, workers=workers)
        except BaseException:
            self.state_lock.release()
            self._close_wake()
            raise

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        """Stop: workers that are filing finish their pass; the idle ones are woken at the very end.

        Waking hundreds of idle workers at once made them compete with the main thread
        (which seals the trail) for the interpreter; it seals first, then wakes them
        (``_wake_idle``), and a daemon process does not wait for them to go.
        """
        log.info("stop requested", signal=signum)
        self.stop.set()

    def run(self) -> RunReport:
        try:
            return self._run()
        finally:
            self.state_lock.release()
            self._wake_idle()

    def _wake_idle(self) -> None:
        """End every IDLE wait: one byte in the pipe they all poll (and never read)."""
        with contextlib.suppress(OSError):  # a full pipe wakes them as well
            os.write(self._wake_w, b"x")

    def _close_wake(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _run(self) -> RunReport:
        store: Store | None = None
        try:
            store = open_store(self.config)
            store.record_events(
                [
                    AuditEvent(
                        "config-loaded",
                        details={
                            "path": str(self.config.path),
                            "sha256": self.config.sha256,
                            "mailboxes": [m.name for m in self.config.mailboxes],
                            "routes": [r.name for r in self.config.routes],
                            "mode": "once" if self.once else "daemon",
                        },
                    )
                ]
            )
            store.export_jsonl()
        except BaseException:  # a locked or full ledger: nothing started yet, close what is open
            self.analyser.close()
            self.ctx.close()
            if store is not None:
                store.close()
            raise
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        threads = [
            threading.Thread(target=self._worker, args=(mb,), name=f"mailbox-{mb.name}", daemon=True)
            for mb in self.config.mailboxes
        ]
        started: list[Listener] = []
        try:
            for listener in self.listeners:
                listener.start()  # a port that cannot be bound ends the run here, before any mailbox
                started.append(listener)
            previous = threading.stack_size(MAILBOX_STACK)
            try:
                for t in threads:
                    t.start()
            finally:
                threading.stack_size(previous)
            if self.config.smtp is not None:
                outbox = threading.Thread(target=self._outbox, name="outbox", daemon=True)
                threads.append(outbox)
                outbox.start()
            for t in threads:
                while t.is_alive() and not self._may_leave(t):
                    t.join(timeout=0.5)
            while started and not self.stop.wait(0.5):
                pass  # the listeners serve until a stop is requested, mailboxes or not
        finally:
            for listener in reversed(started):
                listener.stop()
            self.analyser.close(kill=self.stop.is_set())  # nothing is in hand once the workers have left
            self.ctx.close()
            store.seal()
            store.export_jsonl()
            store.close()
        if self.once and not self.stop.is_set():
            for mb in self.config.mailboxes:  # a worker ended by something not even an Exception
                if mb.name not in self.report.outcomes and mb.name not in self.report.failures:
                    self.report.failures[mb.name] = "the worker ended without reading the mailbox"
        return self.report

    def _worker(self, mb: MailboxConfig) -> None:
        """Read one mailbox until stopped; every error is logged, recorded and retried.

        ``TransientError`` is the expected kind (the server is away): retried with a
        doubling backoff. ``LoginRejected`` is permanent for these credentials: logged at
        error level once, the mailbox's state becomes ``auth-failed``, and the next try
        comes only after ``auth_retry_interval`` (or a restart), because retrying a wrong
        password every few minutes fills the server's log and may lock the account. Any
        other exception is a fault of ours or of the machine (a locked ledger, a bug): it
        gets a traceback in the log, a ``mailbox-error`` audit entry, and a fresh store and
        intake for the next attempt. Either way the worker lives on, so the mailbox is
        never left unread while the process looks healthy.
        """
        wlog = log.bind(mailbox=mb.name)
        backoff = BACKOFF_MIN
        attempts = 0
        store: Store | None = None
        intake: Intake | None = None
        state = _Condition(mb)
        try:
            while not self.stop.is_set():
                attempts += 1
                login_wait: float | None = None  # set when the login was rejected
                session = MailboxSession(mb)
                try:
                    if store is None:
                        store = open_store(self.config)
                    state.load(store)
                    if intake is None:
                        intake = self._intake(mb, store)
                    if not self._connect(session):
                        return
                    wlog.info("connected", uidvalidity=session.uidvalidity, idle=session.has("IDLE") and mb.idle)
                    while self._enter_pass(mb):
                        try:
                            session.forget_news()  # what was announced so far, the search below sees
                            outcome = intake.run(session)
                            state.succeeded(store, wlog)
                        finally:
                            self._leave_pass(mb)
                        # Only a completed pass resets the backoff: a fault after connecting
                        # (a locked ledger, a bug) must not be retried every second.
                        backoff = BACKOFF_MIN
                        with self._lock:
                            self.report.outcomes.setdefault(mb.name, BatchOutcome()).add(outcome)
                            self.report.failures.pop(mb.name, None)  # a stop after recovery exits 0
                        if outcome.stored or outcome.quarantined or outcome.duplicates:
                            wlog.info(
                                "processed",
                                stored=outcome.stored,
                                quarantined=outcome.quarantined,
                                duplicates=outcome.duplicates,
                                moved=outcome.moved,
                            )
                        if self.once:
                            return
                        self._wait(session, mb)
                    return
                except LoginRejected as exc:
                    text = str(exc)
                    retry_in = None if self.once else mb.auth_retry_interval
                    if state.current == "auth-failed":
                        wlog.warning("mailbox login still rejected", error=text, retry_in=retry_in)
                    else:
                        wlog.error("mailbox login rejected", error=text, retry_in=retry_in)
                    self._record_failure(store, mb, text, retry_in=retry_in, state=state, new="auth-failed")
                    if retry_in is None:
                        return
                    login_wait = retry_in
                except TransientError as exc:
                    retry_in = self._retry_in(attempts, backoff)
                    wlog.warning("mailbox error", error=str(exc), retry_in=retry_in)
                    self._record_failure(store, mb, str(exc), retry_in=retry_in, state=state, new="error")
                except Exception as exc:  # noqa: BLE001 - any fault is recorded and retried, never silent
                    retry_in = self._retry_in(attempts, backoff)
                    text = error_text(exc, mb)
                    wlog.error("mailbox failed unexpectedly", error=text, retry_in=retry_in, exc_info=exc)
                    self._record_failure(
                        store, mb, text, retry_in=retry_in, event=unexpected_event(mb, exc, text), state=state
                    )
                    # Start the next attempt as a restart would: the old connection and
                    # intake may hold state the fault left half-done.
                    _close_quietly(wlog, intake, store)
                    intake, store = None, None
                finally:
                    session.close()
                if login_wait is not None:
                    self.stop.wait(login_wait)
                    continue
                if self._retry_in(attempts, backoff) is None:
                    return
                self.stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
        finally:
            _close_quietly(wlog, intake, store)

    def _outbox(self) -> None:
        def failed(text: str) -> None:
            with self._lock:
                self.report.failures[outbox_worker.NAME] = text

        def passed(_: object) -> None:
            with self._lock:
                self.report.failures.pop(outbox_worker.NAME, None)

        outbox_worker.run_outbox(self.config, self.stop, once=self.once, on_pass=passed, on_failure=failed)

    def _retry_in(self, attempts: int, backoff: float) -> float | None:
        """Seconds until the next attempt; ``None`` when ``once`` mode has made its last."""
        return None if self.once and attempts >= ONCE_ATTEMPTS else backoff

    def _intake(self, mb: MailboxConfig, store: Store) -> Intake:
        return Intake(self.config, mb, store, self.ctx, after_commit=lambda: _export(store), analyser=self.analyser)

    def _record_failure(
        self,
        store: Store | None,
        mb: MailboxConfig,
        text: str,
        *,
        retry_in: float | None,
        state: _Condition,
        new: MailboxState = "error",
        event: AuditEvent | None = None,
    ) -> None:
        """Put the failure in the run report, the mailbox's status and (``event``) the trail.

        The report comes first and cannot fail, so ``run --once`` exits non-zero even when
        the store is what failed; a failure to write the status or the event is logged and
        the worker retries as planned. A change of state (``ok`` to ``error``, ``error`` to
        ``auth-failed``) is recorded with its start time and a ``mailbox-failing`` entry in
        the trail, unless ``event`` (``mailbox-error``) already records this attempt.
        """
        with self._lock:
            self.report.failures[mb.name] = text
        try:
            if store is None:
                store = open_store(self.config)
                try:
                    state.failed(store, text, new, event)
                finally:
                    store.close()
            else:
                state.failed(store, text, new, event)
        except Exception as exc:  # the failure is in the log and the report; retry
            log.error(
                "could not record the mailbox error",
                mailbox=mb.name,
                error=error_text(exc, mb),
                original=text,
                retry_in=retry_in,
                exc_info=exc,
            )

    def _connect(self, session: MailboxSession) -> bool:
        """Log in with at most ``LOGINS_IN_FLIGHT`` others; False when a stop came while waiting."""
        while not self._logins.acquire(timeout=0.25):
            if self.stop.is_set():
                return False
        try:
            if self.stop.is_set():
                return False
            session.connect()
            return True
        finally:
            self._logins.release()

    def _enter_pass(self, mb: MailboxConfig) -> bool:
        """Mark the mailbox as processing unless a stop was requested (then False).

        Marked before the stop is checked, so the main thread, which checks the mark after
        setting the stop, either waits for this pass or sees it never start.
        """
        with self._lock:
            self._in_pass.add(mb.name)
        if self.stop.is_set():
            self._leave_pass(mb)
            return False
        return True

    def _leave_pass(self, mb: MailboxConfig) -> None:
        with self._lock:
            self._in_pass.discard(mb.name)

    def _may_leave(self, thread: threading.Thread) -> bool:
        """After a stop, a mailbox worker that is not processing mail is not waited for.

        It is connecting, waiting or backing off: nothing is in hand, and a login to a
        dead server could otherwise hold the exit for the whole ``timeout``.
        """
        if not self.stop.is_set() or not thread.name.startswith("mailbox-"):
            return False
        with self._lock:
            return thread.name.removeprefix("mailbox-") not in self._in_pass

    def _wait(self, session: MailboxSession, mb: MailboxConfig) -> None:
        """Until news, the IDLE renewal or a stop; without IDLE, the poll interval and a NOOP.

        After the wait the worker looks at the whole folder (UID SEARCH against the
        ledger), whatever woke it: a renewal finds what a lost notification did not say.
        """
        if session.idling():
            session.wait_for_mail(mb.idle_renewal, wake_fd=self._wake_r)
        elif not session.has_news():
            if self.stop.wait(mb.poll_interval):
                return
            session.noop()


def _export(store: Store) -> None:
    """Ship what was just committed to the JSON-lines copy."""
    store.export_jsonl()


ERROR_TEXT_MAX = 500
#: Exceptions that mean the network or the server, said the way ``failures.explain`` says them.
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    ssl.SSLError,
    socket.gaierror,
    TimeoutError,
    ConnectionError,
    imaplib.IMAP4.error,
)


def error_text(exc: BaseException, mb: MailboxConfig) -> str:
    """The error for the status, the report and the trail: bounded, without the password.

    A network or server failure reads as ``failures.explain`` words it (mailbox, setting,
    likely fix); anything else as ``Type: message``, an ``OSError`` by its ``strerror``
    and file instead of ``[Errno n]``. Exception messages are not written for an
    audience; one that happens to contain the mailbox password (a library echoing its
    arguments) must not carry it into the trail.
    """
    if isinstance(exc, NETWORK_ERRORS):
        text = explain(exc, mb, step="reading the mailbox").text
    elif isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        text = f"{type(exc).__name__}: {exc.strerror}{where}"
    else:
        message = str(exc)
        text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    secret = mb.password.reveal()
    if secret:
        text = text.replace(secret, "***")
    return text if len(text) <= ERROR_TEXT_MAX else text[: ERROR_TEXT_MAX - 1] + "…"


def unexpected_event(mb: MailboxConfig, exc: BaseException, text: str) -> AuditEvent:
    """The trail's record that a mailbox worker hit an error nobody planned for."""
    return AuditEvent(
        "mailbox-error",
        details={"mailbox": mb.name, "folder": mb.folder, "error_type": type(exc).__name__, "error": text},
    )


class _Condition:
    """One worker's view of its mailbox's state, so that only changes are written and recorded.

    The stored state is read once per store (a restart may find ``auth-failed`` or
    ``error`` left by the previous process). Entering ``error`` or ``auth-failed`` sets
    ``state_since`` and appends ``mailbox-failing``; the first success afterwards sets
    ``ok``, which clears the status's error, and appends ``mailbox-recovered`` with the
    error it ends, so the history stays in the trail.
    """

    def __init__(self, mb: MailboxConfig) -> None:
        self.mb = mb
        self.current: MailboxState | None = None
        self._loaded = False

    def load(self, store: Store) -> None:
        if self._loaded:
            return
        for status in store.statuses():
            if status.mailbox == self.mb.name:
                self.current = status.state
        self._loaded = True

    def failed(self, store: Store, text: str, new: MailboxState, event: AuditEvent | None) -> None:
        now = iso(utcnow())
        if new == self.current:
            store.set_status(self.mb.name, last_error=text, last_error_at=now)
        else:
            store.set_status(self.mb.name, last_error=text, last_error_at=now, state=new, state_since=now)
        events = [event] if event is not None else []
        if new != self.current and event is None:
            details = {"mailbox": self.mb.name, "folder": self.mb.folder, "state": new, "error": text}
            events.append(AuditEvent("mailbox-failing", details=details))
        if events:
            store.record_events(events)
            store.export_jsonl()
        self.current = new

    def succeeded(self, store: Store, wlog: structlog.typing.FilteringBoundLogger) -> None:
        if self.current == "ok":
            return
        before = next((s for s in store.statuses() if s.mailbox == self.mb.name), None)
        now = iso(utcnow())
        store.set_status(self.mb.name, state="ok", state_since=now)
        if before is not None and before.state in ("error", "auth-failed"):
            wlog.info("mailbox works again", was=before.state, since=before.state_since)
            details = {
                "mailbox": self.mb.name,
                "folder": self.mb.folder,
                "was": before.state,
                "since": before.state_since,
                "last_error": before.last_error,
                "last_error_at": before.last_error_at,
            }
            store.record_events([AuditEvent("mailbox-recovered", details=details)])
            store.export_jsonl()
        self.current = "ok"


def _close_quietly(wlog: structlog.typing.FilteringBoundLogger, intake: Intake | None, store: Store | None) -> None:
    """Close what a worker holds; a failure to close is logged, it must not end the worker."""
    for what, closer in (("intake", intake), ("store", store)):
        if closer is None:
            continue
        try:
            closer.close()
        except Exception as exc:  # noqa: BLE001 - logged; the next attempt opens afresh
            wlog.warning("closing failed", what=what, error=str(exc), exc_info=exc)
