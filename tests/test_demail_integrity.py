"""X-de-mail-integrity is proven with the provider certificate, or refuted with a reason.

Messages come from the test provider (tests/support/demail_provider.py), which signs with
its own implementation of TR 01201 / RFC 6376; the RSA signature is also checked by
``openssl dgst -verify`` over the canonical bytes the result's steps print.
"""

from __future__ import annotations

import base64
import functools
import json
import subprocess
from hashlib import sha256
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.demail_provider import (
    DAY,
    NOW,
    add_header,
    build_message,
    demail_fields,
    integrity_value,
    provider_pki,
    replace_integrity_value,
    tamper_body,
    tamper_header,
)

from gateway.demail.integrity import IntegrityResult, parse_tag_list, verify_integrity
from gateway.demail.trust import provider_validator
from gateway.unwrap.smime.pki import Validator

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def validator() -> Validator:
    return provider_validator([provider_pki().ca.cert])


def check(message: bytes, validator: Validator | None) -> IntegrityResult:
    return verify_integrity(message, validator=validator, at=NOW)


@pytest.mark.parametrize("sig", ["rsa", "ec-dsa", "rsassa-pss"])
@pytest.mark.parametrize("hash_name", ["sha256", "sha384", "sha512"])
def test_a_provider_signature_is_valid_for_each_algorithm(validator: Validator, sig: str, hash_name: str) -> None:
    result = check(build_message(sig=sig, hash_name=hash_name), validator)
    assert (result.status, result.reasons) == ("valid", ())
    assert (result.hash_algorithm, result.signature_algorithm) == (hash_name, sig)
    signer = provider_pki().ec if sig == "ec-dsa" else provider_pki().rsa
    assert (
        result.provider_certificate_sha256 == sha256(signer.cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    )
    assert result.covered_headers[0] == "from" and "x-de-mail-authoritative" in result.covered_headers
    assert result.steps[-1] == "result: valid"


def test_a_valid_result_names_what_the_provider_does_not_vouch_for(validator: Validator) -> None:
    result = check(build_message(), validator)
    assert result.uncovered_headers == ("to", "x-de-mail-actual-recipient")
    assert "x-de-mail-actual-recipient" not in result.covered_headers


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-de-mail-authoritative", "no"),
        ("From", "Chef <chef@stadt.de-mail.example>"),
        ("Subject", "Widerspruch AZ 2024-18"),
        ("X-de-mail-private-id", "AZ-2024-17-2"),
    ],
)
def test_a_tampered_covered_header_makes_the_signature_invalid(validator: Validator, name: str, value: str) -> None:
    result = check(tamper_header(build_message(), name, value), validator)
    assert result.status == "invalid"
    assert result.reasons == ("bad-signature",)
    assert any("does NOT verify" in s for s in result.steps)


def test_a_tampered_uncovered_header_leaves_the_signature_valid_but_uncovered(validator: Validator) -> None:
    result = check(tamper_header(build_message(), "X-de-mail-actual-recipient", "x@evil.example"), validator)
    assert result.status == "valid"
    assert "x-de-mail-actual-recipient" in result.uncovered_headers


def test_a_tampered_body_is_a_body_hash_mismatch(validator: Validator) -> None:
    result = check(tamper_body(build_message()), validator)
    assert (result.status, result.reasons) == ("invalid", ("body-hash-mismatch",))
    line = next(s for s in result.steps if s.startswith("body hash"))
    assert line.endswith("MISMATCH")


def test_trailing_empty_lines_do_not_change_the_body_hash(validator: Validator) -> None:
    result = check(build_message() + b"\r\n\r\n", validator)
    assert result.status == "valid"


def test_a_certificate_from_an_untrusted_ca_is_invalid(validator: Validator) -> None:
    result = check(build_message(signer=provider_pki().rogue), validator)
    assert (result.status, result.reasons) == ("invalid", ("untrusted-chain",))


