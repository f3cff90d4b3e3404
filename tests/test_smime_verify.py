"""Signature verification against the generated test PKI, cross-checked with openssl."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from support.smime_pki import (
    DAY,
    NOW,
    SENDER,
    TestPKI,
    headers,
    make_context,
    mime_text,
    multipart_signed,
    now,
    openssl,
    openssl_verify,
    pkcs7_mime,
    sign_detached_der,
    sign_opaque_der,
    signed_message,
)
from support.smime_pki import (
    run_unwrap as run,
)

from gateway.unwrap import UnwrapContext, unwrap


@pytest.fixture(scope="module")
def ctx(pki: TestPKI) -> Any:
    return make_context(pki)


def test_plain_message_is_unverified_with_content_unchanged() -> None:
    raw = b"From: A <a@example.org>\r\nSubject: Hallo\r\n\r\nText\r\n"
    res = unwrap(raw, UnwrapContext(), at=now())
    assert res.verdict.verdict == "unverified"
    assert res.verdict.reasons == ("no-signature",)
    assert res.content == raw
    assert res.quarantine_reason is None
    assert res.verdict.signature.status == "none"
    assert res.verdict.encryption.status == "none"
    assert res.verdict.from_addr == "a@example.org"


def test_detached_signature_from_sender_is_verified(pki: TestPKI, ctx: Any) -> None:
    inner = mime_text(subject="Geschützter Betreff")
    raw = signed_message(pki["sender"], inner)
    res = run(raw, ctx)
    v = res.verdict
    assert v.verdict == "verified", v.reasons
    assert v.signature.status == "valid"
    assert v.signature.covers_whole_message
    assert v.signature.signer == SENDER
    assert v.signature.signing_time is not None
    assert res.content == inner
    assert res.inner_subject == "Geschützter Betreff"
    assert v.subject_source == "protected"
    assert openssl_verify(pki, raw)
    assert [e.type for e in res.events] == ["signature-checked"]
    assert res.events[0].details["signer_certificate_sha256"] == v.signature.signer_certificate_sha256


def test_opaque_signature_is_verified_and_content_is_the_econtent(pki: TestPKI, ctx: Any) -> None:
    inner = mime_text()
    raw = pkcs7_mime(headers(), sign_opaque_der(pki["sender"], inner), "signed-data")
    res = run(raw, ctx)
    assert res.verdict.verdict == "verified", res.verdict.reasons
    assert res.content == inner
    assert openssl_verify(pki, raw)


def test_lf_only_message_verifies_in_canonical_crlf_form(pki: TestPKI, ctx: Any) -> None:
    raw = signed_message(pki["sender"]).replace(b"\r\n", b"\n")
    assert run(raw, ctx).verdict.verdict == "verified"


def test_rsa_pss_and_ecdsa_signatures_verify(pki: TestPKI, ctx: Any) -> None:
    pss = run(signed_message(pki["pss"], pss=True), ctx)
    assert pss.verdict.verdict == "verified", pss.verdict.reasons
    ecdsa = run(signed_message(pki["ec"]), ctx)
    assert ecdsa.verdict.verdict == "verified", ecdsa.verdict.reasons


@pytest.mark.parametrize(
    ("party", "reason", "openssl_accepts"),
    [
        ("expired", "cert-expired", False),
        ("wrong_eku", "wrong-eku", False),
        ("no_sign", "wrong-key-usage", False),
        ("revoked", "cert-revoked", False),
        ("rogue", "untrusted-chain", False),
        # OpenSSL has no minimum key size for S/MIME: policy is ours alone.
        ("weak", "weak-key", True),
    ],
)
def test_correct_signature_with_bad_certificate_is_untrusted(
    pki: TestPKI, ctx: Any, party: str, reason: str, openssl_accepts: bool
) -> None:
    raw = signed_message(pki[party])
    res = run(raw, ctx)
    assert res.verdict.signature.status == "untrusted"
    assert reason in res.verdict.reasons
    assert res.verdict.verdict == "unverified"
    assert openssl_verify(pki, raw) is openssl_accepts


def test_any_extended_key_usage_is_accepted(pki: TestPKI, ctx: Any) -> None:
    """RFC 8550 §4.4.4 accepts anyExtendedKeyUsage; OpenSSL's smimesign purpose does not."""
    raw = signed_message(pki["any_eku"])
    assert run(raw, ctx).verdict.verdict == "verified"
    assert not openssl_verify(pki, raw)  # known divergence: OpenSSL is stricter here


