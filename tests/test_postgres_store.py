"""The gateway on PostgreSQL: configured by ``[storage] backend``/``dsn_file``, run end to end
against the real Dovecot, and what only a server shows: writers on many connections at
once, a wrong password, a server that stops without warning.

The contract every backend keeps runs in ``test_store_contract.py`` and
``test_deliveries_store.py`` (their ``[postgresql]`` half).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import POSTSTELLE, REPO, Env, mailbox_entry, write_config
from support.audit import correspondence, entries, file_correspondence, records, verify
from support.stores import PostgresBackend

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.records.chain import AuditEvent, verify_chain
from gateway.records.store import StoreError
from gateway.statedir import ledger_path

BASE = """
[storage]
state_dir = "{root}/state"
{storage}

[[mailbox]]
name = "rathaus"
host = "imap.example.org"
username = "rathaus"
password_file = "{root}/pw"
"""
DSN = "postgresql://gateway:s3cret-pw@db.example:5432/poststelle"


def config_with(tmp_path: Path, storage: str, *, dsn: str | None = DSN, mode: int = 0o600) -> Path:
    (tmp_path / "pw").write_text("secret\n")
    (tmp_path / "pw").chmod(0o600)
    if dsn is not None:
        (tmp_path / "dsn").write_text(dsn + "\n")
        (tmp_path / "dsn").chmod(mode)
    p = tmp_path / "poststelle.toml"
    p.write_text(BASE.format(root=tmp_path, storage=storage.format(root=tmp_path)))
    return p


def refused(tmp_path: Path, storage: str, **kw: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(config_with(tmp_path, storage, **kw))
    return info.value


# -- configuration --------------------------------------------------------------------------------
def test_sqlite_is_the_backend_unless_postgresql_is_chosen(tmp_path: Path) -> None:
    storage = load_config(config_with(tmp_path, "")).storage
    assert (storage.backend, storage.dsn, storage.dsn_file) == ("sqlite", None, None)


@pytest.mark.parametrize("mode", [0o600, 0o640])
def test_postgresql_reads_the_dsn_from_a_file_only_the_gateway_may_read(tmp_path: Path, mode: int) -> None:
    pytest.importorskip("psycopg")
    cfg = load_config(config_with(tmp_path, 'backend = "postgresql"\ndsn_file = "{root}/dsn"', mode=mode))
    assert cfg.storage.backend == "postgresql" and cfg.storage.dsn_file == tmp_path / "dsn"
    assert cfg.storage.dsn is not None and cfg.storage.dsn.reveal() == DSN
    assert "s3cret-pw" not in repr(cfg), "the password never shows in a repr or a log line"


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o660])
def test_a_dsn_file_others_may_read_or_the_group_may_write_is_refused(tmp_path: Path, mode: int) -> None:
    err = refused(tmp_path, 'backend = "postgresql"\ndsn_file = "{root}/dsn"', mode=mode)
    assert err.key == "storage.dsn_file" and f"{mode:04o}" in err.problem and "0600" in err.problem
    assert err.file.endswith("poststelle.toml")


def test_postgresql_without_a_dsn_file_is_refused(tmp_path: Path) -> None:
    err = refused(tmp_path, 'backend = "postgresql"')
    assert err.key == "storage.dsn_file" and "required" in err.problem


def test_a_missing_or_empty_dsn_file_is_named(tmp_path: Path) -> None:
    err = refused(tmp_path, 'backend = "postgresql"\ndsn_file = "{root}/nowhere"')
    assert err.key == "storage.dsn_file" and "not found" in err.problem
    err = refused(tmp_path, 'backend = "postgresql"\ndsn_file = "{root}/dsn"', dsn="")
    assert err.key == "storage.dsn_file" and "empty" in err.problem


def test_a_dsn_libpq_cannot_read_is_refused_without_showing_the_password(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    err = refused(tmp_path, 'backend = "postgresql"\ndsn_file = "{root}/dsn"', dsn="password=geheim host")
    assert err.key == "storage.dsn_file" and "connection string" in err.problem
    assert "geheim" not in str(err)


def test_a_dsn_file_with_the_sqlite_backend_is_refused(tmp_path: Path) -> None:
    err = refused(tmp_path, 'dsn_file = "{root}/dsn"')
    assert err.key == "storage.dsn_file" and "postgresql" in err.problem


def test_an_unknown_backend_is_named(tmp_path: Path) -> None:
    err = refused(tmp_path, 'backend = "mysql"')
    assert err.key == "storage.backend" and "sqlite, postgresql" in err.problem


# -- the store on a real server -------------------------------------------------------------------
@pytest.fixture
def pg(pg_template: tuple[Any, str]) -> Iterator[PostgresBackend]:
    server, template = pg_template
    b = PostgresBackend(server, template)
    yield b
    b.close_all()


def test_writers_on_many_connections_at_once_extend_one_chain(pg: PostgresBackend) -> None:
    """Each thread its own store (connection), all appending at once: the head lock orders them."""
    writers, batches = 6, 15
    stores = [pg.open(actor=f"node-{i}") for i in range(writers)]
    failures: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for b in range(batches):
                stores[i].record_events([AuditEvent("note", details={"w": i, "b": b, "k": k}) for k in range(2)])
        except Exception as exc:  # noqa: BLE001 - reported below, a thread cannot fail the test itself
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    trail = list(stores[0].entries())
    n, head, breaks = verify_chain(trail)
    assert (n, breaks) == (writers * batches * 2, []), "one chain, no fork, nothing lost"
    assert stores[0].head() is not None and stores[0].head().hash == head  # type: ignore[union-attr]
    for i in range(writers):
        mine = [(e.details["b"], e.details["k"]) for e in trail if e.actor == f"node-{i}"]
        assert mine == [(b, k) for b in range(batches) for k in range(2)], "each writer's batches whole and in order"


def test_a_database_set_to_commit_asynchronously_is_overruled_for_the_gateways_sessions(pg: PostgresBackend) -> None:
    from gateway.records.postgres.connect import connect

    admin = connect(pg.dsn)
    try:
        admin.execute(f'ALTER DATABASE "{pg.database}" SET synchronous_commit = off'.encode())
    finally:
        admin.close()
    conn = connect(pg.dsn)
    try:
        settings = {
            r["name"]: r["setting"]
            for r in conn.execute(
                "SELECT name, setting FROM pg_settings "
                "WHERE name IN ('synchronous_commit', 'fsync', 'full_page_writes')"
            ).fetchall()
        }
    finally:
        conn.close()
    assert settings == {"synchronous_commit": "on", "fsync": "on", "full_page_writes": "on"}


def test_a_wrong_password_is_a_store_error_naming_the_database_not_the_password(pg: PostgresBackend) -> None:
    from gateway.records.postgres.store import PostgresStore

    wrong = pg.dsn.replace(pg.server.password, "falsches-passwort")
    with pytest.raises(StoreError) as info:
        PostgresStore(wrong)
    text = str(info.value)
    assert "cannot open the ledger postgresql://postgres@127.0.0.1" in text and pg.database in text
    assert "falsches-passwort" not in text and pg.server.password not in text


def test_committed_entries_survive_a_server_crash_and_the_store_resumes_after_it() -> None:
    """``pg_ctl stop -m immediate`` is a crash (no shutdown checkpoint): what was committed is
    there after recovery, the write cut off by the crash is not, and the same store goes on."""
    from gateway.demo.postgres import Postgres, postgres_unavailable
    from gateway.records.postgres.store import PostgresStore

    reason = postgres_unavailable()
    if reason is not None:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="pst-pgcrash-"))
    os.chmod(root, 0o755)  # noqa: S103 - the server's user must reach its dirs
    try:
        with Postgres(root) as server:
            dsn = server.create_database("crash")
            store = PostgresStore(dsn)
            for i in range(20):
                store.record_events([AuditEvent("fetched", message=f"m{i}")])
            head = store.head()
            server.crash()
            with pytest.raises(StoreError):
                store.record_events([AuditEvent("fetched", message="after the crash")])
            server.start()
            trail = list(store.entries())
            assert [e.message for e in trail] == [f"m{i}" for i in range(20)], "the store reconnected by itself"
            assert verify_chain(trail)[2] == [] and store.head() == head
            store.record_events([AuditEvent("fetched", message="m20")])
            assert verify_chain(store.entries())[:1] == (21,), "the chain goes on where the crash left it"
            store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_status_and_audit_verify_before_the_first_run_see_an_empty_database_as_nothing_recorded(
    pg_template: tuple[Any, str], tmp_path: Path
) -> None:
    server, _ = pg_template
    empty = server.create_database(f"empty_{os.getpid()}")
    path = config_with(tmp_path, 'backend = "postgresql"\ndsn_file = "{root}/dsn"', dsn=empty)
    env = {**os.environ, "POSTSTELLE_CONFIG": str(path)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*POSTSTELLE, *args], capture_output=True, text=True, env=env, cwd=REPO, check=False)

    status = cli("status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["messages"] == {}
    verified = cli("audit", "verify", "--json")
    assert verified.returncode == 0, verified.stderr
    warnings = json.loads(verified.stdout)["warnings"]
    assert any("nothing recorded yet" in w and "postgresql://postgres@127.0.0.1" in w for w in warnings)
    assert server.password not in status.stdout + status.stderr + verified.stdout + verified.stderr


def test_check_reports_whether_the_database_answers_without_showing_the_password(
    pg: PostgresBackend, tmp_path: Path
) -> None:
    from gateway.records.open import database_check

    good = load_config(config_with(tmp_path, 'backend = "postgresql"\ndsn_file = "{root}/dsn"', dsn=pg.dsn))
    from gateway.records.postgres.connect import migrations

    assert database_check(good) == (True, f"reachable, schema version {len(migrations())}")
    wrong = pg.dsn.replace(pg.server.password, "falsches-passwort")
    bad = load_config(config_with(tmp_path, 'backend = "postgresql"\ndsn_file = "{root}/dsn"', dsn=wrong))
    ok, detail = database_check(bad)
    assert not ok and "password authentication failed" in detail and "falsches-passwort" not in detail


# -- end to end -----------------------------------------------------------------------------------
@pytest.fixture
def pg_env(dovecot: Any, pg: PostgresBackend, tmp_path: Path, new_user: Any) -> Env:
    """A gateway against the session's Dovecot whose records are in a fresh PostgreSQL database."""
    user = new_user()
    path = write_config(tmp_path, [mailbox_entry(dovecot, user, tmp_path)])
    dsn_file = tmp_path / "dsn"
    dsn_file.write_text(pg.dsn + "\n")
    dsn_file.chmod(0o600)
    text = path.read_text().replace("[storage]\n", f'[storage]\nbackend = "postgresql"\ndsn_file = "{dsn_file}"\n', 1)
    path.write_text(text)
    return Env(dovecot, user, tmp_path, path)


