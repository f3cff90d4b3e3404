"""Unsigned and badly signed are different states, everywhere a clerk or an auditor looks.

Real broken S/MIME (tests/support/smime_pki.py) and OpenPGP (real gpg) letters go through
real Dovecot and ``poststelle run --once``; the manifest, ``cases show``, ``quarantine
show``, the HTML report and the intake's log line must all say "signature invalid: <why>"
in words, keep the machine-readable reason, and still say "not signed" for a plain letter.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import Env, mailbox_entry, write_config
from support.audit import entries
from support.pgp_keys import Keys, headers, keys, pgp_signed, text_part
from support.smime_pki import RECIPIENT, TestPKI, mime_text, multipart_signed, sign_detached_der

from gateway.audit.report import AuditQuery, describe
from gateway.clock import utcnow
from gateway.demo.dovecot import Dovecot
from gateway.demo.samples import letter
from gateway.records.chain import AuditEntry
from gateway.records.open import open_store
from gateway.ui import Locale
from gateway.ui.reasons import REASONS

CASE = "63-BV-2026-0147"
CHANGED = "signature invalid: the content was changed after signing"
REVOKED = "signature invalid: signer certificate revoked"
UNTRUSTED = "signature invalid: not issued by a trusted authority"
PGP_BAD = "signature invalid: the signature does not match (altered or forged)"


def smime_headers(subject: str, n: int) -> bytes:
    return (
        f"From: Alice Example <alice@example.org>\r\nTo: {RECIPIENT}\r\nSubject: {subject}\r\n"
        f"Date: {format_datetime(utcnow())}\r\nMessage-ID: <state-{n}@example.org>\r\nMIME-Version: 1.0\r\n"
    ).encode()


def smime_letter(pki: TestPKI, signer: str, subject: str, n: int, *, tamper: bool = False) -> bytes:
    inner = mime_text(subject=subject)
    sig = sign_detached_der(pki[signer], inner)
    signed = inner.replace(b"Antrag", b"Antrax") if tamper else inner
    assert signed != inner or not tamper, "the tampering must change the signed bytes"
    return multipart_signed(smime_headers(subject, n), signed, sig)


def gateway_env(dovecot: Dovecot, root: Path, user: str, pki: TestPKI, k: Keys, policy: str = "") -> Env:
    root.mkdir()
    files = pki.write(root / "pki")
    (root / "pgp").mkdir()
    secret = root / "pgp" / "rathaus-secret.asc"
    secret.write_bytes(k.world.secret(k.us))
    secret.chmod(0o600)
    corr = root / "pgp" / "correspondents"
    corr.mkdir()
    (corr / "bob.asc").write_bytes(k.world.public(k.bob))
    extra = f"""
[smime]
identities = [{{ key_file = "{files["recipient.key"]}", cert_file = "{files["recipient.pem"]}" }}]
trust_anchors = ["{files["root"]}"]
crl_files = ["{files["crl"]}"]

[openpgp]
gnupg_home = "{root}/g"
secret_keys = ["{secret}"]
correspondents = "{corr}"
pinned = [{{ email = "bob@nachbar.test", fingerprint = "{k.bob.fingerprint}" }}]
{policy}"""
    return Env(dovecot, user, root, write_config(root, [mailbox_entry(dovecot, user, root)], extra=extra))


def pgp_tampered(k: Keys, subject: str) -> bytes:
    raw = pgp_signed(k.world, k.bob, text_part(), headers(subject=subject))
    tampered = raw.replace(b"anbei der Antrag", b"anbei der Betrag")
    assert tampered != raw
    return tampered


def letters(pki: TestPKI, k: Keys) -> dict[str, bytes]:
    return {
        "changed": smime_letter(pki, "sender", f"Az. {CASE} geaendert", 1, tamper=True),
        "revoked": smime_letter(pki, "revoked", f"Az. {CASE} gesperrt", 2),
        "untrusted": smime_letter(pki, "rogue", f"Az. {CASE} fremd", 3),
        "pgp": pgp_tampered(k, f"Az. {CASE} pgp"),
        "plain": letter(subject=f"Az. {CASE} ohne Signatur"),
    }


EXPECTED = {
    "changed": (CHANGED, "digest-mismatch"),
    "revoked": (REVOKED, "cert-revoked"),
    "untrusted": (UNTRUSTED, "untrusted-chain"),
    "pgp": (PGP_BAD, "bad-signature"),
    "plain": ("not signed", None),
}


def by_subject_word(env: Env) -> dict[str, dict[str, Any]]:
    """Each filed letter's manifest, keyed by the last word of its subject."""
    words = {"geaendert": "changed", "gesperrt": "revoked", "fremd": "untrusted", "pgp": "pgp", "Signatur": "plain"}
    out: dict[str, dict[str, Any]] = {}
    for entry in [*env.entries(), *env.quarantined()]:
        manifest = json.loads((entry / "manifest.json").read_text())
        out[words[str(manifest["subject"]).split()[-1]]] = manifest
    return out


def log_lines(output: str) -> list[dict[str, Any]]:
    found = []
    for line in output.splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


