"""Composing outgoing documents with S/MIME: real openssl and Poststelle's own analysis as oracles.

The authority is the test PKI's ``recipient`` party (poststelle@rathaus.example); Alice
(alice@example.org) is a correspondent whose certificate is in the correspondents directory.
"""

from __future__ import annotations

import email
import email.policy
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from support.smime_pki import (
    DAY,
    NOW,
    RECIPIENT,
    SENDER,
    TestPKI,
    _leaf,
    _rsa,
    build_pki,
    now,
    openssl,
    openssl_verify,
)

from gateway.config import Config, parse_config
from gateway.inbound.decide import analyse
from gateway.outbound.compose import Attachment, ComposeError, Letter
from gateway.outbound.document import ComposedDocument
from gateway.outbound.protect import OutboundKeys, compose_document
from gateway.statedir import certstore_dir
from gateway.unwrap import UnwrapContext
from gateway.unwrap.certstore import CertStore

CASE = "1 K 1234/25"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return build_pki()


def make_config(tmp: Path, pki: TestPKI, *, fetch_crls: bool = False, **outbound: str) -> Config:
    files = pki.write(tmp / "pki")
    chain = tmp / "pki" / "authority-chain.pem"
    chain.write_bytes(pki["recipient"].cert_pem() + pki.inter.cert_pem())
    corr = tmp / "correspondents"
    corr.mkdir(exist_ok=True)
    for name in ("sender", "recipient", "expired", "revoked"):
        (corr / f"{name}.pem").write_bytes(pki[name].cert_pem())
    (corr / "README.txt").write_text("certificates of our correspondents\n")
    data = {
        "storage": {"state_dir": str(tmp / "state")},
        "limits": {"max_message_bytes": 2_000_000},
        "smime": {
            "identities": [{"key_file": str(files["recipient.key"]), "cert_file": str(chain)}],
            "trust_anchors": [str(files["root"])],
            "crl_files": [str(files["crl"])],
            "fetch_crls": fetch_crls,
        },
        "outbound": {"sign": "smime", "encrypt": "auto", "correspondents_dir": str(corr), **outbound},
    }
    return parse_config(data, file=str(tmp / "poststelle.toml"))


@pytest.fixture
def tmp() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="compose-") as d:
        yield Path(d)


def compose(cfg: Config, letter: Letter) -> ComposedDocument:
    keys = OutboundKeys.from_config(cfg)
    try:
        return compose_document(letter, mail_from=RECIPIENT, config=cfg, keys=keys, at=now())
    finally:
        keys.close()


def letter(tmp: Path, to: tuple[str, ...] = (SENDER,), **kw: object) -> Letter:
    pdf = tmp / "Bescheid.pdf"
    pdf.write_bytes(PDF)
    args: dict[str, object] = {
        "case": CASE,
        "to": to,
        "subject": "Ihr Bauantrag",
        "body": "Guten Tag,\nanbei.\n",
        "attachments": (Attachment(pdf),),
    }
    args.update(kw)
    return Letter(**args)  # type: ignore[arg-type]


def verdict(cfg: Config, raw: bytes) -> dict[str, object]:
    """What ``poststelle inspect`` would say about the bytes."""
    ctx = UnwrapContext.from_config(cfg, collect_certificates=False, fetch_crls=False)
    try:
        return analyse(raw, cfg, ctx, at=now()).verdict.to_json()
    finally:
        ctx.close()


def cms_decrypt(raw: bytes, cert: Path, key: Path) -> bytes:
    res = openssl("cms", "-decrypt", "-recip", str(cert), "-inkey", str(key), stdin=raw)
    assert res.returncode == 0, res.stderr.decode()
    return res.stdout


