"""The long-running daemon: new mail is picked up while it waits, SIGTERM stops it cleanly,
and a mailbox worker that hits an unexpected error says so everywhere and tries again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import POSTSTELLE, REPO, Env, mailbox_entry, write_config

from gateway.demo.dovecot import Dovecot
from gateway.demo.samples import letter
from gateway.records.open import open_store
from gateway.service.daemon import BACKOFF_MIN, ONCE_ATTEMPTS


def wait_for(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_mail_arriving_while_the_daemon_idles_is_filed_and_sigterm_seals_the_trail(env: Env) -> None:
    env.append(letter(subject="Az. 63-BV-2026-0300 erstes Schreiben"))
    proc = subprocess.Popen(
        [*POSTSTELLE, "run"],
        cwd=REPO,
        env={**os.environ, "POSTSTELLE_CONFIG": str(env.config_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: len(env.entries()) == 1, 20), "backlog not processed"
        env.append(letter(subject="Az. 63-BV-2026-0300 zweites Schreiben"))
        # IDLE (or the 1 s poll interval of the test config) brings it in without a restart.
        assert wait_for(lambda: len(env.entries()) == 2, 20), "new mail not picked up"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("{")]
    assert any('"mailbox": "rathaus"' in ln and '"case": "63-BV-2026-0300"' in ln for ln in lines), (
        "context bound to log lines"
    )
    store = open_store(env.config, readonly=True)
    try:
        last = list(store.entries())[-1]
        sealed = max(cp.seq for cp in store.checkpoints())
        assert sealed == last.seq, "the end of the run is sealed by a signed checkpoint"
    finally:
        store.close()


# -- unexpected errors --------------------------------------------------------------------------
def run_once_with_faults(env: Env, faults: str) -> subprocess.CompletedProcess[str]:
    """``poststelle run --once`` with ``faults`` injected into its ledger (tests/support/faults.py)."""
    path = os.pathsep.join([str(REPO / "tests"), str(REPO), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "support.faults", faults, "--", "run", "--once"],
        cwd=REPO,
        env={**os.environ, "POSTSTELLE_CONFIG": str(env.config_path), "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def log_lines(stderr: str, event: str, mailbox: str) -> list[dict[str, Any]]:
    lines = [json.loads(ln) for ln in stderr.splitlines() if ln.startswith("{")]
    return [ln for ln in lines if ln.get("event") == event and ln.get("mailbox") == mailbox]


def two_mailboxes(dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]) -> tuple[Env, str]:
    """``rathaus`` and ``bauamt``, one letter waiting in each; returns the env (rathaus) and bauamt's user."""
    good, broken = new_user(), new_user()
    dovecot.append(good, "INBOX", [letter(subject="Az. 63-BV-2026-0400 Bauantrag")])
    dovecot.append(broken, "INBOX", [letter(subject="Az. 63-BV-2026-0401 Widerspruch")])
    cfg = write_config(
        tmp_path,
        [
            mailbox_entry(dovecot, good, tmp_path, name="rathaus"),
            mailbox_entry(dovecot, broken, tmp_path, name="bauamt"),
        ],
    )
    return Env(dovecot, good, tmp_path, cfg), broken


