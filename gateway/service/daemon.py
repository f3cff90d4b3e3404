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

On a PostgreSQL store several daemons (nodes) may share the mailboxes: each worker works
its mailbox only while it holds the mailbox's lease (``service.leases``), renewed before
each batch and during IDLE; without it the worker follows, trying again now and then.

Each worker has its own halt event, so a reloaded configuration (SIGHUP,
``service.reload``) restarts only the workers it changes; the main thread owns every
start and stop, and the signal handlers only raise flags and wake it. What the daemon is
doing is kept on a ``StatusBoard`` (``service.snapshot``) for ``status`` and the metrics.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import select
import signal
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Protocol

import structlog

from gateway.clock import iso, utcnow
from gateway.config import Config, MailboxConfig, load_config
from gateway.diskfull import disk_full_code, disk_full_text
from gateway.errors import ConfigError, DiskFull, LoginRejected, PoststelleError, TransientError
from gateway.inbound.failures import explain
from gateway.inbound.imap import MailboxSession
from gateway.inbound.intake import BatchOutcome, Intake
from gateway.inbound.pool import SharedPool
from gateway.inbound.workers import Analyser
from gateway.outbound.drain import DrainReport
from gateway.records.chain import AuditEvent
from gateway.records.messages import MailboxState
from gateway.records.open import open_store, store_name
from gateway.records.store import LeaseLost, Store
from gateway.service import outbox_worker
from gateway.service.leases import Keeper, heartbeat
from gateway.service.notify import Notifier
from gateway.service.reload import ReloadPlan, plan_reload
from gateway.service.snapshot import StatusBoard
from gateway.service.startup import check_files, check_ledger_complete, check_shared_audit_key, start
from gateway.service.supervise import LedgerFigures, Supervisor
from gateway.statedir import daemon_status_path
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
    def __init__(
        self, config: Config, *, once: bool = False, listeners: Sequence[Listener] = (), pool: SharedPool | None = None
    ) -> None:
        self.config = config
        self.pool = pool  # a tenant's: the process's one analysis pool (``inbound.pool``), not its own
        self.once = once
        # Listeners wait for clerks, so a batch run (once) has no use for them.
        self.listeners = () if once else tuple(listeners)
        self.stop = threading.Event()
        self.report = RunReport()
        self._lock = threading.Lock()
        self.notifier = Notifier()  # systemd's Type=notify; silent without $NOTIFY_SOCKET
        figures = LedgerFigures(config)
        alive = lambda: self.stop.is_set() or all(t.is_alive() for t in list(self._threads.values()))  # noqa: E731
        self.supervisor = Supervisor(self.notifier, alive, figures, on_close=figures.close)
        self._halts: dict[str, _Halt] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._reload_wanted = False
        self._stop_signal: int | None = None
        self._logins = threading.BoundedSemaphore(LOGINS_IN_FLIGHT)
        self._in_pass: set[str] = set()  # mailboxes whose worker is processing mail (waited for at a stop)
        self._keepers: dict[str, Keeper] = {}  # mailbox leases (PostgreSQL only), released at a stop
        self._beat_stop = threading.Event()  # ends the lease heartbeat once no worker is filing
        # The handlers write a byte here: the main thread's wait ends at once (PEP 475
        # retries a select that a signal interrupted, and then finds the byte).
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.state_lock = start(config)  # one daemon per state directory; raises before writing anything
        try:
            self.ctx = UnwrapContext.from_config(config)  # key material problems stop start-up here
            # One pool for all mailboxes, started before any worker thread exists; none
            # without mailboxes (a gateway that only sends has nothing to analyse).
            self.analyser = _analyser(config, self.ctx, self.pool)
            self.board = StatusBoard(
                daemon_status_path(config), pid=os.getpid(), config_sha256=config.sha256, version=_version()
            )
            if config.metrics is not None and not once:
                from gateway.service.metrics import MetricsServer

                self.listeners = (*self.listeners, MetricsServer(config, self.board))
        except BaseException:
            self.state_lock.release()
            self._close_pipe()
            raise

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        """Stop; safe in a signal handler (a flag, a byte, a log line).

        Workers that are filing finish their pass; the idle ones are woken only at the very
        end (``_wake_idle``): hundreds of them waking at once would compete with the main
        thread, which seals the trail, for the interpreter, and a stopping daemon does not
        wait for them to go.
        """
        log.info("stop requested", signal=signum)
        if signum and self._stop_signal is None:
            self._stop_signal = signum
        self.stop.set()
        self.notifier.stopping()
        self._wake()

    def request_reload(self, signum: int = 0, frame: FrameType | None = None) -> None:
        """Re-read the configuration file in the main thread (SIGHUP)."""
        log.info("reload requested", signal=signum)
        self._reload_wanted = True
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (already woken) or closed (the run is over)
            os.write(self._wake_w, b"x")

    def run(self) -> RunReport:
        try:
            return self._run()
        finally:
            self.state_lock.release()
            self._close_pipe()
            self._wake_idle()

    def _wake_idle(self) -> None:
        """End every worker's IDLE wait: a byte in the pipe each polls beside its socket."""
        for halt in list(self._halts.values()):
            halt.wake()

    def _close_pipe(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _run(self) -> RunReport:
        store: Store | None = None
        try:
            check_ledger_complete(self.config)  # before anything writes (or checkpoints) the ledger
            check_shared_audit_key(self.config)  # several nodes, one trail: one key seals it
            store = open_store(self.config)
            store.record_events(
                [
                    AuditEvent("config-loaded", details=_config_details(self.config, self.once)),
                    AuditEvent(
                        "daemon-started",
                        details={
                            "pid": os.getpid(),
                            "version": _version(),
                            "sha256": self.config.sha256,
                            "mode": "once" if self.once else "daemon",
                        },
                    ),
                ]
            )
            store.export_jsonl()
        except BaseException as exc:  # a locked or full ledger: nothing started yet, close what is open
            self.analyser.close()
            self.ctx.close()
            if store is not None:
                store.close()
            if disk_full_code(exc) is not None:
                where = store_name(self.config)
                raise DiskFull(disk_full_text(exc, where), where) from exc
            raise
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
            if not self.once:
                signal.signal(signal.SIGHUP, self.request_reload)
        self.board.register([mb.name for mb in self.config.mailboxes])
        self.board.started()
        started: list[Listener] = []
        stopped_because = "error"
        error: str | None = None
        try:
            for listener in self.listeners:
                listener.start()  # a port that cannot be bound ends the run here, before any mailbox
                started.append(listener)
            for mb in self.config.mailboxes:
                self._start_worker(mb)
            self._start_heartbeat()
            if self.config.smtp is not None:
                self._start_outbox()
            if not self.once:
                self.notifier.ready()
                self.supervisor.start()
            self._serve(store, bool(started))
            stopped_because = "signal" if self.stop.is_set() else "once-done"
        except BaseException as exc:
            error = describe_error(exc)
            raise
        finally:
            self.supervisor.close()
            self._halt_all()
            self._beat_stop.set()
            self._release_leases(store)
            for listener in reversed(started):
                listener.stop()
            self.analyser.close(kill=self.stop.is_set())  # nothing is in hand once the workers have left
            self.ctx.close()
            self._record_stop(store, stopped_because, error)
            store.seal()
            store.export_jsonl()
            store.close()
        if self.once and not self.stop.is_set():
            for mb in self.config.mailboxes:  # a worker ended by something not even an Exception
                if mb.name not in self.report.outcomes and mb.name not in self.report.failures:
                    self.report.failures[mb.name] = "the worker ended without reading the mailbox"
        return self.report

    def _start_heartbeat(self) -> None:
        """On a shared (PostgreSQL) store: one thread renewing every lease this node holds (``service.leases``)."""
        storage = self.config.storage
        if storage.backend != "postgresql":
            return
        thread = threading.Thread(
            target=heartbeat,
            args=(
                lambda: open_store(self.config),
                lambda: list(self._keepers.values()),
                storage.lease_ttl,
                self._beat_stop,
            ),
            name="lease-heartbeat",
            daemon=True,
        )
        thread.start()

    def _release_leases(self, store: Store) -> None:
        """Give up the leases of workers out of their passes, so other nodes need not wait for expiry.

        Workers still filing keep theirs (``_serve`` has waited for them unless the run
        failed); an idle worker, halted, starts no new pass.
        """
        for name, keeper in list(self._keepers.items()):
            with self._lock:
                busy = name in self._in_pass
            if busy:
                continue
            try:
                keeper.release(store)
            except Exception as exc:  # noqa: BLE001 - the lease then expires on its own
                log.warning("could not release a mailbox lease", mailbox=name, error=describe_error(exc))
        self._drop_followed_failures(store)

    def _drop_followed_failures(self, store: Store) -> None:
        """Forget the failures of mailboxes another node works now: a database outage, say, that this
        node's worker was still backing off from when the other node took the mailbox over is not this
        node's to report in its exit status.

        Tried twice: the main thread's connection may be one the server dropped since its last use.
        """
        if not self._keepers:
            return
        for attempt in (1, 2):
            try:
                leases = store.leases()
            except Exception as exc:  # noqa: BLE001 - the failures are then reported as they stand
                if attempt == 2:
                    log.warning("could not read the mailbox leases", error=describe_error(exc))
                continue
            with self._lock:
                for row in leases:
                    keeper = self._keepers.get(row.mailbox)
                    held_elsewhere = not row.expired and not row.released
                    if keeper is not None and keeper.lease is None and held_elsewhere and row.holder != keeper.node:
                        self.report.failures.pop(row.mailbox, None)
            return

    def _serve(self, store: Store, listening: bool) -> None:
        """Run until every worker has ended (``once``) or a stop is requested; reload when asked."""
        while True:
            if self.stop.is_set():
                self._halt_all()
            elif self._reload_wanted:
                self._reload_wanted = False
                self.notifier.reloading()
                try:
                    self._reload(store)
                finally:
                    self.notifier.ready()
            alive = any(t.is_alive() and not self._may_leave(name) for name, t in list(self._threads.items()))
            if not alive and (self.stop.is_set() or not listening):
                return
            select.select([self._wake_r], [], [], 0.5)
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 512)

    def _start_worker(self, mb: MailboxConfig) -> None:
        halt = _Halt()
        thread = threading.Thread(target=self._worker, args=(mb, halt), name=f"mailbox-{mb.name}", daemon=True)
        self._halts[mb.name], self._threads[mb.name] = halt, thread
        self.board.register([mb.name])  # listed (as starting) from now on
        previous = threading.stack_size(MAILBOX_STACK)
        try:
            thread.start()
        finally:
            threading.stack_size(previous)

    def _start_outbox(self) -> None:
        halt = _Halt()
        thread = threading.Thread(target=self._outbox, args=(halt,), name="outbox", daemon=True)
        self._halts[outbox_worker.NAME], self._threads[outbox_worker.NAME] = halt, thread
        thread.start()

    def _halt(self, names: Sequence[str]) -> None:
        """Ask these workers to stop after what they hold, and wait until they have."""
        for name in names:
            if name in self._halts:
                self._halts[name].set()
                self._halts[name].wake()
        for name in names:
            thread = self._threads.pop(name, None)
            halt = self._halts.pop(name, None)
            if thread is not None:
                thread.join()
            if halt is not None:
                halt.close()

    def _halt_all(self) -> None:
        for halt in self._halts.values():
            halt.set()

    def _reload(self, store: Store) -> None:
        """Apply the configuration file as it is now, or keep the running one and say why."""
        path = self.config.path
        try:
            new = same_tenant(load_config(path), self.config.tenant)
            plan = plan_reload(self.config, new)
            check_files(new)
            ctx, analyser = None, None
            if plan.analysis:  # built before anything stops: unusable key material rejects the reload
                ctx = UnwrapContext.from_config(new)
                try:
                    analyser = _analyser(new, ctx, self.pool)
                except BaseException:
                    ctx.close()
                    raise
        except (PoststelleError, OSError) as exc:
            key, problem = (exc.key, exc.problem) if isinstance(exc, ConfigError) else ("-", describe_error(exc))
            kept = self.config.sha256
            log.error("configuration reload rejected", file=str(path), key=key, problem=problem, kept=kept)
            details = {"path": str(path), "key": key, "problem": problem, "kept_sha256": self.config.sha256}
            self._record(store, AuditEvent("config-reload-rejected", details=details))
            return
        self._apply(store, new, plan, ctx, analyser)

    def _apply(
        self, store: Store, new: Config, plan: ReloadPlan, ctx: UnwrapContext | None, analyser: Analyser | None
    ) -> None:
        restarted = plan.restarted(new)
        self._halt([*plan.removed, *restarted, *([outbox_worker.NAME] if plan.outbox else [])])
        if ctx is not None and analyser is not None:
            self.analyser.close()
            self.ctx.close()
            self.ctx, self.analyser = ctx, analyser
        previous = self.config.sha256
        self.config = new
        if plan.logging:
            from gateway.logs import setup_logging

            setup_logging(new.logging.level, new.logging.format)
        for name in plan.removed:
            self.board.forget(name)
            with self._lock:
                self.report.failures.pop(name, None)
        for mb in new.mailboxes:
            if mb.name in restarted or mb.name in plan.added:
                self._start_worker(mb)
        if plan.outbox:
            if new.smtp is not None:
                self._start_outbox()
            else:
                self.board.no_outbox()
                with self._lock:
                    self.report.failures.pop(outbox_worker.NAME, None)
        self.board.configured(new.sha256)
        details = {**_config_details(new, self.once), "previous_sha256": previous, "changes": plan.summary()}
        self._record(store, AuditEvent("config-reloaded", details=details))
        log.info("configuration reloaded", sha256=new.sha256, restarted=list(restarted), **plan.summary())

    def _record(self, store: Store, event: AuditEvent) -> None:
        try:
            store.record_events([event])
            store.export_jsonl()
        except Exception as exc:  # the log line has it; the daemon runs on
            if disk_full_code(exc) is not None:  # a known condition, named; no traceback
                log.error("could not record (disk full)", audit_event=event.type, error=describe_error(exc))
            else:
                log.error("could not record", audit_event=event.type, error=describe_error(exc), exc_info=exc)

    def _record_stop(self, store: Store, because: str, error: str | None) -> None:
        details: dict[str, object] = {"reason": because, "pid": os.getpid()}
        if because == "signal" and self._stop_signal is not None:
            details["signal"] = signal.Signals(self._stop_signal).name
        if error is not None:
            details["error"] = error
        words = because if error is None else f"{because}: {error}"
        if "signal" in details:
            words = f"signal {details['signal']}"
        self.board.stopped(words)
        self._record(store, AuditEvent("daemon-stopped", details=details))

    def _worker(self, mb: MailboxConfig, halt: _Halt) -> None:
        """Read one mailbox until stopped; every error is logged, recorded and retried.

        ``TransientError`` is the expected kind (the server is away): retried with a
        doubling backoff. ``LoginRejected`` is permanent for these credentials: logged at
        error level once, the mailbox's state becomes ``auth-failed``, and the next try
        comes only after ``auth_retry_interval`` (or a restart), because retrying a wrong
        password every few minutes fills the server's log and may lock the account. Any
        other exception is a fault of ours or of the machine (a locked ledger, a bug): it
        gets a traceback in the log, a ``mailbox-error`` audit entry, and a fresh store and
        intake for the next attempt. Either way the worker lives on, so the mailbox is
        never left unread while the process looks healthy. ``halt`` ends it after the
        batch in hand (a stop, or a reload that changes this mailbox). On a shared
        (PostgreSQL) store it works the mailbox only while it holds its lease; a lost lease
        (``LeaseLost``: another node took over) ends the pass at once, without backoff, and
        the worker follows until it gets the lease again.
        """
        wlog = log.bind(mailbox=mb.name)
        backoff = BACKOFF_MIN
        attempts = 0
        store: Store | None = None
        intake: Intake | None = None
        state = _Condition(mb)
        keeper = self._keeper(mb)
        try:
            while not halt.is_set():
                attempts += 1
                login_wait: float | None = None  # set when the login was rejected
                session = MailboxSession(mb)
                try:
                    if store is None:
                        store = open_store(self.config)
                        if keeper is not None and keeper.lease is not None:
                            store.fence = keeper.lease.fence
                    state.load(store)
                    if keeper is not None and keeper.lease is None:
                        if (loss := keeper.pending_loss) is not None:  # found by the heartbeat, after a failed pass
                            self._lost(keeper, store, loss, wlog)
                        if not self._follow(keeper, store, mb, halt, wlog):
                            return
                    if intake is None:
                        intake = self._intake(mb, store, keeper)
                    if not self._connect(session, halt):
                        return
                    idling = session.idling()
                    wlog.info("connected", uidvalidity=session.uidvalidity, idle=idling)
                    self.board.mailbox(mb.name, connected=True, idle=idling)
                    while self._enter_pass(mb, halt):
                        try:
                            if keeper is not None:
                                keeper.keep(store)
                            session.forget_news()  # what was announced so far, the search below sees
                            outcome = intake.run(session)
                            state.succeeded(store, wlog)
                        finally:
                            self._leave_pass(mb)
                        # Only a completed pass resets the backoff: a fault after connecting
                        # (a locked ledger, a bug) must not be retried every second.
                        backoff = BACKOFF_MIN
                        self.supervisor.passed()
                        worked = bool(outcome.stored or outcome.quarantined or outcome.duplicates or outcome.moved)
                        self.board.polled(mb.name, idle=idling, worked=worked)
                        with self._lock:
                            self.report.outcomes.setdefault(mb.name, BatchOutcome()).add(outcome)
                            # A failure that has been recovered from is not the run's outcome.
                            self.report.failures.pop(mb.name, None)
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
                        self._wait(session, mb, halt, keeper, store)
                    return
                except LeaseLost as exc:
                    assert keeper is not None and store is not None
                    if exc.fence.epoch == 0 and halt.is_set():
                        return  # released by the main thread at a stop, not lost
                    self._lost(keeper, store, exc, wlog)
                    continue  # follow at once: the session closes, nothing more is done on the server
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
                except DiskFull as exc:
                    retry_in = self._retry_in(attempts, backoff)
                    wlog.error("disk full", error=str(exc), path=exc.path, retry_in=retry_in)
                    full = disk_full_event(mb, str(exc), exc.path)
                    self._record_failure(store, mb, str(exc), retry_in=retry_in, state=state, also=full)
                except TransientError as exc:
                    retry_in = self._retry_in(attempts, backoff)
                    wlog.warning("mailbox error", error=str(exc), retry_in=retry_in)
                    self._record_failure(store, mb, str(exc), retry_in=retry_in, state=state, new="error")
                except Exception as exc:  # noqa: BLE001 - any fault is recorded and retried, never silent
                    retry_in = self._retry_in(attempts, backoff)
                    if disk_full_code(exc) is not None:  # the ledger's file system: no traceback, the path
                        where = store_name(self.config)
                        text = disk_full_text(exc, where)
                        wlog.error("disk full", error=text, path=where, retry_in=retry_in)
                        full = disk_full_event(mb, text, where)
                        self._record_failure(store, mb, text, retry_in=retry_in, state=state, also=full)
                    else:
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
                    halt.wait(login_wait)
                    continue
                if self._retry_in(attempts, backoff) is None:
                    return
                halt.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
        finally:
            if keeper is not None and store is not None:
                with contextlib.suppress(Exception):  # else the lease expires on its own
                    keeper.release(store)
            _close_quietly(wlog, intake, store)
            self.board.mailbox(mb.name, connected=False, idle=False)

    def _outbox(self, halt: _Halt) -> None:
        def failed(text: str) -> None:
            with self._lock:
                self.report.failures[outbox_worker.NAME] = text
            self.board.outbox(error=text)

        def passed(report: DrainReport) -> None:
            self.supervisor.passed()
            with self._lock:
                self.report.failures.pop(outbox_worker.NAME, None)
            self.board.outbox(
                sent=len(report.sent),
                deferred=len(report.deferred),
                bounced=len(report.bounced),
                next_attempt_at=report.next_wakeup,
            )

        outbox_worker.run_outbox(self.config, halt.event, once=self.once, on_pass=passed, on_failure=failed)

    def _retry_in(self, attempts: int, backoff: float) -> float | None:
        """Seconds until the next attempt; ``None`` when ``once`` mode has made its last."""
        return None if self.once and attempts >= ONCE_ATTEMPTS else backoff

    def _intake(self, mb: MailboxConfig, store: Store, keeper: Keeper | None = None) -> Intake:
        before = (lambda: keeper.keep(store)) if keeper is not None else (lambda: None)
        return Intake(
            self.config, mb, store, self.ctx, after_commit=lambda: _export(store), analyser=self.analyser,
            before_batch=before,
        )  # fmt: skip

    def _keeper(self, mb: MailboxConfig) -> Keeper | None:
        """The worker's lease keeper on a shared (PostgreSQL) store; None on SQLite, whose lock admits one daemon."""
        storage = self.config.storage
        if storage.backend != "postgresql":
            return None
        keeper = Keeper(mb.name, storage.node, storage.lease_ttl)
        self._keepers[mb.name] = keeper
        return keeper

    def _follow(
        self, keeper: Keeper, store: Store, mb: MailboxConfig, halt: _Halt, wlog: structlog.typing.FilteringBoundLogger
    ) -> bool:
        """Wait until this node holds the mailbox's lease (True), or a stop (False).

        ``once`` mode tries once: a mailbox another node works is that node's to read.
        Store errors (the database away) go to the worker's usual backoff.
        """
        following = False
        while not halt.is_set():
            got = keeper.acquire(store)
            if got.lease is not None:
                how = "took over the mailbox lease" if got.taken_over else "acquired the mailbox lease"
                previous = got.before.holder if got.before is not None else None
                wlog.info(how, node=keeper.node, epoch=got.lease.epoch, previous=previous)
                return True
            assert got.before is not None
            holder, until = got.before.holder, got.before.expires_at
            if self.once:
                text = f"the mailbox's lease is held by node {holder} until {until}: that node reads it"
                with self._lock:
                    self.report.failures[mb.name] = text
                wlog.warning("mailbox worked by another node", holder=holder, until=until)
                return False
            if not following:
                wlog.info("following: another node holds the mailbox lease", holder=holder, until=until)
                following = True
                with self._lock:  # the mailbox is worked: an earlier failure here is not this node's to report
                    self.report.failures.pop(mb.name, None)
            self.board.mailbox(mb.name, connected=False, idle=False)
            halt.wait(keeper.interval)
        return False

    def _lost(self, keeper: Keeper, store: Store, exc: LeaseLost, wlog: structlog.typing.FilteringBoundLogger) -> None:
        """The lease went to another node: record it (unfenced) and let the worker follow.

        A failure of the pass that ran into the loss (a late write finding its staged entry
        removed by the new holder) is no longer this node's to report: the mailbox is worked.
        """
        with self._lock:
            self.report.failures.pop(keeper.mailbox, None)
        now = exc.now
        wlog.warning(
            "mailbox lease lost: following", node=keeper.node, epoch=exc.fence.epoch,
            holder=now.holder if now is not None else None,
        )  # fmt: skip
        try:
            keeper.lost(store, exc)
            store.export_jsonl()
        except Exception as err:  # noqa: BLE001 - the log line has it; the worker follows anyway
            wlog.error("could not record the lost lease", error=describe_error(err))

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
        also: AuditEvent | None = None,
    ) -> None:
        """Put the failure in the run report, the mailbox's status and (``event``) the trail.

        The report comes first and cannot fail, so ``run --once`` exits non-zero even when
        the store is what failed; a failure to write the status or the event is logged and
        the worker retries as planned. A change of state (``ok`` to ``error``, ``error`` to
        ``auth-failed``) is recorded with its start time and a ``mailbox-failing`` entry in
        the trail, unless ``event`` (``mailbox-error``) already records this attempt.
        ``also`` (``disk-full``) is recorded beside it whenever the error is a new one, not
        at every retry of the same. When the trail cannot be written (the disk it is on is
        the full one), the log line says so.
        """
        with self._lock:
            self.report.failures[mb.name] = text
        self.board.failed(mb.name, new, text)
        try:
            if store is None:
                store = open_store(self.config)
                try:
                    state.failed(store, text, new, event, also)
                finally:
                    store.close()
            else:
                state.failed(store, text, new, event, also)
        except Exception as exc:  # the failure is in the log and the report; retry
            log.error(
                "could not record the mailbox error"
                + (" (disk full: the status and the audit trail cannot be written)" if disk_full_code(exc) else ""),
                mailbox=mb.name,
                error=error_text(exc, mb),
                original=text,
                retry_in=retry_in,
                exc_info=exc,
            )

    def _connect(self, session: MailboxSession, halt: _Halt) -> bool:
        """Log in with at most ``LOGINS_IN_FLIGHT`` others; False when a stop came while waiting."""
        while not self._logins.acquire(timeout=0.25):
            if halt.is_set():
                return False
        try:
            if halt.is_set():
                return False
            session.connect()
            return True
        finally:
            self._logins.release()

    def _enter_pass(self, mb: MailboxConfig, halt: _Halt) -> bool:
        """Mark the mailbox as processing unless a stop was requested (then False).

        Marked before the stop is checked, so the main thread, which checks the mark after
        setting the stop, either waits for this pass or sees it never start.
        """
        with self._lock:
            self._in_pass.add(mb.name)
        if halt.is_set():
            self._leave_pass(mb)
            return False
        return True

    def _leave_pass(self, mb: MailboxConfig) -> None:
        with self._lock:
            self._in_pass.discard(mb.name)

    def _may_leave(self, name: str) -> bool:
        """After a stop, a mailbox worker that is not processing mail is not waited for.

        It is connecting, waiting or backing off: nothing is in hand, and a login to a
        dead server could otherwise hold the exit for the whole ``timeout``.
        """
        if not self.stop.is_set() or name == outbox_worker.NAME:
            return False
        with self._lock:
            return name not in self._in_pass

    def _wait(
        self,
        session: MailboxSession,
        mb: MailboxConfig,
        halt: _Halt,
        keeper: Keeper | None = None,
        store: Store | None = None,
    ) -> None:
        """Until news, the IDLE renewal or a stop; without IDLE, the poll interval and a NOOP.

        After the wait the worker looks at the whole folder (UID SEARCH against the
        ledger), whatever woke it: a renewal finds what a lost notification did not say.
        A worker holding a lease waits at most a renewal interval in IDLE (the pass that
        follows renews), and renews between slices of its poll interval.
        """
        if session.idling():
            renew = mb.idle_renewal if keeper is None else min(mb.idle_renewal, keeper.interval)
            session.wait_for_mail(renew, wake_fd=halt.wake_fd)
        elif not session.has_news():
            if keeper is None or store is None:
                if halt.wait(mb.poll_interval):
                    return
            else:
                end = time.monotonic() + mb.poll_interval
                while (left := end - time.monotonic()) > 0:
                    if halt.wait(min(left, keeper.interval)):
                        return
                    keeper.keep(store)
            session.noop()


