"""Mailbox leases in the daemon: acquire before working, keep renewed, release at a stop.

Used when several nodes share a PostgreSQL store (``[storage] backend = "postgresql"``).
The store does the fencing (every commit of a fenced store checks the epoch); this module
decides when to talk to the lease rows. One heartbeat thread per daemon renews every lease
the node holds in one commit every quarter of the lease time, so a slow batch (a cold
analysis pool, a large message) does not lose its mailbox and hundreds of mailboxes cost
one commit per beat. A worker checks its keeper before each batch and after each IDLE
wait (at most a third of the lease time): a lease the heartbeat found lost, or one not
renewed for half the lease time (the heartbeat is stuck), stops the mailbox there. A
worker without its lease follows: it tries to acquire again every third of the lease
time, so a dead node's mailboxes are taken over within about one and a third lease times
of its last renewal.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence

import structlog

from gateway.records.leases import Acquisition, Fence, Lease, lost_event
from gateway.records.store import LeaseLost, Store, StoreError, lease_lost

log = structlog.get_logger("poststelle.leases")


class Keeper:
    """The lease one worker holds on its mailbox (``lease`` is None while it follows)."""

    def __init__(self, mailbox: str, node: str, ttl: float) -> None:
        self.mailbox = mailbox
        self.node = node
        self.ttl = ttl
        self.lease: Lease | None = None
        self._lost: LeaseLost | None = None  # what the heartbeat found, raised by the worker's next ``keep``
        self._renewed = 0.0  # monotonic time of the last acquisition or renewal (before its request)
        self._guard = threading.Lock()  # the worker, the heartbeat and, at a stop, the main thread

    @property
    def pending_loss(self) -> LeaseLost | None:
        """A loss the heartbeat found that the worker has not recorded yet."""
        with self._guard:
            return self._lost

    @property
    def interval(self) -> float:
        """Seconds between a follower's attempts to acquire, and the longest IDLE wait while holding."""
        return self.ttl / 3

    def acquire(self, store: Store) -> Acquisition:
        """Try to take the lease (the store is fenced with it when granted)."""
        started = time.monotonic()
        got = store.lease_acquire(self.mailbox, self.node, self.ttl)
        with self._guard:
            self.lease, self._lost = got.lease, None
            self._renewed = started
        return got

    def keep(self, store: Store) -> None:
        """Before a batch: ``LeaseLost`` once the lease is gone; renews here if the heartbeat has fallen behind."""
        with self._guard:
            lease, lost, renewed = self.lease, self._lost, self._renewed
        if lost is not None:
            raise lost
        if lease is None:
            raise LeaseLost(f"mailbox {self.mailbox}: no lease held", Fence(self.mailbox, self.node, 0), None)
        started = time.monotonic()
        if started - renewed < self.ttl / 2:
            return
        try:
            fresh = store.lease_renew(lease, self.ttl)
        except LeaseLost as exc:
            self.mark_lost(lease, exc)
            raise
        self.renewed(lease, fresh, started)

    def renewed(self, old: Lease, fresh: Lease, started: float) -> None:
        with self._guard:
            if self.lease == old or (self.lease is not None and self.lease.epoch == fresh.epoch):
                self.lease = fresh
                self._renewed = max(self._renewed, started)

    def mark_lost(self, old: Lease, exc: LeaseLost) -> None:
        with self._guard:
            if self.lease is not None and self.lease.epoch == old.epoch:
                self.lease, self._lost = None, exc

    def lost(self, store: Store, exc: LeaseLost) -> None:
        """Record that this node stopped working the mailbox (unfenced: the lease is gone)."""
        with self._guard:
            self.lease, self._lost = None, None
        store.fence = None
        now = exc.now
        reason = "no lease row" if now is None else f"held by {now.holder} under epoch {now.epoch}"
        store.record_events([lost_event(exc.fence, reason)])

    def release(self, store: Store) -> None:
        """Give the lease up (a clean stop); safe to call twice and from another thread.

        Tried twice: a connection the server dropped since its last use (a restart) fails
        once and is replaced by the store at the next attempt.
        """
        with self._guard:
            lease, self.lease = self.lease, None
        if lease is None:
            return
        try:
            store.lease_release(lease)
        except StoreError:
            store.lease_release(lease)


def beat(store: Store, keepers: Sequence[Keeper], ttl: float) -> int:
    """Renew every held lease of ``keepers`` in one commit; mark those found lost. Returns how many were renewed."""
    held = [(k, k.lease) for k in keepers]
    leases = [lease for _, lease in held if lease is not None]
    if not leases:
        return 0
    started = time.monotonic()
    renewed = store.lease_renew_many(leases, ttl)
    rows: dict[str, Lease] | None = None
    for keeper, lease in held:
        if lease is None:
            continue
        fresh = renewed.get(lease.mailbox)
        if fresh is not None:
            keeper.renewed(lease, fresh, started)
            continue
        if rows is None:
            rows = {x.mailbox: x for x in store.leases()}
        keeper.mark_lost(lease, lease_lost(lease.fence, rows.get(lease.mailbox)))
    return len(renewed)


def heartbeat(
    open_store: Callable[[], Store], keepers: Callable[[], Sequence[Keeper]], ttl: float, stop: threading.Event
) -> None:
    """The heartbeat thread's loop: a beat every quarter of ``ttl`` until ``stop``; errors are logged and retried."""
    store: Store | None = None
    try:
        while not stop.wait(ttl / 4):
            try:
                if store is None:
                    store = open_store()
                beat(store, keepers(), ttl)
            except Exception as exc:  # noqa: BLE001 - the workers renew themselves when the beat falls behind
                log.warning(
                    "lease heartbeat failed", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                )
                if store is not None:
                    with contextlib.suppress(Exception):
                        store.close()
                    store = None
    finally:
        if store is not None:
            with contextlib.suppress(Exception):
                store.close()
