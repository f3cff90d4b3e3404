"""The daemon: one worker thread per mailbox, reconnecting with capped backoff.

One failing mailbox never stops the others: each worker has its own IMAP session and
store connection, and its errors go to its own status row and log lines. ``once`` mode
processes what is waiting and returns; the exit status says whether every mailbox
succeeded.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType

import structlog

from gateway.clock import iso
from gateway.config import Config, MailboxConfig
from gateway.errors import TransientError
from gateway.inbound.imap import MailboxSession
from gateway.inbound.intake import BatchOutcome, Intake
from gateway.inbound.workers import Analyser
from gateway.records.chain import AuditEvent
from gateway.records.open import open_store
from gateway.records.store import Store
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
        self.ctx = UnwrapContext.from_config(config)  # key material problems stop start-up here
        # One pool for all mailboxes, started before any worker thread exists.
        self.analyser = Analyser(config, self.ctx, workers=config.processing.analysis_workers)

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        log.info("stop requested", signal=signum)
        self.stop.set()

    def run(self) -> RunReport:
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
        self.analyser.close()
        self.ctx.close()
        store.seal()
        store.export_jsonl()
        store.close()
        return self.report

    def _worker(self, mb: MailboxConfig) -> None:
        store = open_store(self.config)
        intake = Intake(self.config, mb, store, self.ctx, after_commit=lambda: _export(store), analyser=self.analyser)
        wlog = log.bind(mailbox=mb.name)
        backoff = BACKOFF_MIN
        attempts = 0
        try:
            while not self.stop.is_set():
                attempts += 1
                session = MailboxSession(mb)
                try:
                    session.connect()
                    wlog.info("connected", uidvalidity=session.uidvalidity, idle=session.has("IDLE") and mb.idle)
                    backoff = BACKOFF_MIN
                    while not self.stop.is_set():
                        outcome = intake.run(session)
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
                except TransientError as exc:
                    wlog.warning("mailbox error", error=str(exc), retry_in=backoff)
                    store.set_status(mb.name, last_error=str(exc), last_error_at=iso(datetime.now(UTC)))
                    with self._lock:
                        self.report.failures[mb.name] = str(exc)
                    if self.once and attempts >= ONCE_ATTEMPTS:
                        return
                    self.stop.wait(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
                finally:
                    session.close()
        finally:
            intake.close()
            store.close()

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
