"""The time as the gateway writes it: UTC, microseconds, a trailing ``Z``.

One format for the ledger, the audit trail, manifests and reports, so that timestamps
compare as strings and sort by time wherever they are stored.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """``2026-11-25T09:15:00.000000Z``; an aware ``dt`` in any zone is converted to UTC."""
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
