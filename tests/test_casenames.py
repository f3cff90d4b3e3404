"""Case reference <-> folder name mapping (gateway.routing.casenames)."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.mime.headers import decode_header_text
from gateway.routing.casenames import (
    MAX_FOLDER_NAME_BYTES,
    InvalidCaseReference,
    case_folder_name,
    case_reference_from_folder,
    is_reserved_folder,
)
from gateway.routing.subject import normalise_for_matching

_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{n}" for p in ("COM", "LPT") for n in "0123456789"}


def _normalised(reference: str) -> str:
    return " ".join(unicodedata.normalize("NFC", reference).split())


def assert_single_safe_component(name: str, base: str = "/srv/poststelle/cases") -> None:
    """Everything a folder name must be, on POSIX and on a Windows/SMB share."""
    assert name not in ("", ".", "..")
    assert "/" not in name
    assert "\\" not in name
    assert not set(name) & set('<>:"|?*')
    assert not any(unicodedata.category(ch) in {"Cc", "Cf", "Cs"} for ch in name)
    assert len(name.encode("utf-8")) <= MAX_FOLDER_NAME_BYTES
    assert not name.startswith((".", "_", " ", "-"))
    assert not name.endswith((".", " "))
    assert name.split(".", 1)[0].rstrip(" ").upper() not in _WINDOWS_DEVICES
    assert not is_reserved_folder(name)
    joined = os.path.normpath(os.path.join(base, name))
    assert os.path.dirname(joined) == base
    assert os.path.basename(joined) == name


# --- realistic references ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "folder"),
    [
        ("1 K 1234/25", "1 K 1234%2F25"),
        ("3 L 456/26", "3 L 456%2F26"),
        ("VI ZR 123/25", "VI ZR 123%2F25"),
        ("63-BV-2026-0147", "63-BV-2026-0147"),
        ("32.1-4711/2026", "32.1-4711%2F2026"),
        ("32 12 05/2026", "32 12 05%2F2026"),
        ("FB2/StA-123", "FB2%2FStA-123"),
        ("II-3.4 - 0815/26", "II-3.4 - 0815%2F26"),
        ("Straßenbau 7/Ä", "Straßenbau 7%2FÄ"),
        ("12 % Zuschlag", "12 %25 Zuschlag"),
    ],
)
def test_realistic_references_map_to_readable_folders(reference: str, folder: str) -> None:
    assert case_folder_name(reference) == folder
    assert case_reference_from_folder(folder) == reference


def test_slash_and_its_escape_map_to_different_folders() -> None:
    assert case_folder_name("1 K 1234/25") != case_folder_name("1 K 1234%2F25")
    assert case_folder_name("1 K 1234%2F25") == "1 K 1234%252F25"


def test_references_differing_only_in_case_or_dash_stay_apart() -> None:
    # Folding is the routing layer's job; here distinct input must stay distinct.
    assert case_folder_name("1 K 1234/25") != case_folder_name("1 k 1234/25")
    assert case_folder_name("63-BV") != case_folder_name("63\u2013BV")


def test_whitespace_variants_share_a_folder() -> None:
    assert case_folder_name("  1 K\u00a0 1234/25\t") == case_folder_name("1 K 1234/25")


# --- hostile references ------------------------------------------------------------------


@pytest.mark.parametrize(
    "reference",
    ["Az. ../../etc", "../../etc/passwd", "..", ".", "...", "/", "\\..\\..\\windows", "a/../../b"],
)
def test_traversal_subject_cannot_escape_cases_dir(reference: str, tmp_path: Path) -> None:
    name = case_folder_name(reference)
    assert_single_safe_component(name)
    folder = tmp_path / name
    folder.mkdir()
    assert folder.resolve().parent == tmp_path.resolve()
    assert case_reference_from_folder(name) == reference


def test_encoded_traversal_subject_cannot_escape_cases_dir(tmp_path: Path) -> None:
    reference = normalise_for_matching(decode_header_text("=?utf-8?b?Li4vLi4v?="))
    name = case_folder_name(reference)
    assert name == "%2E.%2F..%2F"
    assert (tmp_path / name).resolve().parent == tmp_path.resolve()


@pytest.mark.parametrize(
    ("reference", "folder"),
    [
        (".hidden", "%2Ehidden"),
        ("_unassigned", "%5Funassigned"),
        ("-rf", "%2Drf"),
        ("1 K 1234/25.", "1 K 1234%2F25%2E"),
        ("CON", "%43ON"),
        ("con.txt", "%63on.txt"),
        ("Lpt9", "%4Cpt9"),
        ("COM0.tar.gz", "%43OM0.tar.gz"),
        ("NUL .x", "%4EUL .x"),
    ],
)
def test_hidden_reserved_and_device_names_are_escaped(reference: str, folder: str) -> None:
    assert case_folder_name(reference) == folder
    assert_single_safe_component(folder)
    assert case_reference_from_folder(folder) == reference


def test_device_name_lookalikes_are_left_alone() -> None:
    assert case_folder_name("CONSTRUCT 1") == "CONSTRUCT 1"
    assert case_folder_name("COM10") == "COM10"


def test_non_latin_letters_are_escaped_for_unambiguous_display() -> None:
    assert case_folder_name("\u05d0 1") == "%D7%90 1"  # Hebrew would reorder the display
    assert case_folder_name("\u3164") == "%E3%85%A4"  # Hangul filler is invisible


@pytest.mark.parametrize(
    ("reference", "reason"),
    [
        ("", "empty"),
        ("   \t ", "empty"),
        ("1 K\x00 1234/25", "control-character"),
        ("1 K 1234/25\x1b[2J", "control-character"),
        ("1 K\u200b 1234/25", "control-character"),
        ("\u202e52/4321 K 1", "control-character"),
        ("x\ud800", "control-character"),
        ("A" * 10_000, "too-long"),
        ("/" * 51, "too-long"),
    ],
)
def test_unusable_references_are_rejected_with_a_reason(reference: str, reason: str) -> None:
    with pytest.raises(InvalidCaseReference) as info:
        case_folder_name(reference)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)


def test_names_are_never_truncated_but_the_limit_is_usable() -> None:
    assert case_folder_name("A" * MAX_FOLDER_NAME_BYTES) == "A" * MAX_FOLDER_NAME_BYTES
    with pytest.raises(InvalidCaseReference):
        case_folder_name("A" * (MAX_FOLDER_NAME_BYTES + 1))
    assert len(case_folder_name("/" * 50).encode()) == MAX_FOLDER_NAME_BYTES


# --- inverse -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "",
        "_unassigned",
        ".incoming",
        ".",
        "..",
        "1 K 1234/25",  # contains a separator: never produced
        "1 K 1234%2f25",  # lower-case hex is not canonical
        "1 K 1234%2F25%",  # dangling percent
        "a%41",  # needless escape
        "%C3",  # not UTF-8
        "%00",  # control character
        "CON",
        "trailing.",
        "x" * 151,
    ],
)
def test_folders_not_produced_by_the_mapping_are_not_case_folders(name: str) -> None:
    with pytest.raises(InvalidCaseReference) as info:
        case_reference_from_folder(name)
    assert info.value.reason == "not-a-case-folder"


def test_reserved_folders_are_recognised() -> None:
    assert is_reserved_folder("_unassigned")
    assert is_reserved_folder(".incoming")
    assert not is_reserved_folder("1 K 1234%2F25")
    assert not is_reserved_folder("%5Funassigned")


# --- properties ----------------------------------------------------------------------------

# Characters that make names interesting: separators, escapes, dots, look-alikes, controls.
_TRICKY = st.sampled_from(
    [
        *' ./\\%_-:*?"<>|KkAaZz019äÄßéłǀ\u00a0\u2013\u2215\uff0f\x00\x1f\u200b\u202e\u0301',
        *["CON", "nul", "LPT1", "%2F", "%25", "..", "Az. "],
    ]
)
_REFERENCES = st.one_of(st.text(), st.lists(_TRICKY, max_size=12).map("".join))


@given(_REFERENCES)
def test_folder_name_is_a_single_safe_component_or_rejected(reference: str) -> None:
    try:
        name = case_folder_name(reference)
    except InvalidCaseReference as exc:
        assert exc.reason in {"empty", "control-character", "too-long"}
        return
    assert_single_safe_component(name)
    assert unicodedata.is_normalized("NFC", name)


@given(_REFERENCES)
def test_folder_name_round_trips_to_the_normalised_reference(reference: str) -> None:
    try:
        name = case_folder_name(reference)
    except InvalidCaseReference:
        return
    assert case_reference_from_folder(name) == _normalised(reference)


@given(_REFERENCES, _REFERENCES)
def test_different_references_never_share_a_folder(a: str, b: str) -> None:
    assume(_normalised(a) != _normalised(b))
    try:
        name_a, name_b = case_folder_name(a), case_folder_name(b)
    except InvalidCaseReference:
        return
    assert name_a != name_b


@given(_REFERENCES)
def test_folder_name_is_stable_under_renormalisation(reference: str) -> None:
    try:
        name = case_folder_name(reference)
    except InvalidCaseReference:
        return
    assert case_folder_name(_normalised(reference)) == name


@given(st.one_of(st.text(), st.lists(_TRICKY, max_size=12).map("".join)))
def test_inverse_accepts_exactly_the_names_the_mapping_produces(name: str) -> None:
    try:
        reference = case_reference_from_folder(name)
    except InvalidCaseReference:
        return
    assert name in {case_folder_name(reference), case_folder_name(reference, slash="readable")}
