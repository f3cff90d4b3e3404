"""Explain routing without filing anything: which rule takes a subject, and why the others do not.

A clerk who writes a rule wants to know *before* the next message arrives whether
``AW: Ihr Az. 32-1234/2026`` lands in the right case. :func:`explain` tries every rule on
its own and reports its outcome; the decision itself comes from :func:`rules.route`, the
very function intake uses, so the dry run cannot drift from what filing does.

:data:`SAMPLE_SUBJECTS` are subjects in the shapes documented for real correspondence
(``case-references`` design note, ``docs/case-folders.md``); ``poststelle check`` warns
about a rule none of them reaches, which usually means a typo in its pattern.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.config import RouteConfig
from gateway.routing.casenames import InvalidCaseReference, case_folder_name
from gateway.routing.rules import RouteDecision, route
from gateway.routing.subject import normalise_for_matching

__all__ = ["SAMPLE_SUBJECTS", "RouteExplanation", "RuleTrial", "explain", "rules_matching_no_sample"]

MATCHED = "matched"
FROM_NO_MATCH = "from-no-match"
FROM_AMBIGUOUS = "from-ambiguous"
SUBJECT_NO_MATCH = "subject-no-match"
TEMPLATE_FAILED = "case-template-failed"
INVALID_REFERENCE = "invalid-case-reference"

SAMPLE_SUBJECTS: tuple[str, ...] = (
    "Bauantrag Az.: 63-BV-2026-0147",
    "RE: AW: WG: Az 63-BV-2026-0147 Nachreichung",
    "AW: Ihr Zeichen: 63-BV-2026-0001, Unser Zeichen: 63-BV-2026-0999",
    "AW: Ihr Az. 32-1234/2026",
    "Az.: 32.1-4711/2026 Stellungnahme",
    "Gz. 32 12 05/2026 Anhörung",
    "Unser Zeichen FB2/StA-123",
    "Aktenzeichen II-3.4 - 0815/26",
    "Ladung Az. 1 K 1234/25",
    "Beschluss Az.: 3 L 456/26",
    "Klage Az. 5 C 1234/25",
    "Urteil VI ZR 123/25",
    "Fwd: Geschäftszeichen 63–BV–2026–0147",
)
"""Realistic subjects (references, labels, reply prefixes, an en dash) for the rule check."""


@dataclass(frozen=True)
class RuleTrial:
    """One rule tried on its own against the subject and sender."""

    rule: str
    outcome: str  # MATCHED or one of the reasons above
    case_ref: str | None = None
    case_folder: str | None = None
    detail: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "outcome": self.outcome,
            "case_reference": self.case_ref,
            "case_folder": self.case_folder,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class RouteExplanation:
    subject: str
    matching_text: str  # what the regexes see (folded)
    decision: RouteDecision
    trials: tuple[RuleTrial, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "matching_text": self.matching_text,
            "decision": self.decision.to_json(),
            "rules": [t.to_json() for t in self.trials],
        }


def try_rule(rule: RouteConfig, text: str, from_addrs: Sequence[str], slash: str = "percent") -> RuleTrial:
    """``text`` is the folded subject; mirrors the steps of :func:`rules.route` for one rule."""
    if rule.from_ is not None:
        if len(from_addrs) != 1:
            n = len(from_addrs)
            detail = "no sender given" if n == 0 else f"{n} From addresses; the from pattern needs exactly one"
            return RuleTrial(rule.name, FROM_AMBIGUOUS, detail=detail)
        if not rule.from_.search(from_addrs[0]):
            return RuleTrial(rule.name, FROM_NO_MATCH, detail=f"from {rule.from_.pattern!r}")
    m = rule.subject.search(text)
    if m is None:
        return RuleTrial(rule.name, SUBJECT_NO_MATCH, detail=f"subject {rule.subject.pattern!r}")
    groups = {k: (v or "") for k, v in m.groupdict().items()}
    try:
        reference = normalise_for_matching(rule.case.format(**groups))
    except (KeyError, IndexError, ValueError) as exc:
        return RuleTrial(rule.name, TEMPLATE_FAILED, detail=f"case {rule.case!r}: {exc!r}")
    try:
        folder = case_folder_name(reference, slash=slash)
    except InvalidCaseReference as exc:
        return RuleTrial(rule.name, INVALID_REFERENCE, reference, detail=exc.reason)
    return RuleTrial(rule.name, MATCHED, reference, folder)


def explain(
    subject: str, from_addrs: Sequence[str], rules: Sequence[RouteConfig], unassigned: str, slash: str = "percent"
) -> RouteExplanation:
    """Every rule's outcome plus the decision intake would make (first matching rule wins).

    A rule whose patterns match but whose reference is invalid still *takes* the message
    (to ``unassigned``, with the reason), exactly as in :func:`rules.route`; later rules are
    reported but do not get it.
    """
    text = normalise_for_matching(subject)
    trials = tuple(try_rule(rule, text, from_addrs, slash) for rule in rules)
    try:
        decision = route(subject, from_addrs, rules, unassigned, slash)
    except (KeyError, IndexError, ValueError):
        # Only rules built in code get here: loading a config rejects a template naming a
        # group the pattern lacks. Show the failing rule instead of a traceback.
        failed = next(t for t in trials if t.outcome == TEMPLATE_FAILED)
        decision = RouteDecision(None, unassigned, failed.rule, (TEMPLATE_FAILED,))
    return RouteExplanation(subject, text, decision, trials)


def rules_matching_no_sample(rules: Sequence[RouteConfig], samples: Sequence[str] = SAMPLE_SUBJECTS) -> list[str]:
    """Names of rules whose subject pattern matches none of ``samples`` (sender ignored)."""
    folded = [normalise_for_matching(s) for s in samples]
    return [r.name for r in rules if not any(r.subject.search(t) for t in folded)]