def test_signed_letter_verifies_with_openssl_cms_and_smime(pki: TestPKI, tmp: Path) -> None:
    cfg = make_config(tmp, pki, encrypt="never")
    doc = compose(cfg, letter(tmp))
    assert doc.signed == "smime" and not doc.encrypted and doc.key_sources == ()
    assert b"\r\n" in doc.raw and b"\n" not in doc.raw.replace(b"\r\n", b"")
    assert openssl_verify(pki, doc.raw)
    with tempfile.TemporaryDirectory() as d:
        files = pki.write(Path(d))
        res = openssl(
            "smime",
            "-verify",
            "-purpose",
            "smimesign",
            "-CAfile",
            str(files["root"]),
            "-out",
            "/dev/null",
            stdin=doc.raw,
        )
    assert res.returncode == 0, res.stderr.decode()


def test_signed_letter_is_verified_by_poststelle_with_the_signer_as_from(pki: TestPKI, tmp: Path) -> None:
    cfg = make_config(tmp, pki, encrypt="never")
    doc = compose(cfg, letter(tmp))
    v = verdict(cfg, doc.raw)
    assert v["verdict"] == "verified", v
    assert v["signature"]["signer"] == RECIPIENT  # type: ignore[index]


def test_tampered_signed_letter_fails_openssl_verification(pki: TestPKI, tmp: Path) -> None:
    cfg = make_config(tmp, pki, encrypt="never")
    doc = compose(cfg, letter(tmp))
    assert not openssl_verify(pki, doc.raw.replace(b"anbei", b"anbai"))


def test_encrypted_letter_decrypts_with_recipient_and_authority_keys(pki: TestPKI, tmp: Path) -> None:
    cfg = make_config(tmp, pki, encrypt="always")
    doc = compose(cfg, letter(tmp))
    assert doc.encrypted and doc.signed == "smime"
    assert doc.key_sources[0][0] == SENDER and doc.key_sources[0][1].startswith("smime correspondents_dir sender.pem")
    files = pki.write(tmp / "pki")
    for who in ("sender", "recipient"):
        inner = cms_decrypt(doc.raw, files[f"{who}.pem"], files[f"{who}.key"])
        assert inner.startswith(b"Content-Type: multipart/signed")
        assert openssl_verify(pki, inner)
        parsed = email.message_from_bytes(inner, policy=email.policy.default)
        signed_part = next(iter(parsed.iter_parts()))
        pdf = next(signed_part.iter_attachments())  # type: ignore[attr-defined]
        assert pdf.get_content() == PDF


def test_archived_encrypted_copy_is_verified_by_poststelle(pki: TestPKI, tmp: Path) -> None:
    cfg = make_config(tmp, pki, encrypt="always")
    v = verdict(cfg, compose(cfg, letter(tmp)).raw)
    assert v["verdict"] == "verified", v
    assert v["signature"]["signer"] == RECIPIENT  # type: ignore[index]
    assert v["encryption"]["status"] not in ("none", None)  # type: ignore[index]


def test_auto_encrypts_only_when_every_recipient_has_a_certificate(pki: TestPKI, tmp: Path) -> None:
    cfg = make_config(tmp, pki)
    assert compose(cfg, letter(tmp)).encrypted
    mixed = compose(cfg, letter(tmp, to=(SENDER, "unknown@example.org")))
    assert not mixed.encrypted and mixed.signed == "smime" and mixed.key_sources == ()
    assert openssl_verify(pki, mixed.raw)


def test_always_with_an_unknown_recipient_names_the_recipient(pki: TestPKI, tmp: Path) -> None:
    cfg = make_config(tmp, pki, encrypt="always")
    with pytest.raises(ComposeError) as exc:
        compose(cfg, letter(tmp, to=(SENDER, "unknown@example.org")))
    assert exc.value.reason == "recipient-key-unknown"
    assert "unknown@example.org" in str(exc.value) and SENDER not in exc.value.detail.split(";")[0]


