"""The ledger: the durable record of every message the gateway has taken responsibility for.

It answers "have we seen this message?" by the idempotency key (mailbox, folder,
UIDVALIDITY, UID), with the sha256 of the raw bytes and the Message-ID as second checks,
and it holds each message's state. The audit trail lives in the same database so that an
event and the state change it describes are committed in one transaction: no event for
work that was not committed, no committed work without its event.

Today it is SQLite (WAL, synchronous=FULL). The roadmap puts several gateway nodes on
PostgreSQL; callers use only the methods of ``Ledger`` below, never SQL, so a second
implementation can slot in.

Message states:
  processing   intent recorded, files being written (crash recovery looks at these)
  stored       in a case folder
  quarantined  in the quarantine store
  duplicate    same bytes as an earlier message; nothing new written
  released     was quarantined, released by a person into a case folder
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from gateway.records.audit import AuditEvent, AuditTrail

State = Literal["processing", "stored", "quarantined", "duplicate", "released"]
FINAL_STATES: tuple[State, ...] = ("stored", "quarantined", "duplicate", "released")

MIGRATIONS: tuple[str, ...] = (
    # v1: messages, mailbox status, audit trail with checkpoints.
    """
    CREATE TABLE messages (
        id              TEXT PRIMARY KEY,
        mailbox         TEXT NOT NULL,
        folder          TEXT NOT NULL,
        uidvalidity     INTEGER NOT NULL,
        uid             INTEGER NOT NULL,
        sha256          TEXT NOT NULL,
        message_id      TEXT,
        size            INTEGER NOT NULL,
        internaldate    TEXT,
        fetched_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL,
        state           TEXT NOT NULL,
        target_state    TEXT NOT NULL,
        case_ref        TEXT,
        case_folder     TEXT,
        path            TEXT,
        route           TEXT,
        reasons         TEXT NOT NULL DEFAULT '[]',
        verdict         TEXT,
        duplicate_of    TEXT,
        manifest_sha256 TEXT,
        server_done     INTEGER NOT NULL DEFAULT 0,
        subject         TEXT,
        from_addr       TEXT,
        UNIQUE (mailbox, folder, uidvalidity, uid)
    );
    CREATE INDEX messages_sha256 ON messages(sha256);
    CREATE INDEX messages_message_id ON messages(message_id);
    CREATE INDEX messages_state ON messages(state);
    CREATE INDEX messages_case ON messages(case_ref);
    CREATE TABLE mailbox_status (
        mailbox      TEXT PRIMARY KEY,
        last_poll    TEXT,
        last_success TEXT,
        last_error   TEXT,
        last_error_at TEXT,
        backlog      INTEGER,
        uidvalidity  INTEGER
    );
    CREATE TABLE audit (
        seq           INTEGER PRIMARY KEY,
        at            TEXT NOT NULL,
        event         TEXT NOT NULL,
        actor         TEXT NOT NULL,
        message       TEXT,
        case_ref      TEXT,
        document      TEXT,
        correspondent TEXT,
        details       TEXT NOT NULL,
        prev_hash     TEXT NOT NULL,
        hash          TEXT NOT NULL
    );
    CREATE INDEX audit_message ON audit(message);
    CREATE INDEX audit_case ON audit(case_ref);
    CREATE TABLE audit_checkpoints (
        seq        INTEGER PRIMARY KEY,
        at         TEXT NOT NULL,
        hash       TEXT NOT NULL,
        key_id     TEXT NOT NULL,
        signature  TEXT NOT NULL
    );
    """,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class MessageRecord:
    """One row of the ``messages`` table."""

    id: str
    mailbox: str
    folder: str
    uidvalidity: int
    uid: int
    sha256: str
    message_id: str | None
    size: int
    internaldate: str | None
    state: State
    target_state: State
    fetched_at: str = ""
    updated_at: str = ""
    case_ref: str | None = None
    case_folder: str | None = None
    path: str | None = None
    route: str | None = None
    reasons: list[str] = field(default_factory=list)
    verdict: dict[str, Any] | None = None
    duplicate_of: str | None = None
    manifest_sha256: str | None = None
    server_done: bool = False
    subject: str | None = None
    from_addr: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> MessageRecord:
        d = dict(row)
        d["reasons"] = json.loads(d["reasons"] or "[]")
        d["verdict"] = json.loads(d["verdict"]) if d["verdict"] else None
        d["server_done"] = bool(d["server_done"])
        return cls(**d)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


_COLUMNS = [
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
]


def _row_values(rec: MessageRecord) -> tuple[Any, ...]:
    values = []
    for col in _COLUMNS:
        v = getattr(rec, col)
        if col == "reasons":
            v = json.dumps(v)
        elif col == "verdict":
            v = json.dumps(v, sort_keys=True) if v is not None else None
        elif col == "server_done":
            v = int(v)
        values.append(v)
    return tuple(values)


class Ledger:
    """SQLite ledger. One instance per thread (SQLite connections are not shared)."""

    def __init__(self, path: Path, *, audit: AuditTrail | None = None, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self.readonly_note: str | None = None
        if readonly:
            self.conn = self._open_readonly(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(path, isolation_level=None, timeout=30)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA busy_timeout=30000")
        self._lock = threading.Lock()
        if not readonly:
            self._migrate()
        self.audit = audit

    def _open_readonly(self, path: Path) -> sqlite3.Connection:
        """Read-only access, also for a user who cannot write the state directory.

        SQLite in WAL mode must create the ``-shm`` file even to read; when that is not
        allowed, ``immutable=1`` reads the main file alone, which is complete after a clean
        stop. ``readonly_note`` then tells the reader what may be missing.
        """
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, isolation_level=None, timeout=30)
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            conn.close()
        conn = sqlite3.connect(f"file:{quote(str(path))}?immutable=1", uri=True, isolation_level=None)
        note = "ledger opened immutable (no write access for SQLite's shared-memory file)"
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            note += (
                f"; {wal} was NOT read, so the newest entries may be missing: "
                "read as a user allowed to write the state directory, or after a clean stop"
            )
        self.readonly_note = note
        return conn

    # -- schema ---------------------------------------------------------------------------
    def _migrate(self) -> None:
        with self.transaction():
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            for i, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for stmt in script.split(";"):
                    if stmt.strip():
                        self.conn.execute(stmt)
                self.conn.execute(f"PRAGMA user_version={i}")

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE .. COMMIT: writers serialise here, across threads and processes."""
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    def _append_events(self, events: Iterable[AuditEvent]) -> None:
        evs = list(events)
        if evs:
            if self.audit is None:
                raise RuntimeError("ledger opened without an audit trail cannot record events")
            self.audit.append(self.conn, evs)

    # -- messages -------------------------------------------------------------------------
    def get(self, msg_id: str) -> MessageRecord | None:
        row = self.conn.execute("SELECT * FROM messages WHERE id = ?", (msg_id,)).fetchone()
        return MessageRecord.from_row(row) if row else None

    def by_key(self, mailbox: str, folder: str, uidvalidity: int, uids: Sequence[int]) -> dict[int, MessageRecord]:
        out: dict[int, MessageRecord] = {}
        for i in range(0, len(uids), 500):
            chunk = list(uids[i : i + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"SELECT * FROM messages WHERE mailbox=? AND folder=? AND uidvalidity=? AND uid IN ({marks})",  # noqa: S608
                (mailbox, folder, uidvalidity, *chunk),
            )
            for row in rows:
                out[row["uid"]] = MessageRecord.from_row(row)
        return out

    def first_by_sha256(self, sha256: str) -> MessageRecord | None:
        """The message these exact bytes first arrived as (a final, non-duplicate state)."""
        row = self.conn.execute(
            "SELECT * FROM messages WHERE sha256=? AND state IN ('stored','quarantined','released') "
            "ORDER BY fetched_at LIMIT 1",
            (sha256,),
        ).fetchone()
        return MessageRecord.from_row(row) if row else None

    def by_message_id(self, message_id: str) -> list[MessageRecord]:
        rows = self.conn.execute("SELECT * FROM messages WHERE message_id=? ORDER BY fetched_at", (message_id,))
        return [MessageRecord.from_row(r) for r in rows]

    def in_state(self, state: State, *, mailbox: str | None = None) -> list[MessageRecord]:
        if mailbox is None:
            rows = self.conn.execute("SELECT * FROM messages WHERE state=? ORDER BY fetched_at", (state,))
        else:
            rows = self.conn.execute(
                "SELECT * FROM messages WHERE state=? AND mailbox=? ORDER BY fetched_at", (state, mailbox)
            )
        return [MessageRecord.from_row(r) for r in rows]

    def awaiting_server(self, mailbox: str, folder: str) -> list[MessageRecord]:
        """Finished messages whose server-side move is not yet confirmed."""
        rows = self.conn.execute(
            "SELECT * FROM messages WHERE mailbox=? AND folder=? AND server_done=0 AND state != 'processing'",
            (mailbox, folder),
        )
        return [MessageRecord.from_row(r) for r in rows]

    def plan(self, records: Sequence[MessageRecord], events: Iterable[AuditEvent]) -> None:
        """Record the intent for a batch (state ``processing``) before any file is written."""
        now = iso(utcnow())
        marks = ",".join("?" * len(_COLUMNS))
        with self.transaction() as c:
            for rec in records:
                rec.fetched_at = rec.fetched_at or now
                rec.updated_at = now
                c.execute(f"INSERT INTO messages ({','.join(_COLUMNS)}) VALUES ({marks})", _row_values(rec))  # noqa: S608
            self._append_events(events)

    def finish(
        self, records: Sequence[MessageRecord], events: Iterable[AuditEvent], *, server_done: Sequence[str] = ()
    ) -> None:
        """Move planned records to their final state, with their events, in one commit.

        ``server_done``: ids of (earlier) messages whose server-side move happened, recorded
        in the same commit (their ``moved`` events are among ``events``).
        """
        now = iso(utcnow())
        with self.transaction() as c:
            for msg_id in server_done:
                c.execute("UPDATE messages SET server_done=1 WHERE id=?", (msg_id,))
            for rec in records:
                rec.updated_at = now
                c.execute(
                    "UPDATE messages SET state=?, updated_at=?, path=?, manifest_sha256=?, reasons=?, "
                    "case_ref=?, case_folder=?, route=?, verdict=?, duplicate_of=? WHERE id=?",
                    (
                        rec.state,
                        now,
                        rec.path,
                        rec.manifest_sha256,
                        json.dumps(rec.reasons),
                        rec.case_ref,
                        rec.case_folder,
                        rec.route,
                        json.dumps(rec.verdict, sort_keys=True) if rec.verdict is not None else None,
                        rec.duplicate_of,
                        rec.id,
                    ),
                )
            self._append_events(events)

    def abandon(self, records: Sequence[MessageRecord], events: Iterable[AuditEvent]) -> None:
        """Forget intents whose files never reached their place; the message will be fetched again."""
        with self.transaction() as c:
            for rec in records:
                c.execute("DELETE FROM messages WHERE id=? AND state='processing'", (rec.id,))
            self._append_events(events)

    def mark_server_done(self, ids: Sequence[str], events: Iterable[AuditEvent]) -> None:
        with self.transaction() as c:
            for msg_id in ids:
                c.execute("UPDATE messages SET server_done=1 WHERE id=?", (msg_id,))
            self._append_events(events)

    def release(self, rec: MessageRecord, events: Iterable[AuditEvent]) -> None:
        """A quarantined message was placed into a case folder by a person."""
        self.finish([rec], events)

    def record_events(self, events: Iterable[AuditEvent]) -> None:
        """Events that change no message state (config loaded, mailbox errors)."""
        with self.transaction():
            self._append_events(events)

    # -- mailbox status -------------------------------------------------------------------
    def set_status(self, mailbox: str, **fields: Any) -> None:
        cols = ", ".join(f"{k}=excluded.{k}" for k in fields)
        names = ",".join(["mailbox", *fields])
        marks = ",".join("?" * (len(fields) + 1))
        with self.transaction() as c:
            c.execute(
                f"INSERT INTO mailbox_status ({names}) VALUES ({marks}) ON CONFLICT(mailbox) DO UPDATE SET {cols}",  # noqa: S608
                (mailbox, *fields.values()),
            )

    def statuses(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM mailbox_status ORDER BY mailbox")]

    def counts_by_state(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT state, COUNT(*) FROM messages GROUP BY state")
        return {r[0]: r[1] for r in rows}

    # -- cases ----------------------------------------------------------------------------
    def cases(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT case_folder, MIN(case_ref) AS case_ref, COUNT(*) AS messages, MAX(fetched_at) AS last "
            "FROM messages WHERE state IN ('stored','released') GROUP BY case_folder ORDER BY case_folder"
        )
        return [dict(r) for r in rows]

    def messages_of_case(self, case_folder: str) -> list[MessageRecord]:
        rows = self.conn.execute(
            "SELECT * FROM messages WHERE case_folder=? AND state IN ('stored','released') ORDER BY fetched_at",
            (case_folder,),
        )
        return [MessageRecord.from_row(r) for r in rows]

    def all_messages(self) -> Iterator[MessageRecord]:
        for row in self.conn.execute("SELECT * FROM messages ORDER BY fetched_at"):
            yield MessageRecord.from_row(row)
