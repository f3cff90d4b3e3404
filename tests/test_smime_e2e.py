"""S/MIME end to end through a real Dovecot: decrypted, verified, routed, filed, audited.

The messages are made in the test run (tests/smime_pki.py): signed then encrypted to the
authority's certificate with ``cryptography`` (EnvelopedData, AES-CBC) and with
``openssl cms`` (AuthEnvelopedData, AES-GCM). The gateway runs as ``poststelle run
--once`` against its own IMAP user, with an ``[smime]`` section pointing at the
recipient's key, the test root and the CRL written to disk.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import ROUTES, Env, mailbox_entry, write_config
from support.smime_pki import (
    DER,
    RECIPIENT,
    SENDER,
    TestPKI,
    body_of,
    encrypt_der,
    mime_text,
    multipart_signed,
    openssl,
    pkcs7_mime,
    sign_detached_der,
)

from gateway.demo.dovecot import Dovecot
from gateway.demo.samples import letter
from gateway.records.chain import AuditEntry
from gateway.records.open import open_store

_ids = itertools.count()
COURT = "Ladung Az. 1 K 1234/25"
BUILDING = "Bauantrag Az.: 63-BV-2026-0147"


def outer(subject: str = "Verschlüsselte Nachricht", from_: str = SENDER) -> bytes:
    """Top-level headers; the outer Subject here is deliberately not routable."""
    return (
        f"From: Alice Example <{from_}>\r\nTo: {RECIPIENT}\r\nSubject: {subject}\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\nMessage-ID: <e2e-{next(_ids)}@example.org>\r\n"
        "MIME-Version: 1.0\r\n"
    ).encode()


def signed_entity(pki: TestPKI, signer: str, inner: bytes) -> bytes:
    """A multipart/signed entity (Content-* headers + body), ready to be encrypted."""
    return body_of(multipart_signed(b"", inner, sign_detached_der(pki[signer], inner)))


def signed_then_encrypted(pki: TestPKI, inner: bytes, *, signer: str = "sender", to: str = "recipient") -> bytes:
    der = encrypt_der([pki[to].cert], signed_entity(pki, signer, inner))
    return pkcs7_mime(outer(), der, "enveloped-data")


def signed_then_gcm_encrypted(pki: TestPKI, inner: bytes, tmp: Path) -> bytes:
    """AuthEnvelopedData (AES-256-GCM) made by ``openssl cms``."""
    files = pki.write(tmp / "pki")
    src = tmp / "signed.eml"
    src.write_bytes(signed_entity(pki, "sender", inner))
    res = openssl("cms", "-encrypt", "-binary", "-aes-256-gcm", "-in", str(src), "-recip", str(files["recipient.pem"]))
    assert res.returncode == 0, res.stderr
    body = res.stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert b"authEnveloped-data" in body or b"authenveloped-data" in body.lower()
    return outer() + body


def smime_toml(pki: TestPKI, root: Path) -> str:
    files = pki.write(root / "pki")
    return f"""
