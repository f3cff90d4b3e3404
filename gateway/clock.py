"""The time as the gateway writes it: UTC, microseconds, a trailing ``Z``.

One format for the ledger, the audit trail, manifests and reports, so that timestamps
compare as strings and sort by time wherever they are stored.

The wall clock can jump (a bad NTP step, a restored VM snapshot). Nothing the gateway
decides depends on it running forwards: waits use the monotonic clock, entry names carry
the message id, and the trail records a step back as ``clock-went-back``
(``records/sqlite/writes.py``) instead of hiding it. ``set_source`` lets a test (or the
fault harness) run the whole program on a clock of its choosing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime


def _system() -> datetime:
    return datetime.now(UTC)


_source: Callable[[], datetime] = _system


def utcnow() -> datetime:
    return _source()


def set_source(source: Callable[[], datetime] | None) -> None:
    """Read the time from ``source`` from now on (``None``: the system clock again)."""
    global _source
    _source = source or _system


def iso(dt: datetime) -> str:
    """``2026-11-25T09:15:00.000000Z``; an aware ``dt`` in any zone is converted to UTC."""
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
