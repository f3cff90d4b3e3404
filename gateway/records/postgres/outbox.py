"""The SQL of the outbox in PostgreSQL: documents and their recipients.

Writes run inside the store's transaction, which holds the chain head's lock, so a state
change and the events describing it commit together. ``save`` reads the stored state
``FOR UPDATE`` and compares it with the one the caller read (``expect``): a person's
``hold`` and the delivery agent's ``active`` cannot both win.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from psycopg.rows import DictRow

from gateway.records.outbox import ClaimTerms, OutboxRecord, OutboxState, RecipientStatus
from gateway.records.postgres.connect import Conn, write_rows
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
    "claim_token",
    "claim_expires_at",
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
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM outbox"  # noqa: S608
_INSERT = f"INSERT INTO outbox ({', '.join(_COLUMNS)}) VALUES ({', '.join(['%s'] * len(_COLUMNS))})"  # noqa: S608
_UPDATE = f"UPDATE outbox SET {', '.join(f'{c} = %s' for c in _MUTABLE)} WHERE id = %s"  # noqa: S608
#: The database's clock in the gateway's time format: every node judges a claim by the same clock.
_FORMAT = """'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"""
_NOW = f"to_char(clock_timestamp() AT TIME ZONE 'UTC', {_FORMAT})"
_LATER = f"to_char((clock_timestamp() + make_interval(secs => %s)) AT TIME ZONE 'UTC', {_FORMAT})"
#: A claim writes its token (one higher) and expiry in the same statement.
_UPDATE_CLAIMING = (
    f"UPDATE outbox SET {', '.join(f'{c} = %s' for c in _MUTABLE)}, claim_token = claim_token + 1, "  # noqa: S608
    f"claim_expires_at = {_LATER} WHERE id = %s RETURNING claim_token, claim_expires_at"
)
_RCPT_UPSERT = (
    "INSERT INTO outbox_recipients (outbox_id, position, address, state, reply, queue_id, updated_at)",
    "ON CONFLICT (outbox_id, position) DO UPDATE SET "
    "state = excluded.state, reply = excluded.reply, queue_id = excluded.queue_id, updated_at = excluded.updated_at",
)


def _value(rec: OutboxRecord, col: str) -> Any:
    v = getattr(rec, col)
    if col == "key_sources":
        return json.dumps([list(k) for k in v])
    if col in ("bcc", "key_refusals"):
        return json.dumps(list(v))
    if col in ("encrypted", "resent"):
        return bool(v)
    return v


def _recipient_rows(rec: OutboxRecord) -> list[tuple[Any, ...]]:
    return [
        (rec.id, i, r.address, r.state, r.reply, r.queue_id, r.updated_at or rec.updated_at)
        for i, r in enumerate(rec.recipients)
    ]


def insert(conn: Conn, rec: OutboxRecord) -> None:
    conn.execute(_INSERT, tuple(_value(rec, c) for c in _COLUMNS))
    _save_recipients(conn, rec)


def _save_recipients(conn: Conn, rec: OutboxRecord) -> None:
    write_rows(conn, _RCPT_UPSERT[0], _recipient_rows(rec), _RCPT_UPSERT[1])


def save(
    conn: Conn,
    rec: OutboxRecord,
    expect: Sequence[OutboxState] | None,
    expect_claim: str | None = None,
    claim: ClaimTerms | None = None,
) -> None:
    """Write ``rec``'s state and recipients; ``expect``: the states the row may be in now;
    ``expect_claim``: the claim it must still carry (two passes recovering one crash);
    ``claim``: its token and expiry (``ClaimTerms``), or a new claim to make.

    A new claim reads the row ``FOR UPDATE SKIP LOCKED``: a row another transaction holds
    (another node claiming it, its holder renewing) is someone else's, and this node moves
    on instead of queueing behind it. Expiry is judged by the database's clock, the one
    clock every node shares."""
    if expect is not None or expect_claim is not None or claim is not None:
        lock = "FOR UPDATE SKIP LOCKED" if claim is not None and claim.ttl is not None else "FOR UPDATE"
        row = conn.execute(
            f"SELECT state, claimed_by, claim_token, claim_expires_at, sent_path, {_NOW} AS now FROM outbox "  # noqa: S608
            f"WHERE id = %s {lock}",
            (rec.id,),
        ).fetchone()
        if row is None and lock != "FOR UPDATE":
            raise StaleOutboxState(f"outbox {rec.id} is being claimed or renewed by another process")
        if row is None or (expect is not None and row["state"] not in expect):
            found = row["state"] if row is not None else "missing"
            raise StaleOutboxState(f"outbox {rec.id} is {found}, not {' or '.join(expect or ())}")
        if expect_claim is not None and row["claimed_by"] != expect_claim:
            raise StaleOutboxState(f"outbox {rec.id} was claimed by {row['claimed_by']} meanwhile")
        if claim is not None:
            token, expires = int(row["claim_token"]), row["claim_expires_at"]
            if claim.fence is not None and token != claim.fence:
                raise StaleOutboxState(
                    f"outbox {rec.id} was claimed again meanwhile (claim {token}, not {claim.fence})"
                )
            if claim.expired and expires is not None and expires > row["now"]:
                raise StaleOutboxState(f"outbox {rec.id} is claimed by {row['claimed_by']} until {expires}")
            if claim.unfiled and row["sent_path"] is not None:
                raise StaleOutboxState(f"outbox {rec.id}'s sent copy was recorded meanwhile ({row['sent_path']})")
            if claim.ttl is not None:
                made = conn.execute(
                    _UPDATE_CLAIMING, (*(_value(rec, c) for c in _MUTABLE), claim.ttl, rec.id)
                ).fetchone()
                assert made is not None
                rec.claim_token, rec.claim_expires_at = int(made["claim_token"]), made["claim_expires_at"]
                _save_recipients(conn, rec)
                return
    conn.execute(_UPDATE, (*(_value(rec, c) for c in _MUTABLE), rec.id))
    _save_recipients(conn, rec)


