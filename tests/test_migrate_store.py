"""``poststelle migrate-store``: a SQLite ledger moved into PostgreSQL, chain included, proven by ``audit verify``.

The source is made by the gateway itself against real peers: letters filed by ``run --once``
from Dovecot, documents sent through the throwaway Postfix, and Postfix's DSNs read back
as receipts. The copy is then compared record by record with its source.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Env, mailbox_entry, write_config
from support.audit import correspondence
from support.outbox import document
from support.stores import PostgresBackend

from gateway.config import Config, load_config
from gateway.demo.dovecot import Dovecot
from gateway.outbound import outbox
from gateway.outbound.drain import Drain
from gateway.records.chain import AuditEvent
from gateway.records.open import open_store
from gateway.records.sqlite.store import SQLiteStore
from gateway.records.store import Store
from gateway.statedir import ledger_path


@pytest.fixture
def pg(pg_template: tuple[Any, str]) -> Any:
    server, template = pg_template
    b = PostgresBackend(server, template)
    yield b
    b.close_all()


def postgres_config(root: Path, sqlite_config: Path, dsn: str) -> Path:
    """The same installation (state_dir, cases_dir, mailboxes) with its records in PostgreSQL."""
    dsn_file = root / "database.dsn"
    dsn_file.write_text(dsn + "\n")
    dsn_file.chmod(0o600)
    text = sqlite_config.read_text().replace(
        "[storage]\n", f'[storage]\nbackend = "postgresql"\ndsn_file = "{dsn_file}"\n', 1
    )
    path = root / "poststelle-pg.toml"
    path.write_text(text)
    return path


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    from conftest import POSTSTELLE, REPO

    env = {**os.environ, "POSTSTELLE_CONFIG": str(config)}
    return subprocess.run(
        [*POSTSTELLE, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=False
    )


def wait_for(predicate: Callable[[], Any], timeout: float = 90.0) -> Any:
    """Poll what the relay does asynchronously; the deadline only bounds a failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        time.sleep(0.1)
    raise AssertionError("condition not reached before the deadline")


def dsn_reports(dovecot: Dovecot, user: str) -> int:
    with dovecot.client(user, tls=False) as conn:
        conn.select_folder("INBOX", readonly=True)
        uids = conn.search("ALL")
        msgs = [v[b"BODY[]"] for v in conn.fetch(uids, ["BODY.PEEK[]"]).values()] if uids else []
    return sum(1 for m in msgs if b"multipart/report" in m)


def everything(store: Store) -> dict[str, Any]:
    """Every record a store answers with, through the store Protocols."""
    return {
        "messages": sorted(store.all_messages(), key=lambda r: r.id),
        "statuses": store.statuses(),
        "outbox": store.outbox_list(),
        "deliveries": store.deliveries_list(),
        "entries": list(store.entries()),
        "checkpoints": store.checkpoints(),
        "cases": store.cases(),
    }


def read(config: Config) -> dict[str, Any]:
    store = open_store(config, readonly=True)
    try:
        return everything(store)
    finally:
        store.close()


def small_ledger(root: Path) -> Path:
    """A SQLite installation (no mailbox needed) with a few entries and one document, made through the store."""
    from support.outbox import smtp_config

    from gateway.demo.postfix import free_port

    path = smtp_config(root, port=free_port())
    store = open_store(load_config(path))
    store.record_events([AuditEvent("config-loaded", details={"n": i}) for i in range(5)])
    store.seal()
    store.close()
    return path


