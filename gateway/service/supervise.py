"""What the daemon tells systemd while it runs: the watchdog ping and the queue figures.

The watchdog is only worth having if a ping means "the work goes on": a process whose
mailbox or outbox thread died keeps its main thread, and a ping from a timer alone would
hide that. So the ping comes from one thread that asks ``alive()`` first and stays silent
when the answer is no; systemd then restarts the unit after ``WatchdogSec=``, which is the
right cure for a worker that cannot go on. ``alive()`` must be cheap and must not block.

The status line (``systemctl status``: messages by state, outbox by state) is read from
the ledger through a read-only connection of this thread's own, and only after a pass
has finished since the last reading, at most every ``STATUS_EVERY`` seconds: with
hundreds of mailboxes renewing IDLE every few seconds, counting the ledger after each
pass would cost more than the figures are worth.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

import structlog

from gateway.config import Config
from gateway.records.store import Store
from gateway.service.notify import Notifier

log = structlog.get_logger("poststelle.supervise")
STATUS_EVERY = 5.0  # seconds; the least time between two readings of the figures


def queue_figures(messages: Mapping[str, int], outbox: Mapping[str, int]) -> str:
    """The status line: ``messages: stored 12, quarantined 1; outbox: queued 2, deferred 1``."""

    def part(counts: Mapping[str, int]) -> str:
        return ", ".join(f"{state} {n}" for state, n in sorted(counts.items())) or "none"

    return f"messages: {part(messages)}; outbox: {part(outbox)}"


class LedgerFigures:
    """Reads the figures for the status line; the connection belongs to the calling thread."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._store: Store | None = None

    def __call__(self) -> str:
        from gateway.records.open import open_store

        if self._store is None:
            self._store = open_store(self.config, readonly=True)
        return queue_figures(self._store.counts_by_state(), self._store.outbox_counts())

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


class Supervisor:
    """The thread that pings the watchdog while ``alive()`` and refreshes the status after passes."""

    def __init__(
        self,
        notifier: Notifier,
        alive: Callable[[], bool],
        figures: Callable[[], str],
        *,
        status_every: float = STATUS_EVERY,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.notifier = notifier
        self.alive = alive
        self.figures = figures
        self.status_every = status_every
        self._on_close = on_close
        self._passed = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._withheld = False

    def passed(self) -> None:
        """A mailbox or outbox pass finished: the figures may have changed."""
        self._passed.set()

    def tick(self) -> None:
        """One round: the ping if the workers are alive, the figures if a pass finished."""
        if self.notifier.watchdog_interval is not None:
            if self.alive():
                self.notifier.watchdog()
                self._withheld = False
            elif not self._withheld:
                log.error("a worker thread has ended: the watchdog is no longer fed, systemd will restart the unit")
                self._withheld = True
        if self._passed.is_set():
            self._passed.clear()
            try:
                self.notifier.status(self.figures())
            except Exception as exc:  # noqa: BLE001 - the status line is a convenience, never a fault
                log.warning("could not read the queue figures for the status line", error=str(exc))

    def start(self) -> None:
        """Start the thread; none without a service manager to talk to."""
        if not self.notifier.enabled:
            return
        self._passed.set()  # the first figures right after READY
        self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        period = self.status_every
        if self.notifier.watchdog_interval is not None:
            period = min(period, self.notifier.watchdog_interval)
        try:
            while True:
                self.tick()
                if self._done.wait(period):
                    return
        finally:
            if self._on_close is not None:
                self._on_close()

    def close(self) -> None:
        """End the thread (it closes its own ledger connection on the way out)."""
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        elif self._on_close is not None:
            self._on_close()
