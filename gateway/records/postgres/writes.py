"""Writing inside one PostgreSQL transaction: message rows, mailbox status, chained audit entries.

The chain's head is the ``audit_head`` row. The store's unit of work reads it
``SELECT … FOR UPDATE`` as its first statement, so every writer, on any connection or
node, holds it from then until its commit: appends attach to one head one after the
other, and the reads a decision rests on (a message's placement, a delivery record)
cannot change underneath it. Taking it first, before any other row, also means two
writers never wait for each other's rows in opposite order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from gateway.records.chain import AuditEvent, ChainHead, chain_events, now_iso, with_node
from gateway.records.deliveries import DeliveryRecord, DeliveryTarget
from gateway.records.leases import Acquisition, Fence, Lease
from gateway.records.messages import MailboxStatus, MessageRecord
from gateway.records.outbox import ClaimTerms, OutboxRecord, OutboxState
from gateway.records.postgres import deliveries as deliveries_sql
from gateway.records.postgres import leases as leases_sql
from gateway.records.postgres import outbox as outbox_sql
from gateway.records.postgres.connect import Conn, write_rows
from gateway.records.postgres.reads import MESSAGE_COLUMNS, message_values
from gateway.records.store import AuditSettings, StoreError

_INSERT_MESSAGE = f"INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)})"
_FINISHED = ("state", "updated_at", "path", "manifest_sha256", "reasons", "case_ref", "case_folder", "route", "verdict")
# Every column is text: the VALUES list's untyped parameters resolve to text.
_FINISH_MESSAGE = (
    "UPDATE messages AS m SET " + ", ".join(f"{c} = v.{c}" for c in (*_FINISHED, "duplicate_of")) + " FROM (",  # noqa: S608
    f") AS v({', '.join((*_FINISHED, 'duplicate_of', 'id'))}) WHERE m.id = v.id",
)
_INSERT_ENTRY = (
    "INSERT INTO audit (seq, at, event, actor, message, case_ref, document, correspondent, "
    "details, prev_hash, hash, routed_case_folder)"
)
_STATUS_FIELDS = (
    "last_poll",
    "last_success",
    "last_error",
    "last_error_at",
    "backlog",
    "uidvalidity",
    "state",
    "state_since",
)
# A status written with state 'ok' (the mailbox works again) clears the error it had.
_UPSERT_STATUS = """
    INSERT INTO mailbox_status
        (mailbox, last_poll, last_success, last_error, last_error_at, backlog, uidvalidity, state, state_since)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (mailbox) DO UPDATE SET
        last_poll     = COALESCE(excluded.last_poll, mailbox_status.last_poll),
        last_success  = COALESCE(excluded.last_success, mailbox_status.last_success),
        last_error    = CASE WHEN excluded.state = 'ok' THEN NULL
                             ELSE COALESCE(excluded.last_error, mailbox_status.last_error) END,
        last_error_at = CASE WHEN excluded.state = 'ok' THEN NULL
                             ELSE COALESCE(excluded.last_error_at, mailbox_status.last_error_at) END,
        backlog       = COALESCE(excluded.backlog, mailbox_status.backlog),
        uidvalidity   = COALESCE(excluded.uidvalidity, mailbox_status.uidvalidity),
        state         = COALESCE(excluded.state, mailbox_status.state),
        state_since   = COALESCE(excluded.state_since, mailbox_status.state_since)
