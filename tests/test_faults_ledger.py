"""A damaged ledger file: start-up refuses with one line naming the file, and changes nothing.

SQLite reports a damaged file ("file is not a database", "database disk image is
malformed") only when it reads the damaged page; the daemon must neither carry on over it
nor "repair" it by writing: the administrator restores the state directory from backup
(docs/operations.md) and ``audit verify`` proves the restore.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from conftest import Env

from gateway.demo.samples import letter
from gateway.records.chain import AuditEvent
from gateway.records.open import open_store
from gateway.statedir import ledger_path


def digests(path: Path) -> dict[str, str]:
    """The ledger file and its WAL/shared-memory companions, by name, as they are on disk."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.parent.glob(path.name + "*"))}


def filed_ledger(env: Env) -> Path:
    env.append(letter(subject="Az. 63-BV-2026-0900"))
    env.cli("run", "--once", check=True)
    return ledger_path(env.config)


@pytest.mark.parametrize(
    "damage",
    ["garbage-header", "garbage-everywhere", "truncated"],
)
def test_damaged_ledger_stops_start_up_naming_the_file_and_is_left_as_it_was(env: Env, damage: str) -> None:
    ledger = filed_ledger(env)
    data = ledger.read_bytes()
    if damage == "garbage-header":
        ledger.write_bytes(b"\x8b" * 100 + data[100:])
    elif damage == "garbage-everywhere":
        ledger.write_bytes(bytes((i * 37) % 251 for i in range(len(data))))
    else:
        ledger.write_bytes(data[: len(data) // 3])
    env.append(letter(subject="Az. 63-BV-2026-0901"))
    before = digests(ledger)
    for args in (("run", "--once"), ("status",), ("audit", "verify")):
        proc = env.cli(*args)
        assert proc.returncode != 0, args
        assert "Traceback" not in proc.stderr + proc.stdout
        assert str(ledger) in proc.stderr + proc.stdout
    after = digests(ledger)
    assert after[ledger.name] == before[ledger.name]  # the damaged file itself is untouched
    empty = hashlib.sha256(b"").hexdigest()
    for name, digest in after.items():  # SQLite may have opened an empty log beside it; nothing was written
        assert digest == before.get(name, digest) or name.endswith("-shm") or digest == empty, name
    assert len(env.uids("INBOX")) == 1  # the new letter is not touched


def test_ledger_whose_write_ahead_log_was_cut_short_refuses_to_start_and_keeps_both_files(env: Env) -> None:
    """SQLite would take the cut log as the end: the newest commits gone without an error."""
    ledger = filed_ledger(env)
    wal = ledger.with_name(ledger.name + "-wal")
    saved = env.root / "saved"
    saved.mkdir()
    store = open_store(env.config)
    try:  # commits that live only in the write-ahead log, as on a running system
        for n in range(20):
            store.record_events([AuditEvent("test-commit", details={"n": n, "pad": "x" * 2000})])
        store.export_jsonl()  # shipped, as the daemon ships after each commit
        shutil.copy2(ledger, saved / ledger.name)
        shutil.copy2(wal, saved / wal.name)  # the state as a crash leaves it (the log not yet checkpointed)
    finally:
        store.close()
    shutil.copy2(saved / ledger.name, ledger)
    shutil.copy2(saved / wal.name, wal)
    with wal.open("r+b") as f:
        f.truncate(wal.stat().st_size // 2)  # the disk kept only the first half of the log
    before = digests(ledger)
    proc = env.cli("run", "--once")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "lost its newest transactions" in proc.stderr and str(ledger) in proc.stderr
    assert {k: v for k, v in digests(ledger).items() if not k.endswith("-shm")} == {
        k: v for k, v in before.items() if not k.endswith("-shm")
    }
    assert len(env.uids("INBOX")) == 0  # nothing fetched: the letter of the first run stays filed once
