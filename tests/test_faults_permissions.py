"""A case folder the gateway may not enter: the message is quarantined with the reason, never lost.

Root ignores ``chmod 000``, so the gateway runs here as ``nobody`` (``runuser``), owning its
state as a service user owns it; the test is skipped, saying why, where that cannot be done.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import REPO, Env, mailbox_entry, write_config
from support.exactly_once import audit_verify_is_green

from gateway.demo.dovecot import Dovecot
from gateway.demo.samples import letter
from gateway.records.open import open_store

CLOSED = "63-BV-2026-0970"
Runner = Callable[..., subprocess.CompletedProcess[str]]


def nobodys_python() -> list[str] | None:
    """An interpreter ``nobody`` can run with this run's packages (ours may live under /root), or None."""
    path = os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for exe in dict.fromkeys([sys.executable, f"/usr/bin/{minor}", f"/usr/local/bin/{minor}"]):
        cmd = ["env", f"PYTHONPATH={path}", "PYTHONDONTWRITEBYTECODE=1", exe]
        probe = subprocess.run(
            ["runuser", "-u", "nobody", "--", *cmd, "-c", "import cryptography, structlog, cli"],
            cwd="/",
            capture_output=True,
            timeout=60,
            check=False,
        )
        if probe.returncode == 0:
            return cmd
    return None


@pytest.fixture
def as_nobody(dovecot: Dovecot, new_user: Callable[[], str]) -> Iterator[tuple[Env, Runner]]:
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root and runuser to run the gateway as another user (chmod 000 does not stop root)")
    python = nobodys_python()
    if python is None:
        pytest.skip("no Python interpreter that user nobody may run with this run's packages")
    root = Path(tempfile.mkdtemp(prefix="pst-perm-"))
    root.chmod(0o755)  # nobody must reach it (pytest's tmp_path is 0700)
    try:
        user = new_user()
        entry = mailbox_entry(dovecot, user, root, port=dovecot.imap_port, security="plain")
        entry.pop("ca_file")
        env = Env(dovecot, user, root, write_config(root, [entry]))
        subprocess.run(["chown", "-R", "nobody:nogroup", str(root)], check=True)

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [
                    "runuser",
                    "-u",
                    "nobody",
                    "--",
                    "env",
                    f"POSTSTELLE_CONFIG={env.config_path}",
                    *python,
                    "-m",
                    "cli",
                    *args,
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )

        yield env, run
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_unreadable_case_folder_quarantines_its_letter_with_the_reason(
    as_nobody: tuple[Env, Runner],
) -> None:
    env, run = as_nobody
    closed = env.cases_dir / CLOSED
    closed.mkdir()
    shutil.chown(closed, "nobody", "nogroup")
    closed.chmod(0)  # a person closed the folder
    env.append(letter(subject=f"Az. {CLOSED}"), letter(subject="Az. 63-BV-2026-0971"))
    proc = run("run", "--once")
    assert proc.returncode == 0, proc.stderr
    assert "unsafe-case-folder" in proc.stderr  # the quarantine log line names the reason
    store = open_store(env.config, readonly=True)
    try:
        rows = {r.subject: r for r in store.all_messages()}
    finally:
        store.close()
    assert rows[f"Az. {CLOSED}"].state == "quarantined"
    assert "unsafe-case-folder" in rows[f"Az. {CLOSED}"].reasons
    assert rows["Az. 63-BV-2026-0971"].state == "stored"
    (held,) = env.quarantined()
    reason = json.loads((held / "reason.json").read_text())
    assert any("not accessible" in w and CLOSED in w for w in reason["warnings"])
    assert env.uids("INBOX") == []
    closed.chmod(0o750)
    audit_verify_is_green(env)