"""


def lock_head(conn: Conn) -> ChainHead | None:
    """The head row, locked until this transaction ends (None if it is missing)."""
    row = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE").fetchone()
    return ChainHead(row["seq"], row["hash"]) if row is not None else None


def _routed_case_folder(event: str, details: dict[str, Any]) -> str | None:
    folder = details.get("case_folder") if event == "routed" else None
    return folder if isinstance(folder, str) else None


class PostgresUnitOfWork:
    """``UnitOfWork`` inside a transaction whose first statement locked the chain head (``lock_head``)."""

    def __init__(self, conn: Conn, settings: AuditSettings, head: ChainHead | None) -> None:
        self._conn = conn
        self._settings = settings
        self._head = head

    # -- messages ----------------------------------------------------------------------------------
    def insert_messages(self, records: Sequence[MessageRecord]) -> None:
        write_rows(self._conn, _INSERT_MESSAGE, [message_values(rec) for rec in records])

    def current_placement(self, msg_id: str) -> tuple[str, str | None] | None:
        row = self._conn.execute(
            "SELECT state, manifest_sha256 FROM messages WHERE id = %s FOR UPDATE", (msg_id,)
        ).fetchone()
        return None if row is None else (str(row["state"]), row["manifest_sha256"])

    def finish_messages(self, records: Sequence[MessageRecord]) -> None:
        # One row per message, the last given winning, as a statement per record would.
        rows = {
            rec.id: (
                rec.state,
                rec.updated_at,
                rec.path,
                rec.manifest_sha256,
                json.dumps(rec.reasons),
                rec.case_ref,
                rec.case_folder,
                rec.route,
                json.dumps(rec.verdict, sort_keys=True) if rec.verdict is not None else None,
                rec.duplicate_of,
                rec.id,
            )
            for rec in records
        }
        write_rows(self._conn, _FINISH_MESSAGE[0], list(rows.values()), _FINISH_MESSAGE[1])

    def forget_processing(self, ids: Sequence[str]) -> None:
        if ids:
            self._conn.execute("DELETE FROM messages WHERE id = ANY(%s) AND state = 'processing'", (list(ids),))

    def set_server_done(self, ids: Sequence[str]) -> None:
        if ids:
            self._conn.execute("UPDATE messages SET server_done = true WHERE id = ANY(%s)", (list(ids),))

    def update_status(self, status: MailboxStatus) -> None:
        self._conn.execute(_UPSERT_STATUS, (status.mailbox, *(getattr(status, c) for c in _STATUS_FIELDS)))

    # -- the outbox --------------------------------------------------------------------------------
    def insert_outbox(self, rec: OutboxRecord) -> None:
        outbox_sql.insert(self._conn, rec)

    def save_outbox(
        self,
        rec: OutboxRecord,
        expect: Sequence[OutboxState] | None,
        expect_claim: str | None = None,
        claim: ClaimTerms | None = None,
    ) -> None:
        outbox_sql.save(self._conn, rec, expect, expect_claim, claim)

    def renew_claims(self, claims: Sequence[tuple[str, int]], ttl: float) -> list[str]:
        return outbox_sql.renew(self._conn, claims, ttl)

    # -- delivery records --------------------------------------------------------------------------
    def load_delivery(self, document_id: str, recipient: str) -> DeliveryRecord | None:
        return deliveries_sql.get_one(self._conn, document_id, recipient)

    def delivery_target(self, document_id: str, recipient: str) -> DeliveryTarget | None:
        return deliveries_sql.target(self._conn, document_id, recipient)

    def save_delivery(self, rec: DeliveryRecord, new_entries: int) -> None:
        deliveries_sql.save(self._conn, rec, new_entries)

    # -- mailbox leases ----------------------------------------------------------------------------
    def check_fence(self, fence: Fence) -> None:
        leases_sql.check(self._conn, fence)

    def lease_take(self, mailbox: str, node: str, ttl: float) -> Acquisition:
        return leases_sql.take(self._conn, mailbox, node, ttl)

    def lease_give_up(self, lease: Lease) -> bool:
        return leases_sql.give_up(self._conn, lease)

    # -- the audit trail ---------------------------------------------------------------------------
    def _locked_head(self) -> ChainHead:
        if self._head is None:
            raise StoreError("the audit chain's head row is missing: run `poststelle audit verify`")
        return self._head

    def _last_checkpoint(self) -> int:
        row = self._conn.execute("SELECT COALESCE(MAX(seq), 0) AS seq FROM audit_checkpoints").fetchone()
        return int(row["seq"]) if row is not None else 0

    def append(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        s = self._settings
        events = with_node(events, s.node)
        new = chain_events(events, after=self._locked_head(), at=now_iso(), default_actor=s.actor)
        write_rows(
            self._conn,
            _INSERT_ENTRY,
            [
                (
                    e.seq,
                    e.at,
                    e.event,
                    e.actor,
                    e.message,
                    e.case,
                    e.document,
                    e.correspondent,
                    e.details_json,
                    e.prev_hash,
                    e.hash,
                    _routed_case_folder(ev.type, ev.details),
                )
                for ev, e in zip(events, new, strict=True)
            ],
        )
        last = new[-1]
        self._conn.execute("UPDATE audit_head SET seq = %s, hash = %s WHERE id = 1", (last.seq, last.hash))
        self._head = ChainHead(last.seq, last.hash)
        if s.export is not None:
            s.export.remember(new)
        if s.signer is not None and last.seq - self._last_checkpoint() >= s.checkpoint_every:
            self._checkpoint(self._head)

    def seal(self) -> None:
        if self._settings.signer is None:
            return
        head = self._locked_head()
        if head.seq > self._last_checkpoint():
            self._checkpoint(head)

    def _checkpoint(self, head: ChainHead) -> None:
        assert self._settings.signer is not None
        cp = self._settings.signer.checkpoint(head.seq, head.hash)
        self._conn.execute(
            "INSERT INTO audit_checkpoints (seq, at, hash, key_id, signature) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (seq) DO NOTHING",
            (cp.seq, cp.at, cp.hash, cp.key_id, cp.signature),
        )
