"""Routing by Aktenzeichen: realistic subjects, rule order, and safety for any subject."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import RouteConfig
from gateway.routing.rules import route

RULES = (
    RouteConfig(
        "ours in a reply",
        re.compile(r"(?i)\bIhr(?:e)?\s+(?:Zeichen|Az\.?)\s*:?\s*(?P<case>\d{2}-[A-Z]{2}-\d{4}-\d{3,5})"),
        "{case}",
    ),
    RouteConfig(
        "building", re.compile(r"(?i)\b(?:Az|Aktenzeichen|Gz)\.?\s*:?\s*(?P<case>\d{2}-BV-\d{4}-\d{3,5})"), "{case}"
    ),
    RouteConfig("court", re.compile(r"(?i)\bAz\.?\s*:?\s*(?P<case>\d{1,2}\s+[KL]\s+\d{1,5}/\d{2})"), "VG {case}"),
    RouteConfig(
        "court only from the court",
        re.compile(r"(?i)Ladung\s+(?P<case>\d+/\d+)"),
        "Ladung {case}",
        from_=re.compile(r"@vg\.example$"),
    ),
    RouteConfig("anything", re.compile(r"(?i)\bAz\.?\s*:?\s*(?P<case>\S.{0,300})$"), "{case}"),
)


@pytest.mark.parametrize(
    ("subject", "case", "rule"),
    [
        ("Bauantrag Az.: 63-BV-2026-0147", "63-BV-2026-0147", "building"),
        ("RE: AW: WG: Az 63-BV-2026-0147 Nachreichung", "63-BV-2026-0147", "building"),
        ("Aktenzeichen 63–BV–2026–0147", "63-BV-2026-0147", "building"),  # en dashes
        ("Az.:\u00a063\u2011BV\u20112026\u20110147", "63-BV-2026-0147", "building"),  # NBSP, non-breaking hyphen
        ("Az. ６３-BV-２０２６-０１４７", "63-BV-2026-0147", "building"),  # full-width digits
        ("AW: Ihr Zeichen: 63-BV-2026-0001, Unser Zeichen: 63-BV-2026-0999", "63-BV-2026-0001", "ours in a reply"),
        ("Ladung Az. 1 K 1234/25", "VG 1 K 1234/25", "court"),
        ("Beschluss Az.:  3   L 456/26", "VG 3 L 456/26", "court"),
    ],
)
def test_realistic_subjects_route_to_their_case(subject: str, case: str, rule: str) -> None:
    decision = route(subject, ["a@example.org"], RULES, "_unassigned")
    assert (decision.case_ref, decision.rule) == (case, rule)


def test_sender_restricted_rule_applies_only_to_that_sender() -> None:
    assert route("Ladung 12/25", ["post@vg.example"], RULES, "_u").rule == "court only from the court"
    assert route("Ladung 12/25", ["someone@else.example"], RULES, "_u").rule is None


def test_no_match_goes_to_unassigned_with_reason() -> None:
    d = route("Einladung Sommerfest", ["a@example.org"], RULES, "_unassigned")
    assert (d.case_folder, d.reasons) == ("_unassigned", ("no-rule-matched",))


def test_unusable_reference_falls_back_to_unassigned_with_reason() -> None:
    d = route("Az. " + "A" * 200, ["a@example.org"], RULES, "_unassigned")
    assert (d.case_folder, d.reasons) == ("_unassigned", ("invalid-case-reference:too-long",))


@given(st.text(max_size=400), st.lists(st.emails() | st.text(max_size=30), max_size=3))
def test_any_subject_routes_to_a_single_safe_folder(subject: str, senders: list[str]) -> None:
    d = route(subject, senders, RULES, "_unassigned")
    name = d.case_folder
    assert name not in ("", ".", "..") and "/" not in name and "\x00" not in name
    base = Path("/cases")
    assert os.path.normpath(base / name).startswith("/cases/")
    assert (d.case_ref is None) == (name == "_unassigned")
    assert d.case_ref is None or not name.startswith("_")


@given(st.text(min_size=1, max_size=60), st.text(min_size=1, max_size=60))
def test_different_references_never_share_a_folder(a: str, b: str) -> None:
    da = route(f"Az. {a}", [], RULES, "_u")
    db = route(f"Az. {b}", [], RULES, "_u")
    if da.case_ref and db.case_ref and da.case_ref != db.case_ref:
        assert da.case_folder != db.case_folder
