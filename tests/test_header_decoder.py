"""The one header decoder: no control character ever comes out, wherever a value is stored.

Header values reach the ledger, the manifest, the audit trail, log lines, file and folder
names. A sender can encode any byte in RFC 2047 (``=1B``, ``=00``) or write it raw, so the
decoder's output is checked as a property over hostile input, and the message facts that are
recorded are checked to come out of it.
"""

from __future__ import annotations

import base64
import unicodedata
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.smime_pki import TestPKI, make_context, mime_text, run_unwrap, signed_message

from gateway.config import Config, load_config
from gateway.inbound.decide import analyse
from gateway.mime.headers import decode_header_text, is_clean_header_text
from gateway.mime.message import headers_only, parse_message
from gateway.unwrap import UnwrapContext

_SETTINGS = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], max_examples=300
)

# Every character a stored value must never contain: C0, DEL, C1, bidi embeddings, overrides
# and isolates, line and paragraph separators.
_FORBIDDEN = (
    {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]}
    | set("\u202a\u202b\u202c\u202d\u202e")
    | set("\u2066\u2067\u2068\u2069\u2028\u2029")
)


def assert_clean(text: str) -> None:
    assert not _FORBIDDEN & set(text), ascii(text)
    assert unicodedata.is_normalized("NFC", text)
    assert is_clean_header_text(text)


_HOSTILE_CHARS = st.sampled_from([*sorted(_FORBIDDEN), "a", " ", "\u00e4", "\u0308", "=", "?", "\ud800", "\udcff"])


@st.composite
def encoded_words(draw: st.DrawFn) -> str:
    """Encoded words carrying arbitrary bytes, in B and Q form."""
    data = draw(st.binary(max_size=24))
    charset = draw(st.sampled_from(["utf-8", "iso-8859-1", "windows-1252", "utf-16", "x-bogus"]))
    if draw(st.booleans()):
        return f"=?{charset}?b?{base64.b64encode(data).decode()}?="
    return f"=?{charset}?q?{''.join(f'={b:02X}' for b in data)}?="


HOSTILE = st.lists(
    st.one_of(
        encoded_words(),
        st.text(_HOSTILE_CHARS, max_size=8),
        st.text(max_size=8),
        st.sampled_from([" ", "\r\n ", "\n", "\r", "\t"]),
    ),
    max_size=8,
).map("".join)


@_SETTINGS
@given(st.one_of(st.none(), HOSTILE, st.binary(max_size=60), st.text()), st.booleans())
def test_decoded_header_text_never_contains_a_control_character(raw: str | bytes | None, words: bool) -> None:
    assert_clean(decode_header_text(raw, encoded_words=words))


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("=?utf-8?q?Az_4711=1B[2J?=", "Az 4711\ufffd[2J"),  # terminal escape
        ("=?utf-8?q?Az=004711?=", "Az\ufffd4711"),  # NUL
        ("=?utf-8?q?Az=7F=C2=9B4711?=", "Az\ufffd\ufffd4711"),  # DEL and C1 CSI
        ("=?utf-8?q?Az=094711?=", "Az 4711"),  # TAB reads as a space
        ("=?utf-8?q?Az=C2=854711?=", "Az 4711"),  # NEL is a line break too
        ("=?utf-8?q?Az=E2=80=A84711?=", "Az 4711"),  # LINE SEPARATOR
        ("=?utf-8?q?Az_=E2=80=AE52/4321?=", "Az \ufffd52/4321"),  # RIGHT-TO-LEFT OVERRIDE
        ("Az\x1b[31m 4711", "Az\ufffd[31m 4711"),  # written raw, not encoded
    ],
)
def test_control_characters_are_replaced_visibly_or_by_a_space(raw: str, text: str) -> None:
    assert decode_header_text(raw) == text


def test_structured_fields_keep_encoded_words_literal_but_lose_controls() -> None:
    raw = "<=?utf-8?q?a?=\x00@example.org>"
    assert decode_header_text(raw, encoded_words=False) == "<=?utf-8?q?a?=\ufffd@example.org>"


# --- the recorded message facts ---------------------------------------------------------------


