"""Every tenant's daemon in one process: one ``Daemon`` per ``[[tenant]]``, each on its own state.

A tenant's daemon is the single-authority daemon handed that tenant's ``Config``: its own
state lock, unwrap context (its keys and trust anchors), store and status file. They share
the process and its one pool of analysis workers (``inbound.pool``: a pool per tenant would
multiply the interpreters), whose every job carries its tenant's configuration, so a
tenant's analysis cannot use another tenant's keys or file into another tenant's folders or
chain, and one tenant that fails to start does not take the others' records with it. Each
runs in a thread of its own; the main thread owns the signals and hands them on, and serves
``[metrics]`` for all tenants with a ``tenant`` label. ``once`` mode runs every tenant's pass
and returns when all are done. systemd hears one process: ``READY=1`` once every tenant is
ready, and the watchdog only while every tenant's workers live (one tenant's dead thread
must not be hidden by the others' pings).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from types import FrameType

import structlog

from gateway.config import Config
from gateway.inbound.pool import SharedPool
from gateway.service.daemon import Daemon, Listener, RunReport
from gateway.service.notify import Notifier
from gateway.service.supervise import Supervisor

log = structlog.get_logger("poststelle.daemon")


class TenantsDaemon:
    """The daemons of all tenants of ``config``; ``listeners_for`` gives a tenant's listeners."""

    def __init__(
        self,
        config: Config,
        *,
        once: bool = False,
        listeners_for: Callable[[Config], Sequence[Listener]] = lambda _cfg: (),
    ) -> None:
        assert config.tenants, "TenantsDaemon needs a configuration with [[tenant]] blocks"
        self.config = config
        self.once = once
        self.daemons: list[Daemon] = []
        self.notifier = Notifier()
        self._ready: set[str] = set()
        self.pool = SharedPool.for_tenants(config)
        try:
            for tenant in config.tenants:
                daemon = Daemon(tenant, once=once, listeners=listeners_for(tenant), pool=self.pool)
                daemon.notifier = daemon.supervisor.notifier = _TenantNotifier(self, str(tenant.tenant))
                self.daemons.append(daemon)
        except BaseException:
            for daemon in self.daemons:  # each holds its tenant's lock, analysis pool and wake pipe
                daemon.state_lock.release()
                daemon.analyser.close()
                daemon.ctx.close()
                daemon._close_pipe()
            self.pool.close(kill=True)
            raise
        self._reload_seen = False
        self.supervisor = Supervisor(self.notifier, self._alive, lambda: f"{len(self.daemons)} tenants")
        self.metrics: Listener | None = None
        if config.metrics is not None and not once:
            from gateway.service.metrics import MetricsServer

            self.metrics = MetricsServer(config, [(d.config.tenant, d.config, d.board) for d in self.daemons])

    def _alive(self) -> bool:
        return all(d.supervisor.alive() for d in self.daemons)

    def tenant_ready(self, tenant: str) -> None:
        """A tenant's daemon serves (or has reloaded): READY once all of them have said so."""
        self._ready.add(tenant)
        if len(self._ready) == len(self.daemons):
            self.notifier.ready(f"{len(self.daemons)} tenants")

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        for daemon in self.daemons:
            daemon.request_stop(signum, frame)

    def request_reload(self, signum: int = 0, frame: FrameType | None = None) -> None:
        """Each tenant's daemon re-reads its part of the file; the main thread checks the set of tenants."""
        self._reload_seen = True
        for daemon in self.daemons:
            daemon.request_reload(signum, frame)

    def _check_tenants(self) -> None:
        """A tenant added to the file is not started by a reload: say so (a removed one's daemon
        refuses the reload in its own trail)."""
        from gateway.config import load_config
        from gateway.errors import PoststelleError

        self._reload_seen = False
        try:
            names = {t.tenant for t in load_config(self.config.path).tenants}
        except (PoststelleError, OSError):
            return  # each tenant's daemon records why the file does not load
        running = {d.config.tenant for d in self.daemons}
        for name in sorted(str(n) for n in names - running):
            log.error("tenant added to the configuration: it starts with the next restart", tenant=name)

    def run(self) -> RunReport:
        """Run every tenant until stopped (or, ``once``, until each has made its pass).

        The report names each failure ``tenant NAME, mailbox M`` (or ``, outbox``). A tenant
        whose daemon raised (a port it cannot bind, a ledger it cannot open) stops the
        others too, and its exception is raised here once they have stopped.
        """
        reports: dict[str, RunReport] = {}
        errors: list[BaseException] = []

        def one(daemon: Daemon) -> None:
            name = daemon.config.tenant or ""
            try:
                reports[name] = daemon.run()
            except BaseException as exc:  # noqa: BLE001 - raised in the main thread once all stopped
                errors.append(exc)
                log.error("tenant stopped by an error", tenant=name, error=f"{type(exc).__name__}: {exc}"[:500])
                self.request_stop()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
            if not self.once:
                signal.signal(signal.SIGHUP, self.request_reload)
        threads = [
            threading.Thread(target=one, args=(d,), name=f"tenant-{d.config.tenant}", daemon=True) for d in self.daemons
        ]
        started = False
        try:
            if not self.once:
                self.supervisor.start()
            for t in threads:
                t.start()
            if self.metrics is not None:
                try:
                    self.metrics.start()
                    started = True
                except BaseException as exc:  # noqa: BLE001 - a port it cannot bind: the tenants stop, then this
                    errors.append(exc)
                    self.request_stop()
            for t in threads:
                while t.is_alive():
                    t.join(0.5)  # the main thread stays free for the signal handlers
                    if self._reload_seen:
                        self._check_tenants()
        finally:
            self.supervisor.close()
            if started and self.metrics is not None:
                self.metrics.stop()
            # every tenant's daemon has stopped (or its thread was left, a daemon thread, at a stop)
            self.pool.close(kill=any(d.stop.is_set() for d in self.daemons))
        if errors:
            raise errors[0]
        merged = RunReport()
        for tenant, report in sorted(reports.items()):
            for mailbox, outcome in report.outcomes.items():
                merged.outcomes[f"tenant {tenant}, mailbox {mailbox}"] = outcome
            for name, text in report.failures.items():
                where = "outbox" if name == "outbox" else f"mailbox {name}"
                merged.failures[f"tenant {tenant}, {where}"] = text
        return merged


class _TenantNotifier(Notifier):
    """A tenant daemon's channel: no socket of its own (its supervisor never starts), its
    ready, reloading and stopping handed to the process's one channel."""

    def __init__(self, owner: TenantsDaemon, tenant: str) -> None:
        super().__init__({})
        self.owner = owner
        self.tenant = tenant

    def ready(self, status: str | None = None) -> bool:
        self.owner.tenant_ready(self.tenant)
        return True

    def reloading(self) -> bool:
        return self.owner.notifier.reloading()

    def stopping(self) -> bool:
        return self.owner.notifier.stopping()