class _Halt:
    """One worker's stop request: a flag its loops check, and a pipe its IDLE polls beside the socket.

    ``set`` asks the worker to stop after what it holds; ``wake`` ends a wait on the server
    at once. A stop sets every flag first and wakes the idle workers only after the trail is
    sealed; a reload that restarts one mailbox does both at once and waits for it.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.wake_fd, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    @property
    def event(self) -> threading.Event:
        """The flag, for code that waits on a plain event (the outbox's doorbell)."""
        return self._event

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)

    def wake(self) -> None:
        with contextlib.suppress(OSError):  # full (already woken) or closed
            os.write(self._wake_w, b"x")

    def close(self) -> None:
        """Only once the worker has ended: it may be about to poll the pipe."""
        for fd in (self.wake_fd, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)


def same_tenant(loaded: Config, tenant: str | None) -> Config:
    """The part of a reloaded file this daemon runs: its tenant's configuration, or the whole.

    Tenants that appear or go, or a file that gains or loses ``[[tenant]]`` blocks, change
    which daemons run at all: that takes a restart (``ConfigError``, the reload is refused).
    """
    if tenant is None:
        if loaded.tenants:
            raise ConfigError(str(loaded.path), "tenant", "[[tenant]] blocks were added, which needs a restart")
        return loaded
    try:
        return loaded.tenant_config(tenant)
    except KeyError:
        raise ConfigError(str(loaded.path), "tenant", f"tenant {tenant!r} is gone, which needs a restart") from None


