"""Writing inside one SQLite transaction: message rows, mailbox status, chained audit entries.

The chain's head is the ``audit_head`` row. It is read and moved inside the writing
transaction, which BEGIN IMMEDIATE has already made the only one: that is the lock every
appender takes, across threads and processes, so two writers never attach to the same
head.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime

from gateway.records.chain import AuditEvent, ChainHead, chain_events, now_iso, with_node
from gateway.records.deliveries import DeliveryRecord, DeliveryTarget
from gateway.records.leases import Acquisition, Fence, Lease
from gateway.records.messages import MailboxStatus, MessageRecord
from gateway.records.outbox import ClaimTerms, OutboxRecord, OutboxState
from gateway.records.sqlite import deliveries as deliveries_sql
from gateway.records.sqlite import leases as leases_sql
from gateway.records.sqlite import outbox as outbox_sql
from gateway.records.sqlite.reads import MESSAGE_COLUMNS, message_values
from gateway.records.store import AuditSettings, StoreError

_INSERT_MESSAGE = f"INSERT INTO messages ({','.join(MESSAGE_COLUMNS)}) VALUES ({','.join('?' * len(MESSAGE_COLUMNS))})"  # noqa: S608
_FINISH_MESSAGE = (
    "UPDATE messages SET state=?, updated_at=?, path=?, manifest_sha256=?, reasons=?, "
    "case_ref=?, case_folder=?, route=?, verdict=?, duplicate_of=? WHERE id=?"
)
_INSERT_ENTRY = (
    "INSERT INTO audit (seq, at, event, actor, message, case_ref, document, correspondent, "
    "details, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
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
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT(mailbox) DO UPDATE SET
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


class SQLiteUnitOfWork:
    """``UnitOfWork`` on a connection inside BEGIN IMMEDIATE (the store opens and ends it)."""

    def __init__(self, conn: sqlite3.Connection, settings: AuditSettings) -> None:
        self._conn = conn
        self._settings = settings

    # -- messages ----------------------------------------------------------------------------------
    def insert_messages(self, records: Sequence[MessageRecord]) -> None:
        self._conn.executemany(_INSERT_MESSAGE, [message_values(rec) for rec in records])

    def current_placement(self, msg_id: str) -> tuple[str, str | None] | None:
        row = self._conn.execute("SELECT state, manifest_sha256 FROM messages WHERE id=?", (msg_id,)).fetchone()
        return None if row is None else (str(row[0]), row[1])

    def finish_messages(self, records: Sequence[MessageRecord]) -> None:
        self._conn.executemany(
            _FINISH_MESSAGE,
            [
                (
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
            ],
        )

    def forget_processing(self, ids: Sequence[str]) -> None:
        self._conn.executemany("DELETE FROM messages WHERE id=? AND state='processing'", [(i,) for i in ids])

    def set_server_done(self, ids: Sequence[str]) -> None:
        self._conn.executemany("UPDATE messages SET server_done=1 WHERE id=?", [(i,) for i in ids])

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

    def lease_renew(self, lease: Lease, ttl: float) -> Lease:
        return leases_sql.renew(self._conn, lease, ttl)

    # -- the audit trail ---------------------------------------------------------------------------
    def _lock_head(self) -> ChainHead:
        """The head row; this transaction holds the database's write lock, so it stays ours."""
        row = self._conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        if row is None:
            raise StoreError("the audit chain's head row is missing: run `poststelle audit verify`")
        return ChainHead(row[0], row[1])

    def _clock_went_back(self, head: ChainHead, at: str) -> AuditEvent | None:
        """``clock-went-back`` when ``at`` is earlier than the last entry's time, else None.

        Recorded once per step back: the anomaly entry carries the new, earlier time, so the
        entries after it are in order again. Nothing is refused: the trail's order is its
        sequence numbers, and a reader must see that the times jumped, and by how much.
        """
        if head.seq == 0:
            return None
        row = self._conn.execute("SELECT at FROM audit WHERE seq = ?", (head.seq,)).fetchone()
        if row is None or at >= row[0]:
            return None
        back = (_parse(row[0]) - _parse(at)).total_seconds()
        return AuditEvent("clock-went-back", details={"last_entry_at": row[0], "now": at, "seconds_back": back})

    def _last_checkpoint(self) -> int:
        return int(self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints").fetchone()[0])

    def append(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        s = self._settings
        head, at = self._lock_head(), now_iso()
        went_back = self._clock_went_back(head, at)
        if went_back is not None:
            events = [went_back, *events]
        new = chain_events(with_node(events, s.node), after=head, at=at, default_actor=s.actor)
        self._conn.executemany(
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
                )
                for e in new
            ],
        )
        last = new[-1]
        self._conn.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (last.seq, last.hash))
        if s.export is not None:
            s.export.remember(new)
        if s.signer is not None and last.seq - self._last_checkpoint() >= s.checkpoint_every:
            self._checkpoint(ChainHead(last.seq, last.hash))

    def seal(self) -> None:
        if self._settings.signer is None:
            return
        head = self._lock_head()
        if head.seq > self._last_checkpoint():
            self._checkpoint(head)

    def _checkpoint(self, head: ChainHead) -> None:
        assert self._settings.signer is not None
        cp = self._settings.signer.checkpoint(head.seq, head.hash)
        self._conn.execute(
            "INSERT OR IGNORE INTO audit_checkpoints (seq, at, hash, key_id, signature) VALUES (?,?,?,?,?)",
            (cp.seq, cp.at, cp.hash, cp.key_id, cp.signature),
        )


def _parse(at: str) -> datetime:
    return datetime.fromisoformat(at.replace("Z", "+00:00"))
