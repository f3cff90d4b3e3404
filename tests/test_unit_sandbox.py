"""The daemon works inside the unit's sandbox: S/MIME (cryptography) and OpenPGP (gpg, gpg-agent)
mail decrypted, verified and filed by `run --once` under the unit's own SystemCallFilter=,
RestrictAddressFamilies=, NoNewPrivileges= and MemoryDenyWriteExecute=, applied with seccomp
and PR_SET_MDWE as systemd would (tests/support/unit_sandbox; systemd is not PID 1 here)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO, Env, mailbox_entry, write_config
from support.pgp_keys import headers, keys, pgp_encrypted, text_part
from support.smime_pki import TestPKI, mime_text
from test_openpgp_e2e import openpgp_env
from test_smime_e2e import signed_then_encrypted, smime_toml

from gateway.demo.dovecot import Dovecot

SANDBOX = REPO / "tests" / "support" / "unit_sandbox"
UNIT = REPO / "systemd" / "poststelle.service"


def _seccomp_missing() -> str | None:
    if shutil.which("systemd-analyze") is None:
        return "systemd-analyze is not installed"
    if not any(Path("/usr/lib/python3/dist-packages").glob("seccomp*.so")):
        return "libseccomp's Python binding is not installed (Debian: python3-seccomp)"
    return None


pytestmark = pytest.mark.skipif(_seccomp_missing() is not None, reason=str(_seccomp_missing()))


@pytest.fixture
def sandboxed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Every `python -m cli` a test starts from here on runs in the unit's sandbox; returns its log."""
    log = tmp_path / "sandbox.log"
    monkeypatch.setenv("POSTSTELLE_UNIT_SANDBOX", str(UNIT))
    monkeypatch.setenv("POSTSTELLE_UNIT_SANDBOX_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SANDBOX), os.environ.get("PYTHONPATH", "")]))
    return log


def test_the_sandbox_refuses_what_the_unit_forbids(env: Env, sandboxed: Path) -> None:
    env.cli("--version", check=True)
    lines = sandboxed.read_text().splitlines()
    assert len(lines) == 1 and "setuid refused" in lines[0], lines


def test_smime_and_openpgp_mail_is_verified_and_filed_inside_the_units_sandbox(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str], pki: TestPKI, sandboxed: Path
) -> None:
    k = keys()
    env = openpgp_env(dovecot, tmp_path, new_user(), k)
    user = env.user
    _, _, openpgp = env.config_path.read_text().partition("[openpgp]")
    extra = "[openpgp]" + openpgp + smime_toml(pki, tmp_path)
    config = write_config(tmp_path, [mailbox_entry(dovecot, user, tmp_path)], extra=extra)
    env = Env(dovecot, user, tmp_path, config)
    pgp_inner = b"Subject: Az. 63-BV-2026-0500 Stellungnahme\r\n" + text_part()
    env.append(
        pgp_encrypted(k.world, [k.us], pgp_inner, headers(subject="..."), signer=k.bob),
        signed_then_encrypted(pki, mime_text(subject="Bauantrag Az.: 63-BV-2026-0147")),
    )
    run = env.cli("run", "--once")
    assert run.returncode == 0, run.stderr[-3000:]
    verdicts = {e.parent.name: json.loads((e / "verification.json").read_text()) for e in env.entries()}
    assert {folder: v["verdict"] for folder, v in verdicts.items()} == {
        "63-BV-2026-0500": "verified",
        "63-BV-2026-0147": "verified",
    }
    assert "setuid refused" in sandboxed.read_text()
