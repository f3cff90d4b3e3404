"""The SQLite store: one database file holds messages, mailbox status and the audit trail.

Keeping the trail in the same database as the state it describes is what lets one
transaction commit both. Writers serialise on BEGIN IMMEDIATE, across threads and
processes (the busy timeout makes them wait, not fail); readers never block writers (WAL).
A store given a ``fence`` (its mailbox worker's lease) checks it in every unit of work.
A connection belongs to the thread that opened the store.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from gateway.records.leases import Lease
from gateway.records.sqlite.connect import BUSY_TIMEOUT, connect, connect_readonly, migrate, sqlite_errors, user_version
from gateway.records.sqlite.reads import SQLiteReader
from gateway.records.sqlite.writes import SQLiteUnitOfWork
from gateway.records.store import AuditSettings, ReadSnapshot, StoreError, StoreOperations, UnitOfWork

#: One lock per database file for the writers of this process (``_writer_lock``).
_WRITERS: dict[Path, threading.RLock] = {}
_WRITERS_GUARD = threading.Lock()


def _writer_lock(path: Path) -> threading.RLock:
    """The lock this process's writers of ``path`` queue on before BEGIN IMMEDIATE.

    SQLite's busy handler waits by sleeping and retrying; a writer that commits batch after
    batch (a mailbox draining a backlog) takes the lock again before the sleeper wakes, and
    a mailbox with one new letter waited seconds for its turn. Waiting on a lock in the
    process hands the turn over at the commit. Other processes (the CLI) still meet the
    busy timeout.
    """
    key = path.resolve()
    with _WRITERS_GUARD:
        return _WRITERS.setdefault(key, threading.RLock())  # re-entrant: a nested write fails fast, as before


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
        """BEGIN IMMEDIATE .. COMMIT; rolled back if the block raises (or the fence no longer holds)."""
        with self._transaction() as uow:
            if self.fence is not None:
                uow.check_fence(self.fence)
            yield uow

    def lease_renew(self, lease: Lease, ttl: float) -> Lease:
        with self._transaction() as uow:
            return uow.lease_renew(lease, ttl)

    def lease_renew_many(self, leases: Sequence[Lease], ttl: float) -> dict[str, Lease]:
        renewed: dict[str, Lease] = {}
        with self._transaction() as uow:
            for lease in leases:
                try:
                    renewed[lease.mailbox] = uow.lease_renew(lease, ttl)
                except StoreError:  # LeaseLost: left out, the caller treats it as lost
                    continue
        return renewed

    @contextmanager
    def _transaction(self) -> Iterator[SQLiteUnitOfWork]:
        if self.readonly:
            raise StoreError(f"{self.path} is opened read-only")
        writers = _writer_lock(self.path)
        # Bounded like the busy timeout: a wait that long falls back to SQLite's own (and its error).
        queued = writers.acquire(timeout=BUSY_TIMEOUT)
        try:
            with self._lock, sqlite_errors("writing the ledger"):
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield SQLiteUnitOfWork(self._conn, self.audit_settings)
                except BaseException:
                    if self._conn.in_transaction:  # some errors (a full disk) end it already
                        self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
        finally:
            if queued:
                writers.release()

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
