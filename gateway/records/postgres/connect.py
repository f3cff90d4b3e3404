"""Opening a PostgreSQL store: one connection, errors as the store's, numbered migrations.

A connection runs in autocommit mode and the store opens every transaction explicitly,
as the SQLite backend does, so a unit of work is one BEGIN .. COMMIT and nothing commits
behind the caller's back. Migrations are the numbered scripts in ``schema/``; the
``schema_migrations`` table names each one that ran. They run under a transaction-scoped
advisory lock, so several nodes starting at once migrate one after the other and each
script runs once. The DSN carries a password: it is never part of a message; errors name
the server and database only (``describe``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, TypeAlias

import psycopg
from psycopg import errors as pg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row

from gateway.records.store import DuplicateKey, StoreError

Conn: TypeAlias = psycopg.Connection[DictRow]

CONNECT_TIMEOUT = 10  # seconds to reach the server before the store reports it unreachable
LOCK_TIMEOUT = "30s"  # how long a writer waits for the chain head another transaction holds
#: How long the server keeps a session of ours that sits inside a transaction doing nothing.
#: A node paused mid-transaction (SIGSTOP, a long GC, a partition) would otherwise hold the
#: chain head's lock for ever and stop every other node; the server ends its session and
#: rolls the transaction back instead. Well below ``LOCK_TIMEOUT``, so the writers waiting
#: for the head get it before they give up. The gateway's transactions never wait on
#: anything but the database inside them. A value set for the role or database is kept.
IDLE_IN_TRANSACTION_TIMEOUT = "10s"
#: The most parameters one statement may carry (the protocol counts them in 16 bits).
MAX_PARAMETERS = 65535
#: The advisory lock migrations take (any constant; all gateways on one database share it).
MIGRATION_LOCK = 0x506F7374  # "Post"


def describe(dsn: str) -> str:
    """The DSN without its password: ``postgresql://user@host:port/dbname``, for messages."""
    try:
        d = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "postgresql (unreadable DSN)"
    host = str(d.get("host") or d.get("hostaddr") or "localhost")
    port = f":{d['port']}" if d.get("port") else ""
    user = f"{d['user']}@" if d.get("user") else ""
    return f"postgresql://{user}{host}{port}/{d.get('dbname') or ''}"


def dsn_problem(dsn: str) -> str | None:
    """Why ``dsn`` is not a connection string libpq reads (None when it is)."""
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        # libpq's reason names the part it could not read, never the password's value.
        return f"not a PostgreSQL connection string: {str(exc).splitlines()[0]}"
    return None


@contextmanager
def pg_errors(what: str) -> Iterator[None]:
    """psycopg's exceptions as the store's: callers never see ``psycopg``."""
    try:
        yield
    except pg.UniqueViolation as exc:
        raise DuplicateKey(f"{what}: {_reason(exc)}") from exc
    except psycopg.Error as exc:
        raise StoreError(f"{what}: {_reason(exc)}") from exc


