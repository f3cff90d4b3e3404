"""The SQL of delivery records in PostgreSQL: one row per (document, recipient) and its timeline.

Writes run inside the store's transaction, which holds the chain head's lock: a record is
read, advanced and written back while no other writer can, so two receipts for one
recipient applied by two processes (or nodes) are decided one after the other. The
timeline is append-only: a step's row is inserted once at the next position.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg.rows import DictRow

from gateway.records.deliveries import DeliveryRecord, DeliveryTarget, Evidence, TimelineEntry
from gateway.records.postgres.connect import Conn, write_rows

_TIMELINE_COLUMNS = "step, at, received_at, outcome, before, after, kind, path, sha256, detail"
_SELECT = (
    "SELECT d.document_id, d.recipient, o.case_ref, d.state, d.created_at, d.updated_at "
    "FROM deliveries d JOIN outbox o ON o.id = d.document_id"
)
_UPSERT = (
    "INSERT INTO deliveries (document_id, recipient, state, created_at, updated_at) VALUES (%s, %s, %s, %s, %s) "
    "ON CONFLICT (document_id, recipient) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at"
)
_INSERT_ENTRY = f"INSERT INTO delivery_timeline (document_id, recipient, position, {_TIMELINE_COLUMNS})"


def _entry(row: DictRow) -> TimelineEntry:
    return TimelineEntry(
        state=row["step"],
        at=row["at"],
        evidence=Evidence(row["kind"], row["path"], row["sha256"], row["detail"]),
        outcome=row["outcome"],
        before=row["before"],
        after=row["after"],
        received_at=row["received_at"],
    )


def _records(conn: Conn, rows: Sequence[DictRow]) -> list[DeliveryRecord]:
    keys = [(r["document_id"], r["recipient"]) for r in rows]
    timelines: dict[tuple[str, str], list[TimelineEntry]] = {k: [] for k in keys}
    documents = sorted({k[0] for k in keys})
    if documents:
        for row in conn.execute(
            f"SELECT document_id, recipient, {_TIMELINE_COLUMNS} FROM delivery_timeline "  # noqa: S608
            "WHERE document_id = ANY(%s) ORDER BY document_id, recipient, position",
            (documents,),
        ).fetchall():
            key = (row["document_id"], row["recipient"])
            if key in timelines:
                timelines[key].append(_entry(row))
    return [
        DeliveryRecord(
            document_id=r["document_id"],
            recipient=r["recipient"],
            case_ref=r["case_ref"],
            state=r["state"],
            timeline=tuple(timelines[k]),
            created_at=r["created_at"],
            updated_at=r["updated_at"],
        )
        for r, k in zip(rows, keys, strict=True)
    ]


def get_one(conn: Conn, document_id: str, recipient: str) -> DeliveryRecord | None:
    rows = conn.execute(
        f"{_SELECT} WHERE d.document_id = %s AND d.recipient = %s FOR UPDATE OF d", (document_id, recipient)
    ).fetchall()
    found = _records(conn, rows)
    return found[0] if found else None


def of_document(conn: Conn, document_id: str) -> list[DeliveryRecord]:
    """The document's records in the order of its envelope recipients."""
    rows = conn.execute(
        f"{_SELECT} LEFT JOIN outbox_recipients r ON r.outbox_id = d.document_id AND r.address = d.recipient "
        "WHERE d.document_id = %s ORDER BY r.position NULLS FIRST, d.recipient",
        (document_id,),
    ).fetchall()
    return _records(conn, rows)


def select(conn: Conn, case_ref: str | None, states: Sequence[str]) -> list[DeliveryRecord]:
    where: list[str] = ["TRUE"]
    args: list[Any] = []
    if case_ref is not None:
        where.append("o.case_ref = %s")
        args.append(case_ref)
    if states:
        where.append("d.state = ANY(%s)")
        args.append(list(states))
    sql = f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY o.created_at, d.document_id, d.recipient"
    return _records(conn, conn.execute(sql, args).fetchall())


def target(conn: Conn, document_id: str, recipient: str) -> DeliveryTarget | None:
    """The outbox document's case and whether it was handed over, when ``recipient`` is one of its recipients."""
    row = conn.execute(
        "SELECT o.case_ref, o.state AS document_state, r.state AS recipient_state FROM outbox o "
        "JOIN outbox_recipients r ON r.outbox_id = o.id WHERE o.id = %s AND r.address = %s ORDER BY r.position LIMIT 1",
        (document_id, recipient),
    ).fetchone()
    if row is None:
        return None
    return DeliveryTarget(str(row["case_ref"]), row["document_state"] == "active" or row["recipient_state"] == "sent")


def save(conn: Conn, rec: DeliveryRecord, new_entries: int) -> None:
    """Write the record's state and append its last ``new_entries`` timeline entries."""
    conn.execute(_UPSERT, (rec.document_id, rec.recipient, rec.state, rec.created_at, rec.updated_at))
    first = len(rec.timeline) - new_entries
    rows = [
        (
            rec.document_id,
            rec.recipient,
            first + i,
            t.state,
            t.at,
            t.received_at,
            t.outcome,
            t.before,
            t.after,
            t.evidence.kind,
            t.evidence.path,
            t.evidence.sha256,
            t.evidence.detail,
        )
        for i, t in enumerate(rec.timeline[first:])
    ]
    write_rows(conn, _INSERT_ENTRY, rows)


def counts(conn: Conn) -> dict[str, int]:
    rows = conn.execute("SELECT state, COUNT(*) AS n FROM deliveries GROUP BY state").fetchall()
    return {r["state"]: int(r["n"]) for r in rows}
