"""Mailbox leases in PostgreSQL: take, renew, give up, check the fence (``records.leases``).

Every expiry is judged by ``clock_timestamp()``, the database server's clock at the
statement, never a node's, and not ``now()``, which is the start of a transaction that may
have waited for the chain head. Taking and giving up run inside a unit of work, after the
chain head's lock, so they are serialised with every fenced commit: a commit's fence check
and a take-over can never interleave. A renewal is one statement of its own on the lease
row (no chain head: it changes neither holder nor epoch, which is all a fence checks); the
row lock orders it against a take-over of the same row.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg.rows import DictRow

from gateway.records.leases import Acquisition, Fence, Lease
from gateway.records.postgres.connect import Conn
from gateway.records.store import lease_lost

_TEXT = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
_RETURN = (
    f"mailbox, holder, epoch, {_TEXT.format('expires_at')} AS expires_at, "
    "expires_at <= clock_timestamp() AS expired, released_at IS NOT NULL AS released"
)
_UNTIL = "clock_timestamp() + make_interval(secs => %s)"


def _lease(row: DictRow) -> Lease:
    return Lease(
        str(row["mailbox"]),
        str(row["holder"]),
        int(row["epoch"]),
        str(row["expires_at"]),
        bool(row["expired"]),
        bool(row["released"]),
    )


def _row(conn: Conn, mailbox: str, *, lock: bool) -> Lease | None:
    row = conn.execute(
        f"SELECT {_RETURN} FROM mailbox_leases WHERE mailbox = %s" + (" FOR UPDATE" if lock else ""),  # noqa: S608
        (mailbox,),
    ).fetchone()
    return None if row is None else _lease(row)


def take(conn: Conn, mailbox: str, node: str, ttl: float) -> Acquisition:
    before = _row(conn, mailbox, lock=True)
    if before is None:
        row = conn.execute(
            f"INSERT INTO mailbox_leases (mailbox, holder, epoch, acquired_at, expires_at) "  # noqa: S608
            f"VALUES (%s, %s, 1, clock_timestamp(), {_UNTIL}) RETURNING {_RETURN}",
            (mailbox, node, ttl),
        ).fetchone()
    elif before.expired or before.holder == node:
        row = conn.execute(
            "UPDATE mailbox_leases SET holder = %s, epoch = epoch + 1, acquired_at = clock_timestamp(), "  # noqa: S608
            f"released_at = NULL, expires_at = {_UNTIL} WHERE mailbox = %s RETURNING {_RETURN}",
            (node, ttl, mailbox),
        ).fetchone()
    else:
        return Acquisition(None, before)
    assert row is not None
    return Acquisition(_lease(row), before)


def renew(conn: Conn, lease: Lease, ttl: float) -> Lease:
    row = conn.execute(
        f"UPDATE mailbox_leases SET expires_at = {_UNTIL} "  # noqa: S608
        f"WHERE mailbox = %s AND holder = %s AND epoch = %s AND released_at IS NULL RETURNING {_RETURN}",
        (ttl, lease.mailbox, lease.holder, lease.epoch),
    ).fetchone()
    if row is None:
        raise lease_lost(lease.fence, _row(conn, lease.mailbox, lock=False))
    return _lease(row)


def renew_many(conn: Conn, leases: Sequence[Lease], ttl: float) -> dict[str, Lease]:
    """One statement for all: a node's heartbeat costs one commit however many mailboxes it works."""
    if not leases:
        return {}
    rows = conn.execute(
        f"UPDATE mailbox_leases AS l SET expires_at = {_UNTIL} "  # noqa: S608
        "FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS k(mailbox, holder, epoch) "
        "WHERE l.mailbox = k.mailbox AND l.holder = k.holder AND l.epoch = k.epoch AND l.released_at IS NULL "
        f"RETURNING {_RETURN.replace('mailbox, holder, epoch, ', 'l.mailbox, l.holder, l.epoch, ')}",
        (ttl, [x.mailbox for x in leases], [x.holder for x in leases], [x.epoch for x in leases]),
    ).fetchall()
    return {str(r["mailbox"]): _lease(r) for r in rows}


def give_up(conn: Conn, lease: Lease) -> bool:
    cur = conn.execute(
        "UPDATE mailbox_leases SET expires_at = LEAST(expires_at, clock_timestamp()), released_at = clock_timestamp() "
        "WHERE mailbox = %s AND holder = %s AND epoch = %s AND released_at IS NULL",
        (lease.mailbox, lease.holder, lease.epoch),
    )
    return cur.rowcount == 1


def check(conn: Conn, fence: Fence) -> None:
    """Inside a unit of work (the chain head is locked, so no take-over is under way)."""
    now = _row(conn, fence.mailbox, lock=False)
    if now is None or now.holder != fence.node or now.epoch != fence.epoch:
        raise lease_lost(fence, now)


def every(conn: Conn) -> list[Lease]:
    return [_lease(r) for r in conn.execute(f"SELECT {_RETURN} FROM mailbox_leases ORDER BY mailbox").fetchall()]  # noqa: S608