def renew(conn: Conn, claims: Sequence[tuple[str, int]], ttl: float) -> list[str]:
    """Extend the claims still held (active, same token) to ``ttl`` seconds past the database's now."""
    renewed = []
    for outbox_id, token in claims:
        row = conn.execute(
            f"UPDATE outbox SET claim_expires_at = {_LATER} "  # noqa: S608
            "WHERE id = %s AND claim_token = %s AND state = 'active' RETURNING id",
            (ttl, outbox_id, token),
        ).fetchone()
        if row is not None:
            renewed.append(outbox_id)
    return renewed


def _records(conn: Conn, rows: Sequence[DictRow]) -> list[OutboxRecord]:
    """Documents with their recipients (one query for all of them, in envelope order)."""
    ids = [r["id"] for r in rows]
    recipients: dict[str, list[RecipientStatus]] = {i: [] for i in ids}
    if ids:
        for r in conn.execute(
            "SELECT outbox_id, address, state, reply, queue_id, updated_at FROM outbox_recipients "
            "WHERE outbox_id = ANY(%s) ORDER BY outbox_id, position",
            (ids,),
        ).fetchall():
            recipients[r["outbox_id"]].append(
                RecipientStatus(r["address"], r["state"], r["reply"], r["queue_id"], r["updated_at"])
            )
    out: list[OutboxRecord] = []
    for row in rows:
        d = dict(row)
        d["key_sources"] = [tuple(k) for k in json.loads(d["key_sources"] or "[]")]
        d["bcc"] = list(json.loads(d["bcc"] or "[]"))
        d["key_refusals"] = list(json.loads(d["key_refusals"] or "[]"))
        d["recipients"] = recipients[d["id"]]
        out.append(OutboxRecord(**d))
    return out


def get(conn: Conn, outbox_id: str) -> OutboxRecord | None:
    found = _records(conn, conn.execute(f"{_SELECT} WHERE id = %s", (outbox_id,)).fetchall())
    return found[0] if found else None


def by_key(conn: Conn, column: str, value: str) -> OutboxRecord | None:
    """The document whose ``envid`` or ``message_id`` is ``value`` (the oldest, should several share it)."""
    if column not in ("envid", "message_id"):
        raise ValueError(f"outbox documents are not looked up by {column!r}")
    sql = f"{_SELECT} WHERE {column} = %s ORDER BY created_at, id LIMIT 1"
    found = _records(conn, conn.execute(sql, (value,)).fetchall())
    return found[0] if found else None


def lacking_copies(conn: Conn, *, sent_folder: bool) -> list[OutboxRecord]:
    """Finished documents sent to someone whose case-folder copy (or Sent-folder copy) is missing."""
    missing = "(sent_path IS NULL OR sent_folder IS NULL)" if sent_folder else "sent_path IS NULL"
    sql = (
        f"{_SELECT} WHERE state IN ('sent', 'bounced') AND {missing} AND EXISTS "  # noqa: S608
        "(SELECT 1 FROM outbox_recipients r WHERE r.outbox_id = outbox.id AND r.state = 'sent') ORDER BY created_at, id"
    )
    return _records(conn, conn.execute(sql).fetchall())


def counts(conn: Conn) -> dict[str, int]:
    rows = conn.execute("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state").fetchall()
    return {r["state"]: int(r["n"]) for r in rows}


def select(conn: Conn, states: Sequence[OutboxState] = (), case_ref: str | None = None) -> list[OutboxRecord]:
    where: list[str] = ["TRUE"]
    args: list[Any] = []
    if states:
        where.append("state = ANY(%s)")
        args.append(list(states))
    if case_ref is not None:
        where.append("case_ref = %s")
        args.append(case_ref)
    sql = f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY created_at, id"
    return _records(conn, conn.execute(sql, args).fetchall())


def oldest_waiting(conn: Conn) -> str | None:
    """When the longest-waiting document (queued or deferred) was created; None when none waits."""
    row = conn.execute("SELECT MIN(created_at) AS t FROM outbox WHERE state IN ('queued', 'deferred')").fetchone()
    return str(row["t"]) if row is not None and row["t"] is not None else None
