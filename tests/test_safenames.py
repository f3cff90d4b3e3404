"""Attachment file names from untrusted MIME headers (gateway.filing.safenames)."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.filing.safenames import DEFAULT_MAX_BYTES, NameAllocator, safe_filename

_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    f"{p}{n}" for p in ("COM", "LPT") for n in "0123456789¹²³"
}


def assert_safe_filename(name: str, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """Everything an attachment name on disk must be, on POSIX and on a Windows/SMB share."""
    assert name not in ("", ".", "..")
    assert "/" not in name
    assert "\\" not in name
    assert "\x00" not in name
    assert not set(name) & set('<>:"|?*')
    assert not any(unicodedata.category(ch) in {"Cc", "Cf", "Cs"} for ch in name)
    assert not any(ch.isspace() and ch != " " for ch in name)
    assert not name.startswith((".", " ", "-"))
    assert not name.endswith((".", " "))
    assert name.split(".", 1)[0].rstrip(" ").upper() not in _WINDOWS_DEVICES
    assert len(name.encode("utf-8")) <= max_bytes
    assert unicodedata.is_normalized("NFC", name)
    base = "/srv/poststelle/cases/1 K 1234%2F25/entry/attachments"
    assert os.path.dirname(os.path.normpath(os.path.join(base, name))) == base


# --- hostile names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../evil.sh", "evil.sh"),
        ("..\\..\\evil.sh", "evil.sh"),
        ("C:\\Windows\\evil.exe", "evil.exe"),
        ("/etc/passwd", "passwd"),
        ("=?utf-8?b?Li4vLi4vZXZpbC5zaA==?=", "evil.sh"),  # encoded traversal
        ("Schriftsatz/", "Schriftsatz"),
    ],
)
def test_traversal_attachment_names_keep_only_the_last_component(raw: str, expected: str) -> None:
    assert safe_filename(raw) == expected


def test_traversal_attachment_cannot_escape_the_entry_folder(tmp_path: Path) -> None:
    for raw in ["../../evil.sh", "..", "../", "C:\\Windows\\evil.exe", "/", "a/../../b"]:
        target = tmp_path / safe_filename(raw)
        target.write_bytes(b"x")
        assert target.resolve().parent == tmp_path.resolve()


@pytest.mark.parametrize("raw", ["", ".", "..", "...", "/", "\\", "\x00", " . ", "???", None])
def test_empty_or_garbage_names_use_the_fallback(raw: str | None) -> None:
    assert safe_filename(raw) == "attachment"
    assert safe_filename(raw, fallback="anlage.pdf") == "anlage.pdf"


def test_bidi_override_cannot_disguise_the_extension() -> None:
    assert safe_filename("Rechnung\u202eFDP.exe") == "RechnungFDP.exe"
    assert safe_filename("\u202etxt.exe") == "txt.exe"


def test_control_and_zero_width_characters_are_removed() -> None:
    assert safe_filename("Klage\x00schrift\u200b.pdf") == "Klageschrift.pdf"
    assert safe_filename("a\r\nb\tc.pdf") == "a b c.pdf"


def test_windows_reserved_characters_are_replaced() -> None:
    assert safe_filename('Antrag <neu>: "final" | v2?*.docx') == "Antrag _neu__ _final_ _ v2__.docx"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("Nul.tar.gz", "_Nul.tar.gz"),
        ("COM1", "_COM1"),
        ("lpt1 .pdf", "_lpt1 .pdf"),
        ("COM²", "_COM²"),
        ("CONSTRUCT.pdf", "CONSTRUCT.pdf"),
    ],
)
def test_windows_device_names_get_a_prefix(raw: str, expected: str) -> None:
    assert safe_filename(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(".bashrc", "bashrc"), ("  .htaccess", "htaccess"), ("bericht.pdf. . ", "bericht.pdf")],
)
def test_no_hidden_files_and_no_trailing_dots(raw: str, expected: str) -> None:
    assert safe_filename(raw) == expected


def test_leading_dash_cannot_pose_as_a_command_line_option() -> None:
    assert safe_filename("-rf") == "_-rf"


def test_slash_lookalikes_do_not_suggest_a_path() -> None:
    assert safe_filename("..\u2215..\u2215evil.sh") == "_.._evil.sh"


def test_decoded_names_are_nfc() -> None:
    assert safe_filename("Mu\u0308ller.pdf") == "Müller.pdf"


def test_leftover_encoded_words_are_decoded() -> None:
    assert safe_filename("=?iso-8859-1?q?Stellungnahme_B=FCrger.pdf?=") == "Stellungnahme Bürger.pdf"


# --- length ----------------------------------------------------------------------------------


def test_long_names_are_shortened_keeping_the_extension() -> None:
    name = safe_filename("Klageerwiderung " * 50 + ".pdf")
    assert name.endswith(".pdf")
    assert len(name.encode()) <= DEFAULT_MAX_BYTES


def test_shortening_never_cuts_a_multibyte_character() -> None:
    for max_bytes in range(32, 80):
        name = safe_filename("ä€😀" * 100 + ".docx", max_bytes=max_bytes)
        assert name.endswith(".docx")
        assert len(name.encode()) <= max_bytes
        name.encode("utf-8")


def test_long_odd_extensions_are_treated_as_part_of_the_stem() -> None:
    name = safe_filename("x" * 200 + ".thisisnotanextension", max_bytes=40)
    assert len(name.encode()) <= 40
    assert name == "x" * 40


def test_shortening_does_not_expose_a_device_name_or_trailing_dot() -> None:
    assert_safe_filename(safe_filename("LPT1 " + "x" * 200 + ".pdf", max_bytes=32), 32)
    assert safe_filename("LPT1. " + "x" * 200 + ".pdf", max_bytes=32) == "_LPT1. xxxxxxxxxxxxxxxxxxxxx.pdf"
    assert_safe_filename(safe_filename("ab. " + "x" * 200, max_bytes=32), 32)


def test_ten_thousand_character_name_is_handled() -> None:
    assert_safe_filename(safe_filename("A" * 10_000 + ".pdf"))


def test_too_small_caps_are_refused() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        safe_filename("a.pdf", max_bytes=8)


def test_unusable_fallback_is_refused() -> None:
    with pytest.raises(ValueError, match="fallback"):
        safe_filename("..", fallback="..")


# --- NameAllocator ---------------------------------------------------------------------------


def test_repeated_names_get_numbered_suffixes() -> None:
    alloc = NameAllocator()
    assert [alloc.allocate("a.pdf") for _ in range(3)] == ["a.pdf", "a (2).pdf", "a (3).pdf"]


def test_names_differing_only_in_case_are_kept_apart() -> None:
    alloc = NameAllocator()
    assert alloc.allocate("Bescheid.PDF") == "Bescheid.PDF"
    assert alloc.allocate("bescheid.pdf") == "bescheid (2).pdf"
    assert alloc.allocate("BESCHEID.pdf") == "BESCHEID (3).pdf"


def test_unicode_variants_are_kept_apart() -> None:
    alloc = NameAllocator()
    assert alloc.allocate("Straße.pdf") == "Straße.pdf"
    assert alloc.allocate("STRASSE.pdf") == "STRASSE (2).pdf"


def test_reserved_names_are_never_handed_out() -> None:
    alloc = NameAllocator(["original.eml", "manifest.json", "body.txt"])
    assert alloc.allocate("original.eml") == "original (2).eml"
    assert alloc.allocate("MANIFEST.JSON") == "MANIFEST (2).JSON"
    assert alloc.allocate("body.txt") == "body (2).txt"


def test_allocator_sanitises_hostile_names_itself() -> None:
    alloc = NameAllocator()
    assert alloc.allocate("../../evil.sh") == "evil.sh"
    assert alloc.allocate(None) == "attachment"
    assert alloc.allocate("") == "attachment (2)"


def test_suffix_respects_the_byte_cap() -> None:
    alloc = NameAllocator(max_bytes=40)
    names = [alloc.allocate("ü" * 100 + ".pdf") for _ in range(120)]
    assert len({n.casefold() for n in names}) == 120
    for name in names:
        assert_safe_filename(name, 40)
        assert name.endswith(".pdf")


# --- properties ------------------------------------------------------------------------------

_TRICKY = st.sampled_from(
    [
        *' ./\\:*?"<>|-_aAzZ09äß€😀\u0301\u00a0\u2215\x00\x1f\u200b\u202e\r\n',
        *["CON", "nul", "LPT1", "..", ".pdf", ".tar.gz", "=?utf-8?b?Li4v?=", "=?x?q?=FC?="],
    ]
)
_NAMES = st.one_of(st.none(), st.text(), st.lists(_TRICKY, max_size=15).map("".join))
_CAPS = st.integers(min_value=32, max_value=255)


@given(_NAMES, _CAPS)
def test_safe_filename_is_always_safe(raw: str | None, max_bytes: int) -> None:
    assert_safe_filename(safe_filename(raw, max_bytes=max_bytes), max_bytes)


@given(_NAMES)
def test_safe_filename_is_idempotent(raw: str | None) -> None:
    once = safe_filename(raw)
    assert safe_filename(once) == once


@given(st.text(alphabet="abcXYZ äü", min_size=1, max_size=300), st.sampled_from([".pdf", ".p7m"]))
def test_short_extensions_survive_shortening(stem: str, extension: str) -> None:
    name = safe_filename(stem + extension, max_bytes=64)
    if any(ch.isalnum() for ch in stem):
        assert name.endswith(extension)


@given(st.lists(_NAMES, max_size=30), _CAPS)
def test_allocated_names_are_safe_and_unique_case_insensitively(wanted: list[str | None], max_bytes: int) -> None:
    reserved = ["original.eml", "manifest.json"]
    alloc = NameAllocator(reserved, max_bytes=max_bytes)
    names = [alloc.allocate(w) for w in wanted]
    folded = [unicodedata.normalize("NFKC", n).casefold() for n in names]
    assert len(set(folded)) == len(names)
    assert not set(folded) & set(reserved)
    for name in names:
        assert_safe_filename(name, max_bytes)


@given(st.lists(st.sampled_from(["a.pdf", "A.PDF", "a.pdf ", ".a.pdf", "a.pdf."]), max_size=40))
def test_allocator_with_many_collisions_stays_unique(wanted: list[str]) -> None:
    alloc = NameAllocator()
    names = [alloc.allocate(w) for w in wanted]
    assert len({n.casefold() for n in names}) == len(names)
