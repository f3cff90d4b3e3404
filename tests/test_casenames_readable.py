"""The readable slash style (``[routing] folder_slash = "readable"``): ``1 K 1234∕25``.

The same properties as the percent style (tests/test_casenames.py): one safe component,
injective, round trip; and both styles' names of a reference lead back to it. Against real
Dovecot: an installation that chose the style files, shows and verifies with it.
"""

from __future__ import annotations

import json
import unicodedata

import pytest
from conftest import ROUTES, Env, mailbox_entry, write_config
from hypothesis import assume, given
from hypothesis import strategies as st
from support.audit import file_correspondence, verify
from test_casenames import _REFERENCES, _TRICKY, _normalised, assert_single_safe_component

from gateway.routing.casenames import InvalidCaseReference, case_folder_name, case_reference_from_folder

READABLE_ROUTES = ROUTES + '\n[routing]\nfolder_slash = "readable"\n'


def readable(reference: str) -> str:
    return case_folder_name(reference, slash="readable")


@pytest.mark.parametrize(
    ("reference", "folder"),
    [
        ("1 K 1234/25", "1 K 1234∕25"),
        ("VI ZR 123/25", "VI ZR 123∕25"),
        ("FB2/StA-123", "FB2∕StA-123"),
        ("II-3.4 - 0815/26", "II-3.4 - 0815∕26"),
        ("63-BV-2026-0147", "63-BV-2026-0147"),
        ("1 K 1234∕25", "1 K 1234%E2%88%9525"),  # a division slash in the reference stays escaped
        ("1 K 1234%2F25", "1 K 1234%252F25"),
        ("12/", "12∕"),
    ],
)
def test_readable_style_shows_slashes_as_division_slashes(reference: str, folder: str) -> None:
    assert readable(reference) == folder
    assert case_reference_from_folder(folder) == reference


def test_a_reference_with_slash_and_one_with_division_slash_stay_apart() -> None:
    assert readable("1 K 1234/25") != readable("1 K 1234\u221525")
    assert readable("1 K 1234/25") != readable("1 K 1234\uff0f25")


def test_both_styles_of_one_reference_lead_back_to_it() -> None:
    assert case_reference_from_folder("VG 1 K 1234%2F25") == case_reference_from_folder("VG 1 K 1234∕25")


def test_mixed_styles_in_one_name_are_not_a_case_folder() -> None:
    with pytest.raises(InvalidCaseReference):
        case_reference_from_folder("1∕2%2F3")


def test_division_slash_survives_every_unicode_normalisation() -> None:
    name = readable("1 K 1234/25")
    for form in ("NFC", "NFD", "NFKC", "NFKD"):
        assert unicodedata.normalize(form, name) == name


@given(_REFERENCES)
def test_readable_name_is_a_single_safe_component_or_rejected(reference: str) -> None:
    try:
        name = readable(reference)
    except InvalidCaseReference:
        return
    assert_single_safe_component(name)
    assert case_reference_from_folder(name) == _normalised(reference)


@given(_REFERENCES, _REFERENCES)
def test_readable_names_of_different_references_differ(a: str, b: str) -> None:
    assume(_normalised(a) != _normalised(b))
    try:
        name_a, name_b = readable(a), readable(b)
    except InvalidCaseReference:
        return
    assert name_a != name_b


@given(st.lists(_TRICKY, max_size=12).map("".join), st.lists(_TRICKY, max_size=12).map("".join))
def test_no_readable_name_equals_another_references_percent_name(a: str, b: str) -> None:
    """A folder left from the other style can never be taken for a different case."""
    assume(_normalised(a) != _normalised(b))
    try:
        assert readable(a) != case_folder_name(b)
    except InvalidCaseReference:
        return


def test_an_installation_with_readable_folders_files_and_verifies_against_dovecot(env: Env) -> None:
    write_config(env.root, [mailbox_entry(env.dovecot, env.user, env.root)], routes=READABLE_ROUTES)
    file_correspondence(env)
    assert "VG 1 K 1234∕25" in {p.parent.name for p in env.entries()}
    rc, report = verify(env)
    assert rc == 0, report["breaks"]
    shown = env.cli("cases", "show", "VG 1 K 1234/25", "--json", check=True)
    assert json.loads(shown.stdout)["case_folder"] == "VG 1 K 1234∕25"
    dry = json.loads(env.cli("route", "test", "Ladung Az. 1 K 1234/25", "--json", check=True).stdout)
    assert dry["decision"]["case_folder"] == "VG 1 K 1234∕25"


def test_check_warns_when_folders_of_the_other_style_exist(env: Env) -> None:
    file_correspondence(env)  # percent style: "VG 1 K 1234%2F25"
    write_config(env.root, [mailbox_entry(env.dovecot, env.user, env.root)], routes=READABLE_ROUTES)
    rows = json.loads(env.cli("check", "--json").stdout)
    (row,) = [r for r in rows if r["target"] == "folder_slash"]
    assert row["result"] == "WARNING" and "VG 1 K 1234%2F25" in row["detail"]
