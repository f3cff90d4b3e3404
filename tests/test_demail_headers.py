"""The X-de-mail-* fields are read by their first occurrence; repetitions and odd values are flagged."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.demail_provider import RECIPIENT, SENDER, add_header, build_message, demail_fields

from gateway.demail.headers import PRIVATE_ID_MAX, parse_demail_headers, split_fields
from gateway.mime.headers import is_clean_header_text

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_a_provider_message_is_read_into_its_fields() -> None:
    meta = parse_demail_headers(build_message(fields=demail_fields(private=True)))
    assert meta.present and meta.flags == ()
    assert (meta.authoritative, meta.private) == (True, True)
    assert (meta.confirmation_of_dispatch, meta.confirmation_of_receipt, meta.confirmation_of_retrieve) == (
        False,
        True,
        False,
    )
    assert (meta.message_type, meta.auth_level, meta.version) == ("normal", "high", "1.8")
    assert meta.sender == SENDER and meta.from_ == f"Buerger <{SENDER}>"
    assert meta.chosen_recipients == (("to", RECIPIENT), ("cc", "akte@stadt.de-mail.example"))
    assert meta.actual_recipient == RECIPIENT
    assert (meta.originator_provider, meta.account_holder) == ("test-provider.de-mail.example", "Erika Mustermann")
    assert meta.private_id == "AZ-2024-17-1"
    assert meta.demail_message_id == "<dm-4711@test-provider.de-mail.example>"
    assert "x-de-mail-integrity" not in dict(meta.raw_values)


def test_a_message_without_demail_fields_is_not_a_demail() -> None:
    meta = parse_demail_headers(b"From: a@b.example\r\nSubject: hallo\r\n\r\nText\r\n")
    assert not meta.present and meta.authoritative is None and meta.from_ == "a@b.example"


def test_header_names_are_case_insensitive() -> None:
    meta = parse_demail_headers(
        b"x-DE-MAIL-Authoritative: YES\r\nX-De-Mail-Message-Type: Confirmation  of receipt\r\n\r\n"
    )
    assert meta.authoritative is True
    assert meta.message_type == "confirmation of receipt"


def test_the_first_occurrence_wins_and_the_second_is_flagged() -> None:
    message = add_header(build_message(fields=demail_fields(authoritative=False)), "X-de-mail-authoritative", "yes")
    meta = parse_demail_headers(message)
    assert meta.authoritative is False
    assert "duplicate-header:x-de-mail-authoritative" in meta.flags


def test_a_forged_first_occurrence_is_what_is_read_and_flagged() -> None:
    message = add_header(
        build_message(fields=demail_fields(authoritative=False)), "X-de-mail-authoritative", "yes", first=True
    )
    meta = parse_demail_headers(message)
    assert meta.authoritative is True  # read as the TR says; the integrity check refutes it
    assert "duplicate-header:x-de-mail-authoritative" in meta.flags


def test_a_second_from_is_flagged() -> None:
    meta = parse_demail_headers(add_header(build_message(), "FROM", "chef@stadt.example"))
    assert meta.from_ == f"Buerger <{SENDER}>"
    assert "duplicate-header:from" in meta.flags


def test_an_unknown_yes_no_value_is_kept_as_text_and_flagged() -> None:
    meta = parse_demail_headers(b"X-de-mail-authoritative: maybe\r\nX-de-mail-private: ja\r\n\r\n")
    assert meta.authoritative is None and meta.private is None
    assert dict(meta.raw_values)["x-de-mail-authoritative"] == "maybe"
    assert meta.flags == ("unknown-value:x-de-mail-authoritative", "unknown-value:x-de-mail-private")


def test_an_unknown_message_type_and_auth_level_are_kept_and_flagged() -> None:
    meta = parse_demail_headers(b"X-de-mail-message-type: Urgent\r\nX-de-mail-auth-level: extreme\r\n\r\n")
    assert (meta.message_type, meta.auth_level) == ("Urgent", "extreme")
    assert set(meta.flags) == {"unknown-value:x-de-mail-message-type", "unknown-value:x-de-mail-auth-level"}


def test_an_over_long_private_id_is_kept_and_flagged() -> None:
    long_id = "A" * (PRIVATE_ID_MAX + 1)
    meta = parse_demail_headers(f"X-de-mail-private-id: {long_id}\r\n\r\n".encode())
    assert meta.private_id == long_id
    assert meta.flags == ("too-long:x-de-mail-private-id",)


def test_folded_values_are_unfolded() -> None:
    meta = parse_demail_headers(b"X-de-mail-chosen-recipient: to=a@x.example;\r\n cc=b@y.example\r\n\r\n")
    assert meta.chosen_recipients == (("to", "a@x.example"), ("cc", "b@y.example"))


def test_a_continuation_line_before_any_field_is_flagged() -> None:
    meta = parse_demail_headers(b" X-de-mail-authoritative: yes\r\nX-de-mail-private: no\r\n\r\n")
    assert meta.authoritative is None and meta.private is False
    assert "malformed-header-line" in meta.flags


def test_the_metadata_serialises_to_json() -> None:
    shaped = parse_demail_headers(build_message()).to_json()
    again = json.loads(json.dumps(shaped))
    assert again["authoritative"] is True
    assert again["chosen_recipients"][0] == {"kind": "to", "address": RECIPIENT}


def test_fields_are_cut_byte_exactly_and_the_body_found() -> None:
    raw = b"A: 1\r\nB: 2\r\n  folded\r\n\r\nbody\r\n"
    fields, body, problems = split_fields(raw)
    assert [f.raw for f in fields] == [b"A: 1\r\n", b"B: 2\r\n  folded\r\n"]
    assert body == b"body\r\n" and problems == ()


@FAST
@given(st.binary(max_size=800))
def test_arbitrary_header_bytes_never_raise_and_values_are_clean(raw: bytes) -> None:
    meta = parse_demail_headers(raw)
    for _, value in meta.raw_values:
        assert is_clean_header_text(value)
    json.dumps(meta.to_json())


@FAST
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                ["X-de-mail-authoritative", "x-de-mail-private", "From", "X-DE-MAIL-PRIVATE-ID", "Subject"]
            ),
            st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20),
        ),
        max_size=8,
    )
)
def test_the_first_occurrence_is_always_the_one_read(fields: list[tuple[str, str]]) -> None:
    raw = b"".join(f"{n}: {v}\r\n".encode() for n, v in fields) + b"\r\n"
    meta = parse_demail_headers(raw)
    firsts: dict[str, str] = {}
    for n, v in fields:
        firsts.setdefault(n.lower(), v)
    if "x-de-mail-private-id" in firsts:
        assert meta.private_id == firsts["x-de-mail-private-id"]
    if "from" in firsts:
        assert meta.from_ == firsts["from"]
    counts = [n.lower() for n, _ in fields]
    for name in ("x-de-mail-authoritative", "from"):
        assert (f"duplicate-header:{name}" in meta.flags) == (counts.count(name) > 1)