def test_run_once_on_postgresql_files_the_mail_and_audit_verify_and_status_agree(pg_env: Env) -> None:
    env = pg_env
    letters = correspondence()  # three letters for two cases, one malformed message
    file_correspondence(env, letters)
    assert not ledger_path(env.config).exists(), "no SQLite ledger beside the database"
    assert sorted(r.state for r in records(env)) == ["quarantined", "stored", "stored", "stored"]
    assert len(env.entries()) == 3 and len(env.quarantined()) == 1
    assert env.uids() == [], "every message moved on the server after its commit"
    trail = entries(env)
    assert trail[0].event == "config-loaded" and verify_chain(trail)[2] == []

    code, report = verify(env)
    assert code == 0, report
    assert report["entries"] == len(trail) and report["breaks"] == []

    proc = env.cli("status", "--json", check=True)
    status = json.loads(proc.stdout)
    assert status["messages"] == {"stored": 3, "quarantined": 1}
    (mailbox,) = status["mailboxes"]
    assert mailbox["mailbox"] == "rathaus" and mailbox["last_success"] and mailbox["backlog"] == 0

    env.append(letters[0])  # the same bytes again: a duplicate, recorded in the same database
    env.cli("run", "--once", check=True)
    assert sorted(r.state for r in records(env)).count("duplicate") == 1
    assert verify(env)[0] == 0
