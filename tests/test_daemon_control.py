"""A running daemon answers to its operator: SIGHUP reloads the configuration (or keeps the
old one and says why), ``status`` and the metrics endpoint show what it is doing, and its
start, stop and reloads are in the audit trail.

Every wait below polls for an effect the daemon leaves (an audit entry, the status file, a
case entry) with a generous timeout; nothing waits for time to pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conftest import POSTSTELLE, REPO, ROUTES, Env, mailbox_entry, write_config
from support.promtext import parse

from gateway.config import Config, load_config
from gateway.demo.dovecot import Dovecot
from gateway.demo.samples import letter
from gateway.records.open import open_store
from gateway.service.snapshot import read_status
from gateway.statedir import daemon_status_path

TIMEOUT = 60.0
QUIET = "[processing]\nanalysis_workers = 0\n"  # in-process analysis: a 2-core test machine has no cores to spare
NEW_ROUTE = """
[[route]]
name = "new procedure"
subject = '(?i)\\bVorgang\\s+Neu-(?P<case>\\d+)'
case = "NEU-{case}"
"""


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def events(config: Config, kind: str) -> list[dict[str, Any]]:
    """The details of every ``kind`` entry in the trail so far (read-only, beside the daemon)."""
    store = open_store(config, readonly=True)
    try:
        return [e.details for e in store.entries() if e.event == kind]
    finally:
        store.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def daemon(config_path: Path, log: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """``poststelle run`` (or ``args``) with its log in a file; SIGTERM at the end if still running."""
    path = os.pathsep.join([str(REPO / "tests"), str(REPO), os.environ.get("PYTHONPATH", "")])
    cmd = list(args) or [*POSTSTELLE, "run"]
    with log.open("w") as err:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env={**os.environ, "POSTSTELLE_CONFIG": str(config_path), "PYTHONPATH": path},
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
        try:
            # The status file appears once the signal handlers are in place and the workers start.
            config = load_config(config_path)
            wait_for(
                "the daemon's status file",
                lambda: (read_status(daemon_status_path(config)) or {}).get("pid") == proc.pid,
            )
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=TIMEOUT)


def log_lines(log: Path, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(ln) for ln in log.read_text().splitlines() if ln.startswith("{")]
    return [ln for ln in lines if ln.get("event") == event]


def test_sighup_rejects_a_bad_configuration_keeping_the_old_one_and_applies_a_good_one(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    rathaus, bauamt = new_user(), new_user()
    first = mailbox_entry(dovecot, rathaus, tmp_path, name="rathaus")
    path = write_config(tmp_path, [first], extra=QUIET)
    env = Env(dovecot, rathaus, tmp_path, path)
    good_text = path.read_text()
    cfg = load_config(path)  # the trail's place; the file changes below
    log = tmp_path / "daemon.log"
    with daemon(path, log) as proc:
        # 1. Not TOML-valid for us: an unknown section. Rejected, the old configuration kept.
        path.write_text(good_text + "\n[bogus]\nx = 1\n")
        proc.send_signal(signal.SIGHUP)
        (rejected,) = wait_for("config-reload-rejected", lambda: events(cfg, "config-reload-rejected"))
        assert (rejected["key"], rejected["problem"]) == ("bogus", "unknown key")
        assert rejected["kept_sha256"] == hashlib.sha256(good_text.encode()).hexdigest()
        (line,) = log_lines(log, "configuration reload rejected")
        assert line["level"] == "error" and (line["file"], line["key"]) == (str(path), "bogus")

        # 2. Valid, but a new state directory needs a restart: rejected, saying so.
        path.write_text(good_text.replace(f'state_dir = "{tmp_path}/state"', f'state_dir = "{tmp_path}/other"'))
        proc.send_signal(signal.SIGHUP)
        second = wait_for("second rejection", lambda: events(cfg, "config-reload-rejected")[1:])
        assert second[0]["key"] == "storage" and "needs a restart" in second[0]["problem"]

        # The old configuration still works: a letter for a route it lacks goes to the unassigned folder.
        env.append(letter(subject="Vorgang Neu-1 Antrag"))
        wait_for("the first letter", lambda: [p.parent.name for p in env.entries()] == ["_unassigned"])

        # 3. A good one: a new route and a second mailbox with a letter waiting.
        dovecot.append(bauamt, "INBOX", [letter(subject="Vorgang Neu-2 Widerspruch")])
        second_mb = mailbox_entry(dovecot, bauamt, tmp_path, name="bauamt")
        write_config(tmp_path, [first, second_mb], extra=QUIET, routes=NEW_ROUTE + ROUTES)
        proc.send_signal(signal.SIGHUP)
        (reloaded,) = wait_for("config-reloaded", lambda: events(cfg, "config-reloaded"))
        assert reloaded["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert reloaded["changes"]["mailboxes_added"] == ["bauamt"] and reloaded["changes"]["analysis"]
        assert reloaded["mailboxes"] == ["rathaus", "bauamt"]
        wait_for("the added mailbox's letter in its new case", lambda: (env.cases_dir / "NEU-2").is_dir())
        env.append(letter(subject="Vorgang Neu-3 Nachtrag"))
        wait_for("the new route applied to the first mailbox", lambda: (env.cases_dir / "NEU-3").is_dir())
        status = read_status(daemon_status_path(cfg))
        assert status is not None and status["config_sha256"] == reloaded["sha256"]
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert env.cli("audit", "verify").returncode == 0


def test_status_and_metrics_show_the_running_daemon_and_the_trail_its_start_and_stop(env: Env) -> None:
    port = free_port()
    path = write_config(
        env.root,
        [mailbox_entry(env.dovecot, env.user, env.root)],
        extra=QUIET + f'[metrics]\nlisten = "127.0.0.1:{port}"\n',
    )
    cfg = load_config(path)
    env.append(letter(subject="Az. 63-BV-2026-0500 Bauantrag"))
    log = env.root / "daemon.log"
    with daemon(path, log) as proc:
        # The first pass files the waiting letter; the status file says "ok" once it is recorded.
        wait_for(
            "the first pass",
            lambda: (
                (read_status(daemon_status_path(cfg)) or {}).get("mailboxes", {}).get("rathaus", {}).get("state")
                == "ok"
            ),
        )
        assert len(env.entries()) == 1
        status = json.loads(env.cli("status", "--json", check=True).stdout)
        assert status["daemon"]["running"] and status["daemon"]["pid"] == proc.pid
        assert status["daemon"]["config_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        (rathaus,) = status["mailboxes"]
        assert rathaus["connected"] is True and rathaus["state"] == "ok"
        assert status["messages"] == {"stored": 1}
        text = env.cli("status", check=True).stdout
        assert f"daemon: running, pid {proc.pid}" in text and "CONNECTED" in text

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as reply:
            assert reply.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            metrics = parse(reply.read().decode("utf-8"))
        assert metrics["poststelle_messages"].value(state="stored") == 1
        assert metrics["poststelle_messages"].value(state="quarantined") == 0
        assert metrics["poststelle_verification_total"].type == "counter"
        assert metrics["poststelle_verification_total"].value(outcome="unverified") == 1
        assert metrics["poststelle_mailbox_up"].value(mailbox="rathaus") == 1
        assert (
            abs(metrics["poststelle_mailbox_last_success_timestamp_seconds"].value(mailbox="rathaus") - time.time())
            < 600
        )
        assert metrics["poststelle_outbox"].value(state="queued") == 0
        assert metrics["poststelle_outbox_oldest_queued_age_seconds"].value() == 0
        assert metrics["poststelle_deliveries"].value(state="delivered") == 0
        (build,) = metrics["poststelle_build_info"].samples
        assert dict(build)["version"]
    assert proc.returncode == 0, log.read_text()[-3000:]

    after = json.loads(env.cli("status", "--json", check=True).stdout)
    assert not after["daemon"]["running"] and after["daemon"]["stopped_because"] == "signal SIGTERM"
    assert "daemon: not running" in env.cli("status", check=True).stdout
    (started,) = events(cfg, "daemon-started")
    assert started["pid"] == proc.pid and started["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert started["version"]
    (stopped,) = events(cfg, "daemon-stopped")
    assert (stopped["reason"], stopped["signal"], stopped["pid"]) == ("signal", "SIGTERM", proc.pid)
    assert len(events(cfg, "config-loaded")) == 1, "config-loaded stays"

    once = env.cli("run", "--once", check=True)
    assert once.returncode == 0
    assert [e["reason"] for e in events(cfg, "daemon-stopped")] == ["signal", "once-done"]


def test_daemon_exits_0_on_sigterm_after_a_mailbox_failure_it_recovered_from(env: Env) -> None:
    """The first intent for the batch fails (a locked ledger); the retry files it; SIGTERM ends the run with 0."""
    path = write_config(env.root, [mailbox_entry(env.dovecot, env.user, env.root)], extra=QUIET)
    cfg = load_config(path)
    env.append(letter(subject="Az. 63-BV-2026-0510 Nachtrag"))
    log = env.root / "daemon.log"
    faulty = [sys.executable, "-m", "support.faults", "plan:rathaus:1", "--", "run"]
    with daemon(path, log, *faulty) as proc:
        wait_for("the recovery", lambda: events(cfg, "mailbox-recovered"))
        wait_for("the letter filed", lambda: len(env.entries()) == 1)
        assert events(cfg, "mailbox-error"), "it did fail first"
    assert proc.returncode == 0, log.read_text()[-3000:]
    (stopped,) = events(cfg, "daemon-stopped")
    assert stopped["reason"] == "signal"


def test_status_of_a_daemon_that_was_killed_says_it_ended_without_stopping_cleanly(env: Env) -> None:
    """The file says running, but nobody holds the lock: the pid in it is not taken for a live daemon."""
    path = daemon_status_path(env.config)
    (env.state_dir / "poststelle.lock").write_text("999999\n")
    path.write_text(
        json.dumps(
            {
                "pid": 999999,
                "started_at": "2026-12-01T08:00:00.000000Z",
                "config_sha256": "x",
                "version": "0.1.0",
                "running": True,
                "mailboxes": {},
            }
        )
    )
    status = json.loads(env.cli("status", "--json", check=True).stdout)["daemon"]
    assert (status["running"], status["pid"]) == (False, None)
    assert status["stopped_because"] == "ended without stopping cleanly (killed or crashed)"
    assert status["config_changed"], "and it ran with another configuration than the file's"
