"""No secret reaches a log line, the ledger, the audit trail, a case folder or a report.

One full run with every kind of secret the gateway holds: the IMAP password, an OpenPGP
secret key protected by a passphrase (used to decrypt an incoming letter and to sign an
outgoing document), and the audit signing key. Logging is at debug level, as an operator
chasing a problem would set it. Afterwards every byte the gateway wrote or printed is
searched for each secret, in the encodings a careless log call would use. The files that
*are* the secrets (the password file, the key files, the GnuPG home the keys live in) are
the only places they may be.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Env, write_config
from support.pgp_keys import World, headers, pgp_encrypted, text_part

from gateway.demo.dovecot import Dovecot

PASSPHRASE = "Pass-Phrase-Geheim-7391"  # the test's own secrets, searched for below
IMAP_PASSWORD = "Imap-Kennwort-Rathaus-4682"
USER = "rathaus"


def variants(secret: bytes) -> set[bytes]:
    """The secret as it would appear if someone logged it raw, in hex or in base64."""
    found = {secret, secret.hex().encode(), base64.b64encode(secret).rstrip(b"=")}
    return {v for v in found if len(v) >= 8}


def key_material(armored: bytes) -> set[bytes]:
    """Lines of the armoured secret key long enough to be unique to it."""
    return {line.strip() for line in armored.splitlines() if len(line.strip()) >= 40 and b":" not in line}


def every_file(root: Path, *, leave_out: set[Path]) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(path == skip or skip in path.parents for skip in leave_out):
            yield path


@pytest.fixture
def mailbox_server() -> Iterator[Dovecot]:
    """A Dovecot of its own: the shared one's passwords are too short to search for."""
    root = Path(tempfile.mkdtemp(prefix="pst-secrets-"))
    root.chmod(0o755)  # Dovecot's mail processes (nobody) traverse it
    try:
        with Dovecot(root, {USER: IMAP_PASSWORD}) as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def world() -> Iterator[World]:
    w = World(passphrase=PASSPHRASE)
    yield w
    w.close()


def test_a_full_run_leaves_no_secret_in_logs_ledger_trail_case_folders_or_reports(
    mailbox_server: Dovecot, postfix: Any, tmp_path: Path, new_user: Callable[[], str], world: World
) -> None:
    us = world.gen("Rathaus", "poststelle@rathaus.test")
    bob = world.gen("Bob", "bob@nachbar.test")
    user, recipient = USER, new_user()
    pgp = tmp_path / "pgp"
    (pgp / "correspondents").mkdir(parents=True)
    secret_key = world.secret(us)
    (pgp / "rathaus-secret.asc").write_bytes(secret_key)
    (pgp / "rathaus-secret.asc").chmod(0o600)
    (pgp / "correspondents" / "bob.asc").write_bytes(world.public(bob))
    (pgp / "passphrase").write_text(PASSPHRASE)
    (pgp / "passphrase").chmod(0o600)
    extra = f"""
[openpgp]
gnupg_home = "{tmp_path}/g"
secret_keys = ["{pgp}/rathaus-secret.asc"]
passphrase_file = "{pgp}/passphrase"
correspondents = "{pgp}/correspondents"
pinned = [{{ email = "bob@nachbar.test", fingerprint = "{bob.fingerprint}" }}]

[smtp]
host = "127.0.0.1"
port = {postfix.port}
security = "plain"
from = "poststelle@rathaus.test"
timeout = 10

[outbound]
sign = "openpgp"
encrypt = "never"
copy_to_sent_folder = false
"""
    (tmp_path / "rathaus.secret").write_text(IMAP_PASSWORD)
    (tmp_path / "rathaus.secret").chmod(0o600)
    mailbox = {
        "name": "rathaus",
        "host": "127.0.0.1",
        "port": mailbox_server.imaps_port,
        "security": "tls",
        "username": user,
        "password_file": str(tmp_path / "rathaus.secret"),
        "ca_file": str(mailbox_server.ca_file),
        "timeout": 10,
    }
    config_path = write_config(tmp_path, [mailbox], extra=extra)
    text = config_path.read_text().replace('format = "json"', 'format = "json"\nlevel = "debug"')
    if 'level = "debug"' not in text:
        text += '\n[logging]\nformat = "json"\nlevel = "debug"\n'
    config_path.write_text(text)
    env = Env(mailbox_server, user, tmp_path, config_path)

    inner = b"Subject: Az. 63-BV-2026-0777 Stellungnahme\r\n" + text_part()
    env.append(
        pgp_encrypted(world, [us], inner, headers(subject="..."), signer=bob),
        b"From: Bob <bob@nachbar.test>\r\nSubject: Az. 63-BV-2026-0777 Nachtrag\r\n\r\nohne Signatur\r\n",
    )
    document = tmp_path / "Bescheid.txt"
    document.write_text("Bescheid im Verfahren 63-BV-2026-0777\n")

    printed: list[str] = []

    def cli(*args: str) -> None:
        proc = env.cli(*args, check=True)
        printed.extend([proc.stdout, proc.stderr])

    cli(
        "send", "--case", "63-BV-2026-0777", "--to", f"{recipient}@mailbox.test",
        "--subject", "Az. 63-BV-2026-0777 Bescheid", str(document),
    )  # fmt: skip
    cli("run", "--once")
    cli("audit", "verify")
    cli("audit", "log")
    cli("status", "--json")
    cli("outbox", "list", "--json")
    cli("cases", "list")
    for fmt in ("html", "json", "csv"):
        cli("audit", "export", "--format", fmt, "-o", str(tmp_path / f"report.{fmt}"))

    entries = env.entries()
    assert len(entries) >= 3, "the letters and the sent document are filed"  # the run really happened
    assert any('"event": "stored"' in out for out in printed), "the daemon's log lines are among what is searched"

    state = env.state_dir
    audit_key = state / "audit" / "audit-signing.key"
    secrets: dict[str, set[bytes]] = {
        "IMAP password": variants(IMAP_PASSWORD.encode()),
        "OpenPGP passphrase": variants(PASSPHRASE.encode()),
        "OpenPGP secret key": key_material(secret_key),
        "audit signing key": variants(audit_key.read_bytes()) | key_material(audit_key.read_bytes()),
    }
    # The search recognises each secret where it legitimately is (so an empty result means something).
    own_files = {
        "IMAP password": tmp_path / "rathaus.secret",
        "OpenPGP passphrase": pgp / "passphrase",
        "OpenPGP secret key": pgp / "rathaus-secret.asc",
        "audit signing key": audit_key,
    }
    for what, path in own_files.items():
        assert any(form in path.read_bytes() for form in secrets[what]), what
    # Where the secrets legitimately live: their own files and the GnuPG home holding the keys.
    leave_out = {audit_key, tmp_path / "g", pgp, *tmp_path.glob("*.secret"), *tmp_path.glob("*password*")}
    written = [(str(p.relative_to(tmp_path)), p.read_bytes()) for p in every_file(tmp_path, leave_out=leave_out)]
    written += [(f"output of command {i}", out.encode()) for i, out in enumerate(printed)]
    assert any(name.startswith("state/ledger") for name, _ in written)
    assert any(name.endswith("audit.jsonl") for name, _ in written)
    leaks = [
        f"{what} in {name}"
        for name, data in written
        for what, forms in secrets.items()
        if any(form in data for form in forms)
    ]
    assert leaks == []