def test_a_certificate_that_did_not_sign_is_invalid(validator: Validator) -> None:
    other = provider_pki().rsa
    signer = provider_pki().expired
    result = check(build_message(signer=signer, certificate=other.cert), validator)
    assert (result.status, result.reasons) == ("invalid", ("bad-signature",))


def test_a_certificate_of_the_wrong_key_type_is_invalid(validator: Validator) -> None:
    result = check(build_message(sig="rsa", certificate=provider_pki().ec.cert), validator)
    assert (result.status, result.reasons) == ("invalid", ("key-type-mismatch",))


def test_an_expired_provider_certificate_is_invalid_at_arrival(validator: Validator) -> None:
    result = check(build_message(signer=provider_pki().expired), validator)
    assert (result.status, result.reasons) == ("invalid", ("cert-expired",))


def test_the_certificate_is_judged_at_the_arrival_time(validator: Validator) -> None:
    message = build_message(signer=provider_pki().expired)
    result = verify_integrity(message, validator=validator, at=NOW - 100 * DAY)
    assert (result.status, result.reasons) == ("valid", ())


def test_without_anchors_a_signature_proves_nothing() -> None:
    result = check(build_message(), None)
    assert (result.status, result.reasons) == ("invalid", ("no-trust-anchors",))


def test_a_missing_certificate_field_is_invalid(validator: Validator) -> None:
    message = build_message()
    head, sep, body = message.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    kept: list[bytes] = []
    skipping = False
    for line in lines:
        if line.lower().startswith(b"x-de-mail-signature-certificate:"):
            skipping = True
            continue
        if skipping and line[:1] == b" ":
            continue
        skipping = False
        kept.append(line)
    result = check(b"\r\n".join(kept) + sep + body, validator)
    assert (result.status, result.reasons) == ("invalid", ("certificate-missing",))


@pytest.mark.parametrize("hash_name", ["sha256", "sha512"])
def test_a_hash_only_value_that_matches_is_hash_only(validator: Validator, hash_name: str) -> None:
    result = check(build_message(sig=None, hash_name=hash_name), validator)
    assert (result.status, result.reasons) == ("hash-only", ())
    assert result.provider_certificate_sha256 is None
    assert any("proves no sender" in s for s in result.steps)


def test_a_hash_only_value_with_a_tampered_header_is_invalid(validator: Validator) -> None:
    result = check(tamper_header(build_message(sig=None), "Subject", "Anders"), validator)
    assert (result.status, result.reasons) == ("invalid", ("header-hash-mismatch",))


def test_a_hash_only_value_with_a_tampered_body_is_invalid(validator: Validator) -> None:
    result = check(tamper_body(build_message(sig=None)), validator)
    assert (result.status, result.reasons) == ("invalid", ("body-hash-mismatch",))


def test_a_second_authoritative_field_after_the_first_is_ignored_and_flagged(validator: Validator) -> None:
    message = build_message(fields=demail_fields(authoritative=False))
    result = check(add_header(message, "X-de-mail-authoritative", "yes"), validator)
    assert result.status == "valid"  # the first occurrence ("no") is the one covered
    assert "duplicate-header:x-de-mail-authoritative" in result.flags


def test_a_forged_field_put_before_the_signed_one_breaks_the_signature(validator: Validator) -> None:
    message = build_message(fields=demail_fields(authoritative=False))
    result = check(add_header(message, "X-de-mail-authoritative", "yes", first=True), validator)
    assert (result.status, result.reasons) == ("invalid", ("bad-signature",))
    assert "duplicate-header:x-de-mail-authoritative" in result.flags


def test_a_second_from_is_flagged_and_the_first_is_hashed(validator: Validator) -> None:
    result = check(add_header(build_message(), "From", "chef@stadt.de-mail.example"), validator)
    assert result.status == "valid"
    assert "duplicate-header:from" in result.flags
    hashed = next(s for s in result.steps if s.startswith("hashed header from"))
    assert "buerger@" in hashed and "chef@" not in hashed