@pytest.mark.parametrize("fetch_crls", [False, True])
@pytest.mark.parametrize("who", ["expired", "revoked"])
def test_expired_or_revoked_certificate_is_never_used(pki: TestPKI, tmp: Path, who: str, fetch_crls: bool) -> None:
    cfg = make_config(tmp, pki, encrypt="always", fetch_crls=fetch_crls)
    with pytest.raises(ComposeError) as exc:
        compose(cfg, letter(tmp, to=(pki[who].email,)))
    assert exc.value.reason == "recipient-key-unknown" and str(pki[who].email) in str(exc.value)
    auto = compose(make_config(tmp, pki), letter(tmp, to=(pki[who].email,)))
    assert not auto.encrypted


def test_certificate_store_is_a_source_and_the_newest_valid_certificate_wins(pki: TestPKI, tmp: Path) -> None:
    cfg = make_config(tmp, pki, encrypt="always")
    newer = _leaf(
        "Alice neu",
        SENDER,
        _rsa(2048, "alice-new"),
        pki.inter,
        not_before=NOW - DAY,
        eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION],
    )
    future = _leaf(
        "Alice future",
        SENDER,
        _rsa(2048, "alice-new"),
        pki.inter,
        not_before=NOW + 5 * DAY,
        not_after=NOW + 400 * DAY,
        eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION],
    )
    store = CertStore(certstore_dir(cfg, "smime"))
    digest = store.add(newer.cert.public_bytes(Encoding.DER))
    store.add(future.cert.public_bytes(Encoding.DER))
    doc = compose(cfg, letter(tmp))
    assert doc.key_sources == ((SENDER, f"smime certstore sha256={digest}"),)
    key_file = tmp / "new.key"
    cert_file = tmp / "new.pem"
    key_file.write_bytes(newer.key_pem())
    cert_file.write_bytes(newer.cert_pem())
    assert cms_decrypt(doc.raw, cert_file, key_file).startswith(b"Content-Type: multipart/signed")


def test_cc_recipients_are_envelope_recipients_and_encrypted_to(pki: TestPKI, tmp: Path) -> None:
    cfg = make_config(tmp, pki, encrypt="always")
    doc = compose(cfg, letter(tmp, to=(SENDER,), cc=(RECIPIENT,)))
    assert doc.recipients == (SENDER, RECIPIENT)
    parsed = email.message_from_bytes(doc.raw, policy=email.policy.default)
    assert parsed["cc"] == RECIPIENT and parsed["to"] == SENDER
    assert parsed["message-id"] == f"<{doc.message_id}>"
    assert CASE in parsed["subject"]


def test_oversize_document_after_signing_is_refused(pki: TestPKI, tmp: Path) -> None:
    cfg = make_config(tmp, pki, encrypt="always")
    big = tmp / "big.pdf"
    big.write_bytes(b"%PDF-1.4\n" + b"x" * 1_400_000)
    with pytest.raises(ComposeError) as exc:
        compose(cfg, letter(tmp, attachments=(Attachment(big),)))
    assert exc.value.reason == "too-large"


def test_a_sender_address_no_identity_names_is_refused(pki: TestPKI, tmp: Path) -> None:
    cfg = make_config(tmp, pki, encrypt="never")
    keys = OutboundKeys.from_config(cfg)
    try:
        with pytest.raises(ComposeError) as exc:
            compose_document(letter(tmp), mail_from="rathaus@other.example", config=cfg, keys=keys, at=now())
    finally:
        keys.close()
    assert exc.value.reason == "signing-failed" and "rathaus@other.example" in exc.value.detail


def test_unsigned_letter_is_still_encrypted_to_recipient_and_authority(pki: TestPKI, tmp: Path) -> None:
    cfg = make_config(tmp, pki, sign="none", encrypt="always")
    doc = compose(cfg, letter(tmp))
    assert doc.signed == "none" and doc.encrypted
    files = pki.write(tmp / "pki")
    for who in ("sender", "recipient"):
        assert cms_decrypt(doc.raw, files[f"{who}.pem"], files[f"{who}.key"]).startswith(
            b"Content-Type: multipart/mixed"
        )
    assert verdict(cfg, doc.raw)["verdict"] != "verified"
