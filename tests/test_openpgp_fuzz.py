"""Hypothesis: PGP-looking garbage gives a verdict or a clean quarantine, never an internal error.

``unwrap`` catches everything as a last line of defence (quarantine "unwrap-error"); here
that counts as a failure too, so a bug in the OpenPGP handler or the gpg status parsing
cannot hide behind it.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.pgp_keys import (
    gateway_context,
    headers,
    inline,
    keys,
    pgp_encrypted,
    pgp_encrypted_body,
    pgp_signed,
    text_part,
)

from gateway.unwrap import UnwrapResult, unwrap
from gateway.unwrap.openpgp.gpg import leading_packet_tags, parse_signatures

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

FAST = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Any:
    k = keys()
    context, handler = gateway_context(
        tmp_path_factory.mktemp("fuzz"),
        secrets=[k.world.secret(k.us)],
        correspondents=[k.world.public(k.bob)],
        pinned=[(k.bob.email, k.bob.fingerprint)],
    )
    yield context
    handler.close()


@pytest.fixture(scope="module")
def seeds() -> list[bytes]:
    k = keys()
    w = k.world
    return [
        pgp_signed(w, k.bob, text_part(), headers()),
        pgp_encrypted(w, [k.us], text_part(), headers(), signer=k.bob),
        inline(w.clearsign(k.bob, b"Termin morgen.\n"), headers()),
        inline(w.encrypt([k.us], b"Geheim.\n"), headers()),
    ]


def check(res: UnwrapResult, raw: bytes) -> None:
    v = res.verdict
    assert res.quarantine_reason != "unwrap-error", v.reasons
    assert v.verdict in ("verified", "unverified", "quarantined")
    if v.verdict == "quarantined":
        assert res.content == raw
    v.to_json()


def run(ctx: Any, raw: bytes) -> UnwrapResult:
    return unwrap(raw, ctx, at=datetime.now(UTC))


@FAST
@given(data=st.data())
def test_mutated_pgp_messages_never_break_unwrap(ctx: Any, seeds: list[bytes], data: st.DataObject) -> None:
    raw = bytearray(data.draw(st.sampled_from(seeds)))
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if op == "flip":
            raw[pos] ^= data.draw(st.integers(1, 255))
        elif op == "insert":
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=20))
        else:
            del raw[pos : pos + data.draw(st.integers(1, 40))]
    check(run(ctx, bytes(raw)), bytes(raw))


_ARMOR = st.sampled_from(
    [
        b"-----BEGIN PGP MESSAGE-----",
        b"-----BEGIN PGP SIGNED MESSAGE-----",
        b"-----END PGP MESSAGE-----",
        b"-----BEGIN PGP SIGNATURE-----",
        b"-----END PGP SIGNATURE-----",
        b"Hash: SHA256",
        b"Version: 1",
        b"",
        b"=AbCd",
    ]
)


@FAST
@given(
    lines=st.lists(st.one_of(_ARMOR, st.binary(max_size=80).map(lambda b: base64.b64encode(b))), max_size=30),
    cte=st.sampled_from(["8bit", "quoted-printable", "base64"]),
)
def test_armor_shaped_garbage_in_text_parts_never_breaks_unwrap(ctx: Any, lines: list[bytes], cte: str) -> None:
    body = b"\n".join(lines)
    if cte == "base64":
        body = base64.encodebytes(body)
    raw = inline(body, headers(), cte=cte)
    check(run(ctx, raw), raw)


@FAST
@given(payload=st.binary(max_size=600), armored=st.booleans())
def test_random_pgp_mime_ciphertext_never_breaks_unwrap(ctx: Any, payload: bytes, armored: bool) -> None:
    if armored:
        payload = b"-----BEGIN PGP MESSAGE-----\n\n" + base64.encodebytes(payload) + b"-----END PGP MESSAGE-----\n"
    ctype, body = pgp_encrypted_body(payload)
    raw = f"{headers()}Content-Type: {ctype}\r\n\r\n".encode() + body
    res = run(ctx, raw)
    check(res, raw)
    assert not res.verdict.verified


@FAST
@given(payload=st.binary(max_size=300))
def test_random_detached_signatures_never_verify(ctx: Any, payload: bytes) -> None:
    k = keys()
    raw = pgp_signed(k.world, k.bob, text_part(), headers("Bob <bob@nachbar.test>"), sig=payload)
    res = run(ctx, raw)
    check(res, raw)
    assert not res.verdict.verified


@settings(max_examples=300, deadline=None)
@given(
    statuses=st.lists(
        st.tuples(
            st.sampled_from(
                ["NEWSIG", "GOODSIG", "BADSIG", "ERRSIG", "VALIDSIG", "EXPKEYSIG", "REVKEYSIG", "TRUST_UNDEFINED"]
            ),
            st.text(max_size=60),
        ),
        max_size=12,
    )
)
def test_status_parser_accepts_any_status_sequence(statuses: list[tuple[str, str]]) -> None:
    for sig in parse_signatures(statuses):
        assert isinstance(sig.cryptographically_good, bool)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400))
def test_packet_scanner_accepts_any_bytes(data: bytes) -> None:
    assert isinstance(leading_packet_tags(data), list)
    assert isinstance(leading_packet_tags(b"-----BEGIN PGP MESSAGE-----\n\n" + base64.encodebytes(data)), list)
