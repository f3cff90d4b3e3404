"""The daemon's outbox thread: a drain pass, then sleep until the next attempt is due or the bell rings.

Beside the mailbox workers, with its own store connection. New documents (queued by the
CLI, the submission listener or another process) ring the outbox's doorbell and are sent
at once; the poll is the fallback for a ring that got lost; a deferred one wakes the
thread when its time comes. The relay connections stay open from one pass to the next
while documents keep coming, and are closed once the outbox has been idle for
``KEEP_CONNECTIONS`` seconds (Postfix's own SMTP client caches connections the same way),
so a steady trickle of documents does not pay a connect, EHLO and QUIT per pass. For the
same reason the passes of such a trickle leave the sent copies to the pass made when the
outbox goes idle (or to the one that finds a whole batch waiting, ``Drain.defer_filing``);
the first pass, every pass of ``once`` and the thread as it stops file them at once. A fault
is logged, recorded in the trail (``outbox-error``) and retried with a capped backoff,
like a mailbox's; the first pass that completes after one records ``outbox-recovered``
with the error it ends, so a reader of the trail sees when the outbox stood still.
``once`` makes a single pass.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

import structlog

from gateway.clock import utcnow
from gateway.config import Config
from gateway.outbound.doorbell import Doorbell
from gateway.outbound.drain import Drain, DrainReport
from gateway.outbound.orphans import sweep_orphans
from gateway.outbound.sentfolder import copier_from_config
from gateway.outbound.smtp import SmtpAgent
from gateway.records.chain import AuditEvent
from gateway.records.open import open_store
from gateway.records.store import Store
from gateway.statedir import outbox_doorbell

log = structlog.get_logger("poststelle.outbox")
POLL = 10.0  # seconds between looks for newly queued documents
BACKOFF_MAX = 300.0
KEEP_CONNECTIONS = 2.0  # seconds an idle relay connection is kept for the next pass
NAME = "outbox"


def _seconds_until(when: str | None, now: datetime) -> float:
    if when is None:
        return POLL
    due = datetime.fromisoformat(when.replace("Z", "+00:00"))
    return max(0.5, min(POLL, (due - now).total_seconds()))


def _close(agents: list[SmtpAgent]) -> None:
    while agents:
        agents.pop().close()


def run_outbox(
    config: Config,
    stop: threading.Event,
    *,
    once: bool,
    on_pass: Callable[[DrainReport], None],
    on_failure: Callable[[str], None],
) -> None:
    """Drain until ``stop`` (or one pass with ``once``); ``on_failure`` gets a one-line error."""
    store: Store | None = None
    backoff = 1.0
    failing: str | None = None  # the error of the last failed pass, until one completes
    bell = None if once else Doorbell(outbox_doorbell(config))
    swept = False
    kept: list[SmtpAgent] = []  # open relay connections between passes
    file_now = True  # the first pass files whatever an earlier run left unfiled
    deferred = False
    try:
        while not stop.is_set():
            try:
                if store is None:
                    store = open_store(config)
                if not swept:
                    sweep_orphans(config, store)
                    swept = True
                lanes = config.smtp.connections if config.smtp is not None else 1
                drain = Drain(config, store, copy_to_sent=copier_from_config(config), lanes=lanes, kept=kept)
                drain.defer_filing = not once and not file_now
                report = drain.run_once()
                file_now, deferred = False, bool(report.filing_deferred)
                if failing is not None:
                    log.info("outbox works again", was=failing)
                    store.record_events([AuditEvent("outbox-recovered", details={"last_error": failing})])
                    failing = None
                store.export_jsonl()
                on_pass(report)
                backoff = 1.0
                wait = _seconds_until(report.next_wakeup, utcnow())
            except Exception as exc:
                text = f"{type(exc).__name__}: {exc}"[:500]
                log.error("outbox pass failed", error=text, exc_info=exc)
                _close(kept)
                file_now, deferred = True, False
                on_failure(text)
                failing = text
                if store is not None:
                    try:
                        store.record_events([AuditEvent("outbox-error", details={"error": text})])
                    except Exception as record_exc:  # noqa: BLE001 - the log has it
                        log.error("could not record the outbox error", error=str(record_exc))
                    store.close()
                    store = None
                wait = backoff
                backoff = min(backoff * 2, BACKOFF_MAX)
            if bell is None:
                return
            if bell.wait(min(wait, KEEP_CONNECTIONS), stop) or stop.is_set():
                continue
            _close(kept)  # idle: the relay is not kept waiting on our connections
            if deferred:
                file_now = True  # and the sent copies left by the last passes are filed now
                continue
            if wait > KEEP_CONNECTIONS:
                bell.wait(wait - KEEP_CONNECTIONS, stop)
        if deferred and store is not None:  # stopping: the copies left for later are filed now
            try:
                Drain(config, store, copy_to_sent=copier_from_config(config)).file_copies()
            except Exception as exc:  # noqa: BLE001 - the next start files them
                log.error("filing the sent copies at stop failed; the next start files them", error=str(exc))
    finally:
        _close(kept)
        if store is not None:
            store.close()
        if bell is not None:
            bell.close()
