"""Decoding and normalising untrusted subjects (gateway.mime.headers, gateway.routing.subject)."""

from __future__ import annotations

import time
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.mime.headers import decode_header_text
from gateway.routing.subject import normalise_for_matching, strip_reply_prefixes

# --- decode_header_text: realistic input -------------------------------------------------


def test_plain_subject_passes_through_unchanged() -> None:
    assert decode_header_text("Az. 1 K 1234/25 Klageerwiderung") == "Az. 1 K 1234/25 Klageerwiderung"


def test_missing_header_decodes_to_empty_text() -> None:
    assert decode_header_text(None) == ""
    assert decode_header_text(b"") == ""


def test_q_encoded_word_decodes_underscore_as_space() -> None:
    raw = "=?iso-8859-1?q?Bauantrag_63-BV-2026-0147_Stra=DFe?="
    assert decode_header_text(raw) == "Bauantrag 63-BV-2026-0147 Straße"


def test_whitespace_between_adjacent_encoded_words_is_dropped() -> None:
    raw = "=?utf-8?q?Az=2E_1_K?= =?utf-8?q?_1234/25?="
    assert decode_header_text(raw) == "Az. 1 K 1234/25"


def test_whitespace_between_encoded_word_and_plain_text_is_kept() -> None:
    assert decode_header_text("AW: =?utf-8?b?R2VzY2jDpGZ0c3plaWNoZW4=?= 32.1") == "AW: Geschäftszeichen 32.1"


def test_multibyte_character_split_across_encoded_words_is_joined() -> None:
    # "ä" is C3 A4 in UTF-8; a broken mailer put each byte into its own encoded word.
    assert decode_header_text("=?utf-8?b?ww==?= =?utf-8?b?pA==?=") == "ä"
    assert decode_header_text("=?UTF-8?Q?Gr=C3?= =?utf-8?Q?=BC=C3=9Fe?=") == "Grüße"


def test_folded_header_is_unfolded() -> None:
    raw = "=?utf-8?B?w6Q=?=\r\n =?utf-8?B?w7Y=?=\r\n\tund mehr"
    assert decode_header_text(raw) == "äö und mehr"  # the folding WSP itself stays, as a space


def test_bare_newline_does_not_survive_decoding() -> None:
    assert "\n" not in decode_header_text("Az. 1 K\n1234/25")


def test_unknown_charset_falls_back_to_utf8_then_cp1252() -> None:
    assert decode_header_text("=?x-bogus?q?Gr=C3=BC=C3=9Fe?=") == "Grüße"
    assert decode_header_text("=?x-bogus?q?Gr=FC=DFe?=") == "Grüße"


def test_non_text_codec_names_are_not_used_as_charsets() -> None:
    # "rot13", "hex" and "unicode-escape" are Python codecs, not mail charsets.
    assert decode_header_text("=?rot13?q?nop?=") == "nop"
    assert decode_header_text("=?unicode-escape?q?=5Cu0041?=") == "\\u0041"
    assert decode_header_text("=?hex?b?NDE=?=") == "41"


def test_latin1_label_is_read_as_cp1252_like_real_mailers_mean_it() -> None:
    assert decode_header_text("=?iso-8859-1?q?=80_100?=") == "€ 100"


def test_malformed_encoded_word_is_left_as_text() -> None:
    assert decode_header_text("=?utf-8?b?!!!?= 1 K 1234/25") == "=?utf-8?b?!!!?= 1 K 1234/25"
    assert decode_header_text("=?utf-8?x?abc?=") == "=?utf-8?x?abc?="
    assert decode_header_text("=?utf-8?q?unterminated") == "=?utf-8?q?unterminated"


def test_base64_without_padding_is_tolerated() -> None:
    assert decode_header_text("=?utf-8?b?w6Q?=") == "ä"


def test_raw_8bit_utf8_bytes_are_decoded() -> None:
    assert decode_header_text("Grüße 1 K 1234/25".encode()) == "Grüße 1 K 1234/25"


def test_raw_8bit_cp1252_bytes_are_decoded() -> None:
    assert decode_header_text("Grüße – 1 K 1234/25".encode("cp1252")) == "Grüße – 1 K 1234/25"


def test_surrogate_escaped_bytes_from_the_email_library_are_decoded() -> None:
    smuggled = "Grüße".encode("cp1252").decode("ascii", "surrogateescape")
    assert decode_header_text(smuggled) == "Grüße"


def test_lone_surrogates_never_reach_the_record() -> None:
    text = decode_header_text("a\ud800b")
    text.encode("utf-8")  # must not raise


def test_decoded_subject_is_nfc() -> None:
    assert decode_header_text("=?utf-8?q?Stra=C3=9Fe_Mu=CC=88ller?=") == "Straße Müller"
    assert unicodedata.is_normalized("NFC", decode_header_text("Mu\u0308ller"))


def test_encoded_traversal_subject_decodes_to_plain_text_only() -> None:
    # Decoding is faithful; keeping "../" out of paths is casenames' job (see test_casenames).
    assert decode_header_text("=?utf-8?b?Li4vLi4v?=") == "../../"


def test_ten_thousand_character_subject_is_decoded_quickly() -> None:
    raw = "=?utf-8?q?" + "A" * 5_000 + "?= " + "x" * 5_000
    start = time.monotonic()
    text = decode_header_text(raw)
    assert len(text) == 10_001
    assert time.monotonic() - start < 1.0