def test_a_second_integrity_field_is_flagged_and_the_first_is_checked(validator: Validator) -> None:
    message = build_message()
    result = check(add_header(message, "X-de-mail-integrity", "v=1; a=sha256; h=from; bh=AAAA; b=AAAA"), validator)
    assert result.status == "valid"
    assert "duplicate-header:x-de-mail-integrity" in result.flags


def test_a_covered_header_the_message_lacks_contributes_nothing(validator: Validator) -> None:
    fields = [f for f in demail_fields() if f[0] != "X-de-mail-private-id"]
    covered = ("From", "Subject", "X-de-mail-private-id", "X-de-mail-authoritative")
    result = check(build_message(fields=fields, covered=covered), validator)
    assert result.status == "valid"
    assert any("x-de-mail-private-id: absent" in s for s in result.steps)


def test_oversigning_locks_out_a_field_added_later(validator: Validator) -> None:
    covered = ("From", "Subject", "X-de-mail-authoritative", "X-de-mail-authoritative")
    message = build_message(covered=covered)
    assert check(message, validator).status == "valid"
    result = check(add_header(message, "X-de-mail-authoritative", "no"), validator)
    assert result.reasons == ("bad-signature",)


def test_a_value_that_does_not_cover_from_is_invalid(validator: Validator) -> None:
    result = check(build_message(covered=("Subject", "X-de-mail-authoritative")), validator)
    assert (result.status, result.reasons) == ("invalid", ("from-not-covered",))


def test_no_integrity_field_is_none() -> None:
    result = check(b"From: a@b.example\r\nSubject: x\r\n\r\nbody\r\n", None)
    assert (result.status, result.reasons) == ("none", ())


def test_a_body_length_tag_is_ignored_and_the_whole_body_hashed(validator: Validator) -> None:
    message = build_message(extra_tags="l=5; ")
    assert check(message, validator).flags == ("body-length-ignored",)
    result = check(tamper_body(message), validator)
    assert result.reasons == ("body-hash-mismatch",)


def test_messages_stored_with_lf_line_ends_verify(validator: Validator) -> None:
    message = build_message().replace(b"\r\n", b"\n")
    result = check(message, validator)
    assert result.status == "valid"
    assert any("bare LF converted" in s for s in result.steps)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b" v=1; a=sha256/rsa; a=sha256/rsa; h=from; bh=AA==; b=AA==", "malformed-tag-list"),
        (b" v=1; a=sha256/rsa; h=from; bh=AA==; b=AA==; =x", "malformed-tag-list"),
        (b" v=1; a=sha256/rsa; h=from; bh=AA==; b=A\xffA=", "malformed-tag-list"),
        (b" v=1; a=md5/rsa; h=from; bh=AA==; b=AA==", "unsupported-algorithm"),
        (b" v=1; a=sha256/dsa; h=from; bh=AA==; b=AA==", "unsupported-algorithm"),
        (b" v=1; a=sha256/rsa; c=relaxed/relaxed; h=from; bh=AA==; b=AA==", "unsupported-canonicalization"),
        (b" v=2; a=sha256/rsa; h=from; bh=AA==; b=AA==", "unsupported-version"),
        (b" v=1; a=sha256/rsa; h=from; b=AA==", "missing-tag:bh"),
        (b" v=1; a=sha256/rsa; h=from; bh=AA==", "missing-tag:b"),
        (b" v=1; a=sha256/rsa; h=from::date; bh=AA==; b=AA==", "malformed-tag-list"),
        (b" v=1; a=sha256/rsa; h=from; bh=!!; b=AA==", "bad-base64:bh"),
    ],
)
def test_malformed_tags_are_invalid_with_a_reason(validator: Validator, value: bytes, reason: str) -> None:
    result = check(replace_integrity_value(build_message(), value), validator)
    assert result.status == "invalid"
    assert reason in result.reasons


