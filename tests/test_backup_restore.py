"""docs/operations.md, "Back up and restore", followed as written: a backup taken with the
daemon stopped, restored into another place, is proven complete by ``audit verify``; a
restore that lost a case entry is not."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import Env, write_config

from gateway.demo.samples import letter

pytestmark = pytest.mark.skipif(
    shutil.which("sqlite3") is None or shutil.which("tar") is None, reason="needs the sqlite3 and tar commands"
)


def sh(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True, timeout=120)


def back_up(env: Env, backup: Path) -> None:
    """The documented commands, with this test's directories for /var/lib/poststelle and the cases."""
    backup.mkdir()
    state, cases = env.state_dir, env.cases_dir
    sh("sqlite3", str(state / "ledger.sqlite3"), f".backup '{backup}/ledger.sqlite3'")
    sh(
        "tar",
        "-C",
        str(state),
        "--exclude=./ledger.sqlite3*",
        "--exclude=./staging",
        "--exclude=./poststelle.lock",
        "--exclude=./cases",
        "-cpf",
        str(backup / "state.tar"),
        ".",
    )
    sh("tar", "-C", str(cases), "-cpf", str(backup / "cases.tar"), ".")


def restore(backup: Path, root: Path) -> Env:
    """An empty state directory elsewhere, the documented commands, and a config naming it."""
    root.mkdir()
    config = write_config(root, [])  # makes root/state and root/state/cases, as tmpfiles would
    state = root / "state"
    sh("tar", "-C", str(state), "-xpf", str(backup / "state.tar"))
    shutil.copy2(backup / "ledger.sqlite3", state / "ledger.sqlite3")
    sh("tar", "-C", str(state / "cases"), "-xpf", str(backup / "cases.tar"))
    return Env(None, "", root, config)  # type: ignore[arg-type]


def test_a_backup_restored_elsewhere_verifies_and_a_lost_entry_does_not(env: Env, tmp_path: Path) -> None:
    env.append(letter(subject="Az. 63-BV-2026-0300 Bauantrag"), letter(subject="ohne Aktenzeichen"))
    env.cli("run", "--once", check=True)
    assert env.entries()
    back_up(env, tmp_path / "backup")

    restored = restore(tmp_path / "backup", tmp_path / "elsewhere")
    verified = restored.cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert len(restored.entries()) == len(env.entries())

    shutil.rmtree(restored.entries()[0])
    broken = restored.cli("audit", "verify")
    assert broken.returncode != 0