def test_many_encoded_words_are_decoded_in_linear_time() -> None:
    raw = " ".join(["=?utf-8?b?w6Q=?="] * 10_000)
    start = time.monotonic()
    assert decode_header_text(raw) == "ä" * 10_000
    assert time.monotonic() - start < 2.0


# --- normalise_for_matching --------------------------------------------------------------


def test_lookalike_dashes_become_hyphen_minus() -> None:
    for dash in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d":
        assert normalise_for_matching(f"63{dash}BV{dash}2026{dash}0147") == "63-BV-2026-0147"


def test_unusual_spaces_become_single_spaces() -> None:
    assert normalise_for_matching("1\u00a0K\u2009\u2009 1234/25\u202f") == "1 K 1234/25"
    assert normalise_for_matching("\t1\u3000K\n1234/25 ") == "1 K 1234/25"


def test_full_width_digits_and_letters_become_ascii() -> None:
    assert normalise_for_matching("１ Ｋ １２３４／２５") == "1 K 1234/25"


def test_invisible_characters_are_removed() -> None:
    hostile = "1\u200b K\u200d 12\u00ad34/\u202e25\ufeff\x00"
    assert normalise_for_matching(hostile) == "1 K 1234/25"


def test_removing_a_joiner_recomposes_characters() -> None:
    assert normalise_for_matching("Mu\u200b\u0308ller") == "Müller"


# --- strip_reply_prefixes ----------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    [
        "Re: Az. 1 K 1234/25",
        "RE: AW: WG: Az. 1 K 1234/25",
        "Aw: Fwd: FW: Fw: Az. 1 K 1234/25",
        "Antw: Az. 1 K 1234/25",
        "Re[2]: AW(3): Re^4: Az. 1 K 1234/25",
        "RE : WG :Az. 1 K 1234/25",
        "  re:aw:wg:Az. 1 K 1234/25",
        "AW\uff1a Az. 1 K 1234/25",
    ],
)
def test_stacked_localised_reply_prefixes_are_removed(subject: str) -> None:
    assert strip_reply_prefixes(subject) == "Az. 1 K 1234/25"


@pytest.mark.parametrize(
    "subject",
    ["Reisekosten 1 K 1234/25", "AWO: Antrag", "Antrag: 63-BV-2026-0147", "Az.: 32.1-4711/2026"],
)
def test_words_that_merely_start_like_a_prefix_are_kept(subject: str) -> None:
    assert strip_reply_prefixes(subject) == subject


@pytest.mark.parametrize(
    "hostile",
    ["Re" + " " * 100_000 + "x", "Re:" * 30_000, "=?a?q?" * 20_000, "=?" + "a" * 100_000],
)
def test_pathological_subjects_are_handled_in_linear_time(hostile: str) -> None:
    start = time.monotonic()
    decode_header_text(hostile)
    normalise_for_matching(hostile)
    strip_reply_prefixes(hostile)
    assert time.monotonic() - start < 2.0


def test_demail_receipt_marker_is_not_a_reply_prefix() -> None:
    subject = "*Versandbestätigung* Az. 1 K 1234/25"
    assert strip_reply_prefixes(subject) == subject


# --- properties --------------------------------------------------------------------------

_CHARSETS = st.sampled_from(
    ["utf-8", "UTF-8", "iso-8859-1", "windows-1252", "x-bogus", "rot13", "utf-7", "utf-16",
     "shift_jis", "gb2312", "idna", "punycode", "unicode-escape", "", "utf-8*de", "a\x00b"]
)  # fmt: skip


@st.composite
def _encoded_words(draw: st.DrawFn) -> str:
    charset = draw(_CHARSETS)
    encoding = draw(st.sampled_from("bBqQx"))
    payload = draw(st.text(alphabet="ABCabc0123456789=_+/-?. \t", max_size=30))
    return f"=?{charset}?{encoding}?{payload}?="


_HEADERISH = st.lists(
    st.one_of(_encoded_words(), st.text(max_size=20), st.sampled_from([" ", "\r\n ", "\n", "\r"])),
    max_size=8,
).map("".join)


@given(st.one_of(st.none(), st.text(), st.binary(), _HEADERISH))
def test_decode_header_text_never_raises_and_returns_encodable_nfc(
    raw: str | bytes | None,
) -> None:
    text = decode_header_text(raw)
    assert isinstance(text, str)
    text.encode("utf-8")
    assert unicodedata.is_normalized("NFC", text)
    assert "\r" not in text
    assert "\n" not in text


@given(_HEADERISH.map(lambda s: s.encode("utf-8", "surrogatepass")))
def test_decode_header_text_never_raises_on_header_bytes(raw: bytes) -> None:
    decode_header_text(raw).encode("utf-8")


@given(st.text())
def test_normalised_text_has_no_invisible_characters_or_odd_spaces(text: str) -> None:
    result = normalise_for_matching(text)
    result.encode("utf-8")
    assert not any(unicodedata.category(ch) in {"Cc", "Cf", "Cs"} for ch in result)
    assert not any(ch.isspace() and ch != " " for ch in result)
    assert "  " not in result
    assert result == result.strip(" ")


@given(st.text())
def test_normalise_for_matching_is_idempotent(text: str) -> None:
    once = normalise_for_matching(text)
    assert normalise_for_matching(once) == once


@given(st.text())
def test_strip_reply_prefixes_is_idempotent(text: str) -> None:
    once = strip_reply_prefixes(text)
    assert strip_reply_prefixes(once) == once


def test_encoded_line_breaks_cannot_split_the_record() -> None:
    assert decode_header_text("=?utf-8?q?Az=0D=0AX-Injected:_yes?=") == "Az X-Injected: yes"