def test_bad_base64_in_the_certificate_is_invalid(validator: Validator) -> None:
    result = check(tamper_header(build_message(), "X-de-mail-signature-certificate", "%%%"), validator)
    assert (result.status, result.reasons) == ("invalid", ("certificate-unreadable",))


def test_a_tag_list_with_folding_and_a_trailing_semicolon_parses() -> None:
    tags = parse_tag_list(b" v=1;\r\n\ta = sha256/rsa ;\r\n h=from :\r\n subject; b=AB CD;")
    assert tags == {"v": "1", "a": "sha256/rsa", "h": "from : subject", "b": "AB CD"}


def test_the_printed_canonical_bytes_verify_with_openssl(validator: Validator, tmp_path: Path) -> None:
    """Oracle: the hashed bytes from ``steps`` and b= verify with ``openssl dgst -verify``."""
    message = build_message(sig="rsa", hash_name="sha256")
    result = check(message, validator)
    assert result.status == "valid"
    data = b"".join(
        json.loads(step.split(": ", 1)[1]).encode("latin-1")
        for step in result.steps
        if step.startswith("hashed ") and not step.endswith("contributes nothing")
    )
    tags = parse_tag_list(integrity_value(message))
    (tmp_path / "data").write_bytes(data)
    (tmp_path / "sig").write_bytes(base64.b64decode("".join(tags["b"].split())))
    (tmp_path / "pub.pem").write_bytes(
        provider_pki()
        .rsa.cert.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    run = subprocess.run(
        [
            "openssl",
            "dgst",
            "-sha256",
            "-verify",
            str(tmp_path / "pub.pem"),
            "-signature",
            str(tmp_path / "sig"),
            str(tmp_path / "data"),
        ],
        capture_output=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (tmp_path / "data").write_bytes(data.replace(b"Widerspruch", b"Zustimmung!"))
    run = subprocess.run(
        [
            "openssl",
            "dgst",
            "-sha256",
            "-verify",
            str(tmp_path / "pub.pem"),
            "-signature",
            str(tmp_path / "sig"),
            str(tmp_path / "data"),
        ],
        capture_output=True,
        check=False,
    )
    assert run.returncode != 0


def test_the_result_serialises_to_json(validator: Validator) -> None:
    shaped = check(build_message(), validator).to_json()
    assert json.loads(json.dumps(shaped))["integrity"] == "valid"
    assert shaped["provider_certificate_sha256"]


# --- hostile input never raises ----------------------------------------------------------


@functools.cache
def _signed_once(sig: str | None) -> bytes:
    """One message per scheme for the whole run: an ECDSA signature's length varies from one
    signing to the next, and hypothesis needs the same draws for the same choices."""
    return build_message(sig=sig)


@FAST
@given(st.data())
def test_a_mutated_integrity_value_never_raises(validator: Validator, data: st.DataObject) -> None:
    message = _signed_once(data.draw(st.sampled_from(["rsa", "ec-dsa", None])))
    value = bytearray(integrity_value(message))
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(value) - 1))
        choice = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        if choice == "flip":
            value[i] = data.draw(st.integers(0, 255))
        elif choice == "delete":
            del value[i]
        else:
            value[i:i] = data.draw(st.binary(min_size=1, max_size=4))
        if not value:
            value = bytearray(b"x")
    mutated = replace_integrity_value(message, bytes(value))
    result = check(mutated, validator)
    assert result.status in ("valid", "invalid", "hash-only", "none")
    assert bool(result.reasons) == (result.status == "invalid")


@FAST
@given(st.binary(max_size=600))
def test_arbitrary_header_bytes_never_raise(validator: Validator, head: bytes) -> None:
    result = check(head + b"\r\nX-de-mail-integrity: a=sha256/rsa; h=from; bh=AA==; b=AA==\r\n\r\nx", validator)
    assert result.status in ("invalid", "none", "valid", "hash-only")
    result = check(head, validator)
    assert result.status in ("invalid", "none")
