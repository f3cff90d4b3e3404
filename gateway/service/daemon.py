"""The daemon: one worker thread per mailbox, reconnecting with capped backoff.

One failing mailbox never stops the others: each worker has its own IMAP session and
store connection, and its errors go to its own status row and log lines. ``once`` mode
processes what is waiting and returns; the exit status says whether every mailbox
succeeded. Start-up (``service.startup``) takes the state directory's lock first, so a
second daemon on the same state refuses before it writes anything.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field
from types import FrameType

import structlog

from gateway.clock import iso, utcnow
from gateway.config import Config, MailboxConfig
from gateway.errors import TransientError
from gateway.inbound.imap import MailboxSession
from gateway.inbound.intake import BatchOutcome, Intake
from gateway.inbound.workers import Analyser
from gateway.records.chain import AuditEvent
from gateway.records.open import open_store
from gateway.records.store import Store
from gateway.service.startup import start
from gateway.unwrap import UnwrapContext

log = structlog.get_logger("poststelle.daemon")
BACKOFF_MIN = 1.0
BACKOFF_MAX = 300.0
ONCE_ATTEMPTS = 3
IDLE_SLICE = 10.0  # seconds; bounds how long a stop request waits for an IDLE to end


@dataclass
class RunReport:
    outcomes: dict[str, BatchOutcome] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures


class Daemon:
    def __init__(self, config: Config, *, once: bool = False) -> None:
        self.config = config
        self.once = once
        self.stop = threading.Event()
        self.report = RunReport()
        self._lock = threading.Lock()
        self.state_lock = start(config)  # one daemon per state directory; raises before writing anything
        try:
            self.ctx = UnwrapContext.from_config(config)  # key material problems stop start-up here
            # One pool for all mailboxes, started before any worker thread exists.
            self.analyser = Analyser(config, self.ctx, workers=config.processing.analysis_workers)
        except BaseException:
            self.state_lock.release()
            raise

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        log.info("stop requested", signal=signum)
        self.stop.set()

    def run(self) -> RunReport:
        try:
            return self._run()
        finally:
            self.state_lock.release()

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
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.5)
        if self.once and not self.stop.is_set():
            for mb in self.config.mailboxes:  # a worker ended by something not even an Exception
                if mb.name not in self.report.outcomes and mb.name not in self.report.failures:
                    self.report.failures[mb.name] = "the worker ended without reading the mailbox"
        self.analyser.close()
        self.ctx.close()
        store.seal()
        store.export_jsonl()
        store.close()
        return self.report

    def _worker(self, mb: MailboxConfig) -> None:
        """Read one mailbox until stopped; every error is logged, recorded and retried.

        ``TransientError`` is the expected kind (the server is away). Any other exception
        is a fault of ours or of the machine (a locked ledger, a bug): it gets a traceback
        in the log, a ``mailbox-error`` audit entry, and a fresh store and intake for the
        next attempt. Either way the worker lives on, so the mailbox is never left unread
        while the process looks healthy.
        """
        wlog = log.bind(mailbox=mb.name)
        backoff = BACKOFF_MIN
        attempts = 0
        store: Store | None = None
        intake: Intake | None = None
        try:
            while not self.stop.is_set():
                attempts += 1
                session = MailboxSession(mb)
                try:
                    if store is None:
                        store = open_store(self.config)
                    if intake is None:
                        intake = self._intake(mb, store)
                    session.connect()
                    wlog.info("connected", uidvalidity=session.uidvalidity, idle=session.has("IDLE") and mb.idle)
                    while not self.stop.is_set():
                        outcome = intake.run(session)
                        # Only a completed pass resets the backoff: a fault after connecting
                        # (a locked ledger, a bug) must not be retried every second.
                        backoff = BACKOFF_MIN
                        with self._lock:
                            self.report.outcomes.setdefault(mb.name, BatchOutcome()).add(outcome)
                        if outcome.stored or outcome.quarantined or outcome.duplicates:
                            wlog.info(
                                "processed",
                                stored=outcome.stored,
                                quarantined=outcome.quarantined,
                                duplicates=outcome.duplicates,
                                moved=outcome.moved,
                            )
                        if self.once:
                            with self._lock:
                                self.report.failures.pop(mb.name, None)
                            return
                        self._wait(session, mb)
                    return
                except TransientError as exc:
                    retry_in = self._retry_in(attempts, backoff)
                    wlog.warning("mailbox error", error=str(exc), retry_in=retry_in)
                    self._record_failure(store, mb, str(exc), retry_in=retry_in)
                except Exception as exc:  # noqa: BLE001 - any fault is recorded and retried, never silent
                    retry_in = self._retry_in(attempts, backoff)
                    text = error_text(exc, mb)
                    wlog.error("mailbox failed unexpectedly", error=text, retry_in=retry_in, exc_info=exc)
                    self._record_failure(store, mb, text, retry_in=retry_in, event=unexpected_event(mb, exc, text))
                    # Start the next attempt as a restart would: the old connection and
                    # intake may hold state the fault left half-done.
                    _close_quietly(wlog, intake, store)
                    intake, store = None, None
                finally:
                    session.close()
                if self._retry_in(attempts, backoff) is None:
                    return
                self.stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
        finally:
            _close_quietly(wlog, intake, store)

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
        event: AuditEvent | None = None,
    ) -> None:
        """Put the failure in the run report, the mailbox's status and (``event``) the trail.

        The report comes first and cannot fail, so ``run --once`` exits non-zero even when
        the store is what failed; a failure to write the status or the event is logged and
        the worker retries as planned.
        """
        with self._lock:
            self.report.failures[mb.name] = text
        try:
            if store is None:
                store = open_store(self.config)
                try:
                    _write_failure(store, mb, text, event)
                finally:
                    store.close()
            else:
                _write_failure(store, mb, text, event)
        except Exception as exc:  # the failure is in the log and the report; retry
            log.error(
                "could not record the mailbox error",
                mailbox=mb.name,
                error=error_text(exc, mb),
                original=text,
                retry_in=retry_in,
                exc_info=exc,
            )

    def _wait(self, session: MailboxSession, mb: MailboxConfig) -> None:
        if mb.idle and session.has("IDLE"):
            # Any IDLE answer, or the slice ending, triggers a look at the folder.
            session.wait_for_mail(min(IDLE_SLICE, mb.poll_interval))
        else:
            self.stop.wait(mb.poll_interval)
            session.noop()


def _export(store: Store) -> None:
    """Ship what was just committed to the JSON-lines copy."""
    store.export_jsonl()


ERROR_TEXT_MAX = 500


def error_text(exc: BaseException, mb: MailboxConfig) -> str:
    """``Type: message`` for the status, the report and the trail: bounded, without the password.

    Exception messages are not written for an audience; one that happens to contain the
    mailbox password (a library echoing its arguments) must not carry it into the trail.
    """
    message = str(exc)
    secret = mb.password.reveal()
    if secret:
        message = message.replace(secret, "***")
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= ERROR_TEXT_MAX else text[: ERROR_TEXT_MAX - 1] + "…"


def unexpected_event(mb: MailboxConfig, exc: BaseException, text: str) -> AuditEvent:
    """The trail's record that a mailbox worker hit an error nobody planned for."""
    return AuditEvent(
        "mailbox-error",
        details={"mailbox": mb.name, "folder": mb.folder, "error_type": type(exc).__name__, "error": text},
    )


def _write_failure(store: Store, mb: MailboxConfig, text: str, event: AuditEvent | None) -> None:
    store.set_status(mb.name, last_error=text, last_error_at=iso(utcnow()))
    if event is not None:
        store.record_events([event])
        store.export_jsonl()


def _close_quietly(wlog: structlog.typing.FilteringBoundLogger, intake: Intake | None, store: Store | None) -> None:
    """Close what a worker holds; a failure to close is logged, it must not end the worker."""
    for what, closer in (("intake", intake), ("store", store)):
        if closer is None:
            continue
        try:
            closer.close()
        except Exception as exc:  # noqa: BLE001 - logged; the next attempt opens afresh
            wlog.warning("closing failed", what=what, error=str(exc), exc_info=exc)
