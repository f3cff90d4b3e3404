"""The trail is complete and readable: exact event sequences end to end, across kill -9, and
`audit log` / `audit public-key` work for an auditor with read-only access."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import POSTSTELLE, REPO, Env, mailbox_entry, write_config
from support.audit import correspondence, entries, file_correspondence, records, verify
from support.stepper import stepped_gateway

from gateway.audit.verify import verify_state
from gateway.demo.dovecot import Dovecot
from gateway.demo.samples import fake_pdf, letter
from gateway.records.actors import cli_actor
from gateway.records.signing import load_public_key
from gateway.service.daemon import Daemon


def _alias_by_uid(env: Env) -> dict[str, str]:
    """Message ids are random: name them m1..mN by the UID they were fetched with."""
    return {e.message: f"m{e.details['uid']}" for e in entries(env) if e.event == "fetched" and e.message}


def test_end_to_end_run_and_release_yield_exactly_the_expected_events(env: Env) -> None:
    file_correspondence(env)  # m1, m2: case 63-BV-2026-0147; m3: VG 1 K 1234/25; m4: malformed
    quarantined = next(r for r in records(env) if r.state == "quarantined")
    env.cli("quarantine", "release", quarantined.id, "--case", "63-BV-2026-0147", "--note", "per phone", check=True)

    alias = _alias_by_uid(env)
    got = [(e.event, alias.get(e.message or "", e.message)) for e in entries(env)]
    assert got == [
        ("config-loaded", None),
        ("daemon-started", None),
        *[("fetched", f"m{i}") for i in (1, 2, 3, 4)],
        *[(ev, m) for m in ("m1", "m2", "m3") for ev in ("verdict", "routed", "stored")],
        ("verdict", "m4"),
        ("quarantined", "m4"),
        ("moved", "m4"),
        *[("moved", m) for m in ("m1", "m2", "m3")],
        ("daemon-stopped", None),
        ("released", "m4"),
    ]
    actors = [e.actor for e in entries(env)]
    assert set(actors[:-1]) == {"daemon"} and actors[-1] == cli_actor().name, "who released it is recorded"

    by_event = {(e.event, alias.get(e.message or "")): e for e in entries(env)}
    assert by_event[("routed", "m1")].details["rule"] == "building permits"
    assert by_event[("routed", "m2")].details["rule"] == "reply with our reference"
    assert by_event[("routed", "m3")].case == "VG 1 K 1234/25"
    assert by_event[("quarantined", "m4")].details["reasons"] == ["malformed-mime"]
    assert by_event[("moved", "m4")].details["to"] == "Poststelle/Quarantine"
    released = by_event[("released", "m4")]
    assert released.details["note"] == "per phone" and released.details["quarantine_reasons"] == ["malformed-mime"]
    assert released.case == "63-BV-2026-0147"
    assert by_event[("config-loaded", None)].details["sha256"] == env.config.sha256
    assert by_event[("daemon-started", None)].details["sha256"] == env.config.sha256
    assert by_event[("daemon-stopped", None)].details["reason"] == "once-done"
    assert verify(env)[0] == 0


def test_audit_log_filters_select_whole_items(env: Env) -> None:
    file_correspondence(env)
    alias = _alias_by_uid(env)

    def log(*args: str) -> list[dict[str, object]]:
        out = env.cli("audit", "log", "--json", *args, check=True).stdout
        return list(json.loads(out))

    case = log("--case", "63-BV-2026-0147")
    assert {alias[str(e["message"])] for e in case} == {"m1", "m2"}
    assert [e["event"] for e in case if alias[str(e["message"])] == "m1"] == [
        "fetched",
        "verdict",
        "routed",
        "stored",
        "moved",
    ]
    court = log("--case", "VG 1 K 1234%2F25")  # the folder name works as well as the reference
    assert {alias[str(e["message"])] for e in court} == {"m3"}
    assert {e["event"] for e in log("--event", "quarantined", "--event", "moved")} == {"quarantined", "moved"}
    assert {alias[str(e["message"])] for e in log("--correspondent", "VG-BEISPIELSTADT")} == {"m3"}
    m4 = next(m for m, a in alias.items() if a == "m4")
    assert [e["event"] for e in log("--message", m4)] == ["fetched", "verdict", "quarantined", "moved"]
    assert log("--until", "2000-01-01") == []
    everything = log("--since", "2000-01-01")
    assert len(everything) == len(entries(env))
    first_at = str(everything[0]["at"])
    assert log("--since", first_at)[0]["seq"] == 1
    table = env.cli("audit", "log", "--case", "63-BV-2026-0147", check=True).stdout
    assert "Assigned to case 63-BV-2026-0147 by rule “building permits”" in table
    bad = env.cli("audit", "log", "--since", "yesterday")
    assert bad.returncode != 0 and "not a date" in bad.stderr


def test_public_key_export_matches_the_signing_key(env: Env, tmp_path: Path) -> None:
    file_correspondence(env)
    out = tmp_path / "auditor.pem"
    proc = env.cli("audit", "public-key", "-o", str(out), check=True)
    key = load_public_key(out)
    assert key == load_public_key(env.state_dir / "audit" / "audit-signing.key")
    assert "audit key id" in proc.stderr
    assert env.cli("audit", "public-key", check=True).stdout == out.read_text()


# -- read-only access -------------------------------------------------------------------------------
NOBODY = 65534


@pytest.fixture
def readonly_copy(env: Env) -> Iterator[Path]:
    """A copy of the state dir readable but not writable by an unprivileged auditor account."""
    file_correspondence(env)
    root = Path(tempfile.mkdtemp(prefix="pst-ro-"))
    try:
        shutil.copytree(env.state_dir, root / "state")
        (root / "state" / "audit" / "audit-signing.key").unlink()  # the auditor never has it
        mb = {k: v for k, v in mailbox_entry(env.dovecot, env.user, root).items() if k != "password_file"}
        mb.pop("ca_file")
        mb["password"] = "unused"
        write_config(root, [mb])
        for p in [root, *root.rglob("*")]:
            p.chmod(0o555 if p.is_dir() else 0o444)
        yield root
    finally:
        for p in [root, *root.rglob("*")]:
            p.chmod(0o700 if p.is_dir() else 0o600)
        shutil.rmtree(root)


def _as_nobody(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "POSTSTELLE_CONFIG": str(root / "poststelle.toml")}
    cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *POSTSTELLE, *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to switch to nobody")
def test_audit_commands_work_with_read_only_access_to_the_state_dir(readonly_copy: Path) -> None:
    root = readonly_copy
    assert _as_nobody(root, "audit", "log").returncode == 0
    proc = _as_nobody(root, "audit", "verify", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["entries"] > 10 and report["case_entries"] == 3 and report["checkpoints"] >= 1
    assert any("immutable" in w for w in report["warnings"]), "the fallback is reported"
    pem = _as_nobody(root, "audit", "public-key")
    assert pem.returncode == 0 and "BEGIN PUBLIC KEY" in pem.stdout
    html = _as_nobody(root, "audit", "export", "--format", "html", "-o", "-")
    assert html.returncode == 0 and "Integrity check passed" in html.stdout
    assert not any(p.name.endswith("-shm") for p in (root / "state").iterdir()), "nothing was written"


# -- completeness across kill -9 --------------------------------------------------------------------
@pytest.mark.slow
def test_no_event_is_lost_or_invented_across_kill_9_and_restart(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    """Every message in a final state has exactly one fetched and one placement event; work that
    was not committed (abandoned intents) has no placement event; the record verifies."""
    rng = random.Random(int(os.environ.get("CRASH_SEED", time.time())))
    user = new_user()
    messages = [
        letter(subject=f"Az. 63-BV-2026-{i % 9:04d} Schreiben {i}", attachment=("a.pdf", fake_pdf(15_000, seed=i)))
        for i in range(150)
    ]
    messages[17] = correspondence()[-1]  # one for quarantine
    dovecot.seed_maildir(user, [*messages, messages[3]])  # and one duplicate
    cfg = write_config(tmp_path, [mailbox_entry(dovecot, user, tmp_path, batch_size=5)])
    env = Env(dovecot, user, tmp_path, cfg)
    environ = {**os.environ, "POSTSTELLE_CONFIG": str(cfg)}
    kills = 0
    for _ in range(20):
        proc = subprocess.Popen(
            [*POSTSTELLE, "run"], cwd=REPO, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.4, 0.9))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not env.uids("INBOX"):
            break
        kills += 1
        if kills >= 6:
            break
    env.cli("run", "--once", check=True, timeout=300)
    assert env.uids("INBOX") == []

    rows = {r.id: r for r in records(env)}
    events: dict[str, Counter[str]] = defaultdict(Counter)
    for e in entries(env):
        if e.message:
            events[e.message][e.event] += 1
    assert Counter(r.state for r in rows.values()) == {"stored": 149, "quarantined": 1, "duplicate": 1}
    placement = {"stored": "stored", "quarantined": "quarantined", "duplicate": "duplicate"}
    for msg, rec in rows.items():
        assert events[msg]["fetched"] == 1, (msg, events[msg])
        assert events[msg][placement[rec.state]] == 1, (msg, events[msg])
        assert sum(events[msg][k] for k in ("stored", "quarantined", "duplicate")) == 1
        assert events[msg]["moved"] >= 1
    ghosts = {m: c for m, c in events.items() if m not in rows}
    for msg, c in ghosts.items():
        assert c["processing-abandoned"] == 1 and c["fetched"] == 1, (msg, c)
        assert c["stored"] == c["quarantined"] == 0, f"work that was not committed has a placement: {msg}"
    rc, report = verify(env)
    assert rc == 0, report["breaks"]
    assert report["jsonl_lagging"] == 0 and report["case_entries"] == 149
    print(f"kills={kills} abandoned={len(ghosts)}")


#: Gateway steps after which an auditor can see something new: an entry or JSON lines.
VISIBLE = ("publish", "export_jsonl")


@pytest.mark.parametrize("window", ["one-step", "to-visible"])
@pytest.mark.parametrize("straddle", ["disk-listed", "jsonl-scanned"])
def test_verify_while_the_gateway_runs_reports_no_false_break(
    dovecot: Dovecot,
    tmp_path: Path,
    new_user: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
    straddle: str,
    window: str,
) -> None:
    """Disk, JSON-lines file and database are read in commit order, so a live run never looks tampered.

    The gateway runs one observable step at a time (tests/support/stepper.py). Between any
    two steps a whole verification runs; and each step happens in the middle of a
    verification, between two of its ordered reads (``straddle``): one step at a time, or
    (``to-visible``) every step up to the next one an auditor can see, which puts an
    entry's plan and rename, or a commit and its export, between two reads. The
    interleavings are chosen, not left to the scheduler.
    """
    user = new_user()
    letters = [
        letter(subject=f"Az. 63-BV-2026-{i % 3:04d}", attachment=("a.pdf", fake_pdf(2000, seed=i))) for i in range(9)
    ]
    dovecot.seed_maildir(user, [*letters, b"this is not a MIME message"])
    cfg = write_config(
        tmp_path,
        [mailbox_entry(dovecot, user, tmp_path, batch_size=3)],
        extra="[audit]\ncheckpoint_every = 7\n[processing]\nanalysis_workers = 0\n",
    )
    config = Env(dovecot, user, tmp_path, cfg).config

    def assert_verifies(between: Callable[[str], None] = lambda phase: None) -> None:
        report = verify_state(config, between=between)
        assert report.ok, [b.to_json() for b in report.breaks]

    with stepped_gateway(monkeypatch, Daemon(config, once=True).run) as gateway:

        def verify_across_steps() -> str | None:
            """Verify once while the gateway moves on at ``straddle``; returns its next step."""
            after: list[str | None] = []

            def steps(phase: str) -> None:
                if phase != straddle or after:
                    return
                taken = len(gateway.taken)
                nxt = gateway.grant()
                while window == "to-visible" and nxt is not None and gateway.taken[-1] not in VISIBLE:
                    nxt = gateway.grant()
                assert len(gateway.taken) > taken
                after.append(nxt)

            assert_verifies(steps)
            return after[0] if after else gateway.grant()

        step = gateway.settle()
        while step is not None:
            assert_verifies()  # between two steps
            step = verify_across_steps()

    assert {"plan", "publish", "finish", "export_jsonl", "mark_server_done", "seal"} <= set(gateway.taken)
    report = verify_state(config)
    assert report.ok and report.case_entries == 9 and report.quarantine_entries == 1 and report.unsealed == 0
