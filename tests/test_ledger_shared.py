"""The ledger shared by processes: one process closing its store never costs another its commits.

Found by the soak (benchmarks/soak.py): the daemon holds several connections, and
``poststelle send`` (or any other writer) opens, commits and closes its own. Opening a
further connection once made the daemon drop its locks on the database file, the other
process's close then took itself for the last user, checkpointed and deleted the WAL,
and the daemon's later commits went into the deleted file: gone for every new reader,
while the daemon had already moved the messages on the server.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway.records.chain import AuditEvent
from gateway.records.sqlite.store import SQLiteStore

REPO = Path(__file__).resolve().parent.parent

OTHER_WRITER = """
import sys
from gateway.records.chain import AuditEvent
from gateway.records.sqlite.store import SQLiteStore
store = SQLiteStore(__import__("pathlib").Path(sys.argv[1]))
with store.unit_of_work() as uow:
    uow.append([AuditEvent("queued", document="from-another-process")])
store.close()
"""

READER = """
import sys
from gateway.records.sqlite.store import SQLiteStore
store = SQLiteStore(__import__("pathlib").Path(sys.argv[1]), readonly=True)
print(",".join(e.event for e in store.entries()))
store.close()
"""


def _python(code: str, db: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code, str(db)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    return proc.stdout.strip()


def test_a_commit_after_another_process_closed_its_store_reaches_every_reader(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite3"
    first = SQLiteStore(db)
    with first.unit_of_work() as uow:
        uow.append([AuditEvent("config-loaded")])
    second = SQLiteStore(db)  # the daemon's next connection (another thread's store)
    try:
        _python(OTHER_WRITER, db)  # e.g. `poststelle send`: open, commit, close
        with first.unit_of_work() as uow:
            uow.append([AuditEvent("fetched", message="m1")])
        assert _python(READER, db).split(",") == ["config-loaded", "queued", "fetched"]
    finally:
        second.close()
        first.close()
