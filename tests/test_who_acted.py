"""Who released or moved a message is the kernel's word, not the environment's.

The CLI runs as a subprocess against real Dovecot-fetched mail: ``$USER``/``$LOGNAME`` lie,
``SUDO_USER`` is believed only from root, and an unprivileged account is recorded by its
own name whatever it claims.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import POSTSTELLE, REPO, Env, mailbox_entry, write_config
from hypothesis import given
from hypothesis import strategies as st
from support.audit import entries, file_correspondence, records, verify

from gateway.audit.report import actor_text
from gateway.demo.dovecot import Dovecot
from gateway.records.actors import Actor, cli_actor, parse_cli_actor
from gateway.records.chain import AuditEntry
from gateway.ui import Locale

LIES = {"USER": "mallory", "LOGNAME": "mallory"}


def run_cli(env: Env, *args: str, extra_env: dict[str, str], prefix: tuple[str, ...] = ()) -> None:
    clean = {k: v for k, v in os.environ.items() if k not in ("SUDO_USER", "SUDO_UID", "SUDO_GID", "SUDO_COMMAND")}
    environ = {**clean, "POSTSTELLE_CONFIG": str(env.config_path), "PYTHONPATH": str(REPO), **extra_env}
    proc = subprocess.run(
        [*prefix, *POSTSTELLE, *args], capture_output=True, text=True, env=environ, cwd=REPO, timeout=120, check=False
    )
    assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"


def last_person_entry(env: Env, event: str) -> AuditEntry:
    return [e for e in entries(env) if e.event == event][-1]


def quarantined_id(env: Env) -> str:
    return next(r.id for r in records(env) if r.state == "quarantined")


def filed_id(env: Env) -> str:
    return next(r.id for r in records(env) if r.state == "stored")


def test_release_records_the_real_account_not_what_user_and_logname_claim(env: Env) -> None:
    file_correspondence(env)
    run_cli(env, "quarantine", "release", quarantined_id(env), "--case", "63-BV-2026-0147", extra_env=LIES)

    me = pwd.getpwuid(os.getuid()).pw_name
    released = last_person_entry(env, "released")
    assert released.actor == f"cli:{me}" and "mallory" not in released.actor
    assert (released.details["os_user"], released.details["uid"]) == (me, os.getuid())
    assert released.details["sudo_user"] is None
    assert verify(env)[0] == 0


@pytest.mark.skipif(os.getuid() != 0, reason="sudo's caller is only believed when running as root")
def test_under_sudo_release_and_move_name_root_and_sudo_s_caller_marked_as_such(env: Env) -> None:
    file_correspondence(env)
    sudo = {**LIES, "SUDO_USER": "anna", "SUDO_UID": "1000"}
    run_cli(env, "quarantine", "release", quarantined_id(env), "--case", "63-BV-2026-0147", extra_env=sudo)
    run_cli(env, "cases", "move", filed_id(env), "--case", "VG 1 K 9/26", "--note", "falsch", extra_env=sudo)

    for event in ("released", "refiled"):
        entry = last_person_entry(env, event)
        assert entry.actor == "cli:root (sudo by anna)"
        assert (entry.details["os_user"], entry.details["sudo_user"]) == ("root", "anna")
    assert actor_text("cli:root (sudo by anna)") == "root (command line, sudo by anna)"
    assert actor_text("cli:root (sudo by anna)", Locale("de")) == "root (Kommandozeile, per sudo von anna)"
    assert verify(env)[0] == 0


@pytest.fixture
def shared_env(dovecot: Dovecot, new_user: Callable[[], str]) -> Iterator[Env]:
    """An Env outside pytest's private (0700) tmp directory, so another account can reach it."""
    root = Path(tempfile.mkdtemp(prefix="pst-actor-"))
    os.chmod(root, 0o755)  # noqa: S103 - the unprivileged account must reach its state
    try:
        user = new_user()
        yield Env(dovecot, user, root, write_config(root, [mailbox_entry(dovecot, user, root)]))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _unprivileged_prefix() -> tuple[str, ...]:
    if os.getuid() != 0:
        pytest.skip("needs root to switch to an unprivileged account (setpriv)")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    return ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--")


def test_an_unprivileged_account_is_recorded_by_its_name_whatever_it_claims(shared_env: Env) -> None:
    prefix = _unprivileged_prefix()
    env = shared_env
    file_correspondence(env)
    nobody = pwd.getpwnam("nobody")
    subprocess.run(["chown", "-R", f"{nobody.pw_uid}:{nobody.pw_gid}", str(env.root)], check=True)

    claims = {"USER": "root", "LOGNAME": "root", "SUDO_USER": "root", "HOME": str(env.root)}
    run_cli(
        env, "quarantine", "release", quarantined_id(env), "--case", "63-BV-2026-0147", extra_env=claims, prefix=prefix
    )

    released = last_person_entry(env, "released")
    assert released.actor == "cli:nobody"
    assert (released.details["os_user"], released.details["uid"], released.details["sudo_user"]) == (
        "nobody",
        nobody.pw_uid,
        None,
    )


_names = st.from_regex(r"[A-Za-z0-9._@$+-]{1,32}", fullmatch=True)


@given(os_user=_names | st.integers(min_value=0).map(lambda n: f"uid:{n}"), sudo_user=st.none() | _names)
def test_the_recorded_actor_reads_back_as_the_same_person_and_sudo_caller(os_user: str, sudo_user: str | None) -> None:
    actor = Actor(os_user=os_user, uid=0, sudo_user=sudo_user)
    assert parse_cli_actor(actor.name) == (os_user, sudo_user)
    assert actor_text(actor.name).startswith(os_user + " (command line")


def test_a_sudo_user_that_is_not_an_account_name_is_recorded_escaped() -> None:
    if os.getuid() != 0:
        pytest.skip("SUDO_USER is only believed when running as root")
    actor = cli_actor({"SUDO_USER": "anna\x1b[2J", "USER": "mallory"})
    assert actor.sudo_user is not None and "\x1b" not in actor.sudo_user and "anna" in actor.sudo_user
    assert actor.os_user == "root"
