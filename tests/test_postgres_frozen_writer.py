"""A writer process frozen (SIGSTOP) at any moment must not hold the chain head past the idle timeout.

The server ends a session idle inside a transaction after ``idle_in_transaction_session_timeout``,
but only where the session waits for a whole next command. A writer frozen half-way through
a libpq pipeline (what psycopg's ``executemany`` sends) would leave its session waiting for
the rest of it, outside that timeout, holding the chain head until the writer wakes; every
other node's intake, outbox and lease take-over would wait for it. The writer here is a real store in
another process doing the units of work intake does (many messages, their entries); it is
frozen at random moments until it has been caught inside a transaction several times, and
each time another writer must get the head within the timeout and a generous margin.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import REPO
from support.stores import PostgresBackend

CAUGHT = 4  # freezes inside a transaction the test needs
IDLE = 1.0  # the idle-in-transaction timeout the writer runs with (seconds)
DEADLINE = 300.0  # bounds a failure only

WRITER = r"""
import sys
from gateway.records.postgres import connect
connect.IDLE_IN_TRANSACTION_TIMEOUT = sys.argv[2]
from gateway.records.chain import AuditEvent
from gateway.records.messages import MessageRecord
from gateway.records.postgres.store import PostgresStore

store = PostgresStore(sys.argv[1])
print("ready", flush=True)
n = 0
while True:
    records = [
        MessageRecord(
            id=f"{sys.argv[3]}-{n}-{i}", mailbox=sys.argv[3], folder="INBOX", uidvalidity=7, uid=n * 1000 + i,
            sha256=f"{n:08d}{i:04d}" * 5, message_id=f"<{sys.argv[3]}-{n}-{i}@frozen.test>", size=100,
            internaldate=None, state="processing", target_state="stored", subject="Az. 63-BV-2026-0001 " + "x" * 200,
        )
        for i in range(120)
    ]
    events = [AuditEvent("fetched", message=r.id, details={"padding": "y" * 300}) for r in records]
    store.plan(records, events)
    for r in records:
        r.state = "stored"
    store.finish(records, [AuditEvent("routed", message=r.id) for r in records], server_done=[r.id for r in records])
    n += 1
"""


@pytest.fixture
def database(pg_template: Any) -> Iterator[str]:
    server, template = pg_template
    pg = PostgresBackend(server, template)
    try:
        yield pg.dsn
    finally:
        pg.close_all()


def _writer(dsn: str, name: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, dsn, f"{IDLE:g}s", name], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _in_transaction(conn: Any) -> str | None:
    """The writer's session state when it is inside a transaction (None when it is not)."""
    row = conn.execute(
        "SELECT state, wait_event FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
    ).fetchone()
    return None if row is None else f"{row[0]} ({row[1]})"


def test_a_writer_frozen_at_any_moment_releases_the_chain_head_within_the_idle_timeout(database: str) -> None:
    import psycopg

    caught: list[tuple[str, float]] = []
    start = time.monotonic()
    attempts = 0
    with psycopg.connect(database, autocommit=True) as probe:
        probe.execute("SET lock_timeout = '30s'")  # bounds a failure: the frozen writer held the head that long
        while len(caught) < CAUGHT:
            assert time.monotonic() - start < DEADLINE, f"the writer was caught in a transaction only {caught}"
            attempts += 1
            proc = _writer(database, f"w{attempts}")
            try:
                time.sleep(0.3 + (attempts * 0.17) % 0.5)  # somewhere in its work
                proc.send_signal(signal.SIGSTOP)
                state = _in_transaction(probe)
                if state is None:
                    continue  # frozen between transactions: not the moment this test needs
                waited = time.monotonic()
                probe.execute("BEGIN")
                try:
                    probe.execute("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE")
                except psycopg.errors.LockNotAvailable:
                    pytest.fail(f"a writer frozen while {state} still held the chain head after 30 s")
                finally:
                    probe.execute("ROLLBACK")
                caught.append((state, round(time.monotonic() - waited, 1)))
            finally:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
    # The server ended each frozen session itself: within the timeout and a margin for a busy machine.
    assert all(seconds < IDLE + 15 for _, seconds in caught), caught
