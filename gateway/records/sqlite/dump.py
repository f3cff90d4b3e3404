"""Reading a whole SQLite ledger for ``migrate-store``: read-only, one snapshot, rows as stored.

The source must be a ledger this gateway could open as it is: a SQLite database at the
newest schema version. An older ledger would first have to be migrated, which is a write;
the copy never writes to its source, so it refuses instead and says how to bring the
ledger up to date. A ledger whose log (``-wal``) cannot be read is refused too: its
newest commits would be missing from the copy.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.records.sqlite.connect import connect_readonly, migrations, sqlite_errors, user_version
from gateway.records.sqlite.reads import SQLiteReader
from gateway.records.store import StoreError
from gateway.records.transfer import TABLES, TableRows

_MAGIC = b"SQLite format 3\x00"
#: Each table in the order its rows were inserted (the rowid; a ``WITHOUT ROWID`` table has none here).
_ORDER = {"audit": "seq", "audit_checkpoints": "seq"}


class NotALedger(StoreError):
    """The source is not a Poststelle ledger this version can copy; the message names file and problem."""


def check_source(path: Path) -> None:
    """Refuse anything but a file that begins as a SQLite database does (before SQLite reads it)."""
    try:
        with open(path, "rb") as f:
            magic = f.read(len(_MAGIC))
    except FileNotFoundError:
        raise NotALedger(f"{path}: no such file") from None
    except IsADirectoryError:
        raise NotALedger(f"{path}: is a directory, not a ledger file") from None
    except OSError as exc:
        raise NotALedger(f"{path}: cannot read it: {exc.strerror}") from None
    if magic != _MAGIC:
        raise NotALedger(f"{path}: not a SQLite database (not a Poststelle ledger)")


class SQLiteLedgerSource:
    """A SQLite ledger opened read-only; ``snapshot`` reads it at one moment."""

    def __init__(self, path: Path) -> None:
        check_source(path)
        self.path = path
        with sqlite_errors(f"cannot open the ledger {path}"):
            self._conn, note = connect_readonly(path)
        try:
            if note is not None:
                raise NotALedger(f"{path}: {note}")
            self._check_schema()
        except BaseException:
            self._conn.close()
            raise

    def _check_schema(self) -> None:
        with sqlite_errors(f"{self.path}: not a readable SQLite database"):
            version = user_version(self._conn)
            tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        newest = len(migrations())
        if version == 0 or not {*TABLES, "audit_head"} <= tables:
            raise NotALedger(f"{self.path}: a SQLite database, but not a Poststelle ledger (no ledger tables)")
        if version < newest:
            raise NotALedger(
                f"{self.path}: ledger schema version {version}, this gateway's is {newest}: start this version "
                "of the gateway on it once (backend sqlite), then copy it; the copy never writes to its source"
            )
        if version > newest:
            raise NotALedger(
                f"{self.path}: ledger schema version {version} is newer than this gateway's ({newest}): "
                "use the version of poststelle that wrote it"
            )

    @contextmanager
    def snapshot(self) -> Iterator[SQLiteLedgerSnapshot]:
        """One read transaction: the reader and the tables' rows all see the same commit."""
        with sqlite_errors(f"reading the ledger {self.path}"):
            self._conn.execute("BEGIN")
        try:
            yield SQLiteLedgerSnapshot(self._conn, self.path)
        finally:
            with sqlite_errors(f"reading the ledger {self.path}"):
                self._conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()


class SQLiteLedgerSnapshot(SQLiteReader):
    """The store's reads plus the tables' raw rows, inside the source's read transaction."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        super().__init__(conn)
        self.path = path

    def table_rows(self, table: str) -> TableRows:
        """Every row of ``table`` in insertion order, streamed as plain tuples."""
        if table not in TABLES:
            raise ValueError(f"not a ledger table: {table}")
        with sqlite_errors(f"reading the ledger {self.path}"):
            cur = self._conn.cursor()
            cur.row_factory = None
            cur.arraysize = 2000
            cur.execute(f"SELECT * FROM {table} ORDER BY {_ORDER.get(table, 'rowid')}")  # noqa: S608 - a fixed name
            columns = tuple(d[0] for d in cur.description)
        return TableRows(table, columns, self._stream(cur))

    def _stream(self, cur: sqlite3.Cursor) -> Iterator[tuple[object, ...]]:
        with sqlite_errors(f"reading the ledger {self.path}"):
            while rows := cur.fetchmany():
                yield from rows

    def row_counts(self) -> dict[str, int]:
        """How many rows each ledger table holds."""
        with sqlite_errors(f"reading the ledger {self.path}"):
            return {t: int(self._conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in TABLES}  # noqa: S608
