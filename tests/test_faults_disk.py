"""A full disk under the case folders or the state directory: nothing acknowledged, nothing half-written.

Each test mounts a small tmpfs (root only; skipped otherwise, saying so), fills it, lets
a pass fail, checks that the server still holds every message, that no entry is half
there, and that the mailbox's status, the log and the trail say "disk full" with the
path; then frees the space and checks that the next pass files everything exactly once.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import POSTSTELLE, REPO, Env, init_dirs, mailbox_entry, write_config
from support.exactly_once import audit_verify_is_green, each_message_once, event_types, staging_leftovers
from support.outbox import document, smtp_config
from test_outbox_postfix import fetch_by_message_id, wait_for

from gateway.config import load_config
from gateway.demo.dovecot import Dovecot
from gateway.demo.samples import fake_pdf, letter
from gateway.outbound import outbox
from gateway.outbound.drain import Drain
from gateway.records.open import open_store
from gateway.records.store import EntryFilter

SUBJECTS = [f"Az. 63-BV-2026-{800 + i:04d}" for i in range(3)]


def _mount_tmpfs(path: Path, size: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True)


@contextlib.contextmanager
def small_filesystem(path: Path, size: str = "2m") -> Iterator[Path]:
    """``path`` on a tmpfs of ``size`` for the duration (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    path.mkdir(parents=True, exist_ok=True)
    _mount_tmpfs(path, size)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(fs: Path, leave: int) -> Path:
    """Write a filler file until only about ``leave`` bytes are free on ``fs``."""
    filler = fs / "filler.bin"
    st = os.statvfs(fs)
    free = st.f_bavail * st.f_frsize
    with filler.open("wb") as f:
        f.write(b"\0" * max(free - leave, 0))
    return filler


def status_of(env: Env) -> dict[str, object]:
    status = json.loads(env.cli("status", "--json", check=True).stdout)
    (mailbox,) = status["mailboxes"]
    return dict(mailbox)


@pytest.fixture
def full_cases(dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]) -> Iterator[tuple[Env, Path]]:
    """A mailbox with three letters whose cases_dir is a 2 MB tmpfs with about 64 KB free."""
    user = new_user()
    cfg = write_config(tmp_path, [mailbox_entry(dovecot, user, tmp_path, timeout=10)])
    env = Env(dovecot, user, tmp_path, cfg)
    with small_filesystem(env.cases_dir):
        init_dirs(cfg)
        big = (letter(subject=s, attachment=("a.pdf", fake_pdf(200_000, seed=n))) for n, s in enumerate(SUBJECTS))
        env.append(*big)
        yield env, fill(env.cases_dir, 64 * 1024)


def test_full_case_folders_acknowledge_nothing_and_say_disk_full(full_cases: tuple[Env, Path]) -> None:
    env, filler = full_cases
    run = env.cli("run", "--once")
    assert run.returncode == 1
    assert len(env.uids("INBOX")) == len(SUBJECTS)  # nothing moved on the server
    assert env.entries() == [] and staging_leftovers(env) == []
    store = open_store(env.config, readonly=True)
    try:
        assert [r.state for r in store.all_messages() if r.state not in ("abandoned",)] == []
    finally:
        store.close()
    status = status_of(env)
    assert "disk full" in str(status["last_error"]) and str(env.cases_dir) in str(status["last_error"])
    assert "disk full" in run.stderr and "ENOSPC" in run.stderr
    assert event_types(env).count("disk-full") == 1  # three attempts, one error: recorded once
    audit_verify_is_green(env)
    filler.unlink()
    env.cli("run", "--once", check=True)
    each_message_once(env, SUBJECTS)
    assert "mailbox-recovered" in event_types(env)
    audit_verify_is_green(env)


@contextlib.contextmanager
def full_state(dovecot: Dovecot, tmp_path: Path, user: str, leave: int) -> Iterator[tuple[Env, Path]]:
    """A mailbox whose whole state_dir (ledger, trail, case folders) is a 4 MB tmpfs, filled up."""
    cfg = write_config(tmp_path, [mailbox_entry(dovecot, user, tmp_path, timeout=10)])
    env = Env(dovecot, user, tmp_path, cfg)
    with small_filesystem(env.state_dir, "4m"):
        init_dirs(cfg)
        env.cli("run", "--once", check=True)  # the ledger and the trail exist, as on a running system
        env.append(*(letter(subject=s, attachment=("a.pdf", fake_pdf(20_000, seed=i))) for i, s in enumerate(SUBJECTS)))
        yield env, fill(env.state_dir, leave)


@pytest.mark.parametrize("leave", [0, 160 * 1024], ids=["full-at-start", "full-while-filing"])
def test_full_state_directory_acknowledges_nothing_and_resumes_once_space_is_back(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str], leave: int
) -> None:
    """Wherever the pass stops (the lock, the ledger, a staged file), the log says "disk full" and nothing moves."""
    with full_state(dovecot, tmp_path, new_user(), leave) as (env, filler):
        run = env.cli("run", "--once")
        assert run.returncode == 1
        assert "Traceback" not in run.stderr, run.stderr[run.stderr.find("Traceback") - 300 :][:4000]
        assert "disk full" in run.stderr
        assert "ENOSPC" in run.stderr or "SQLITE_FULL" in run.stderr
        assert len(env.uids("INBOX")) == len(SUBJECTS)  # nothing acknowledged to the server
        assert env.entries() == []
        filler.unlink()
        env.cli("run", "--once", check=True)
        each_message_once(env, SUBJECTS)
        audit_verify_is_green(env)


def test_full_case_folders_delay_the_sent_copy_not_the_sending_and_it_is_filed_once_space_is_back(
    postfix: Any, dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    sender, recipient = new_user(), new_user()
    config = load_config(smtp_config(tmp_path, port=postfix.port, extra={"from": f"{sender}@mailbox.test"}))
    with small_filesystem(config.storage.state_dir / "cases"):
        init_dirs(config.path)
        filler = fill(config.storage.state_dir / "cases", 0)
        store = open_store(config)
        try:
            doc = document(to=(f"{recipient}@mailbox.test",), mail_from=f"{sender}@mailbox.test")
            oid = outbox.enqueue(config, store, doc)
            first = Drain(config, store).run_once()
            assert first.sent == [oid] and first.unfiled == [oid]
            assert Drain(config, store).run_once().unfiled == [oid]  # still full: tried again, recorded once
            full = [e for e in store.select(EntryFilter(document=oid)) if e.event == "disk-full"]
            assert len(full) == 1 and "ENOSPC" in full[0].details["error"]
            filler.unlink()
            assert Drain(config, store).run_once().filed == [oid]
            rec = store.outbox_get(oid)
            assert rec is not None and rec.sent_path is not None and rec.attempts == 1 and not rec.resent
        finally:
            store.close()
        assert len(wait_for(lambda: fetch_by_message_id(dovecot, recipient, doc.message_id))) == 1
        proc = subprocess.run(
            [*POSTSTELLE, "audit", "verify"],
            cwd=REPO,
            capture_output=True,
            text=True,
            env={**os.environ, "POSTSTELLE_CONFIG": str(config.path)},
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
