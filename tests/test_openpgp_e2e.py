"""OpenPGP end to end: through Dovecot into case folders, with verdicts, audit events and inspect."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from conftest import Env, mailbox_entry, write_config
from support.pgp_keys import Keys, headers, keys, pgp_encrypted, pgp_signed, text_part

from gateway.demo.dovecot import Dovecot
from gateway.records.open import open_store


def openpgp_env(dovecot: Dovecot, tmp_path: Path, user: str, k: Keys) -> Env:
    (tmp_path / "pgp").mkdir()
    secret = tmp_path / "pgp" / "rathaus-secret.asc"
    secret.write_bytes(k.world.secret(k.us))
    secret.chmod(0o600)
    corr = tmp_path / "pgp" / "correspondents"
    corr.mkdir()
    (corr / "bob.asc").write_bytes(k.world.public(k.bob))
    extra = f"""
[openpgp]
gnupg_home = "{tmp_path}/g"
secret_keys = ["{secret}"]
correspondents = "{corr}"
pinned = [{{ email = "bob@nachbar.test", fingerprint = "{k.bob.fingerprint}" }}]
"""
    cfg = write_config(tmp_path, [mailbox_entry(dovecot, user, tmp_path)], extra=extra)
    return Env(dovecot, user, tmp_path, cfg)


def verdict_of(entry: Path) -> dict[str, object]:
    return json.loads((entry / "verification.json").read_text())  # type: ignore[no-any-return]


def test_signed_and_encrypted_pgp_mail_is_verified_filed_and_audited(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    k = keys()
    env = openpgp_env(dovecot, tmp_path, new_user(), k)
    inner = b"Subject: Az. 63-BV-2026-0500 Stellungnahme\r\n" + text_part(
        "Sehr geehrte Damen und Herren,\r\nanbei unsere Stellungnahme.\r\n"
    )
    good = pgp_encrypted(k.world, [k.us], inner, headers(subject="..."), signer=k.bob)
    stranger = pgp_signed(k.world, k.carol, text_part(), headers("Carol <carol@nachbar.test>", "Az. 63-BV-2026-0500"))
    env.append(good, stranger)
    env.cli("run", "--once", check=True)
    entries = {verdict_of(e)["verdict"]: e for e in env.entries()}
    assert set(entries) == {"verified", "unverified"}
    verified = entries["verified"]
    assert verified.parent.name == "63-BV-2026-0500"  # routed by the protected inner subject
    v = verdict_of(verified)
    assert v["signature"]["scheme"] == "openpgp" and v["signature"]["signer_fingerprint"] == k.bob.fingerprint  # type: ignore[index]
    assert v["encryption"] == {"status": "decrypted", "scheme": "openpgp"}
    assert b"Stellungnahme" in (verified / "content.eml").read_bytes()
    assert "openpgp-unknown-key" in verdict_of(entries["unverified"])["reasons"]  # type: ignore[operator]
    store = open_store(env.config, readonly=True)
    try:
        events = {e.event for e in store.entries()}
    finally:
        store.close()
    assert {"decrypted", "signature-checked", "key-used", "stored"} <= events
    audit = env.cli("audit", "verify")
    assert audit.returncode == 0, audit.stdout + audit.stderr

    shown = env.cli("inspect", "--json", str(verified / "original.eml"), check=True)
    line = json.loads(shown.stdout.splitlines()[0])
    assert line["verdict"] == "verified" and line["signature"]["scheme"] == "openpgp"


def test_pgp_mail_to_someone_else_is_quarantined_with_its_bytes(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    k = keys()
    env = openpgp_env(dovecot, tmp_path, new_user(), k)
    env.append(pgp_encrypted(k.world, [k.carol], text_part(), headers(subject="Az. 63-BV-2026-0501")))
    env.cli("run", "--once", check=True)
    (q,) = env.quarantined()
    assert json.loads((q / "reason.json").read_text())["reasons"] == ["decryption-failed-no-key"]
    assert (q / "original.eml").exists() and not (q / "content.eml").exists()
    assert len(env.uids("Poststelle/Quarantine")) == 1
