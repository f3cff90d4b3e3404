"""The SQL of delivery records: one row per (document, recipient) and its timeline.

Writes run inside the store's transaction (BEGIN IMMEDIATE): a record is read, advanced
and written back under the write lock, so two receipts for one recipient applied by two
processes are decided one after the other, never both against the same old state. The
timeline is append-only: a step's row is inserted once at the next position.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from gateway.records.deliveries import DeliveryRecord, DeliveryTarget, Evidence, TimelineEntry

_TIMELINE_COLUMNS = "step, at, received_at, outcome, before, after, kind, path, sha256, detail"
_SELECT = (
    "SELECT d.document_id, d.recipient, o.case_ref, d.state, d.created_at, d.updated_at "
    "FROM deliveries d JOIN outbox o ON o.id = d.document_id"
)
_UPSERT = (
    "INSERT INTO deliveries (document_id, recipient, state, created_at, updated_at) VALUES (?,?,?,?,?) "
    "ON CONFLICT(document_id, recipient) DO UPDATE SET state=excluded.state, updated_at=excluded.updated_at"
)
_INSERT_ENTRY = (
    f"INSERT INTO delivery_timeline (document_id, recipient, position, {_TIMELINE_COLUMNS}) "  # noqa: S608
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_CHUNK = 500  # keys per IN (...) list


def _entry(row: sqlite3.Row) -> TimelineEntry:
    return TimelineEntry(
        state=row["step"],
        at=row["at"],
        evidence=Evidence(row["kind"], row["path"], row["sha256"], row["detail"]),
        outcome=row["outcome"],
        before=row["before"],
        after=row["after"],
        received_at=row["received_at"],
    )


def _timelines(conn: sqlite3.Connection, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[TimelineEntry]]:
    out: dict[tuple[str, str], list[TimelineEntry]] = {k: [] for k in keys}
    documents = sorted({k[0] for k in keys})
    for i in range(0, len(documents), _CHUNK):
        chunk = documents[i : i + _CHUNK]
        sql = (
            f"SELECT document_id, recipient, {_TIMELINE_COLUMNS} FROM delivery_timeline "  # noqa: S608
            f"WHERE document_id IN ({','.join('?' * len(chunk))}) ORDER BY document_id, recipient, position"
        )
        for row in conn.execute(sql, chunk):
            key = (row["document_id"], row["recipient"])
            if key in out:
                out[key].append(_entry(row))
    return out


def _records(conn: sqlite3.Connection, rows: Sequence[sqlite3.Row]) -> list[DeliveryRecord]:
    keys = [(r["document_id"], r["recipient"]) for r in rows]
    timelines = _timelines(conn, keys)
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


def get_one(conn: sqlite3.Connection, document_id: str, recipient: str) -> DeliveryRecord | None:
    rows = conn.execute(f"{_SELECT} WHERE d.document_id = ? AND d.recipient = ?", (document_id, recipient)).fetchall()
    found = _records(conn, rows)
    return found[0] if found else None


def of_document(conn: sqlite3.Connection, document_id: str) -> list[DeliveryRecord]:
    """The document's records in the order of its envelope recipients."""
    rows = conn.execute(
        f"{_SELECT} LEFT JOIN outbox_recipients r ON r.outbox_id = d.document_id AND r.address = d.recipient "
        "WHERE d.document_id = ? ORDER BY r.position, d.recipient",
        (document_id,),
    ).fetchall()
    return _records(conn, rows)


def select(conn: sqlite3.Connection, case_ref: str | None, states: Sequence[str]) -> list[DeliveryRecord]:
    where: list[str] = ["1=1"]
    args: list[Any] = []
    if case_ref is not None:
        where.append("o.case_ref = ?")
        args.append(case_ref)
    if states:
        where.append(f"d.state IN ({','.join('?' * len(states))})")
        args.extend(states)
    sql = f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY o.created_at, d.document_id, d.recipient"
    return _records(conn, conn.execute(sql, args).fetchall())


def target(conn: sqlite3.Connection, document_id: str, recipient: str) -> DeliveryTarget | None:
    """The outbox document's case and whether it was handed over, when ``recipient`` is one of its recipients."""
    row = conn.execute(
        "SELECT o.case_ref, o.state, r.state FROM outbox o JOIN outbox_recipients r ON r.outbox_id = o.id "
        "WHERE o.id = ? AND r.address = ?",
        (document_id, recipient),
    ).fetchone()
    if row is None:
        return None
    return DeliveryTarget(str(row[0]), row[1] == "active" or row[2] == "sent")


def save(conn: sqlite3.Connection, rec: DeliveryRecord, new_entries: int) -> None:
    """Write the record's state and append its last ``new_entries`` timeline entries."""
    conn.execute(_UPSERT, (rec.document_id, rec.recipient, rec.state, rec.created_at, rec.updated_at))
    first = len(rec.timeline) - new_entries
    conn.executemany(
        _INSERT_ENTRY,
        [
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
        ],
    )


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {row[0]: int(row[1]) for row in conn.execute("SELECT state, COUNT(*) FROM deliveries GROUP BY state")}
