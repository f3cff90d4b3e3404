"""The SQLite store: one database file holds messages, mailbox status and the audit trail.

Keeping the trail in the same database as the state it describes is what lets one
transaction commit both. Writers serialise on BEGIN IMMEDIATE, across threads and
processes (the busy timeout makes them wait, not fail); readers never block writers (WAL).
A connection belongs to the thread that opened the store.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.records.sqlite.connect import connect, connect_readonly, migrate, sqlite_errors, user_version
from gateway.records.sqlite.reads import SQLiteReader
from gateway.records.sqlite.writes import SQLiteUnitOfWork
from gateway.records.store import AuditSettings, ReadSnapshot, StoreError, StoreOperations, UnitOfWork


class SQLiteStore(SQLiteReader, StoreOperations):
    """``Store`` on one SQLite file; ``readonly`` opens it without ever writing (no migration)."""

    def __init__(self, path: Path, *, audit: AuditSettings | None = None, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self.readonly_note: str | None = None
        self.audit_settings = audit or AuditSettings()
        # Re-entrant: a write begun inside a snapshot fails (one transaction per connection)
        # instead of waiting for itself.
        self._lock = threading.RLock()
        with sqlite_errors(f"cannot open the ledger {path}"):
            if readonly:
                conn, self.readonly_note = connect_readonly(path)
            else:
                conn = connect(path)
                try:
                    migrate(conn)
                except BaseException:
                    conn.close()
                    raise
        super().__init__(conn)

    @property
    def schema_version(self) -> int:
        with sqlite_errors("reading the ledger"):
            return user_version(self._conn)

    @contextmanager
    def unit_of_work(self) -> Iterator[UnitOfWork]:
        """BEGIN IMMEDIATE .. COMMIT; rolled back if the block raises."""
        if self.readonly:
            raise StoreError(f"{self.path} is opened read-only")
        with self._lock, sqlite_errors("writing the ledger"):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield SQLiteUnitOfWork(self._conn, self.audit_settings)
            except BaseException:
                if self._conn.in_transaction:  # some errors (a full disk) end it already
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[ReadSnapshot]:
        """One read transaction: every read through the snapshot sees the same commit."""
        with self._lock:
            with sqlite_errors("reading the ledger"):
                self._conn.execute("BEGIN")
            try:
                yield SQLiteReader(self._conn)
            finally:
                with sqlite_errors("reading the ledger"):
                    self._conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()
