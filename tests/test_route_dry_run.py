"""``poststelle route test`` and the rule check: a clerk sees where a subject goes before mail arrives."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from conftest import POSTSTELLE, REPO, ROUTES, Env, mailbox_entry, write_config
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import RouteConfig
from gateway.routing.dryrun import SAMPLE_SUBJECTS, explain, rules_matching_no_sample
from gateway.routing.rules import route

RULES = (
    RouteConfig("ours", re.compile(r"(?i)\bIhr\s+Az\.?\s*:?\s*(?P<case>\d{2}-\d{4}/\d{4})"), "{case}"),
    RouteConfig(
        "court",
        re.compile(r"(?i)\bAz\.?\s*:?\s*(?P<case>\d{1,2}\s+[KL]\s+\d{1,5}/\d{2})"),
        "VG {case}",
        from_=re.compile(r"@vg\.example$"),
    ),
    RouteConfig("raw", re.compile(r"(?i)\bAz\.?\s*:?\s*(?P<case>\S.{0,300})$"), "{case}"),
    RouteConfig("broken template", re.compile(r"Vorgang (?P<n>\d+)"), "{missing}"),
)


def outcomes(subject: str, from_addrs: list[str]) -> dict[str, str]:
    return {t.rule: t.outcome for t in explain(subject, from_addrs, RULES, "_unassigned").trials}


def test_dry_run_names_the_matching_rule_reference_and_folder() -> None:
    result = explain("AW: Ihr Az. 32-1234/2026", ["a@example.org"], RULES, "_unassigned")
    assert result.decision.rule == "ours"
    assert result.decision.case_ref == "32-1234/2026"
    assert result.decision.case_folder == result.trials[0].case_folder == "32-1234%2F2026"


def test_dry_run_says_why_each_other_rule_did_not_take_the_subject() -> None:
    assert outcomes("Ladung Az. 1 K 1234/25", ["post@other.example"]) == {
        "ours": "subject-no-match",
        "court": "from-no-match",
        "raw": "matched",
        "broken template": "subject-no-match",
    }
    assert outcomes("Ladung Az. 1 K 1234/25", [])["court"] == "from-ambiguous"
    assert outcomes("Vorgang 12", [])["broken template"] == "case-template-failed"


def test_dry_run_reports_an_unsafe_reference_as_unassigned_with_the_reason() -> None:
    result = explain("Az. " + "9" * 200, ["a@example.org"], RULES[:3], "_unassigned")
    assert result.trials[2].outcome == "invalid-case-reference"
    assert result.trials[2].detail == "too-long"
    assert result.decision.case_folder == "_unassigned"
    assert result.decision.reasons == ("invalid-case-reference:too-long",)


def test_dry_run_without_any_match_names_the_unassigned_folder() -> None:
    result = explain("Einladung Sommerfest", ["a@example.org"], RULES[:3], "_unassigned")
    assert result.decision.case_folder == "_unassigned"
    assert [t.outcome for t in result.trials] == ["subject-no-match", "from-no-match", "subject-no-match"]


@given(st.text(max_size=80), st.sampled_from([[], ["a@vg.example"], ["b@example.org"], ["a@x", "b@y"]]))
def test_dry_run_decision_is_the_first_rule_whose_patterns_match(subject: str, from_addrs: list[str]) -> None:
    rules = RULES[:3]
    result = explain(subject, from_addrs, rules, "_u")
    assert result.decision == route(subject, from_addrs, rules, "_u")
    first = next((t for t in result.trials if t.outcome in ("matched", "invalid-case-reference")), None)
    assert result.decision.rule == (first.rule if first else None)
    if first is not None and first.outcome == "matched":
        assert (result.decision.case_ref, result.decision.case_folder) == (first.case_ref, first.case_folder)


def test_rule_check_flags_only_rules_that_match_no_sample_subject() -> None:
    typo = RouteConfig("typo", re.compile(r"Aktenzeichne (?P<case>\d+)"), "{case}")
    assert rules_matching_no_sample([*RULES[:3], typo]) == ["typo"]
    assert len(SAMPLE_SUBJECTS) >= 10


def test_route_test_command_prints_rule_case_and_folder(tmp_path: Path) -> None:
    path = write_config(tmp_path, [])
    proc = subprocess.run(
        [*POSTSTELLE, "route", "test", "AW: Ihr Zeichen: 63-BV-2026-0001", "--config", str(path)],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "rule 'reply with our reference': case 63-BV-2026-0001  (folder 63-BV-2026-0001)" in proc.stdout
    assert "subject-no-match" in proc.stdout or "matched" in proc.stdout


def test_route_test_command_json_for_a_court_reference_with_sender(tmp_path: Path) -> None:
    path = write_config(tmp_path, [])
    proc = subprocess.run(
        [*POSTSTELLE, "route", "test", "Ladung Az. 1 K 1234/25", "--from", "post@vg.example", "--json",
         "--config", str(path)],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["decision"] == {
        "rule": "court",
        "case_reference": "VG 1 K 1234/25",
        "case_folder": "VG 1 K 1234%2F25",
        "reasons": [],
    }
    assert [r["outcome"] for r in doc["rules"]][:3] == ["subject-no-match", "subject-no-match", "matched"]


def test_check_warns_about_a_rule_no_sample_subject_reaches_without_failing(env: Env) -> None:
    typo = '\n[[route]]\nname = "typo"\nsubject = \'Aktenzeichne (?P<case>\\d+)\'\ncase = "{case}"\n'
    write_config(env.root, [mailbox_entry(env.dovecot, env.user, env.root)], routes=ROUTES + typo)
    proc = env.cli("check", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(proc.stdout)
    routes = [r for r in rows if r["check"] == "routes"]
    assert [(r["target"], r["result"]) for r in routes] == [("typo", "WARNING")]
