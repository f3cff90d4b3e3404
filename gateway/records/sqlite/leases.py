"""Mailbox leases in SQLite: take, renew, give up, check the fence (``records.leases``).

On SQLite the one daemon of a state directory (its lock) is the only node, so a lease is
always granted to it; the table and the fence keep the store contract the same as on
PostgreSQL. Times are UTC text with milliseconds, compared as text; every statement
runs inside BEGIN IMMEDIATE, the one writer lock, so a check and a take-over never interleave.
"""

from __future__ import annotations

import sqlite3

from gateway.records.leases import Acquisition, Fence, Lease
from gateway.records.store import lease_lost

_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
_UNTIL = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)"
_COLUMNS = f"mailbox, holder, epoch, expires_at, expires_at <= {_NOW} AS expired, released_at IS NOT NULL"


def _lease(row: sqlite3.Row) -> Lease:
    return Lease(str(row[0]), str(row[1]), int(row[2]), str(row[3]), bool(row[4]), bool(row[5]))


def _ttl(ttl: float) -> str:
    return f"+{ttl:.3f} seconds"


def _row(conn: sqlite3.Connection, mailbox: str) -> Lease | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM mailbox_leases WHERE mailbox = ?", (mailbox,)).fetchone()  # noqa: S608
    return None if row is None else _lease(row)


def take(conn: sqlite3.Connection, mailbox: str, node: str, ttl: float) -> Acquisition:
    before = _row(conn, mailbox)
    if before is None:
        conn.execute(
            "INSERT INTO mailbox_leases (mailbox, holder, epoch, acquired_at, expires_at) "  # noqa: S608
            f"VALUES (?, ?, 1, {_NOW}, {_UNTIL})",
            (mailbox, node, _ttl(ttl)),
        )
    elif before.expired or before.holder == node:
        conn.execute(
            "UPDATE mailbox_leases SET holder = ?, epoch = epoch + 1, "  # noqa: S608
            f"acquired_at = {_NOW}, released_at = NULL, expires_at = {_UNTIL} WHERE mailbox = ?",
            (node, _ttl(ttl), mailbox),
        )
    else:
        return Acquisition(None, before)
    return Acquisition(_row(conn, mailbox), before)


def renew(conn: sqlite3.Connection, lease: Lease, ttl: float) -> Lease:
    """Inside BEGIN IMMEDIATE (the store's), so the row read afterwards is the one written."""
    cur = conn.execute(
        f"UPDATE mailbox_leases SET expires_at = {_UNTIL} "  # noqa: S608
        "WHERE mailbox = ? AND holder = ? AND epoch = ? AND released_at IS NULL",
        (_ttl(ttl), lease.mailbox, lease.holder, lease.epoch),
    )
    now = _row(conn, lease.mailbox)
    if cur.rowcount != 1 or now is None:
        raise lease_lost(lease.fence, now)
    return now


def give_up(conn: sqlite3.Connection, lease: Lease) -> bool:
    cur = conn.execute(
        f"UPDATE mailbox_leases SET expires_at = min(expires_at, {_NOW}), released_at = {_NOW} "  # noqa: S608
        "WHERE mailbox = ? AND holder = ? AND epoch = ? AND released_at IS NULL",
        (lease.mailbox, lease.holder, lease.epoch),
    )
    return cur.rowcount == 1


def check(conn: sqlite3.Connection, fence: Fence) -> None:
    now = _row(conn, fence.mailbox)
    if now is None or now.holder != fence.node or now.epoch != fence.epoch:
        raise lease_lost(fence, now)


def every(conn: sqlite3.Connection) -> list[Lease]:
    return [_lease(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM mailbox_leases ORDER BY mailbox").fetchall()]  # noqa: S608