@pytest.fixture(scope="module")
def plain_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = tmp_path_factory.mktemp("decoder")
    path = root / "poststelle.toml"
    path.write_text(f'[storage]\nstate_dir = "{root}/state"\n', encoding="utf-8")
    return load_config(path)


def hostile_message(value: str) -> bytes:
    head = (
        f'From: "a{value}"@example.org, Someone <b{value}@example.org>\r\nSubject: Antrag {value}\r\n'
        f"Message-ID: <{value}@example.org>\r\nDate: {value}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    )
    part = (
        "--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        f'Content-Disposition: attachment; filename="{value}.pdf"\r\n\r\nJVBERg==\r\n--b--\r\n'
    )
    return (head + part).encode("utf-8", "surrogateescape")


# Raw CR and LF cannot occur inside one header line; everything else can, raw or encoded.
_IN_A_LINE = st.sampled_from([*(c for c in sorted(_FORBIDDEN) if c not in "\r\n"), "a", "\u00e4", "=", "?"])
_HEADER_VALUE = st.lists(st.one_of(encoded_words(), st.text(_IN_A_LINE, max_size=6)), max_size=4).map("".join)


@_SETTINGS
@given(_HEADER_VALUE)
def test_no_recorded_header_value_contains_a_control_character(plain_config: Config, value: str) -> None:
    """Subject, From addresses, Message-ID, Date and attachment names, as the plan records them."""
    plan = analyse(hostile_message(value), plain_config, UnwrapContext(), at=datetime.now(UTC))
    for text in (
        plan.subject,
        plan.message_id or "",
        plan.date or "",
        *plan.from_addrs,
        *(p.filename or "" for p in plan.parts),
    ):
        assert_clean(text)


def test_message_id_date_and_from_are_cleaned_when_parsing_and_when_identifying_a_refused_message(
    plain_config: Config,
) -> None:
    raw = hostile_message("x\x1b[2Jy")
    for parsed in (parse_message(raw, plain_config.limits), headers_only(raw)):
        assert parsed.message_id == "<x\ufffd[2Jy@example.org>"
        assert parsed.date == "x\ufffd[2Jy"
        assert parsed.subject == "Antrag x\ufffd[2Jy"
        assert parsed.from_addrs and all(is_clean_header_text(a) for a in parsed.from_addrs)


def test_protected_subject_loses_encoded_controls_like_the_outer_one(pki: TestPKI) -> None:
    inner = mime_text(subject="=?utf-8?q?Az_4711=1B[2J=00?=")
    ctx: UnwrapContext = make_context(pki)  # type: ignore[assignment]
    res = run_unwrap(signed_message(pki["sender"], inner), ctx)
    assert res.verdict.verified
    assert res.inner_subject == "Az 4711\ufffd[2J\ufffd"


_CHARSET_LABEL = st.one_of(
    st.sampled_from(["utf-8", "us-ascii", "iso-8859-1", "unicode_escape", "rot13", "hex", "utf\x008", "", "x" * 80]),
    st.text(st.characters(codec="latin-1"), max_size=12),
)


@_SETTINGS
@given(_CHARSET_LABEL, st.binary(max_size=40))
def test_a_text_part_with_any_charset_label_is_read_never_a_processing_error(
    plain_config: Config, label: str, body: bytes
) -> None:
    """A label naming no codec, a codec that is not a charset, or holding a NUL reads as unlabelled."""
    quoted = label.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "")
    raw = (
        b"From: a@example.org\r\nSubject: Az. 1 K 1/25\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: text/plain; charset="' + quoted.encode("latin-1") + b'"\r\n\r\n' + body + b"\r\n"
    )
    plan = analyse(raw, plain_config, UnwrapContext(), at=datetime.now(UTC))
    assert not any(r.startswith("processing-error") for r in plan.verdict.reasons)


def test_a_nul_in_the_charset_label_does_not_stop_the_letter(plain_config: Config) -> None:
    raw = b'From: a@example.org\r\nSubject: Az. 1 K 1/25\r\nContent-Type: text/plain; charset="utf\x008"\r\n'
    raw += b"\r\nhallo\r\n"
    plan = analyse(raw, plain_config, UnwrapContext(), at=datetime.now(UTC))
    assert tuple(plan.verdict.reasons) == ("no-signature",)
