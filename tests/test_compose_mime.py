"""The letter's MIME structure: headers and file names round-trip, bad input is refused with a reason."""

from __future__ import annotations

import email
import email.policy
import os
import re
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.mime.headers import decode_header_text
from gateway.outbound.compose import (
    Attachment,
    ComposeError,
    Letter,
    check_address,
    draft,
    full_subject,
)

NOW = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
FROM = "rathaus@hofheim.example"
CASE = "1 K 1234/25"


def build(letter: Letter, max_bytes: int = 1_000_000) -> bytes:
    d = draft(letter, mail_from=FROM, now=NOW, max_bytes=max_bytes)
    return d.headers + d.entity


def parse(raw: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def attach(tmp_path: Path, name: str, data: bytes = b"%PDF-1.4\n%%EOF\n") -> Attachment:
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    return Attachment(path, name)


def test_letter_has_case_in_subject_message_id_date_and_from(tmp_path: Path) -> None:
    msg = parse(build(Letter(CASE, ("bob@example.org",), "Ladung", "Text")))
    assert msg["subject"] == f"[Az. {CASE}] Ladung"
    assert msg["from"] == FROM and msg["to"] == "bob@example.org"
    assert msg["message-id"].endswith("@hofheim.example>")
    assert msg["date"].datetime == NOW
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content() == "Text\r\n"


def test_subject_already_naming_the_case_is_not_prefixed_twice() -> None:
    assert full_subject(CASE, f"Ladung zu {CASE}") == f"Ladung zu {CASE}"
    assert full_subject(CASE, f"Ladung zu {CASE}, Termin") == f"Ladung zu {CASE}, Termin"
    assert full_subject("1 K 12", "Ladung 1 K 123") == "[Az. 1 K 12] Ladung 1 K 123"
    assert full_subject("1 K 12/2", "Ladung 1 K 12/25") == "[Az. 1 K 12/2] Ladung 1 K 12/25"


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="1K /_-aä٣\u00b2x", max_size=12), st.text(alphabet="1K /_-aä٣\u00b2x", max_size=30))
def test_a_subject_names_a_case_exactly_when_it_stands_apart_from_words_and_slashes(case: str, subject: str) -> None:
    # The definition: the reference, with neither a word character nor "/" on either side.
    names = re.search(rf"(?<![\w/]){re.escape(case)}(?![\w/])", subject) is not None
    assert (full_subject(case, subject) == subject) == names


def test_every_line_is_crlf_and_at_most_998_bytes(tmp_path: Path) -> None:
    raw = build(
        Letter(
            CASE,
            ("bob@example.org",),
            "ä" * 300,
            "x" * 5000 + "\nFrom here\n",
            attachments=(attach(tmp_path, "ü" * 80 + ".pdf"),),
        )
    )
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert b"\r\nFrom " not in raw  # escaped: mail stores add ">" to such lines


def test_umlaut_filename_round_trips_with_rfc2231(tmp_path: Path) -> None:
    name = "Bescheid über Gebühren – Straße Nr. 5.pdf"
    raw = build(Letter(CASE, ("bob@example.org",), "Bescheid", attachments=(attach(tmp_path, name),)))
    assert b"filename*0*=utf-8''Bescheid%20%C3%BCber" in raw
    part = next(parse(raw).iter_attachments())
    assert part.get_filename() == name
    assert part.get_content_type() == "application/pdf"
    assert part.get_content() == b"%PDF-1.4\n%%EOF\n"


@pytest.mark.parametrize(
    "name",
    [
        '../../etc/passwd"; filename="evil.exe',
        "a\\b;c=d\"e'f.pdf",
        "=?utf-8?b?ZXZpbC5leGU=?=",
        "CON.txt",
        "‮fdp.exe",  # a right-to-left override: shown escaped by the receiver, sent as it is
        "名前" * 40 + ".pdf",
    ],
)
def test_hostile_filename_round_trips_exactly(tmp_path: Path, name: str) -> None:
    raw = build(Letter(CASE, ("bob@example.org",), "Anlage", attachments=(attach(tmp_path, name),)))
    parts = list(parse(raw).iter_attachments())
    assert len(parts) == 1 and parts[0].get_filename() == name


@pytest.mark.parametrize("name", ["", " ", " lead.pdf", "trail.pdf ", "a\r\nb.pdf", "nul\x00.pdf", "x" * 256])
def test_unusable_filename_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ComposeError) as exc:
        build(Letter(CASE, ("bob@example.org",), "Anlage", attachments=(attach(tmp_path, name),)))
    assert exc.value.reason == "invalid-filename"


def test_attachment_types_follow_the_file_name_and_pdf_magic(tmp_path: Path) -> None:
    atts = (attach(tmp_path, "a.odt", b"PK\x03\x04"),)
    other = tmp_path / "scan"
    other.write_bytes(b"%PDF-1.7\n")
    raw = build(Letter(CASE, ("bob@example.org",), "Anlagen", attachments=(*atts, Attachment(other))))
    types = [p.get_content_type() for p in parse(raw).iter_attachments()]
    assert types == ["application/vnd.oasis.opendocument.text", "application/pdf"]


