"""The rules that decide "verified": the table is consistent, and single rules by name."""

from __future__ import annotations

import dataclasses
import datetime as dt
from email.utils import format_datetime
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.smime_pki import TestPKI, make_context, mime_text, run_unwrap, signed_message

from gateway.unwrap.identity import identity_of, matching_signer, same_address
from gateway.unwrap.layers import SignatureFinding
from gateway.unwrap.rules import RULES, WARNINGS, Coverage, Facts, decide
from gateway.unwrap.verdict import EncryptionInfo, SignatureStatus

AT = dt.datetime(2026, 1, 26, 15, 0, tzinfo=dt.UTC)
ALICE = "alice@example.org"
RULE = dict(RULES)
_SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=400)


def valid(emails: tuple[str, ...] = (ALICE,), signing_time: dt.datetime | None = None) -> SignatureFinding:
    return SignatureFinding("valid", (), emails, signing_time=signing_time)


def proven(**changes: Any) -> Facts:
    """A message verified as from Alice; ``changes`` break one fact."""
    facts: dict[str, Any] = {"at": AT, "coverage": "whole", "scheme": "smime", "finding": valid(), "from_addr": ALICE}
    return Facts(**{**facts, **changes})


# --- generated facts -------------------------------------------------------------------

_ADDRESSES = (ALICE, "alice@EXAMPLE.org", "Alice@example.org", "bob@example.org")
_FROM_VALUES = (
    "Alice <alice@example.org>",
    "alice@example.ORG",
    "bob@example.org",
    "a@example.org, b@example.org",
    "not an address",
    "",
    "bob@example.org <alice@example.org>",
    '"bob@example.org" <alice@example.org>',
)
_NAMED = st.lists(st.none() | st.sampled_from(_ADDRESSES), max_size=2).map(tuple)
_NOT_VALID_REASONS = ("bad-signature", "untrusted-chain", "cert-expired", "signer-certificate-missing")


@st.composite
def findings(draw: st.DrawFn) -> SignatureFinding:
    """Findings as handlers make them: a status other than valid always comes with a reason."""
    status: SignatureStatus = draw(st.sampled_from(get_args(SignatureStatus)))
    reasons = (
        () if status == "valid" else tuple(draw(st.lists(st.sampled_from(_NOT_VALID_REASONS), min_size=1, max_size=2)))
    )
    emails = tuple(draw(st.lists(st.sampled_from(_ADDRESSES), max_size=2)))
    offset = draw(st.none() | st.integers(-3 * 3600, 3 * 3600))
    signing_time = None if offset is None else AT + dt.timedelta(seconds=offset)
    return SignatureFinding(status, reasons, emails, signing_time=signing_time)


@st.composite
def facts(draw: st.DrawFn) -> Facts:
    coverage: Coverage = draw(st.sampled_from(get_args(Coverage)))
    finding = None if coverage == "none" else draw(st.none() | findings())
    inner = draw(st.lists(st.none() | findings(), max_size=2)) if coverage == "whole" else []
    from_addr = draw(st.none() | st.sampled_from(_ADDRESSES))
    from_reasons = (
        ()
        if from_addr
        else (draw(st.sampled_from(("no-from", "multiple-from", "from-unparseable", "from-ambiguous"))),)
    )
    protected = draw(
        st.none()
        | st.builds(
            identity_of,
            st.lists(st.sampled_from(_FROM_VALUES), max_size=2),
            st.lists(st.sampled_from(_FROM_VALUES), max_size=2),
            st.lists(st.sampled_from(_FROM_VALUES), max_size=2),
        )
    )
    date_offset = draw(st.none() | st.integers(-3 * 3600, 3 * 3600))
    return Facts(
        at=AT,
        coverage=coverage,
        scheme="smime" if finding else None,
        finding=finding,
        inner_findings=tuple(inner),
        encryption=EncryptionInfo(draw(st.sampled_from(("none", "decrypted", "partial")))),
        nested_unreadable=draw(st.booleans()),
        from_addr=from_addr,
        from_reasons=from_reasons,
        sender=draw(_NAMED),
        reply_to=draw(_NAMED),
        protected=protected,
        date_header=None if date_offset is None else format_datetime(AT + dt.timedelta(seconds=date_offset)),
    )