def test_revoked_certificate_without_crl_configured_is_trusted(pki: TestPKI) -> None:
    res = run(signed_message(pki["revoked"]), make_context(pki, crl=False))
    assert res.verdict.verdict == "verified"
    assert not openssl_verify(pki, signed_message(pki["revoked"]), crl=True)


def test_expired_certificate_validates_as_of_an_earlier_time(pki: TestPKI) -> None:
    """Without CRLs: the test CRLs are issued after that moment and cannot speak for it."""
    raw = signed_message(pki["expired"])
    res = unwrap(raw, make_context(pki, crl=False), at=NOW - 30 * DAY)
    assert res.verdict.signature.status == "valid"
    # The signature was made "now", which is after that moment: never verified.
    assert res.verdict.reasons == ("signing-time-in-future",)


def test_sha1_digest_is_rejected_unless_allowed(pki: TestPKI, tmp_path: Any) -> None:
    files = pki.write(tmp_path)
    inner = mime_text()
    (tmp_path / "in.txt").write_bytes(inner)
    res = openssl(
        "cms",
        "-sign",
        "-md",
        "sha1",
        "-signer",
        str(files["sender.pem"]),
        "-inkey",
        str(files["sender.key"]),
        "-in",
        str(tmp_path / "in.txt"),
        "-binary",
        "-certfile",
        str(files["inter.pem"]),
    )
    assert res.returncode == 0, res.stderr
    raw = headers() + res.stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    strict = run(raw, make_context(pki))
    assert strict.verdict.signature.status == "untrusted"
    assert "sha1-rejected" in strict.verdict.reasons
    lenient = run(raw, make_context(pki, allow_sha1=True))
    assert lenient.verdict.verdict == "verified", lenient.verdict.reasons


def test_openssl_signed_message_verifies(pki: TestPKI, tmp_path: Any) -> None:
    files = pki.write(tmp_path)
    (tmp_path / "in.txt").write_bytes(mime_text())
    res = openssl(
        "cms",
        "-sign",
        "-signer",
        str(files["sender.pem"]),
        "-inkey",
        str(files["sender.key"]),
        "-in",
        str(tmp_path / "in.txt"),
        "-certfile",
        str(files["inter.pem"]),
    )
    assert res.returncode == 0
    raw = headers() + res.stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert run(raw, make_context(pki)).verdict.verdict == "verified"
    assert openssl_verify(pki, raw)


def test_without_trust_anchors_a_correct_signature_is_untrusted(pki: TestPKI) -> None:
    res = run(signed_message(pki["sender"]), make_context(pki, anchors=False))
    assert res.verdict.signature.status == "untrusted"
    assert "untrusted-chain" in res.verdict.reasons


def test_without_smime_config_signed_mail_fails_closed(pki: TestPKI) -> None:
    from gateway.unwrap.smime.handler import SmimeHandler

    ctx = UnwrapContext([SmimeHandler.from_config(None, config_file="x.toml")])
    res = run(signed_message(pki["sender"]), ctx)
    assert res.verdict.verdict == "unverified"
    assert "smime-not-configured" in res.verdict.reasons


def test_only_a_verified_signer_certificate_is_handed_back_for_the_certstore(pki: TestPKI, ctx: Any) -> None:
    """Unwrapping does no I/O: intake stores the certificate after the message is committed."""
    res = run(signed_message(pki["sender"]), ctx)
    sha = res.verdict.signature.signer_certificate_sha256
    assert sha is not None
    assert [hashlib.sha256(der).hexdigest() for der in res.signer_certificates] == [sha]
    assert run(signed_message(pki["rogue"]), ctx).signer_certificates == ()  # untrusted: never collected


def test_signature_over_other_bytes_is_invalid_and_openssl_agrees(pki: TestPKI, ctx: Any) -> None:
    inner = mime_text()
    sig = sign_detached_der(pki["sender"], inner)
    raw = multipart_signed(headers(), inner.replace(b"Antrag", b"Antrax"), sig)
    res = run(raw, ctx)
    assert res.verdict.signature.status == "invalid"
    assert "digest-mismatch" in res.verdict.reasons
    assert not openssl_verify(pki, raw)