# -- the whole installation ------------------------------------------------------------------------
def test_a_ledger_made_by_the_gateway_moves_to_postgresql_record_for_record_and_verifies(
    dovecot: Dovecot, postfix: Any, pg: PostgresBackend, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    user, recipient = new_user(), new_user()
    smtp = f'[smtp]\nhost = "127.0.0.1"\nport = {postfix.port}\nsecurity = "plain"\nfrom = "{user}@mailbox.test"\n'
    path = write_config(tmp_path, [mailbox_entry(dovecot, user, tmp_path)], extra=smtp + "timeout = 10\n")
    env = Env(dovecot, user, tmp_path, path)
    store = open_store(env.config)
    sent = outbox.enqueue(
        env.config, store, document(to=(f"{recipient}@mailbox.test",), mail_from=f"{user}@mailbox.test")
    )
    refused = outbox.enqueue(
        env.config, store, document(to=("refused@mailbox.test",), mail_from=f"{user}@mailbox.test")
    )
    report = Drain(env.config, store).run_once()
    store.close()
    assert report.sent == [sent] and report.bounced == [refused]
    wait_for(lambda: dsn_reports(dovecot, user) >= 1)  # Postfix's DSN for the sent document
    env.append(*correspondence())
    env.cli("run", "--once", check=True)

    before = read(env.config)
    assert {"stored", "quarantined"} <= {r.state for r in before["messages"]}
    assert any(len(d.timeline) > 2 for d in before["deliveries"]), "a receipt moved a delivery record"
    assert sum(1 for e in before["entries"] if e.event == "receipt-matched") >= 1
    pg_config = postgres_config(tmp_path, path, pg.dsn)

    proc = cli(pg_config, "migrate-store", "--from", f"sqlite:{ledger_path(env.config)}", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["ok"] and result["verify"]["breaks"] == [] and result["mismatches"] == []
    assert result["rows"]["audit"] == len(before["entries"]) and result["rows"]["messages"] == len(before["messages"])
    assert result["head"]["seq"] == len(before["entries"]) + 1

    after = read(load_config(pg_config))
    for key in ("messages", "statuses", "outbox", "deliveries", "checkpoints", "cases"):
        if key == "checkpoints":
            assert after[key][: len(before[key])] == before[key], key
        else:
            assert after[key] == before[key], key
    assert after["entries"][:-1] == before["entries"], "every entry with its exact bytes, hash and place"
    last = after["entries"][-1]
    assert last.event == "store-migrated" and last.prev_hash == before["entries"][-1].hash
    assert last.details["rows"]["delivery_timeline"] == sum(len(d.timeline) for d in before["deliveries"])
    assert last.details["source_head_hash"] == before["entries"][-1].hash and last.actor.startswith("cli:")
    assert after["checkpoints"][-1].seq == last.seq, "the migration is sealed"

    verified = cli(pg_config, "audit", "verify", "--json")
    assert verified.returncode == 0, verified.stdout
    assert json.loads(verified.stdout)["entries"] == len(before["entries"]) + 1
    # The gateway carries on from the copied chain.
    env2 = Env(dovecot, user, tmp_path, pg_config)
    env2.append(correspondence()[0])
    env2.cli("run", "--once", check=True)
    assert cli(pg_config, "audit", "verify").returncode == 0
    assert ledger_path(env.config).exists(), "the source is left as it was"
    assert read(env.config) == before


# -- refusals --------------------------------------------------------------------------------------
def test_a_tampered_source_entry_is_reported_and_nothing_is_copied(pg: PostgresBackend, tmp_path: Path) -> None:
    path = small_ledger(tmp_path)
    ledger = ledger_path(load_config(path))
    with sqlite3.connect(ledger) as db:
        db.execute("UPDATE audit SET details = '{\"n\":99}' WHERE seq = 3")
    pg_config = postgres_config(tmp_path, path, pg.dsn)
    proc = cli(pg_config, "migrate-store", "--from", f"sqlite:{ledger}")
    assert proc.returncode == 1
    assert "entry 3  altered-entry" in proc.stderr and "nothing was copied" in proc.stderr
    target = pg.open(readonly=True)
    assert target.count() == 0 and target.outbox_list() == []


def test_a_target_that_holds_records_is_refused_and_left_unchanged(pg: PostgresBackend, tmp_path: Path) -> None:
    path = small_ledger(tmp_path)
    ledger = ledger_path(load_config(path))
    pg_config = postgres_config(tmp_path, path, pg.dsn)
    assert cli(pg_config, "migrate-store", "--from", f"sqlite:{ledger}").returncode == 0
    target = pg.open(readonly=True)
    entries = list(target.entries())
    shown = cli(pg_config, "audit", "log", "--event", "store-migrated").stdout
    assert f"Records moved from {ledger} to postgresql://" in shown and "continues after entry 5" in shown
    proc = cli(pg_config, "migrate-store", "--from", f"sqlite:{ledger}")
    assert proc.returncode == 1 and "is not empty (its audit chain already has" in proc.stderr
    assert list(target.entries()) == entries


def test_a_source_held_by_a_running_daemon_is_refused(pg: PostgresBackend, tmp_path: Path) -> None:
    path = small_ledger(tmp_path)
    config = load_config(path)
    lock = config.storage.state_dir / "poststelle.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\nfcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, b'4242\\n')\nprint('held', flush=True)\ntime.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        proc = cli(postgres_config(tmp_path, path, pg.dsn), "migrate-store", "--from", f"sqlite:{ledger_path(config)}")
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 1 and "in use by pid 4242" in proc.stderr and "stop the gateway" in proc.stderr
    assert pg.open(readonly=True).count() == 0


def test_command_line_mistakes_are_named(pg: PostgresBackend, tmp_path: Path) -> None:
    path = small_ledger(tmp_path)
    ledger = ledger_path(load_config(path))
    pg_config = postgres_config(tmp_path, path, pg.dsn)
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    other = tmp_path / "other.sqlite3"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    old = tmp_path / "old.sqlite3"
    SQLiteStore(old).close()
    with sqlite3.connect(old) as db:
        db.execute("PRAGMA user_version = 5")
    cases = [
        (pg_config, ("--from", str(ledger)), "give the source as sqlite:PATH"),
        (pg_config, ("--from", f"sqlite:{ledger}", "--to", "mysql"), "the only target is postgresql"),
        (pg_config, ("--from", f"sqlite:{tmp_path / 'missing.sqlite3'}"), "missing.sqlite3: no such file"),
        (pg_config, ("--from", f"sqlite:{text}"), "notes.txt: not a SQLite database"),
        (pg_config, ("--from", f"sqlite:{other}"), "other.sqlite3: a SQLite database, but not a Poststelle ledger"),
        (pg_config, ("--from", f"sqlite:{old}"), "ledger schema version 5, this gateway's is"),
        (path, ("--from", f"sqlite:{ledger}"), "backend is 'sqlite'"),
    ]
    for config, args, message in cases:
        proc = cli(config, "migrate-store", *args)
        assert proc.returncode == 1, (args, proc.stdout)
        assert message in proc.stderr, (args, proc.stderr)
    assert pg.open(readonly=True).count() == 0
