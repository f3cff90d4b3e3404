"""The PostgreSQL store: one database holds messages, mailbox status, the outbox and the trail.

The same guarantees as the SQLite store, for several processes and nodes on one database:
a unit of work is one transaction whose first statement locks the chain head, so writers
serialise on it and the trail stays one chain; COMMIT returns only once the server has
made it durable (``synchronous_commit``), and the gateway acts on the mail server only
after that. A snapshot is one REPEATABLE READ transaction. A store's connection is shared
by the threads of one store through its lock, like SQLite's.

A store given a ``fence`` (its mailbox worker's lease) checks it in every unit of work
right after the head lock, so a commit of a node that lost its lease is refused whole.

A connection the server dropped (a restart, a fail-over to the standby) is replaced at
the start of the next transaction or read, never inside one: the unit of work that was
cut off failed with a ``StoreError`` and nothing of it committed, so the caller's retry
(the mailbox's next pass) starts clean on the new connection.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from gateway.records.leases import Lease
from gateway.records.postgres import leases as leases_sql
from gateway.records.postgres import outbox as outbox_sql
from gateway.records.postgres.connect import (
    Conn,
    connect,
    describe,
    end_read,
    migrate,
    pg_errors,
    rollback,
    schema_version,
)
from gateway.records.postgres.reads import PostgresReader
from gateway.records.postgres.writes import PostgresUnitOfWork, lock_head
from gateway.records.store import AuditSettings, ReadSnapshot, StoreError, StoreOperations, UnitOfWork


class PostgresStore(PostgresReader, StoreOperations):
    """``Store`` on one PostgreSQL database; ``readonly`` opens it without ever writing (no migration)."""

    def __init__(
        self, dsn: str, *, audit: AuditSettings | None = None, readonly: bool = False, schema: str | None = None
    ) -> None:
        self.name = describe(dsn) + (f" (schema {schema})" if schema else "")
        self._dsn = dsn
        self._schema = schema
        self.readonly = readonly
        self.readonly_note: str | None = None
        self.audit_settings = audit or AuditSettings()
        # Re-entrant: a write begun inside a snapshot fails (one transaction per connection)
        # instead of waiting for itself.
        self._lock = threading.RLock()
        self._in_snapshot = False
        with pg_errors(f"cannot open the ledger {self.name}"):
            conn = connect(dsn, readonly=readonly, schema=schema)
            if not readonly:
                try:
                    migrate(conn)
                except BaseException:
                    conn.close()
                    raise
        super().__init__(conn)

    def _live(self) -> Conn:
        """The connection, replaced first if the server dropped it (outside any transaction only)."""
        if self._conn.broken and not self._in_snapshot:
            with self._lock, pg_errors(f"cannot reach the ledger {self.name}"):
                if self._conn.broken:
                    self._conn = connect(self._dsn, readonly=self.readonly, schema=self._schema)
        return self._conn

    @property
    def schema_version(self) -> int:
        with self._lock, pg_errors("reading the ledger"):
            return schema_version(self._live())

    @contextmanager
    def unit_of_work(self) -> Iterator[UnitOfWork]:
        """BEGIN, lock the chain head, .. COMMIT; rolled back if the block raises."""
        if self.readonly:
            raise StoreError(f"{self.name} is opened read-only")
        with self._lock:
            if self._in_snapshot:
                raise StoreError("a write inside a read snapshot of the same store: finish reading first")
            conn = self._live()
            with pg_errors("writing the ledger"):
                conn.execute("BEGIN")
                try:
                    uow = PostgresUnitOfWork(conn, self.audit_settings, lock_head(conn))
                    if self.fence is not None:
                        uow.check_fence(self.fence)
                    yield uow
                except BaseException:
                    rollback(conn)
                    raise
                conn.execute("COMMIT")

    def lease_renew(self, lease: Lease, ttl: float) -> Lease:
        """One statement of its own, outside any unit of work (see ``postgres.leases``)."""
        if self.readonly:
            raise StoreError(f"{self.name} is opened read-only")
        with self._lock:
            if self._in_snapshot:
                raise StoreError("a write inside a read snapshot of the same store: finish reading first")
            with pg_errors("renewing a mailbox lease"):
                return leases_sql.renew(self._live(), lease, ttl)

    def lease_renew_many(self, leases: Sequence[Lease], ttl: float) -> dict[str, Lease]:
        if self.readonly:
            raise StoreError(f"{self.name} is opened read-only")
        with self._lock:
            if self._in_snapshot:
                raise StoreError("a write inside a read snapshot of the same store: finish reading first")
            with pg_errors("renewing mailbox leases"):
                return leases_sql.renew_many(self._live(), leases, ttl)

    @contextmanager
    def snapshot(self) -> Iterator[ReadSnapshot]:
        """One REPEATABLE READ transaction: every read through the snapshot sees the same commit."""
        with self._lock:
            if self._in_snapshot:
                raise StoreError("a snapshot inside a snapshot of the same store")
            conn = self._live()
            with pg_errors("reading the ledger"):
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                conn.execute("SELECT 1")  # the snapshot is taken here, not at the first read
            self._in_snapshot = True
            try:
                yield PostgresReader(conn)
            finally:
                self._in_snapshot = False
                end_read(conn)  # read only: nothing to commit

    def outbox_renew(self, claims: Sequence[tuple[str, int]], ttl: float) -> list[str]:
        """Renewals leave the chain head alone: they record no event and must not wait behind intake."""
        if not claims:
            return []
        if self.readonly:
            raise StoreError(f"{self.name} is opened read-only")
        with self._lock:
            if self._in_snapshot:
                raise StoreError("a write inside a read snapshot of the same store: finish reading first")
            conn = self._live()
            with pg_errors("renewing outbox claims"):
                conn.execute("BEGIN")
                try:
                    renewed = outbox_sql.renew(conn, claims, ttl)
                except BaseException:
                    rollback(conn)
                    raise
                conn.execute("COMMIT")
        return renewed

    def close(self) -> None:
        self._conn.close()