def _analyser(config: Config, ctx: UnwrapContext, pool: SharedPool | None) -> Analyser:
    workers = (pool.workers if pool is not None else config.processing.analysis_workers) if config.mailboxes else 0
    return Analyser(config, ctx, workers=workers, shared=pool)


def _config_details(config: Config, once: bool) -> dict[str, object]:
    """What ``config-loaded`` and ``config-reloaded`` record: the file, its hash, what it configures."""
    return {
        "path": str(config.path),
        "sha256": config.sha256,
        "mailboxes": [m.name for m in config.mailboxes],
        "routes": [r.name for r in config.routes],
        "mode": "once" if once else "daemon",
        **({"tenant": config.tenant} if config.tenant is not None else {}),
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("poststelle")
    except PackageNotFoundError:
        return "unknown"


def describe_error(exc: BaseException) -> str:
    """One line for the trail and the status file: the OS's words for an OSError, else the message."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{type(exc).__name__}: {exc.strerror}{where}"[:ERROR_TEXT_MAX]
    text = str(exc).strip().splitlines()
    return (f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__)[:ERROR_TEXT_MAX]


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
    text = mb.password.mask(text)
    return text if len(text) <= ERROR_TEXT_MAX else text[: ERROR_TEXT_MAX - 1] + "…"


def disk_full_event(mb: MailboxConfig, text: str, path: str) -> AuditEvent:
    """The trail's record that a pass stopped because a file system was full (nothing was acknowledged)."""
    return AuditEvent("disk-full", details={"mailbox": mb.name, "folder": mb.folder, "path": path, "error": text})


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
        self.last_error: str | None = None  # recorded by this worker, so a retry's same error is not repeated
        self._loaded = False

    def load(self, store: Store) -> None:
        if self._loaded:
            return
        for status in store.statuses():
            if status.mailbox == self.mb.name:
                self.current = status.state
        self._loaded = True

    def failed(
        self, store: Store, text: str, new: MailboxState, event: AuditEvent | None, also: AuditEvent | None = None
    ) -> None:
        now = iso(utcnow())
        repeated = new == self.current and text == self.last_error
        if new == self.current:
            store.set_status(self.mb.name, last_error=text, last_error_at=now)
        else:
            store.set_status(self.mb.name, last_error=text, last_error_at=now, state=new, state_since=now)
        events = [event] if event is not None else []
        if new != self.current and event is None:
            details = {"mailbox": self.mb.name, "folder": self.mb.folder, "state": new, "error": text}
            events.append(AuditEvent("mailbox-failing", details=details))
        if also is not None and not repeated:
            events.append(also)
        if events:
            store.record_events(events)
            store.export_jsonl()
        self.current = new
        self.last_error = text

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
