"""A wall clock that jumps back an hour: recorded once as an anomaly, nothing lost, nothing twice.

The jump is injected through ``gateway.clock`` (``set_source``), in the test process or, for
a whole ``poststelle run``, by ``tests/support/faults.py clock:-3600``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from conftest import REPO, Env
from support.exactly_once import audit_verify_is_green, each_message_once, event_types

from gateway import clock
from gateway.demo.samples import letter
from gateway.outbound import scheduler
from gateway.records.chain import AuditEvent
from gateway.records.open import open_store
from gateway.records.outbox import OutboxRecord


@pytest.fixture
def shifted() -> Iterator[list[timedelta]]:
    """The process's clock, shifted by whatever the test puts in the list (nothing: the real time)."""
    shift: list[timedelta] = [timedelta(0)]
    clock.set_source(lambda: datetime.now(UTC) + shift[0])
    yield shift
    clock.set_source(None)


def run_with_clock(env: Env, seconds: int) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([str(REPO / "tests"), str(REPO), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "support.faults", f"clock:{seconds}", "--", "run", "--once"],
        cwd=REPO,
        env={**os.environ, "POSTSTELLE_CONFIG": str(env.config_path), "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_trail_records_a_clock_that_went_back_once_and_stays_verifiable(env: Env, shifted: list[timedelta]) -> None:
    store = open_store(env.config)
    try:
        store.record_events([AuditEvent("test-before")])
        shifted[0] = timedelta(hours=-1)
        store.record_events([AuditEvent("test-after-jump")])
        store.record_events([AuditEvent("test-later")])
        entries = list(store.entries())
    finally:
        store.close()
    kinds = [e.event for e in entries]
    assert kinds.count("clock-went-back") == 1
    anomaly = entries[kinds.index("clock-went-back")]
    assert kinds[kinds.index("clock-went-back") + 1] == "test-after-jump"
    assert 3590 <= anomaly.details["seconds_back"] <= 3610
    assert anomaly.details["last_entry_at"] > anomaly.details["now"] == anomaly.at
    audit_verify_is_green(env)


def test_intake_across_a_clock_jump_back_files_every_message_once(env: Env) -> None:
    subjects = [f"Az. 63-BV-2026-{950 + i:04d}" for i in range(4)]
    env.append(*(letter(subject=s) for s in subjects[:2]))
    env.cli("run", "--once", check=True)
    env.append(*(letter(subject=s) for s in subjects[2:]))
    jumped = run_with_clock(env, -3600)
    assert jumped.returncode == 0, jumped.stderr
    each_message_once(env, subjects)
    assert event_types(env).count("clock-went-back") == 1
    env.append(letter(subject="Az. 63-BV-2026-0960"))
    env.cli("run", "--once", check=True)  # the clock is right again: a step forward is no anomaly
    each_message_once(env, [*subjects, "Az. 63-BV-2026-0960"])
    assert event_types(env).count("clock-went-back") == 1
    audit_verify_is_green(env)


def _deferred(next_attempt_at: datetime) -> OutboxRecord:
    return OutboxRecord(
        id="d1",
        message_id="m@x",
        case_ref="c",
        case_folder="c",
        mail_from="a@x",
        sha256="",
        size=0,
        path="",
        signed="none",
        encrypted=False,
        envid="e",
        state="deferred",
        next_attempt_at=clock.iso(next_attempt_at),
        created_at=clock.iso(next_attempt_at - timedelta(minutes=5)),
    )


def test_a_retry_scheduled_before_the_clock_went_back_is_not_delayed_by_the_jump() -> None:
    then = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    rec = _deferred(then + timedelta(minutes=5))  # deferred at 09:00 for five minutes
    back = then - timedelta(hours=1)  # the clock now says 08:00
    assert scheduler.is_due(rec, back, max_backoff=1800)  # 65 minutes ahead: no backoff puts it there
    assert not scheduler.is_due(rec, then, max_backoff=1800)  # on time it still waits its five minutes
    assert not scheduler.is_due(rec, back)  # without the bound the document would wait an extra hour