def test_unexpected_error_is_logged_recorded_retried_and_fails_run_once_while_the_other_mailbox_is_filed(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    """A locked ledger in one mailbox: traceback, status, audit entry, retries, exit 1; the other is filed."""
    env, broken = two_mailboxes(dovecot, tmp_path, new_user)
    proc = run_once_with_faults(env, "plan:bauamt")

    assert proc.returncode == 1, proc.stderr
    assert "mailbox bauamt: StoreError: plan: database is locked" in proc.stderr
    failures = log_lines(proc.stderr, "mailbox failed unexpectedly", "bauamt")
    assert len(failures) == ONCE_ATTEMPTS, "retried"
    assert [f["retry_in"] for f in failures] == [BACKOFF_MIN, 2 * BACKOFF_MIN, None], "with a doubling backoff"
    assert all("Traceback" in f["exception"] and "database is locked" in f["exception"] for f in failures)

    assert [p.parent.name for p in env.entries()] == ["63-BV-2026-0400"], "the other mailbox is filed"
    assert len(dovecot.folder_uids(broken, "INBOX")) == 1, "the failed message stays on the server"

    status = json.loads(env.cli("status", "--json", check=True).stdout)
    by_name = {s["mailbox"]: s for s in status["mailboxes"]}
    assert by_name["bauamt"]["last_error"] == "StoreError: plan: database is locked"
    assert by_name["bauamt"]["last_error_at"]
    assert by_name["rathaus"]["last_error"] is None
    assert "StoreError: plan: database is locked" in env.cli("status", check=True).stdout

    trail = json.loads(env.cli("audit", "log", "--json", "--event", "mailbox-error", check=True).stdout)
    assert [e["details"] for e in trail] == [
        {
            "mailbox": "bauamt",
            "folder": "INBOX",
            "error_type": "StoreError",
            "error": "StoreError: plan: database is locked",
        }
    ] * ONCE_ATTEMPTS
    assert env.cli("audit", "verify").returncode == 0, "the trail with its error entries still verifies"


def test_worker_retries_after_an_unexpected_error_and_finishes_the_batch_it_failed_to_record(env: Env) -> None:
    """The outcome of a published batch cannot be recorded once: the next attempt completes it, run --once succeeds."""
    env.append(letter(subject="Az. 63-BV-2026-0410 Nachtrag"))
    proc = run_once_with_faults(env, "finish:rathaus:1")

    assert proc.returncode == 0, proc.stderr
    assert len(log_lines(proc.stderr, "mailbox failed unexpectedly", "rathaus")) == 1
    assert [p.parent.name for p in env.entries()] == ["63-BV-2026-0410"]
    assert env.uids() == [], "moved on the server once recorded"
    status = json.loads(env.cli("status", "--json", check=True).stdout)
    (rathaus,) = status["mailboxes"]
    assert rathaus["last_error"] is None and rathaus["last_error_at"] is None, "the recovery clears the error"
    assert rathaus["state"] == "ok" and rathaus["state_since"]
    assert status["messages"] == {"stored": 1}
    trail = json.loads(env.cli("audit", "log", "--json", check=True).stdout)
    events = [e["event"] for e in trail]
    assert events.count("mailbox-error") == 1 and events.count("stored") == 1
    (recovered,) = [e["details"] for e in trail if e["event"] == "mailbox-recovered"]
    assert (recovered["was"], recovered["last_error"]) == ("error", "StoreError: finish: database is locked")


def test_failure_while_recording_the_failure_does_not_end_the_worker(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    """The ledger refuses the error record too: logged, the worker retries all the same, run --once exits 1."""
    env, _ = two_mailboxes(dovecot, tmp_path, new_user)
    proc = run_once_with_faults(env, "plan:bauamt,record:bauamt")

    assert proc.returncode == 1, proc.stderr
    assert "mailbox bauamt: StoreError: plan: database is locked" in proc.stderr
    assert len(log_lines(proc.stderr, "mailbox failed unexpectedly", "bauamt")) == ONCE_ATTEMPTS
    unrecorded = log_lines(proc.stderr, "could not record the mailbox error", "bauamt")
    assert len(unrecorded) == ONCE_ATTEMPTS, "every attempt ran although recording the previous failure failed"
    assert all("set_status: database is locked" in u["error"] and "Traceback" in u["exception"] for u in unrecorded)
    assert [p.parent.name for p in env.entries()] == ["63-BV-2026-0400"], "the other mailbox is filed"


def test_recorded_error_text_never_carries_the_mailbox_password(env: Env) -> None:
    """An exception that echoes the password is recorded with it masked, bounded in length."""
    from gateway.service.daemon import ERROR_TEXT_MAX, error_text

    (mb,) = env.config.mailboxes
    secret = mb.password.reveal()
    text = error_text(RuntimeError(f"LOGIN {mb.username} {secret} refused " + "x" * 1000), mb)
    assert secret not in text and "LOGIN" in text and "***" in text
    assert text.startswith("RuntimeError: ") and len(text) <= ERROR_TEXT_MAX