# --- property tests ------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_any_subject_is_refused_with_a_reason_or_round_trips(subject: str) -> None:
    try:
        raw = build(Letter(CASE, ("bob@example.org",), subject))
    except ComposeError as exc:
        assert exc.reason in {"control-character", "empty-subject", "subject-too-long"}
        return
    expected = full_subject(CASE, subject)
    head = raw.partition(b"\r\n\r\n")[0]
    assert parse(raw)["subject"] == expected
    line = next(h for h in email.message_from_bytes(raw).items() if h[0] == "Subject")[1]
    assert decode_header_text(line) == unicodedata.normalize("NFC", expected) or any(
        unicodedata.category(c) in ("Cf", "Co", "Cn") for c in expected
    )
    assert max(len(x) for x in head.split(b"\r\n")) <= 78


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.text(max_size=120))
def test_any_filename_is_refused_with_a_reason_or_round_trips(tmp_path: Path, name: str) -> None:
    try:
        raw = build(Letter(CASE, ("bob@example.org",), "Anlage", attachments=(attach(tmp_path, name),)))
    except ComposeError as exc:
        assert exc.reason == "invalid-filename"
        return
    parts = list(parse(raw).iter_attachments())
    assert [p.get_filename() for p in parts] == [name]


# --- refusals ------------------------------------------------------------------------


@pytest.mark.parametrize("subject", ["Ladung\r\nBcc: evil@example.org", "Ladung\nX", "a\rb", "tab\there", "nul\x00"])
def test_cr_lf_or_controls_in_the_subject_are_refused(subject: str) -> None:
    with pytest.raises(ComposeError) as exc:
        build(Letter(CASE, ("bob@example.org",), subject))
    assert exc.value.reason == "control-character"


@pytest.mark.parametrize("address", ["bob@example.org\r\nBcc: evil@example.org", "bob@example.org\n"])
def test_cr_lf_in_an_address_is_refused(address: str) -> None:
    with pytest.raises(ComposeError) as exc:
        build(Letter(CASE, (address,), "Ladung"))
    assert exc.value.reason == "control-character" and "to" in exc.value.detail


@pytest.mark.parametrize(
    "address",
    [
        "bob",
        "bob@",
        "@example.org",
        "bob@localhost",
        "Bob <bob@example.org>",
        "bob@exa mple.org",
        "böb@example.org",
        "bob@@example.org",
        "a..b@example.org",
        "bob@-example.org",
        "",
    ],
)
def test_invalid_addresses_are_refused(address: str) -> None:
    with pytest.raises(ComposeError) as exc:
        check_address(address, field="to")
    assert exc.value.reason == "invalid-address" and repr(address) in exc.value.detail


def test_invalid_cc_and_from_addresses_are_refused() -> None:
    with pytest.raises(ComposeError, match="cc"):
        build(Letter(CASE, ("bob@example.org",), "Ladung", cc=("not-an-address",)))
    with pytest.raises(ComposeError, match="from"):
        draft(Letter(CASE, ("bob@example.org",), "Ladung"), mail_from="rathaus", now=NOW, max_bytes=10_000)


def test_no_recipient_is_refused() -> None:
    with pytest.raises(ComposeError) as exc:
        build(Letter(CASE, (), "Ladung"))
    assert exc.value.reason == "no-recipients"


def test_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nicht-da.pdf"
    with pytest.raises(ComposeError) as exc:
        build(Letter(CASE, ("bob@example.org",), "Anlage", attachments=(Attachment(missing),)))
    assert exc.value.reason == "missing-file" and str(missing) in exc.value.detail


def test_directory_as_attachment_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ComposeError) as exc:
        build(Letter(CASE, ("bob@example.org",), "Anlage", attachments=(Attachment(tmp_path),)))
    assert exc.value.reason == "unreadable-file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "geheim.pdf"
    secret.write_bytes(b"x")
    secret.chmod(0)
    with pytest.raises(ComposeError) as exc:
        build(Letter(CASE, ("bob@example.org",), "Anlage", attachments=(Attachment(secret),)))
    assert exc.value.reason == "unreadable-file"


@pytest.mark.parametrize("case", ["", "   ", "1 K\x00 12", "1 K 12\r\n", "x" * 200])
def test_invalid_case_reference_is_refused(case: str) -> None:
    with pytest.raises(ComposeError) as exc:
        build(Letter(case, ("bob@example.org",), "Ladung"))
    assert exc.value.reason == "invalid-case"


def test_a_new_case_is_fine() -> None:
    raw = build(Letter("9 Z 1/27 (neu) – Gemeinderat", ("bob@example.org",), "Erste Post"))
    assert "9 Z 1/27 (neu) – Gemeinderat" in parse(raw)["subject"]


def test_oversize_attachment_is_refused_before_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "big.pdf"
    with big.open("wb") as fh:
        fh.truncate(5_000_000)
    with pytest.raises(ComposeError) as exc:
        build(Letter(CASE, ("bob@example.org",), "Anlage", attachments=(Attachment(big),)), max_bytes=1_000_000)
    assert exc.value.reason == "too-large"


def test_oversize_after_encoding_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ComposeError) as exc:
        build(
            Letter(CASE, ("bob@example.org",), "Anlage", attachments=(attach(tmp_path, "a.pdf", b"x" * 900_000),)),
            max_bytes=1_000_000,
        )
    assert exc.value.reason == "too-large"


def test_text_with_page_breaks_and_tabs_is_carried_exactly() -> None:
    text = "Seite 1\tmit Tab\x0cSeite 2\r\n\x00Ende"
    msg = parse(build(Letter(CASE, ("bob@example.org",), "Text", text)))
    assert msg.get_content().removesuffix("\r\n") == text


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=300))
def test_any_text_round_trips_with_line_breaks_as_crlf(text: str) -> None:
    msg = parse(build(Letter(CASE, ("bob@example.org",), "Text", text)))
    norm = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    assert msg.get_content() == (norm if norm.endswith("\r\n") else norm + "\r\n")