def write_rows(conn: Conn, head: str, rows: Sequence[Sequence[Any]], tail: str = "") -> None:
    """``head VALUES (..), (..) tail``: every row in one statement, never psycopg's ``executemany``.

    ``executemany`` sends its rows as a libpq pipeline that ends in one Sync. A node frozen
    (SIGSTOP, a long pause) half-way through leaves its session waiting for the rest of
    the pipeline, shown as "active" or "idle in transaction" but outside the server's
    ``idle_in_transaction_session_timeout``, which starts only after a Sync: the session
    then holds the chain head until the node wakes and every other node waits for it. One
    statement is sent with its own Sync, so a frozen node's session is idle inside its
    transaction and the server ends it after the timeout. Rows beyond the protocol's
    parameter limit go in further statements of the same transaction.
    """
    if not rows:
        return
    width = len(rows[0])
    one = "(" + ", ".join(["%s"] * width) + ")"
    step = max(1, MAX_PARAMETERS // width)
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        values = ", ".join([one] * len(chunk))
        conn.execute(f"{head} VALUES {values} {tail}".rstrip(), [v for row in chunk for v in row])


def _reason(exc: psycopg.Error) -> str:
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def connect(dsn: str, *, readonly: bool = False, schema: str | None = None) -> Conn:
    """A connection in autocommit mode with dict rows; ``readonly``: every transaction read-only.

    ``schema`` (a tenant's) is the only one on the ``search_path``, so every table the
    store names, and the migrations it runs, are that schema's; a writer creates it first.

    Statements wait at most ``LOCK_TIMEOUT`` for a lock (another writer's chain head), and
    then fail as a ``StoreError`` instead of hanging a mailbox worker.
    """
    conn = psycopg.connect(
        dsn, autocommit=True, row_factory=dict_row, connect_timeout=CONNECT_TIMEOUT, application_name="poststelle"
    )
    try:
        conn.execute("SET lock_timeout = '" + LOCK_TIMEOUT + "'")
        # A commit must return only once it is durable. A server set to "off" is raised to
        # "on"; a stronger setting (a synchronous standby, remote_apply) is the provider's and kept.
        row = conn.execute("SELECT current_setting('synchronous_commit') AS s").fetchone()
        if row is not None and row["s"] == "off":
            conn.execute("SET synchronous_commit = on")
        if schema is not None:
            _use_schema(conn, schema, create=not readonly)
        if readonly:
            conn.execute("SET default_transaction_read_only = on")
        else:  # a reader holds no lock another writer waits for, and an audit may pause between reads
            row = conn.execute("SELECT current_setting('idle_in_transaction_session_timeout') AS s").fetchone()
            if row is not None and row["s"] == "0":
                conn.execute("SET idle_in_transaction_session_timeout = '" + IDLE_IN_TRANSACTION_TIMEOUT + "'")
    except BaseException:
        conn.close()
        raise
    return conn


def _use_schema(conn: Conn, schema: str, *, create: bool) -> None:
    from psycopg import sql

    if create:
        # Two nodes creating it at once: the loser's IF NOT EXISTS can still collide; it exists then.
        with suppress(pg.UniqueViolation, pg.DuplicateSchema):
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))


def has_table(conn: Conn, name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) AS t", (name,)).fetchone()
    return row is not None and row["t"] is not None


# -- migrations --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    script: str


_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


def migrations() -> list[Migration]:
    """The numbered scripts shipped in ``schema/``, in order: 1, 2, 3 … without a gap."""
    found: list[Migration] = []
    for item in (files("gateway.records.postgres") / "schema").iterdir():
        m = _NAME.fullmatch(item.name)
        if m:
            found.append(Migration(int(m.group(1)), item.name, item.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"schema scripts are not numbered 1..n without gaps: {[mig.name for mig in found]}")
    return found


def schema_version(conn: Conn) -> int:
    """The last migration this database ran (0 for an empty database)."""
    if not has_table(conn, "schema_migrations"):
        return 0
    row = conn.execute("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations").fetchone()
    return int(row["v"]) if row is not None else 0


_MIGRATIONS_TABLE = """
    CREATE TABLE IF NOT EXISTS schema_migrations (
        version    integer PRIMARY KEY,
        name       text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
    )
"""


def migrate(conn: Conn) -> None:
    """Run every migration the database has not had, in one transaction under the migration lock."""
    conn.execute("BEGIN")
    try:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(_MIGRATIONS_TABLE)
        done = {int(r["version"]) for r in conn.execute("SELECT version FROM schema_migrations").fetchall()}
        for mig in migrations():
            if mig.version in done:
                continue
            # bytes: a script of several statements runs as one simple query.
            conn.execute(mig.script.encode("utf-8"))
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (mig.version, mig.name))
    except BaseException:
        rollback(conn)
        raise
    conn.execute("COMMIT")


def rollback(conn: Conn) -> None:
    """Roll back what is open; a broken connection has nothing left to roll back."""
    if conn.closed or conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        return
    with suppress(psycopg.Error):
        conn.execute("ROLLBACK")


def end_read(conn: Conn) -> None:
    """End a read-only transaction with COMMIT, which for a reader is the same as a rollback.

    psycopg forgets every prepared statement after a ROLLBACK (and sends DEALLOCATE ALL),
    so ending each snapshot that way made the server parse and plan the store's statements
    again after every batch. A transaction that failed is rolled back as usual.
    """
    if conn.closed or conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        return
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
        rollback(conn)
        return
    with suppress(psycopg.Error):
        conn.execute("COMMIT")


def create_database(admin_dsn: str, name: str, *, template: str | None = None) -> None:
    """``CREATE DATABASE name`` (a copy of ``template`` when given), as the user of ``admin_dsn``.

    For the throwaway servers of tests and benchmarks; a provider creates the gateway's
    database itself (docs/hosting.md).
    """
    from psycopg import sql

    stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        stmt = sql.SQL("{} TEMPLATE {}").format(stmt, sql.Identifier(template))
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
        conn.execute(stmt)
