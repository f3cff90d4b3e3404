"""Reading messages, mailbox status and the trail from PostgreSQL, as the store's values.

Long reads (the whole trail, every message) are fetched in pages by key, so a trail of
millions of entries never sits in memory at once and no server-side cursor has to
outlive a transaction; inside a snapshot every page sees the same moment.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import fields
from typing import Any

from psycopg.rows import DictRow, tuple_row

from gateway.receipts.model import DeliveryState
from gateway.records.chain import AuditEntry, ChainHead, ChainRow
from gateway.records.deliveries import DeliveryRecord
from gateway.records.leases import Lease
from gateway.records.messages import CaseSummary, MailboxStatus, MessagePlace, MessageRecord, State
from gateway.records.outbox import OutboxRecord, OutboxState
from gateway.records.postgres import deliveries as deliveries_sql
from gateway.records.postgres import leases as leases_sql
from gateway.records.postgres import outbox as outbox_sql
from gateway.records.postgres.connect import Conn, has_table, pg_errors
from gateway.records.signing import Checkpoint
from gateway.records.store import EntryFilter

MESSAGE_COLUMNS = tuple(f.name for f in fields(MessageRecord))
_MESSAGE_SELECT = f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM messages"  # noqa: S608
_ENTRY_COLUMNS = "seq, at, event, actor, message, case_ref, document, correspondent, details, prev_hash, hash"
_ENTRY_SELECT = f"SELECT {_ENTRY_COLUMNS} FROM audit"  # noqa: S608
#: Entries of every message or document ever assigned to one of the case names (see EntryFilter).
_CASE_FILTER = (
    "(case_ref = ANY(%s) OR message IN (SELECT message FROM audit WHERE message IS NOT NULL AND "
    "(case_ref = ANY(%s) OR routed_case_folder = ANY(%s))) "
    "OR document IN (SELECT document FROM audit WHERE document IS NOT NULL AND case_ref = ANY(%s)))"
)
# ASCII letters match in either case, as in SQLite: the column's "C" collation folds only them.
_CORRESPONDENT = "correspondent ILIKE %s ESCAPE '\\'"
_CORRESPONDENT_FILTER = (
    f"({_CORRESPONDENT} OR message IN (SELECT message FROM audit WHERE message IS NOT NULL AND {_CORRESPONDENT}))"  # noqa: S608
)
#: A JSON ``\u0000`` escape (not preceded by an odd run of backslashes), as a PostgreSQL regex.
_NUL_ESCAPE = r"(?<!\\)((?:\\\\)*)\\u0000"
PAGE = 2000  # rows per page of a long read


def message_from_row(row: DictRow) -> MessageRecord:
    d = dict(row)
    d["reasons"] = json.loads(d["reasons"] or "[]")
    d["verdict"] = json.loads(d["verdict"]) if d["verdict"] else None
    return MessageRecord(**d)


def message_values(rec: MessageRecord) -> tuple[Any, ...]:
    """The row of ``rec`` in ``MESSAGE_COLUMNS`` order."""
    values: list[Any] = []
    for col in MESSAGE_COLUMNS:
        v = getattr(rec, col)
        if col == "reasons":
            v = json.dumps(v)
        elif col == "verdict":
            v = json.dumps(v, sort_keys=True) if v is not None else None
        elif col == "server_done":
            v = bool(v)
        values.append(v)
    return tuple(values)


def entry_from_row(row: DictRow) -> AuditEntry:
    return AuditEntry(
        row["seq"],
        row["at"],
        row["event"],
        row["actor"],
        row["message"],
        row["case_ref"],
        row["document"],
        row["correspondent"],
        json.loads(row["details"]),
        row["prev_hash"],
        row["hash"],
    )


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class PostgresReader:
    """The store's reads over one connection (a snapshot when inside its REPEATABLE READ transaction)."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    def _live(self) -> Conn:
        """The connection to read on (the store replaces a broken one between transactions)."""
        return self._conn

    # -- plumbing ----------------------------------------------------------------------------------
    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[DictRow]:
        with pg_errors("reading the ledger"):
            return self._live().execute(sql, args).fetchall()

    def _one(self, sql: str, args: Sequence[Any] = ()) -> DictRow | None:
        with pg_errors("reading the ledger"):
            return self._live().execute(sql, args).fetchone()

    def _tuples(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Plain tuples, not dicts: for the long reads that touch every row once."""
        with pg_errors("reading the ledger"), self._live().cursor(row_factory=tuple_row) as cur:
            return cur.execute(sql, args).fetchall()

    def _messages(self, where: str, args: Sequence[Any] = ()) -> list[MessageRecord]:
        return [message_from_row(r) for r in self._all(f"{_MESSAGE_SELECT} WHERE {where}", args)]

    def _entry_pages(self, where: str, args: Sequence[Any], since_seq: int, columns: str) -> Iterator[DictRow]:
        """Rows of ``audit`` matching ``where`` after ``since_seq``, in chain order, a page at a time."""
        last = since_seq
        while True:
            page = self._all(
                f"SELECT {columns} FROM audit WHERE {where} AND seq > %s ORDER BY seq LIMIT {PAGE}",  # noqa: S608
                (*args, last),
            )
            yield from page
            if len(page) < PAGE:
                return
            last = page[-1]["seq"]

    # -- the outbox --------------------------------------------------------------------------------
    def outbox_get(self, outbox_id: str) -> OutboxRecord | None:
        with pg_errors("reading the ledger"):
            return outbox_sql.get(self._live(), outbox_id)

    def outbox_list(self, states: Sequence[OutboxState] = (), *, case_ref: str | None = None) -> list[OutboxRecord]:
        with pg_errors("reading the ledger"):
            return outbox_sql.select(self._live(), states, case_ref)

    def outbox_counts(self) -> dict[str, int]:
        with pg_errors("reading the ledger"):
            return outbox_sql.counts(self._live())

    def outbox_lacking_copies(self, *, sent_folder: bool = False) -> list[OutboxRecord]:
        with pg_errors("reading the ledger"):
            return outbox_sql.lacking_copies(self._live(), sent_folder=sent_folder)

    def outbox_oldest_waiting(self) -> str | None:
        with pg_errors("reading the ledger"):
            return outbox_sql.oldest_waiting(self._live())

    # -- delivery records --------------------------------------------------------------------------
    def deliveries_list(
        self, states: Sequence[DeliveryState] = (), *, case_ref: str | None = None
    ) -> list[DeliveryRecord]:
        with pg_errors("reading the ledger"):
            return deliveries_sql.select(self._live(), case_ref, states)

    def delivery_get(self, document_id: str) -> list[DeliveryRecord]:
        with pg_errors("reading the ledger"):
            return deliveries_sql.of_document(self._live(), document_id)

    def delivery_counts(self) -> dict[str, int]:
        with pg_errors("reading the ledger"):
            return deliveries_sql.counts(self._live())

    def outbox_by_envid(self, envid: str) -> OutboxRecord | None:
        with pg_errors("reading the ledger"):
            return outbox_sql.by_key(self._live(), "envid", envid)

    def outbox_by_message_id(self, message_id: str) -> OutboxRecord | None:
        with pg_errors("reading the ledger"):
            return outbox_sql.by_key(self._live(), "message_id", message_id)

    # -- messages ----------------------------------------------------------------------------------
    def get(self, msg_id: str) -> MessageRecord | None:
        found = self._messages("id = %s", (msg_id,))
        return found[0] if found else None

    def by_key(self, mailbox: str, folder: str, uidvalidity: int, uids: Sequence[int]) -> dict[int, MessageRecord]:
        if not uids:
            return {}
        where = "mailbox = %s AND folder = %s AND uidvalidity = %s AND uid = ANY(%s)"
        return {rec.uid: rec for rec in self._messages(where, (mailbox, folder, uidvalidity, list(uids)))}

    def get_many(self, ids: Sequence[str]) -> dict[str, MessageRecord]:
        if not ids:
            return {}
        return {rec.id: rec for rec in self._messages("id = ANY(%s)", (list(ids),))}

    def places_of(self, ids: Sequence[str]) -> dict[str, MessagePlace]:
        if not ids:
            return {}
        rows = self._tuples(
            "SELECT id, state, target_state, path, manifest_sha256 FROM messages WHERE id = ANY(%s)", (list(ids),)
        )
        return {r[0]: MessagePlace._make(r) for r in rows}

    def first_by_sha256(self, sha256: str) -> MessageRecord | None:
        found = self._messages(
            "sha256 = %s AND state IN ('stored','quarantined','released') ORDER BY fetched_at, row_no LIMIT 1",
            (sha256,),
        )
        return found[0] if found else None

    def by_message_id(self, message_id: str) -> list[MessageRecord]:
        return self._messages("message_id = %s ORDER BY fetched_at, row_no", (message_id,))

    # One query per batch, not one per message: each query is a round trip to the server.
    def first_by_sha256_many(self, sha256s: Sequence[str]) -> dict[str, MessageRecord]:
        if not sha256s:
            return {}
        found = self._messages(
            "sha256 = ANY(%s) AND state IN ('stored','quarantined','released') ORDER BY fetched_at, row_no",
            (sorted(set(sha256s)),),
        )
        out: dict[str, MessageRecord] = {}
        for rec in found:
            out.setdefault(rec.sha256, rec)
        return out

    def by_message_ids(self, message_ids: Sequence[str]) -> dict[str, list[MessageRecord]]:
        if not message_ids:
            return {}
        out: dict[str, list[MessageRecord]] = {}
        for rec in self._messages("message_id = ANY(%s) ORDER BY fetched_at, row_no", (sorted(set(message_ids)),)):
            assert rec.message_id is not None
            out.setdefault(rec.message_id, []).append(rec)
        return out

    def in_state(self, state: State, *, mailbox: str | None = None) -> list[MessageRecord]:
        if mailbox is None:
            return self._messages("state = %s ORDER BY fetched_at, row_no", (state,))
        return self._messages("state = %s AND mailbox = %s ORDER BY fetched_at, row_no", (state, mailbox))

    def awaiting_server(self, mailbox: str, folder: str) -> list[MessageRecord]:
        return self._messages(
            "mailbox = %s AND folder = %s AND NOT server_done AND state != 'processing' ORDER BY fetched_at, row_no",
            (mailbox, folder),
        )

    def all_messages(self) -> Iterator[MessageRecord]:
        last: tuple[str, int] = ("", 0)
        while True:
            page = self._all(
                f"SELECT row_no, {', '.join(MESSAGE_COLUMNS)} FROM messages "  # noqa: S608
                f"WHERE (fetched_at, row_no) > (%s, %s) ORDER BY fetched_at, row_no LIMIT {PAGE}",
                last,
            )
            for row in page:
                row_no = row.pop("row_no")
                last = (row["fetched_at"], row_no)
                yield message_from_row(row)
            if len(page) < PAGE:
                return

    def message_places(self) -> Iterator[MessagePlace]:
        last: tuple[str, int] = ("", 0)
        while True:
            page = self._tuples(
                "SELECT fetched_at, row_no, id, state, target_state, path, manifest_sha256 FROM messages "  # noqa: S608
                f"WHERE (fetched_at, row_no) > (%s, %s) ORDER BY fetched_at, row_no LIMIT {PAGE}",
                last,
            )
            for row in page:
                yield MessagePlace._make(row[2:])
            if len(page) < PAGE:
                return
            last = (page[-1][0], page[-1][1])

    def messages_of_case(self, case_folder: str) -> list[MessageRecord]:
        return self._messages(
            "case_folder = %s AND state IN ('stored','released') ORDER BY fetched_at, row_no", (case_folder,)
        )

    def cases(self) -> list[CaseSummary]:
        rows = self._all(
            "SELECT case_folder, MIN(case_ref) AS case_ref, COUNT(*) AS messages, MAX(fetched_at) AS last "
            "FROM messages WHERE state IN ('stored','released') GROUP BY case_folder ORDER BY case_folder NULLS FIRST"
        )
        return [CaseSummary(r["case_folder"], r["case_ref"], int(r["messages"]), r["last"]) for r in rows]

    def counts_by_state(self) -> dict[str, int]:
        return {r["state"]: int(r["n"]) for r in self._all("SELECT state, COUNT(*) AS n FROM messages GROUP BY state")}

    def verification_counts(self) -> dict[str, int]:
        # PostgreSQL's JSON operators refuse a \u0000 escape anywhere in the text (a stranger's
        # signer name may hold one); it is dropped before parsing, an escaped backslash
        # before "u0000" is not.
        rows = self._all(
            f"SELECT regexp_replace(verdict, '{_NUL_ESCAPE}', '\\1', 'g')::json ->> 'verdict' AS v, "  # noqa: S608
            "COUNT(*) AS n FROM messages WHERE verdict IS NOT NULL GROUP BY 1"
        )
        return {str(r["v"]): int(r["n"]) for r in rows if r["v"] is not None}

    def statuses(self) -> list[MailboxStatus]:
        rows = self._all("SELECT * FROM mailbox_status ORDER BY mailbox")
        return [MailboxStatus(**dict(r)) for r in rows]

    def leases(self) -> list[Lease]:
        with pg_errors("reading the mailbox leases"):
            return leases_sql.every(self._live())

    # -- the audit trail ---------------------------------------------------------------------------
    def entries(self, since_seq: int = 0) -> Iterator[AuditEntry]:
        for row in self._entry_pages("TRUE", (), since_seq, _ENTRY_COLUMNS):
            yield entry_from_row(row)

    def chain_rows(self, since_seq: int = 0) -> Iterator[ChainRow]:
        """Plain tuples, a page at a time: a verification reads every entry once, and fast."""
        last = since_seq
        while True:
            page = self._tuples(f"{_ENTRY_SELECT} WHERE seq > %s ORDER BY seq LIMIT {PAGE}", (last,))
            yield from page
            if len(page) < PAGE:
                return
            last = page[-1][0]

    def seqs_of_hash(self, entry_hash: str) -> list[int]:
        rows = self._all("SELECT seq FROM audit WHERE hash = %s ORDER BY seq", (entry_hash,))
        return [int(r["seq"]) for r in rows]

    def entry(self, seq: int) -> AuditEntry | None:
        row = self._one(_ENTRY_SELECT + " WHERE seq = %s", (seq,))
        return entry_from_row(row) if row else None

    def entry_hashes(self, since_seq: int = 0) -> Iterator[tuple[int, str]]:
        for row in self._entry_pages("TRUE", (), since_seq, "seq, hash"):
            yield row["seq"], row["hash"]

    def select(self, f: EntryFilter) -> Iterator[AuditEntry]:
        where: list[str] = ["TRUE"]
        args: list[Any] = []
        if f.case_names:
            where.append(_CASE_FILTER)
            args += [list(f.case_names)] * 4
        if f.message is not None:
            where.append("message = %s")
            args.append(f.message)
        if f.document is not None:
            where.append("document = %s")
            args.append(f.document)
        if f.correspondent is not None:
            where.append(_CORRESPONDENT_FILTER)
            args += [_like(f.correspondent)] * 2
        if f.since is not None:
            where.append("at >= %s")
            args.append(f.since)
        if f.until is not None:
            where.append("at < %s")
            args.append(f.until)
        if f.events:
            where.append("event = ANY(%s)")
            args.append(list(f.events))
        for row in self._entry_pages(" AND ".join(where), args, 0, _ENTRY_COLUMNS):
            yield entry_from_row(row)

    def checkpoints(self) -> list[Checkpoint]:
        rows = self._all("SELECT seq, at, hash, key_id, signature FROM audit_checkpoints ORDER BY seq")
        return [Checkpoint(r["seq"], r["at"], r["hash"], r["key_id"], r["signature"]) for r in rows]

    def head(self) -> ChainHead | None:
        with pg_errors("reading the ledger"):
            if not has_table(self._live(), "audit_head"):
                return None
        row = self._one("SELECT seq, hash FROM audit_head WHERE id = 1")
        return ChainHead(row["seq"], row["hash"]) if row else None

    def count(self) -> int:
        row = self._one("SELECT COUNT(*) AS n FROM audit")
        assert row is not None
        return int(row["n"])