[smime]
identities = [{{ key_file = "{files["recipient.key"]}", cert_file = "{files["recipient.pem"]}" }}]
trust_anchors = ["{files["root"]}"]
crl_files = ["{files["crl"]}"]
"""


@pytest.fixture
def smime_env(dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str], pki: TestPKI) -> Callable[..., Env]:
    def make(policy: str = "", routes: str = ROUTES) -> Env:
        user = new_user()
        entry = mailbox_entry(dovecot, user, tmp_path)
        cfg = write_config(tmp_path, [entry], extra=smime_toml(pki, tmp_path) + policy, routes=routes)
        return Env(dovecot, user, tmp_path, cfg)

    return make


def read_json(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def by_subject(env: Env) -> dict[str, Path]:
    """Published entries keyed by the subject the gateway routed by (from the manifest)."""
    out = {}
    for entry in env.entries():
        manifest = read_json(entry / "manifest.json")
        out[str(manifest.get("subject"))] = entry
    return out


def ledger_ids(env: Env) -> dict[str, str]:
    """Entry directory name -> ledger message id."""
    store = open_store(env.config, readonly=True)
    try:
        return {Path(r.path).name: r.id for r in store.all_messages() if r.path}
    finally:
        store.close()


def audit_entries(env: Env) -> Iterator[AuditEntry]:
    store = open_store(env.config, readonly=True)
    try:
        yield from list(store.entries())
    finally:
        store.close()


def test_signed_and_encrypted_mail_is_decrypted_verified_routed_by_protected_subject_and_audited(
    smime_env: Callable[..., Env], pki: TestPKI, tmp_path: Path
) -> None:
    env = smime_env()
    court_inner = mime_text("Sehr geehrte Damen und Herren,\r\nanbei die Ladung.\r\n", subject=COURT)
    building_inner = mime_text("Anbei der Bauantrag.\r\n", subject=BUILDING)
    env.append(signed_then_encrypted(pki, court_inner), signed_then_gcm_encrypted(pki, building_inner, tmp_path))
    env.cli("run", "--once", check=True)

    assert sorted(p.parent.name for p in env.entries()) == ["63-BV-2026-0147", "VG 1 K 1234%2F25"]
    assert env.uids("INBOX") == [] and len(env.uids("Poststelle/Processed")) == 2
    entries = {p.parent.name: p for p in env.entries()}
    sender_sha = hashlib.sha256(pki["sender"].cert.public_bytes(DER)).hexdigest()
    recipient_sha = hashlib.sha256(pki["recipient"].cert.public_bytes(DER)).hexdigest()
    for folder, inner in (("VG 1 K 1234%2F25", court_inner), ("63-BV-2026-0147", building_inner)):
        entry = entries[folder]
        verdict = read_json(entry / "verification.json")
        assert verdict["verdict"] == "verified", verdict
        assert verdict["reasons"] == []
        assert verdict["from"] == SENDER
        assert verdict["signature"]["status"] == "valid"
        assert verdict["signature"]["signer"] == SENDER
        assert verdict["signature"]["covers_whole_message"] is True
        assert verdict["signature"]["signer_certificate_sha256"] == sender_sha
        assert verdict["encryption"] == {"status": "decrypted", "scheme": "smime"}
        assert verdict["subject_source"] == "protected"
        assert (entry / "content.eml").read_bytes() == inner
        manifest = read_json(entry / "manifest.json")
        assert "content.eml" in manifest["files"] and "verification.json" in manifest["files"]
        # The ciphertext is what arrived and what is kept as the original.
        assert b"application/pkcs7-mime" in (entry / "original.eml").read_bytes()
    assert read_json(entries["VG 1 K 1234%2F25"] / "manifest.json")["route"]["rule"] == "court"

    # The signer certificate of the verified messages is collected (once), never anchored.
    assert sorted(p.name for p in (env.state_dir / "certstore" / "smime").glob("*.der")) == [f"{sender_sha}.der"]

    # Audit trail: for each message (after fetched) key-used -> decrypted -> verified -> verdict.
    ids = ledger_ids(env)
    trail = list(audit_entries(env))
    for entry in entries.values():
        msg = ids[entry.name]
        events = [e for e in trail if e.message == msg and e.event != "fetched"]
        names = [e.event for e in events]
        assert names[:4] == ["key-used", "decrypted", "signature-checked", "verdict"], names
        key_used, decrypted, verified, _ = events[:4]
        assert key_used.details["certificate_sha256"] == recipient_sha
        assert key_used.details["purpose"] == "decrypt"
        assert decrypted.details["scheme"] == "smime"
        assert verified.details["verdict"] == "verified"
        assert verified.details["signer_certificate_sha256"] == sender_sha
        assert "PRIVATE KEY" not in json.dumps([e.details for e in events])
    gcm = next(e for e in trail if e.message == ids[entries["63-BV-2026-0147"].name] and e.event == "decrypted")
    assert gcm.details.get("cms_type") == "authenticated_enveloped_data"
    env.cli("audit", "verify", check=True)

    # inspect re-checks the stored original as of its recorded arrival and reaches the stored verdict.
    entry = entries["VG 1 K 1234%2F25"]
    stored = read_json(entry / "verification.json")
    proc = env.cli("inspect", "--json", str(entry / "original.eml"), check=True)
    (line,) = proc.stdout.splitlines()
    again = json.loads(line)
    assert again.pop("file") == str(entry / "original.eml")
    assert again == stored
    table = env.cli("inspect", str(entry / "original.eml"), check=True).stdout
    assert "verified" in table and SENDER in table and "decrypted" in table


def test_message_signed_by_an_untrusted_certificate_is_stored_unverified_with_reasons(
    smime_env: Callable[..., Env], pki: TestPKI
) -> None:
    env = smime_env()
    env.append(signed_then_encrypted(pki, mime_text(subject=COURT), signer="rogue"))
    env.cli("run", "--once", check=True)
    (entry,) = env.entries()
    assert entry.parent.name == "VG 1 K 1234%2F25"
    verdict = read_json(entry / "verification.json")
    assert verdict["verdict"] == "unverified"
    assert "untrusted-chain" in verdict["reasons"]
    assert verdict["signature"]["status"] == "untrusted"
    assert verdict["encryption"]["status"] == "decrypted"
    assert (entry / "content.eml").exists()
    assert not list((env.state_dir / "certstore" / "smime").glob("*.der"))  # only verified signers
    trail = list(audit_entries(env))
    verified = next(e for e in trail if e.event == "signature-checked")
    assert verified.details["verdict"] == "unverified" and verified.details["status"] == "untrusted"


def test_require_signature_quarantines_unsigned_and_unverified_mail_on_disk_and_on_the_server(
    smime_env: Callable[..., Env], pki: TestPKI
) -> None:
    env = smime_env("\n[policy]\nrequire_signature = true\n")
    plain = letter(subject="Ladung Az. 1 K 1234/25 (unsigniert)")
    rogue = signed_then_encrypted(pki, mime_text(subject=COURT + " (fremd)"), signer="rogue")
    good = signed_then_encrypted(pki, mime_text(subject=COURT))
    env.append(plain, rogue, good)
    env.cli("run", "--once", check=True)

    (entry,) = env.entries()
    assert read_json(entry / "verification.json")["verdict"] == "verified"
    quarantined = env.quarantined()
    assert len(quarantined) == 2
    for q in quarantined:
        assert read_json(q / "reason.json")["reasons"] == ["policy-signature-required"]
        verdict = read_json(q / "verification.json")
        assert verdict["verdict"] == "quarantined"
        assert "policy-signature-required" in verdict["reasons"]
    originals = sorted((q / "original.eml").read_bytes() for q in quarantined)
    assert originals == sorted([plain.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), rogue])
    assert len(env.uids("Poststelle/Quarantine")) == 2
    assert len(env.uids("Poststelle/Processed")) == 1
    assert env.uids("INBOX") == []
    listing = json.loads(env.cli("quarantine", "list", "--json", check=True).stdout)
    assert sorted(x["reasons"] for x in listing) == [["policy-signature-required"]] * 2


def test_message_encrypted_to_someone_else_is_quarantined_with_its_original_bytes(
    smime_env: Callable[..., Env], pki: TestPKI
) -> None:
    env = smime_env()
    raw = signed_then_encrypted(pki, mime_text(subject=COURT), to="sender")
    env.append(raw)
    env.cli("run", "--once", check=True)
    assert env.entries() == []
    (q,) = env.quarantined()
    assert (q / "original.eml").read_bytes() == raw
    assert read_json(q / "reason.json")["reasons"] == ["decryption-failed-no-key"]
    verdict = read_json(q / "verification.json")
    assert verdict["verdict"] == "quarantined"
    assert verdict["encryption"] == {"status": "failed", "scheme": "smime"}
    assert not (q / "content.eml").exists()  # nothing partially decrypted is passed on
    assert len(env.uids("Poststelle/Quarantine")) == 1 and env.uids("INBOX") == []
    failed = [e for e in audit_entries(env) if e.event == "decryption-failed"]
    assert len(failed) == 1 and failed[0].details["reason"] == "decryption-failed-no-key"
    env.cli("audit", "verify", check=True)


def test_route_policy_requires_a_verified_signature_only_for_its_own_cases(
    smime_env: Callable[..., Env], pki: TestPKI
) -> None:
    """The court's cases demand verified mail; building permits (global default) do not."""
    court = ROUTES.replace('case = "VG {case}"', 'case = "VG {case}"\npolicy = { require_signature = true }')
    assert court != ROUTES
    env = smime_env(routes=court)
    env.append(
        letter(subject="Bauantrag Az.: 63-BV-2026-0147"),
        letter(subject="Ladung Az. 1 K 1234/25"),
        signed_then_encrypted(pki, mime_text(subject=COURT)),
    )
    env.cli("run", "--once", check=True)
    filed = sorted((p.parent.name, read_json(p / "verification.json")["verdict"]) for p in env.entries())
    assert filed == [("63-BV-2026-0147", "unverified"), ("VG 1 K 1234%2F25", "verified")]
    (q,) = env.quarantined()
    assert read_json(q / "reason.json")["reasons"] == ["policy-signature-required"]
