"""Opening the SQLite database: durable settings, read-only access, numbered migrations.

WAL with synchronous=FULL makes every commit durable before it returns (the gateway
moves mail on the server only after that). Migrations are the numbered scripts in
``schema/``; ``PRAGMA user_version`` says how many have run, and each runs in the same
transaction as the version bump, so a database is always at one version.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from urllib.parse import quote

from gateway.filemodes import file_mode
from gateway.records.store import DuplicateKey, StoreError

BUSY_TIMEOUT = 30  # seconds a writer waits for another's transaction


@contextmanager
def sqlite_errors(what: str) -> Iterator[None]:
    """SQLite's exceptions as the store's: callers never see ``sqlite3``."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        if "UNIQUE" in str(exc):
            raise DuplicateKey(f"{what}: {exc}") from exc
        raise StoreError(f"{what}: {exc}") from exc
    except sqlite3.Error as exc:
        raise StoreError(f"{what}: {exc}") from exc


def connect(path: Path) -> sqlite3.Connection:
    """A writing connection; autocommit mode, transactions are explicit.

    The file is made here with the gateway's mode (SQLite would use 0644 under the umask);
    its WAL and shared-memory files take the database file's mode. Only a missing file is
    opened here: closing any descriptor of the database file drops every POSIX lock this
    process holds on it, including the shared lock of its other open connections. Another
    process closing its last connection would then take this process for gone, checkpoint
    and delete the WAL under it, and every commit written afterwards would be lost.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # FileExistsError: another process made it just now; nothing of ours holds a lock on it yet.
        with suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, file_mode()))
    # Shared by the threads of one store (the outbox's lanes): every use goes through the
    # store's lock, so SQLite's own same-thread check would only forbid what is safe.
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    _finish(conn)
    return conn


def connect_readonly(path: Path) -> tuple[sqlite3.Connection, str | None]:
    """Read-only access, also for a user who cannot write the state directory.

    SQLite in WAL mode must create the ``-shm`` file even to read; when that is not
    allowed, ``immutable=1`` reads the main file alone, which is complete after a clean
    stop (the last connection checkpoints the log). The note then tells the reader what
    may be missing.
    """
    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, isolation_level=None, timeout=BUSY_TIMEOUT)
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        _finish(conn)
        return conn, None
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
    _finish(conn)
    return conn, note


def _finish(conn: sqlite3.Connection) -> None:
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT * 1000}")


# -- migrations --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    script: str

    def statements(self) -> list[str]:
        """The script's statements, one at a time: ``executescript`` would commit on its own."""
        out: list[str] = []
        buf = ""
        for line in self.script.splitlines(keepends=True):
            buf += line
            if sqlite3.complete_statement(buf):
                out.append(buf.strip())
                buf = ""
        rest = "\n".join(ln for ln in buf.splitlines() if not ln.strip().startswith("--")).strip()
        if rest:
            raise ValueError(f"migration {self.name}: unterminated statement {rest[:60]!r}")
        return out


_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


def migrations() -> list[Migration]:
    """The numbered scripts shipped in ``schema/``, in order: 1, 2, 3 … without a gap.

    A database records the last number it ran (``user_version``), so a script numbered
    below it would never run: the numbers must be contiguous, which this checks.
    """
    found: list[Migration] = []
    for item in (files("gateway.records.sqlite") / "schema").iterdir():
        m = _NAME.fullmatch(item.name)
        if m:
            found.append(Migration(int(m.group(1)), item.name, item.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"schema scripts are not numbered 1..n without gaps: {[mig.name for mig in found]}")
    return found


def user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> None:
    """Run every migration the database has not had, in one write transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = user_version(conn)
        for mig in migrations():
            if mig.version <= version:
                continue
            for stmt in mig.statements():
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version={mig.version}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