@_SETTINGS
@given(facts())
def test_verified_exactly_when_signature_valid_and_covering_and_no_rule_objects(f: Facts) -> None:
    """The verdict is the signature facts plus the rules, nothing else."""
    no_objection = not any(rule(f) for _name, rule in RULES)
    assert decide(f).verified == (f.status == "valid" and f.coverage == "whole" and no_objection)


@_SETTINGS
@given(facts())
def test_reasons_are_empty_exactly_when_verified(f: Facts) -> None:
    """docs/verdict.md: reasons are empty only when verified (and verified has none)."""
    decision = decide(f)
    assert (decision.reasons == ()) == decision.verified


@_SETTINGS
@given(facts())
def test_reasons_come_in_table_order_each_once(f: Facts) -> None:
    found = [reason for _name, rule in RULES for reason in rule(f)]
    assert decide(f).reasons == tuple(dict.fromkeys(found))


@_SETTINGS
@given(facts())
def test_verified_message_is_signed_validly_by_its_single_from_address_alone(f: Facts) -> None:
    """Principle 7: whole content, valid signatures, every signer is the one From address."""
    if not decide(f).verified:
        return
    assert f.from_addr is not None and f.finding is not None and f.coverage == "whole"
    for sig in (f.finding, *f.inner_findings):
        assert sig is not None and sig.status == "valid"
        assert matching_signer(sig.signer_emails, f.from_addr) is not None
    if f.protected is not None and "no-from" not in f.protected.from_reasons:
        assert f.protected.from_addr is not None and same_address(f.protected.from_addr, f.from_addr)


@_SETTINGS
@given(facts())
def test_only_a_verified_message_carries_warnings(f: Facts) -> None:
    decision = decide(f)
    assert decision.warnings == () or decision.verified


@_SETTINGS
@given(facts())
def test_warnings_never_change_whether_a_message_is_verified(f: Facts) -> None:
    """Sender and Reply-To are what warnings read; without them the verdict is the same."""
    quiet = dataclasses.replace(
        f, sender=(), reply_to=(), protected=f.protected and dataclasses.replace(f.protected, sender=(), reply_to=())
    )
    assert decide(quiet).verified == decide(f).verified
    assert decide(quiet).reasons == decide(f).reasons
    assert decide(quiet).warnings == ()


# --- single rules, by name --------------------------------------------------------------


def test_rule_names_are_unique_kebab_case() -> None:
    names = [name for name, _rule in (*RULES, *WARNINGS)]
    assert len(set(names)) == len(names)
    assert all(name == name.lower() and " " not in name and "_" not in name for name in names)


def test_proven_message_passes_every_rule() -> None:
    assert all(rule(proven()) == () for _name, rule in RULES)
    assert decide(proven()).verified


def test_no_signature_layer_gives_no_signature() -> None:
    f = Facts(at=AT, from_addr=ALICE)
    assert RULE["signature-present"](f) == ("no-signature",)
    assert f.status == "none"


def test_signature_layer_without_result_is_an_error() -> None:
    f = proven(finding=None)
    assert RULE["signature-present"](f) == ("signature-not-evaluated",)
    assert f.status == "error" and not decide(f).verified


@pytest.mark.parametrize(
    ("coverage", "reasons"),
    [
        ("part", ("partially-signed",)),
        ("ciphertext", ("signature-over-ciphertext",)),
        ("whole", ()),
    ],
)
def test_signature_must_cover_the_whole_content(coverage: Coverage, reasons: tuple[str, ...]) -> None:
    f = proven(coverage=coverage)
    assert RULE["covers-whole-content"](f) == reasons
    assert decide(f).verified == (coverage == "whole")


def test_inner_signature_that_is_worse_is_named_and_counts() -> None:
    f = proven(inner_findings=(SignatureFinding("untrusted", ("untrusted-chain",), (ALICE,)), None))
    assert RULE["every-covering-signature-valid"](f) == ("inner-signature-untrusted", "inner-signature-error")
    assert f.status == "error"


def test_signer_domain_compares_case_insensitively_local_part_exactly() -> None:
    assert RULE["signer-is-from"](proven(from_addr="alice@EXAMPLE.ORG")) == ()
    assert RULE["signer-is-from"](proven(from_addr="Alice@example.org")) == ("signer-not-from",)


