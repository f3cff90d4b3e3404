"""An authoritative De-Mail counts as verified for its sender only when all of it is proven."""

from __future__ import annotations

import json

import pytest
from support.demail_provider import (
    NOW,
    SENDER,
    add_header,
    build_message,
    demail_fields,
    provider_pki,
    tamper_header,
)

from gateway.demail.trust import provider_validator
from gateway.demail.verdict import DemailVerdict, assess
from gateway.unwrap.smime.pki import Validator


@pytest.fixture(scope="module")
def validator() -> Validator:
    return provider_validator([provider_pki().ca.cert])


def judge(message: bytes, validator: Validator | None, *, policy: bool = True) -> DemailVerdict:
    return assess(message, validator=validator, at=NOW, treat_authoritative_as_verified=policy)


def test_a_valid_authoritative_demail_is_verified_for_its_sender(validator: Validator) -> None:
    verdict = judge(build_message(), validator)
    assert (verdict.authoritative_proven, verdict.verified_sender, verdict.reasons) == (True, SENDER, ())
    shaped = json.loads(json.dumps(verdict.to_json()))
    assert (shaped["integrity"], shaped["authoritative"]) == ("valid", True)
    assert shaped["provider_certificate_sha256"] and shaped["meta"]["sender"] == SENDER


def test_the_policy_option_off_proves_but_does_not_verify(validator: Validator) -> None:
    verdict = judge(build_message(), validator, policy=False)
    assert verdict.authoritative_proven and verdict.verified_sender is None


def test_a_forged_authoritative_claim_is_not_verified_and_says_why(validator: Validator) -> None:
    message = tamper_header(build_message(fields=demail_fields(authoritative=False)), "X-de-mail-authoritative", "yes")
    verdict = judge(message, validator)
    assert verdict.verified_sender is None
    assert verdict.reasons == ("demail-authoritative-unproven", "bad-signature")


def test_an_authoritative_claim_without_integrity_value_is_unproven(validator: Validator) -> None:
    verdict = judge(b"From: a@b.example\r\nX-de-mail-authoritative: yes\r\n\r\nText\r\n", validator)
    assert verdict.reasons == ("demail-authoritative-unproven", "integrity-none")


def test_a_hash_only_authoritative_claim_is_unproven(validator: Validator) -> None:
    verdict = judge(build_message(sig=None), validator)
    assert verdict.reasons == ("demail-authoritative-unproven", "integrity-hash-only")


def test_an_authoritative_field_outside_the_signature_does_not_count(validator: Validator) -> None:
    verdict = judge(build_message(covered=("From", "Subject", "X-de-mail-sender")), validator)
    assert verdict.integrity.status == "valid"
    assert verdict.reasons == ("demail-authoritative-not-covered",)


def test_a_second_from_blocks_the_sender_verification(validator: Validator) -> None:
    verdict = judge(add_header(build_message(), "From", "chef@stadt.example"), validator)
    assert verdict.integrity.status == "valid"
    assert verdict.reasons == ("demail-from-not-single",)


def test_a_covered_sender_that_differs_from_from_blocks_it(validator: Validator) -> None:
    fields = [(n, "other@test-provider.de-mail.example" if n == "X-de-mail-sender" else v) for n, v in demail_fields()]
    verdict = judge(build_message(fields=fields), validator)
    assert verdict.reasons == ("demail-sender-mismatch",)


def test_a_plain_letter_claims_nothing(validator: Validator) -> None:
    verdict = judge(b"From: a@b.example\r\n\r\nText\r\n", validator)
    assert (verdict.integrity.status, verdict.reasons, verdict.meta.present) == ("none", (), False)
