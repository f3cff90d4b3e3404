"""A full file system, recognised wherever it surfaces, and said the same way everywhere.

Why one place: the intake, the ledger and the daemon each meet a full disk differently (an
``OSError`` with or without a file name, a ``StoreError`` around SQLite's "database or disk
is full"), and the administrator must read the same words in the mailbox's status, the log
and the trail whichever it was: "disk full", the error code, and the path to free.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

#: The error codes that mean "no room": the file system, a quota, SQLite's own.
CODES = {errno.ENOSPC: "ENOSPC", errno.EDQUOT: "EDQUOT"}
SQLITE_FULL = "SQLITE_FULL"


def disk_full_code(exc: BaseException) -> str | None:
    """``ENOSPC``, ``EDQUOT`` or ``SQLITE_FULL`` when ``exc`` (or what caused it) says the disk is full."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in CODES:
            return CODES[current.errno]
        if isinstance(current, sqlite3.Error) and getattr(current, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return SQLITE_FULL
        current = current.__cause__ or current.__context__
    return None


def full_path(exc: BaseException, fallback: Path | str) -> str:
    """The path the failing write named, else ``fallback`` (a write on a descriptor names none)."""
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, OSError) and current.filename:
            return str(current.filename)
        current = current.__cause__
    return str(fallback)


def disk_full_text(exc: BaseException, fallback: Path | str) -> str:
    """``disk full (ENOSPC) at <path>: <the system's words>``, for the status, the log and the trail."""
    code = disk_full_code(exc) or "ENOSPC"
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"disk full ({code}) at {full_path(exc, fallback)}: {reason}"
