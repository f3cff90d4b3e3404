"""Filling an empty PostgreSQL store with a whole ledger's rows, for ``migrate-store``.

Everything is written in ONE transaction, with ``COPY``: the rows, the chain head set to
the source's, and the ``store-migrated`` entry chained after the copied trail. Nobody sees
a half-filled database (a gateway started meanwhile waits on the head row, then finds the
complete ledger), a failure anywhere leaves the database as empty as it was, so the copy
is simply run again, and no partial state needs to be resumed or cleaned up. One
transaction is cheap here: COPY streams rows without a round trip each, and even a
trail of millions of entries is a few hundred megabytes of WAL, committed once.

The target must be empty: the chain head at its start and no row in any ledger table.
A database that already holds records is never merged into (two trails cannot be one
chain).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from gateway.records.chain import GENESIS, AuditEvent, ChainHead
from gateway.records.postgres.connect import Conn, connect, describe, migrate, pg_errors, rollback
from gateway.records.postgres.writes import PostgresUnitOfWork, lock_head
from gateway.records.store import AuditSettings, StoreError
from gateway.records.transfer import TABLES, TableRows

#: Columns SQLite keeps as 0/1 and PostgreSQL as boolean.
_BOOLEANS = {("messages", "server_done"), ("outbox", "encrypted"), ("outbox", "resent")}


class TargetNotEmpty(StoreError):
    """The target database already holds records; nothing was written."""


@dataclass(frozen=True)
class Loaded:
    """What one load wrote: rows per table, the copied head, the head after the migration entry."""

    rows: dict[str, int]
    copied_head: ChainHead
    head: ChainHead


def _not_empty(conn: Conn, head: ChainHead | None) -> str | None:
    """Why the database is not an empty store (None when it is)."""
    if head is None:
        return "its audit_head row is missing"
    if head.seq != 0 or head.hash != GENESIS:
        return f"its audit chain already has {head.seq} entries"
    for table in TABLES:
        row = conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {}) AS x").format(sql.Identifier(table))).fetchone()
        if row is not None and row["x"]:
            return f"its table {table} holds rows"
    return None


def _converted(table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> Iterable[tuple[Any, ...]]:
    flags = [(table, c) in _BOOLEANS for c in columns]
    if not any(flags):
        yield from rows
        return
    for row in rows:
        yield tuple(bool(v) if flag and v is not None else v for v, flag in zip(row, flags, strict=True))


def _audit_rows(columns: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> Iterable[tuple[Any, ...]]:
    """Audit rows with ``routed_case_folder`` added (PostgreSQL's copy of a routed entry's folder)."""
    event, details = columns.index("event"), columns.index("details")
    for row in rows:
        folder = None
        if row[event] == "routed":
            found = json.loads(row[details]).get("case_folder")
            folder = found if isinstance(found, str) else None
        yield (*row, folder)


def _copy(conn: Conn, t: TableRows) -> int:
    columns = list(t.columns)
    rows: Iterable[tuple[Any, ...]] = _converted(t.table, columns, t.rows)
    if t.table == "audit":
        rows = _audit_rows(columns, rows)
        columns.append("routed_case_folder")
    stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(t.table), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    n = 0
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for row in rows:
            copy.write_row(row)
            n += 1
    return n


def load_ledger(
    dsn: str,
    tables: Iterable[TableRows],
    head: ChainHead,
    *,
    settings: AuditSettings,
    events: Callable[[dict[str, int]], Sequence[AuditEvent]],
) -> Loaded:
    """Copy ``tables`` into the empty database at ``dsn``, set the chain head to ``head``,
    append ``events(rows per table)`` after it and seal; one transaction, all or nothing.

    ``TargetNotEmpty`` when the database already holds records (nothing written).
    """
    name = describe(dsn)
    with pg_errors(f"cannot open the ledger {name}"):
        conn = connect(dsn)
    try:
        with pg_errors(f"migrating the ledger {name}"):
            migrate(conn)
        with pg_errors(f"writing the ledger {name}"):
            conn.execute("BEGIN")
            try:
                # The head first, as every writer takes it: a gateway started meanwhile waits here.
                problem = _not_empty(conn, lock_head(conn))
                if problem is not None:
                    raise TargetNotEmpty(f"{name} is not empty ({problem}): the copy goes into an empty database only")
                rows = {t.table: _copy(conn, t) for t in tables}
                conn.execute("UPDATE audit_head SET seq = %s, hash = %s WHERE id = 1", (head.seq, head.hash))
                uow = PostgresUnitOfWork(conn, settings, head)
                uow.append(events(rows))
                uow.seal()
                after = lock_head(conn)
                assert after is not None
            except BaseException:
                rollback(conn)
                raise
            conn.execute("COMMIT")
    finally:
        conn.close()
    return Loaded(rows, head, after)