def test_identity_rules_wait_for_a_valid_covering_signature() -> None:
    """An untrusted signature by a stranger is reported as untrusted, not also as not-from."""
    f = proven(finding=SignatureFinding("untrusted", ("untrusted-chain",), ("bob@example.org",)))
    assert RULE["signer-is-from"](f) == ()
    assert decide(f).reasons == ("untrusted-chain",)


def test_missing_from_is_reported_once_not_as_signer_mismatch() -> None:
    f = proven(from_addr=None, from_reasons=("multiple-from",))
    assert decide(f).reasons == ("multiple-from",)


def test_second_signer_who_is_not_from_spoils_the_verdict() -> None:
    f = proven(inner_findings=(valid(("bob@example.org",)),))
    assert RULE["every-covering-signer-is-from"](f) == ("inner-signer-not-from",)
    assert decide(f).reasons == ("inner-signer-not-from",)


@pytest.mark.parametrize(
    ("values", "reasons"),
    [
        (("Alice Example <alice@example.org>",), ()),
        (("bob@example.org",), ("protected-from-mismatch",)),
        (("alice@example.org", "alice@example.org"), ("protected-from-mismatch",)),
        ((), ()),
    ],
)
def test_protected_from_must_be_the_outer_from(values: tuple[str, ...], reasons: tuple[str, ...]) -> None:
    assert RULE["protected-from-matches"](proven(protected=identity_of(values))) == reasons


def test_ambiguous_protected_from_is_named_once_not_also_as_mismatch() -> None:
    f = proven(protected=identity_of(["alice@example.org <bob@example.org>"]))
    assert decide(f).reasons == ("protected-from-ambiguous",)


@pytest.mark.parametrize(
    ("sender", "reply_to", "warnings"),
    [
        ((), (), ()),
        ((ALICE,), ("alice@EXAMPLE.org",), ()),
        (("bob@example.org",), (), ("sender-not-signer",)),
        ((), (ALICE, None), ("reply-to-not-signer",)),  # None: a value naming no clear address
        (("bob@example.org",), ("bob@example.org",), ("sender-not-signer", "reply-to-not-signer")),
    ],
)
def test_sender_and_reply_to_other_than_the_signer_are_warnings(
    sender: tuple[str | None, ...], reply_to: tuple[str | None, ...], warnings: tuple[str, ...]
) -> None:
    decision = decide(proven(sender=sender, reply_to=reply_to))
    assert decision.verified and decision.warnings == warnings


def test_protected_sender_and_reply_to_are_read_like_the_outer_ones() -> None:
    inner = identity_of([ALICE], ["bob@example.org"], ["Bob <bob@example.org>"])
    assert decide(proven(protected=inner)).warnings == ("sender-not-signer", "reply-to-not-signer")


def test_signing_time_after_arrival_is_refused_beyond_the_skew() -> None:
    assert RULE["signing-time-not-in-future"](proven(finding=valid(signing_time=AT + dt.timedelta(hours=2)))) == (
        "signing-time-in-future",
    )
    assert RULE["signing-time-not-in-future"](proven(finding=valid(signing_time=AT + dt.timedelta(minutes=30)))) == ()


def test_signing_time_far_from_the_date_header_is_a_mismatch() -> None:
    signed = proven(finding=valid(signing_time=AT), date_header=format_datetime(AT - dt.timedelta(hours=3)))
    assert RULE["signing-time-fits-date"](signed) == ("signing-time-mismatch",)
    assert RULE["signing-time-fits-date"](proven(finding=valid(signing_time=AT), date_header="garbage")) == ()


def test_naive_signing_time_counts_as_utc() -> None:
    naive = (AT + dt.timedelta(hours=2)).replace(tzinfo=None)
    assert RULE["signing-time-not-in-future"](proven(finding=valid(signing_time=naive))) == ("signing-time-in-future",)


# --- the protected Subject ---------------------------------------------------------------


def test_protected_subject_is_decoded_like_the_outer_one_on_one_line(pki: TestPKI) -> None:
    """An encoded line break in the signed Subject cannot break lines in logs and records."""
    inner = mime_text(subject="=?utf-8?q?Az_4711=0D=0AX-Injected:_yes?=")
    ctx: Any = make_context(pki)
    res = run_unwrap(signed_message(pki["sender"], inner), ctx)
    assert res.verdict.verified, res.verdict.reasons
    assert res.inner_subject == "Az 4711 X-Injected: yes"
    assert res.verdict.subject_source == "protected"
