"""What in the outbox is due, and when to try again: pure decisions, never the network.

Postfix's rule: a retry is a persisted schedule, not a sleep. A deferred document carries
its next attempt time; the wait doubles from ``min_backoff`` up to ``max_backoff``; a
document still not accepted ``max_lifetime`` after it was queued is bounced. The clock
is an argument, so tests drive days of retries without waiting.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from gateway.clock import iso
from gateway.records.outbox import WAITING, OutboxRecord


def backoff(attempts: int, min_backoff: float, max_backoff: float) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt (1, 2, …): doubling, capped."""
    if attempts < 1:
        return min_backoff
    # Cap the exponent: 2**60 minutes is past any max_backoff anyone configures.
    return float(min(min_backoff * 2 ** min(attempts - 1, 60), max_backoff))


def next_attempt(now: datetime, attempts: int, min_backoff: float, max_backoff: float) -> str:
    return iso(now + timedelta(seconds=backoff(attempts, min_backoff, max_backoff)))


def is_due(rec: OutboxRecord, now: datetime, max_backoff: float | None = None) -> bool:
    """Waiting and its time has come (a document never tried is due at once).

    With ``max_backoff``, an attempt scheduled further ahead than any backoff could put it
    is due as well: only a wall clock that has since gone back (a bad NTP step) leaves
    such a time, and the document must not wait for the clock to catch up.
    """
    if rec.state not in WAITING or rec.next_attempt_at is None:
        return rec.state in WAITING
    if rec.next_attempt_at <= iso(now):
        return True
    return max_backoff is not None and rec.next_attempt_at > iso(now + timedelta(seconds=max_backoff))


def due(records: Iterable[OutboxRecord], now: datetime, max_backoff: float | None = None) -> list[OutboxRecord]:
    """The documents to attempt now, the longest waiting first."""
    return sorted(
        (r for r in records if is_due(r, now, max_backoff)), key=lambda r: (r.next_attempt_at or r.created_at, r.id)
    )


def expired(rec: OutboxRecord, now: datetime, max_lifetime: float) -> bool:
    """Queued longer ago than ``max_lifetime``: no further attempt, the document bounces."""
    return bool(rec.created_at) and rec.created_at <= iso(now - timedelta(seconds=max_lifetime))


def next_wakeup(records: Iterable[OutboxRecord]) -> str | None:
    """The earliest scheduled attempt among waiting documents (None: nothing scheduled)."""
    times = [r.next_attempt_at or r.created_at for r in records if r.state in WAITING]
    return min(times) if times else None
