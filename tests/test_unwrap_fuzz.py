"""Hypothesis: any byte string gives a verdict or a clean quarantine, never an exception."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.smime_pki import (
    body_of,
    build_pki,
    encrypted_message,
    headers,
    make_context,
    mime_text,
    now,
    pkcs7_mime,
    sign_opaque_der,
    signed_message,
)

from gateway.mime.cut import MimeError, canonical_crlf, parse_entity, split_multipart
from gateway.unwrap import UnwrapResult, unwrap
from gateway.unwrap.smime.cms import CmsError, decrypt, verify_signed_data

FAST = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@pytest.fixture(scope="module")
def ctx() -> Any:
    return make_context(build_pki())


@pytest.fixture(scope="module")
def seeds() -> list[bytes]:
    pki = build_pki()
    signed = signed_message(pki["sender"])
    return [
        signed,
        pkcs7_mime(headers(), sign_opaque_der(pki["sender"], mime_text()), "signed-data"),
        encrypted_message([pki["recipient"].cert], body_of(signed)),
    ]


def check(res: UnwrapResult, raw: bytes) -> None:
    v = res.verdict
    assert v.verdict in ("verified", "unverified", "quarantined")
    assert v.signature.status in ("valid", "invalid", "untrusted", "none", "error")
    assert v.encryption.status in ("decrypted", "none", "failed", "partial")
    assert isinstance(res.content, bytes)
    if v.verdict == "quarantined":
        assert res.quarantine_reason and res.content == raw
    v.to_json()


@FAST
@given(raw=st.binary(max_size=4096))
def test_arbitrary_bytes_never_raise(ctx: Any, raw: bytes) -> None:
    check(unwrap(raw, ctx, at=now()), raw)


_SMIME_HEADERS = st.sampled_from(
    [
        b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n",
        b"Content-Type: application/pkcs7-mime; smime-type=signed-data\r\nContent-Transfer-Encoding: base64\r\n\r\n",
        b"Content-Type: application/x-pkcs7-mime\r\nContent-Transfer-Encoding: binary\r\n\r\n",
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; boundary=b\r\n\r\n',
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n',
    ]
)


@FAST
@given(head=_SMIME_HEADERS, body=st.binary(max_size=2048))
def test_smime_headers_over_garbage_never_raise(ctx: Any, head: bytes, body: bytes) -> None:
    raw = b"From: a@example.org\r\n" + head + body
    check(unwrap(raw, ctx, at=now()), raw)


@FAST
@given(data=st.data())
def test_mutated_smime_messages_never_raise(ctx: Any, seeds: list[bytes], data: Any) -> None:
    raw = bytearray(data.draw(st.sampled_from(seeds)))
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["flip", "cut", "dup", "insert"]))
        pos = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "flip" and raw:
            raw[pos] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del raw[pos : pos + data.draw(st.integers(1, 200))]
        elif op == "dup":
            raw[pos:pos] = raw[pos : pos + data.draw(st.integers(1, 200))]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
    check(unwrap(bytes(raw), ctx, at=now()), bytes(raw))


@FAST
@given(der=st.binary(max_size=2048), detached=st.none() | st.binary(max_size=64))
def test_cms_functions_raise_only_cms_error(der: bytes, detached: bytes | None) -> None:
    pki = build_pki()
    from gateway.unwrap.smime.cms import RecipientKey

    for fn in (
        lambda: verify_signed_data(der, detached),
        lambda: decrypt(der, [RecipientKey(pki["recipient"].key, pki["recipient"].cert)]),
    ):
        with contextlib.suppress(CmsError):
            fn()


@FAST
@given(
    parts=st.lists(
        st.binary(max_size=64).filter(lambda b: b"--b" not in b and b"\r" not in b and b"\n" not in b),
        min_size=1,
        max_size=5,
    )
)
def test_split_multipart_returns_exact_part_bytes(parts: list[bytes]) -> None:
    body = b"preamble\r\n" + b"".join(b"--b\r\n" + p + b"\r\n" for p in parts) + b"--b--\r\n"
    assert split_multipart(body, "b") == parts


@FAST
@given(raw=st.binary(max_size=1024))
def test_mime_parsing_raises_only_mime_error(raw: bytes) -> None:
    try:
        entity = parse_entity(raw)
        if entity.params.get("boundary"):
            split_multipart(entity.body, entity.params["boundary"])
    except MimeError:
        pass
    assert b"\n" not in canonical_crlf(raw).replace(b"\r\n", b"")
