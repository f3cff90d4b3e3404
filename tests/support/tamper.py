"""Raw SQL on the ledger file, bypassing the gateway: what an intruder with file access can do.

The one place outside ``gateway/records/sqlite`` where tests run SQL. Tamper tests use it
to edit the record behind the gateway's back; the migration tests use it to build a
database as an older version left it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def tamper_sql(store_path: Path, sql: str, *params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Run ``sql`` once per parameter tuple (once without), all in one transaction.

    Returns the rows of the last run.
    """
    conn = sqlite3.connect(store_path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        rows: list[tuple[Any, ...]] = []
        for p in params or ((),):
            rows = conn.execute(sql, p).fetchall()
        conn.execute("COMMIT")
        return rows
    finally:
        conn.close()


def tamper_sql_script(store_path: Path, script: str) -> None:
    """Run a script of several statements (creating the file if needed)."""
    conn = sqlite3.connect(store_path, isolation_level=None)
    try:
        conn.executescript(script)
    finally:
        conn.close()
