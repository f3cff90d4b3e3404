"""The SQL of the outbox: reading and writing documents and their recipients.

Writes run inside the store's transaction (BEGIN IMMEDIATE), so a state change and the
audit events describing it commit together. ``save`` compares the stored state with the
one the caller read (``expect``): a person's ``hold`` and the delivery agent's ``active``
cannot both win.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from gateway.clock import iso, utcnow
from gateway.records.outbox import ClaimTerms, OutboxRecord, OutboxState, RecipientStatus
from gateway.records.store import StaleOutboxState

_COLUMNS = (
    "id",
    "message_id",
    "case_ref",
    "case_folder",
    "mail_from",
    "sha256",
    "size",
    "path",
    "signed",
    "encrypted",
    "key_sources",
    "state",
    "attempts",
    "next_attempt_at",
    "created_at",
    "updated_at",
    "envid",
    "last_reply",
    "resent",
    "sent_path",
    "sent_manifest_sha256",
    "sent_folder",
    "claimed_by",
    "bcc",
    "bcc_copy_of",
    "key_refusals",
)
_MUTABLE = (
    "state",
    "attempts",
    "next_attempt_at",
    "updated_at",
    "last_reply",
    "resent",
    "sent_path",
    "sent_manifest_sha256",
    "sent_folder",
    "claimed_by",
)
_INSERT = f"INSERT INTO outbox ({','.join(_COLUMNS)}) VALUES ({','.join('?' * len(_COLUMNS))})"  # noqa: S608
_UPDATE = f"UPDATE outbox SET {', '.join(f'{c}=?' for c in _MUTABLE)} WHERE id=?"  # noqa: S608
#: A claim writes its token and expiry in the same statement.
_UPDATE_CLAIMING = _UPDATE.replace(" WHERE id=?", ", claim_token=?, claim_expires_at=? WHERE id=?")
_RCPT_UPSERT = (
    "INSERT INTO outbox_recipients (outbox_id, position, address, state, reply, queue_id, updated_at) "
    "VALUES (?,?,?,?,?,?,?) ON CONFLICT(outbox_id, position) DO UPDATE SET "
    "state=excluded.state, reply=excluded.reply, queue_id=excluded.queue_id, updated_at=excluded.updated_at"
)


def _value(rec: OutboxRecord, col: str) -> Any:
    v = getattr(rec, col)
    if col == "key_sources":
        return json.dumps([list(k) for k in v])
    if col in ("bcc", "key_refusals"):
        return json.dumps(list(v))
    if col in ("encrypted", "resent"):
        return int(v)
    return v


def _recipient_rows(rec: OutboxRecord) -> list[tuple[Any, ...]]:
    return [
        (rec.id, i, r.address, r.state, r.reply, r.queue_id, r.updated_at or rec.updated_at)
        for i, r in enumerate(rec.recipients)
    ]


def insert(conn: sqlite3.Connection, rec: OutboxRecord) -> None:
    conn.execute(_INSERT, tuple(_value(rec, c) for c in _COLUMNS))
    conn.executemany(_RCPT_UPSERT, _recipient_rows(rec))


def save(
    conn: sqlite3.Connection,
    rec: OutboxRecord,
    expect: Sequence[OutboxState] | None,
    expect_claim: str | None = None,
    claim: ClaimTerms | None = None,
) -> None:
    """Write ``rec``'s state and recipients; ``expect``: the states the row may be in now;
    ``expect_claim``: the claim it must still carry (two passes recovering one crash);
    ``claim``: its token and expiry (``ClaimTerms``), or a new claim to make.

    One machine's clock is the database's clock here: the write transaction holds the only
    write lock, so the row read is the row written."""
    if expect is not None or expect_claim is not None or claim is not None:
        row = conn.execute(
            "SELECT state, claimed_by, claim_token, claim_expires_at, sent_path FROM outbox WHERE id=?", (rec.id,)
        ).fetchone()
        if row is None or (expect is not None and row[0] not in expect):
            found = row[0] if row is not None else "missing"
            raise StaleOutboxState(f"outbox {rec.id} is {found}, not {' or '.join(expect or ())}")
        if expect_claim is not None and row[1] != expect_claim:
            raise StaleOutboxState(f"outbox {rec.id} was claimed by {row[1]} meanwhile")
        if claim is not None:
            _check_claim(
                rec.id, claim, token=int(row[2]), expires=row[3], holder=row[1], now=iso(utcnow()), filed=row[4]
            )
            if claim.ttl is not None:
                rec.claim_token = int(row[2]) + 1
                rec.claim_expires_at = iso(utcnow() + timedelta(seconds=claim.ttl))
                values = (*(_value(rec, c) for c in _MUTABLE), rec.claim_token, rec.claim_expires_at, rec.id)
                conn.execute(_UPDATE_CLAIMING, values)
                conn.executemany(_RCPT_UPSERT, _recipient_rows(rec))
                return
    conn.execute(_UPDATE, (*(_value(rec, c) for c in _MUTABLE), rec.id))
    conn.executemany(_RCPT_UPSERT, _recipient_rows(rec))


def _check_claim(
    outbox_id: str,
    claim: ClaimTerms,
    *,
    token: int,
    expires: str | None,
    holder: str | None,
    now: str,
    filed: str | None,
) -> None:
    if claim.fence is not None and token != claim.fence:
        raise StaleOutboxState(f"outbox {outbox_id} was claimed again meanwhile (claim {token}, not {claim.fence})")
    if claim.expired and expires is not None and expires > now:
        raise StaleOutboxState(f"outbox {outbox_id} is claimed by {holder} until {expires}")
    if claim.unfiled and filed is not None:
        raise StaleOutboxState(f"outbox {outbox_id}'s sent copy was recorded meanwhile ({filed})")


def renew(conn: sqlite3.Connection, claims: Sequence[tuple[str, int]], ttl: float) -> list[str]:
    """Extend the claims still held (active, same token) to ``ttl`` seconds from now; the ids renewed."""
    until = iso(utcnow() + timedelta(seconds=ttl))
    renewed = []
    for outbox_id, token in claims:
        cur = conn.execute(
            "UPDATE outbox SET claim_expires_at=? WHERE id=? AND claim_token=? AND state='active'",
            (until, outbox_id, token),
        )
        if cur.rowcount:
            renewed.append(outbox_id)
    return renewed


def _record(conn: sqlite3.Connection, row: sqlite3.Row) -> OutboxRecord:
    d = dict(row)
    d["key_sources"] = [tuple(k) for k in json.loads(d["key_sources"] or "[]")]
    # A ledger not yet migrated (read-only readers never migrate) has no Bcc columns.
    d["bcc"] = list(json.loads(d.get("bcc") or "[]"))
    d["key_refusals"] = list(json.loads(d.get("key_refusals") or "[]"))
    d.setdefault("bcc_copy_of", None)
    d.setdefault("claim_token", 0)
    d.setdefault("claim_expires_at", None)
    d["encrypted"] = bool(d["encrypted"])
    d["resent"] = bool(d["resent"])
    rows = conn.execute(
        "SELECT address, state, reply, queue_id, updated_at FROM outbox_recipients WHERE outbox_id=? ORDER BY position",
        (d["id"],),
    ).fetchall()
    d["recipients"] = [RecipientStatus(r[0], r[1], r[2], r[3], r[4]) for r in rows]
    return OutboxRecord(**d)


def get(conn: sqlite3.Connection, outbox_id: str) -> OutboxRecord | None:
    row = conn.execute("SELECT * FROM outbox WHERE id=?", (outbox_id,)).fetchone()
    return _record(conn, row) if row is not None else None


def by_key(conn: sqlite3.Connection, column: str, value: str) -> OutboxRecord | None:
    """The document whose ``envid`` or ``message_id`` is ``value`` (the oldest, should several share it)."""
    if column not in ("envid", "message_id"):
        raise ValueError(f"outbox documents are not looked up by {column!r}")
    sql = f"SELECT * FROM outbox WHERE {column} = ? ORDER BY created_at, id LIMIT 1"  # noqa: S608
    row = conn.execute(sql, (value,)).fetchone()
    return _record(conn, row) if row is not None else None


def lacking_copies(conn: sqlite3.Connection, *, sent_folder: bool) -> list[OutboxRecord]:
    """Finished documents sent to someone whose case-folder copy (or Sent-folder copy) is missing."""
    missing = "(sent_path IS NULL OR sent_folder IS NULL)" if sent_folder else "sent_path IS NULL"
    sql = (
        f"SELECT * FROM outbox WHERE state IN ('sent', 'bounced') AND {missing} AND EXISTS "  # noqa: S608
        "(SELECT 1 FROM outbox_recipients r WHERE r.outbox_id = outbox.id AND r.state = 'sent') ORDER BY created_at, id"
    )
    return [_record(conn, row) for row in conn.execute(sql).fetchall()]


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {row[0]: int(row[1]) for row in conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state")}


def select(
    conn: sqlite3.Connection, states: Sequence[OutboxState] = (), case_ref: str | None = None
) -> list[OutboxRecord]:
    where: list[str] = ["1=1"]
    args: list[Any] = []
    if states:
        where.append(f"state IN ({','.join('?' * len(states))})")
        args.extend(states)
    if case_ref is not None:
        where.append("case_ref = ?")
        args.append(case_ref)
    sql = f"SELECT * FROM outbox WHERE {' AND '.join(where)} ORDER BY created_at, id"  # noqa: S608
    return [_record(conn, row) for row in conn.execute(sql, args).fetchall()]


def oldest_waiting(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT MIN(created_at) FROM outbox WHERE state IN ('queued', 'deferred')").fetchone()
    return str(row[0]) if row is not None and row[0] is not None else None
