"""Reading messages, mailbox status and the audit trail from SQLite, as the store's values."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from gateway.receipts.model import DeliveryState
from gateway.records.chain import AuditEntry, ChainHead, ChainRow
from gateway.records.deliveries import DeliveryRecord
from gateway.records.leases import Lease
from gateway.records.messages import CaseSummary, MailboxStatus, MessagePlace, MessageRecord, State
from gateway.records.outbox import OutboxRecord, OutboxState
from gateway.records.signing import Checkpoint
from gateway.records.sqlite import deliveries as deliveries_sql
from gateway.records.sqlite import leases as leases_sql
from gateway.records.sqlite import outbox as outbox_sql
from gateway.records.sqlite.connect import sqlite_errors
from gateway.records.store import EntryFilter

MESSAGE_COLUMNS = (
    "id",
    "mailbox",
    "folder",
    "uidvalidity",
    "uid",
    "sha256",
    "message_id",
    "size",
    "internaldate",
    "fetched_at",
    "updated_at",
    "state",
    "target_state",
    "case_ref",
    "case_folder",
    "path",
    "route",
    "reasons",
    "verdict",
    "duplicate_of",
    "manifest_sha256",
    "server_done",
    "subject",
    "from_addr",
)
ENTRY_SELECT = (
    "SELECT seq, at, event, actor, message, case_ref, document, correspondent, details, prev_hash, hash FROM audit"
)
#: Entries of every message or document ever assigned to one of the case names (see EntryFilter).
CASE_FILTER = (
    "(case_ref IN ({names}) OR message IN (SELECT message FROM audit WHERE message IS NOT NULL AND "
    "(case_ref IN ({names}) OR (event = 'routed' AND json_extract(details, '$.case_folder') IN ({names})))) "
    "OR document IN (SELECT document FROM audit WHERE document IS NOT NULL AND case_ref IN ({names})))"
)
CORRESPONDENT_FILTER = (
    "(correspondent LIKE ? ESCAPE '\\' OR message IN "
    "(SELECT message FROM audit WHERE message IS NOT NULL AND correspondent LIKE ? ESCAPE '\\'))"
)
_CHUNK = 500  # keys per IN (...) list, well below SQLite's variable limit


def message_from_row(row: sqlite3.Row) -> MessageRecord:
    d = dict(row)
    d["reasons"] = json.loads(d["reasons"] or "[]")
    d["verdict"] = json.loads(d["verdict"]) if d["verdict"] else None
    d["server_done"] = bool(d["server_done"])
    return MessageRecord(**d)


def message_values(rec: MessageRecord) -> tuple[Any, ...]:
    """The row of ``rec`` in ``MESSAGE_COLUMNS`` order."""
    values = []
    for col in MESSAGE_COLUMNS:
        v = getattr(rec, col)
        if col == "reasons":
            v = json.dumps(v)
        elif col == "verdict":
            v = json.dumps(v, sort_keys=True) if v is not None else None
        elif col == "server_done":
            v = int(v)
        values.append(v)
    return tuple(values)


def entry_from_row(row: sqlite3.Row | tuple[Any, ...]) -> AuditEntry:
    seq, at, event, actor, message, case, document, corr, details, prev, h = tuple(row)
    return AuditEntry(seq, at, event, actor, message, case, document, corr, json.loads(details), prev, h)


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _marks(n: int) -> str:
    return ",".join("?" * n)


class SQLiteReader:
    """``MessageReader`` and ``AuditReader`` over one connection (a snapshot when inside BEGIN)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    # -- plumbing ----------------------------------------------------------------------------------
    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with sqlite_errors("reading the ledger"):
            return self._conn.execute(sql, args).fetchall()

    def _one(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Row | None:
        with sqlite_errors("reading the ledger"):
            row: sqlite3.Row | None = self._conn.execute(sql, args).fetchone()
            return row

    def _iter(self, sql: str, args: Sequence[Any] = ()) -> Iterator[sqlite3.Row]:
        with sqlite_errors("reading the ledger"):
            yield from self._conn.execute(sql, args)

    def _messages(self, where: str, args: Sequence[Any] = ()) -> list[MessageRecord]:
        return [message_from_row(r) for r in self._all(f"SELECT * FROM messages WHERE {where}", args)]  # noqa: S608

    # -- the outbox --------------------------------------------------------------------------------
    def outbox_get(self, outbox_id: str) -> OutboxRecord | None:
        with sqlite_errors("reading the ledger"):
            return outbox_sql.get(self._conn, outbox_id)

    def outbox_list(self, states: Sequence[OutboxState] = (), *, case_ref: str | None = None) -> list[OutboxRecord]:
        with sqlite_errors("reading the ledger"):
            return outbox_sql.select(self._conn, states, case_ref)

    def outbox_counts(self) -> dict[str, int]:
        with sqlite_errors("reading the ledger"):
            return outbox_sql.counts(self._conn)

    def outbox_lacking_copies(self, *, sent_folder: bool = False) -> list[OutboxRecord]:
        with sqlite_errors("reading the ledger"):
            return outbox_sql.lacking_copies(self._conn, sent_folder=sent_folder)

    def outbox_oldest_waiting(self) -> str | None:
        with sqlite_errors("reading the ledger"):
            return outbox_sql.oldest_waiting(self._conn)

    # -- delivery records ----------------------------------------------------------------------------
    def deliveries_list(
        self, states: Sequence[DeliveryState] = (), *, case_ref: str | None = None
    ) -> list[DeliveryRecord]:
        with sqlite_errors("reading the ledger"):
            return deliveries_sql.select(self._conn, case_ref, states)

    def delivery_get(self, document_id: str) -> list[DeliveryRecord]:
        with sqlite_errors("reading the ledger"):
            return deliveries_sql.of_document(self._conn, document_id)

    def delivery_counts(self) -> dict[str, int]:
        with sqlite_errors("reading the ledger"):
            return deliveries_sql.counts(self._conn)

    def outbox_by_envid(self, envid: str) -> OutboxRecord | None:
        with sqlite_errors("reading the ledger"):
            return outbox_sql.by_key(self._conn, "envid", envid)

    def outbox_by_message_id(self, message_id: str) -> OutboxRecord | None:
        with sqlite_errors("reading the ledger"):
            return outbox_sql.by_key(self._conn, "message_id", message_id)

    # -- messages ----------------------------------------------------------------------------------
    def get(self, msg_id: str) -> MessageRecord | None:
        row = self._one("SELECT * FROM messages WHERE id = ?", (msg_id,))
        return message_from_row(row) if row else None

    def by_key(self, mailbox: str, folder: str, uidvalidity: int, uids: Sequence[int]) -> dict[int, MessageRecord]:
        out: dict[int, MessageRecord] = {}
        for i in range(0, len(uids), _CHUNK):
            chunk = list(uids[i : i + _CHUNK])
            where = f"mailbox=? AND folder=? AND uidvalidity=? AND uid IN ({_marks(len(chunk))})"
            for rec in self._messages(where, (mailbox, folder, uidvalidity, *chunk)):
                out[rec.uid] = rec
        return out

    def get_many(self, ids: Sequence[str]) -> dict[str, MessageRecord]:
        out: dict[str, MessageRecord] = {}
        for i in range(0, len(ids), _CHUNK):
            chunk = list(ids[i : i + _CHUNK])
            out.update((rec.id, rec) for rec in self._messages(f"id IN ({_marks(len(chunk))})", chunk))
        return out

    def first_by_sha256(self, sha256: str) -> MessageRecord | None:
        row = self._one(
            "SELECT * FROM messages WHERE sha256=? AND state IN ('stored','quarantined','released') "
            "ORDER BY fetched_at LIMIT 1",
            (sha256,),
        )
        return message_from_row(row) if row else None

    def by_message_id(self, message_id: str) -> list[MessageRecord]:
        return self._messages("message_id=? ORDER BY fetched_at", (message_id,))

    def first_by_sha256_many(self, sha256s: Sequence[str]) -> dict[str, MessageRecord]:
        out: dict[str, MessageRecord] = {}
        for sha in dict.fromkeys(sha256s):
            if (found := self.first_by_sha256(sha)) is not None:
                out[sha] = found
        return out

    def by_message_ids(self, message_ids: Sequence[str]) -> dict[str, list[MessageRecord]]:
        out: dict[str, list[MessageRecord]] = {}
        for mid in dict.fromkeys(message_ids):
            if found := self.by_message_id(mid):
                out[mid] = found
        return out

    def in_state(self, state: State, *, mailbox: str | None = None) -> list[MessageRecord]:
        if mailbox is None:
            return self._messages("state=? ORDER BY fetched_at", (state,))
        return self._messages("state=? AND mailbox=? ORDER BY fetched_at", (state, mailbox))

    def awaiting_server(self, mailbox: str, folder: str) -> list[MessageRecord]:
        return self._messages("mailbox=? AND folder=? AND server_done=0 AND state != 'processing'", (mailbox, folder))

    def all_messages(self) -> Iterator[MessageRecord]:
        for row in self._iter("SELECT * FROM messages ORDER BY fetched_at"):
            yield message_from_row(row)

    def message_places(self) -> Iterator[MessagePlace]:
        with sqlite_errors("reading the ledger"):
            cur = self._conn.cursor()
            cur.row_factory = None
            cur.execute("SELECT id, state, target_state, path, manifest_sha256 FROM messages ORDER BY fetched_at")
            while rows := cur.fetchmany(2000):
                yield from map(MessagePlace._make, rows)

    def places_of(self, ids: Sequence[str]) -> dict[str, MessagePlace]:
        out: dict[str, MessagePlace] = {}
        with sqlite_errors("reading the ledger"):
            cur = self._conn.cursor()
            cur.row_factory = None
            for i in range(0, len(ids), _CHUNK):
                chunk = list(ids[i : i + _CHUNK])
                cur.execute(
                    "SELECT id, state, target_state, path, manifest_sha256 FROM messages "  # noqa: S608
                    f"WHERE id IN ({_marks(len(chunk))})",
                    chunk,
                )
                out.update((r[0], MessagePlace._make(r)) for r in cur.fetchall())
        return out

    def messages_of_case(self, case_folder: str) -> list[MessageRecord]:
        return self._messages("case_folder=? AND state IN ('stored','released') ORDER BY fetched_at", (case_folder,))

    def cases(self) -> list[CaseSummary]:
        rows = self._all(
            "SELECT case_folder, MIN(case_ref) AS case_ref, COUNT(*) AS messages, MAX(fetched_at) AS last "
            "FROM messages WHERE state IN ('stored','released') GROUP BY case_folder ORDER BY case_folder"
        )
        return [CaseSummary(r["case_folder"], r["case_ref"], r["messages"], r["last"]) for r in rows]

    def counts_by_state(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self._all("SELECT state, COUNT(*) FROM messages GROUP BY state")}

    def verification_counts(self) -> dict[str, int]:
        rows = self._all(
            "SELECT json_extract(verdict, '$.verdict'), COUNT(*) FROM messages WHERE verdict IS NOT NULL GROUP BY 1"
        )
        return {str(r[0]): int(r[1]) for r in rows if r[0] is not None}

    def statuses(self) -> list[MailboxStatus]:
        return [MailboxStatus(**dict(r)) for r in self._all("SELECT * FROM mailbox_status ORDER BY mailbox")]

    def leases(self) -> list[Lease]:
        with sqlite_errors("reading the mailbox leases"):
            return leases_sql.every(self._conn)

    # -- the audit trail ---------------------------------------------------------------------------
    def entries(self, since_seq: int = 0) -> Iterator[AuditEntry]:
        for row in self._iter(ENTRY_SELECT + " WHERE seq > ? ORDER BY seq", (since_seq,)):
            yield entry_from_row(row)

    def chain_rows(self, since_seq: int = 0) -> Iterator[ChainRow]:
        """Plain tuples, not ``sqlite3.Row``: a verification reads every entry once, and fast."""
        with sqlite_errors("reading the ledger"):
            cur = self._conn.cursor()
            cur.row_factory = None
            cur.arraysize = 2000
            cur.execute(ENTRY_SELECT + " WHERE seq > ? ORDER BY seq", (since_seq,))
            while rows := cur.fetchmany():
                yield from rows

    def seqs_of_hash(self, entry_hash: str) -> list[int]:
        rows = self._all("SELECT seq FROM audit WHERE hash = ? ORDER BY seq", (entry_hash,))
        return [int(r[0]) for r in rows]

    def entry(self, seq: int) -> AuditEntry | None:
        row = self._one(ENTRY_SELECT + " WHERE seq = ?", (seq,))
        return entry_from_row(row) if row else None

    def entry_hashes(self, since_seq: int = 0) -> Iterator[tuple[int, str]]:
        for row in self._iter("SELECT seq, hash FROM audit WHERE seq > ? ORDER BY seq", (since_seq,)):
            yield row[0], row[1]

    def select(self, f: EntryFilter) -> Iterator[AuditEntry]:
        where: list[str] = []
        args: list[Any] = []
        if f.case_names:
            where.append(CASE_FILTER.format(names=_marks(len(f.case_names))))
            args += list(f.case_names) * 4
        if f.message is not None:
            where.append("message = ?")
            args.append(f.message)
        if f.document is not None:
            where.append("document = ?")
            args.append(f.document)
        if f.correspondent is not None:
            where.append(CORRESPONDENT_FILTER)
            args += [_like(f.correspondent)] * 2
        if f.since is not None:
            where.append("at >= ?")
            args.append(f.since)
        if f.until is not None:
            where.append("at < ?")
            args.append(f.until)
        if f.events:
            where.append(f"event IN ({_marks(len(f.events))})")
            args += list(f.events)
        sql = ENTRY_SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq"
        for row in self._iter(sql, args):
            yield entry_from_row(row)

    def checkpoints(self) -> list[Checkpoint]:
        rows = self._all("SELECT seq, at, hash, key_id, signature FROM audit_checkpoints ORDER BY seq")
        return [Checkpoint(*tuple(r)) for r in rows]

    def head(self) -> ChainHead | None:
        if self._one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_head'") is None:
            return None
        row = self._one("SELECT seq, hash FROM audit_head WHERE id = 1")
        return ChainHead(row[0], row[1]) if row else None

    def count(self) -> int:
        row = self._one("SELECT COUNT(*) FROM audit")
        assert row is not None
        return int(row[0])
