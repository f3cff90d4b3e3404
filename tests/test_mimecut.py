"""Byte-level MIME helpers: the fast base64 path decodes exactly what the stdlib decodes."""

from __future__ import annotations

import base64
import binascii
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mime.cut import base64_decode, canonical_bytes, children, parse_entity

ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
NOISE = b"=\r\n \t!-_.\x00\xff"
# Mostly base64 alphabet, with the characters where lenient decoders disagree mixed in.
b64ish = st.lists(st.one_of(st.sampled_from(ALPHABET), st.sampled_from(NOISE)), max_size=80).map(bytes)


def stdlib(data: bytes) -> bytes | None:
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:
        return None


def ours(data: bytes) -> bytes | None:
    try:
        return base64_decode(data)
    except binascii.Error:
        return None


@settings(max_examples=3000)
@given(b64ish, st.sampled_from([b"", b"=", b"==", b"===\r\n", b"= \r\n"]))
def test_base64_decode_agrees_with_binascii_on_any_input(body: bytes, tail: bytes) -> None:
    """No parser differential: the verifier sees the bytes any stdlib-based reader sees."""
    assert ours(body + tail) == stdlib(body + tail)


def test_base64_decode_handles_mime_line_breaks() -> None:
    raw = os.urandom(10_000)
    assert base64_decode(base64.encodebytes(raw).replace(b"\n", b"\r\n")) == raw


def test_data_after_padding_is_decoded_the_stdlib_way() -> None:
    """binascii stops at a completed quantum's padding; a SIMD decoder would read on."""
    assert base64_decode(b"QUJDRA==QUJD") == binascii.a2b_base64(b"QUJDRA==QUJD")


def test_parts_of_an_opened_layer_are_known_canonical_and_others_are_converted() -> None:
    body = b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n\r\nline one\r\nline two\r\n--b--\r\n'
    (part,) = children(parse_entity(body, crlf=True))
    assert part.crlf and canonical_bytes(part) is part.raw
    (lf_part,) = children(parse_entity(body.replace(b"\r\n", b"\n")))
    assert not lf_part.crlf and canonical_bytes(lf_part) == b"\r\nline one\r\nline two"