@pytest.fixture(scope="module")
def k() -> Keys:
    return keys()


def test_bad_signatures_are_filed_as_invalid_with_words_and_unsigned_stays_not_signed(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str], pki: TestPKI, k: Keys
) -> None:
    env = gateway_env(dovecot, tmp_path / "gw", new_user(), pki, k)
    env.append(*letters(pki, k).values())
    run = env.cli("run", "--once", check=True)

    manifests = by_subject_word(env)
    assert set(manifests) == set(EXPECTED)
    for name, (text, code) in EXPECTED.items():
        sig = manifests[name]["signature"]
        assert sig["text"] == text, name
        assert manifests[name]["verdict"] == "unverified", name
        if code is None:
            assert (sig["state"], sig["status"], sig["reasons"]) == ("none", "none", []), name
        else:
            assert sig["state"] == "invalid" and code in sig["reasons"], name

    # The intake's log line: the verdict, the words and the machine reasons (never reasons=[]).
    stored = {line["msg"]: line for line in log_lines(run.stdout + run.stderr) if line.get("event") == "stored"}
    ids = {m["id"]: name for name, m in manifests.items()}
    assert set(stored) == set(ids)
    for msg_id, line in stored.items():
        text, code = EXPECTED[ids[msg_id]]
        assert line["verdict"] == "unverified" and line["signature"] == text
        assert (code or "no-signature") in line["reasons"], line

    # cases show: a column for a person, the state with codes for a program.
    table = env.cli("cases", "show", CASE, check=True).stdout
    for text, _code in EXPECTED.values():
        assert text in table
    shown = json.loads(env.cli("cases", "show", CASE, "--json", check=True).stdout)
    states = {m["id"]: m["signature"] for m in shown["messages"]}
    assert states[manifests["changed"]["id"]]["reasons"] == ["digest-mismatch"]
    assert states[manifests["plain"]["id"]]["state"] == "none"

    # The trail: the unwrap's event is signature-checked, and the report says what it found.
    trail = entries(env)
    checked = [e for e in trail if e.event == "signature-checked"]
    assert len(checked) == 4 and not [e for e in trail if e.event == "verified"]
    html = tmp_path / "report.html"
    env.cli("audit", "export", "--format", "html", "--output", str(html), check=True)
    page = html.read_text()
    for text, _code in EXPECTED.values():
        assert text in page, text
    assert "Signature checked (smime): " + CHANGED in page
    assert "not verified (not signed)" in page
    assert env.cli("audit", "verify").returncode == 0


def test_quarantine_show_says_signature_invalid_in_the_configured_language(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str], pki: TestPKI, k: Keys
) -> None:
    env = gateway_env(dovecot, tmp_path / "gw", new_user(), pki, k, policy="\n[policy]\nrequire_signature = true\n")
    env.append(smime_letter(pki, "sender", f"Az. {CASE} geaendert", 11, tamper=True))
    env.cli("run", "--once", check=True)
    store = open_store(env.config, readonly=True)
    try:
        (rec,) = store.in_state("quarantined")
    finally:
        store.close()

    shown = env.cli("quarantine", "show", rec.id, check=True).stdout
    assert CHANGED in shown
    assert "policy-signature-required (a valid signature is required here)" in shown
    data = json.loads(env.cli("quarantine", "show", rec.id, "--json", check=True).stdout)
    assert data["signature"]["state"] == "invalid" and data["signature"]["reasons"] == ["digest-mismatch"]

    env.config_path.write_text(env.config_path.read_text() + '\n[ui]\nlanguage = "de"\n')
    german = env.cli("quarantine", "show", rec.id, check=True).stdout
    assert "Signatur ungültig: der Inhalt wurde nach dem Signieren verändert" in german


def _old_verified_entry() -> AuditEntry:
    details = {
        "scheme": "smime",
        "verdict": "unverified",
        "status": "invalid",
        "reasons": ["digest-mismatch"],
        "signer": None,
    }
    return AuditEntry(7, "2026-01-01T00:00:00.000000Z", "verified", "daemon", "m", None, None, None, details, "0", "1")


def test_old_trails_verified_event_reads_as_signature_checked() -> None:
    e = _old_verified_entry()
    assert describe(e) == "Signature checked (smime): " + CHANGED + ", signer ?"
    assert describe(e, Locale("de")).startswith("Signatur geprüft (smime): Signatur ungültig: der Inhalt wurde")


def test_filtering_for_signature_checked_finds_old_verified_entries_too() -> None:
    assert set(AuditQuery(events=("signature-checked",)).to_filter().events) == {"signature-checked", "verified"}


def test_every_reason_code_of_the_verdict_contract_has_clerk_words() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "verdict.md").read_text()
    section = doc.split("## Reason codes", 1)[1].split("\n## ", 1)[0]
    codes = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            codes |= {c.strip("` ") for c in first_cell.split("/") if c.strip().startswith("`")}
    assert len(codes) > 60
    missing = sorted(c for c in codes if c not in REASONS)
    assert not missing, missing
    german = Locale("de")
    untranslated = sorted(c for c in codes if german.t(REASONS[c]) == REASONS[c])
    assert not untranslated, untranslated
