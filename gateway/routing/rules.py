"""Routing: which case a message belongs to, decided from its subject and sender.

A pure function of the (untrusted) subject text and the configured rules, so that it can
be property-tested. Rules are tried in order and the first whose patterns match wins; the
case reference comes from the rule's template over the regex's named groups and becomes
a folder name through ``casenames.case_folder_name`` (injective, cannot escape
``cases_dir``). A reference that cannot be made safe falls back to the unassigned folder
with the reason recorded, never to a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.config import PolicyConfig, RouteConfig
from gateway.routing.casenames import InvalidCaseReference, case_folder_name
from gateway.routing.subject import normalise_for_matching


@dataclass(frozen=True)
class RouteDecision:
    """Where a message goes and why."""

    case_ref: str | None  # the reference as produced by the rule (None: unassigned)
    case_folder: str  # folder name under cases_dir
    rule: str | None  # the rule's name (None: no rule matched)
    reasons: tuple[str, ...] = ()
    policy: PolicyConfig | None = None  # the matched rule's policy override
    require_clean_identity: bool = False  # the matched rule refuses identity warnings
    require_demail_authoritative: bool = False  # the matched rule takes only proven authoritative De-Mails

    @property
    def assigned(self) -> bool:
        return self.case_ref is not None

    def to_json(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "case_reference": self.case_ref,
            "case_folder": self.case_folder,
            "reasons": list(self.reasons),
        }


def route(
    subject: str, from_addrs: Sequence[str], rules: Sequence[RouteConfig], unassigned: str, slash: str = "percent"
) -> RouteDecision:
    """First matching rule wins; no match (or an unsafe reference) goes to ``unassigned``.

    ``slash``: the installation's folder-name style for ``/`` (``casenames.case_folder_name``).
    """
    text = normalise_for_matching(subject)
    sender = from_addrs[0] if len(from_addrs) == 1 else ""
    for rule in rules:
        if rule.from_ is not None and not rule.from_.search(sender):
            continue
        m = rule.subject.search(text)
        if m is None:
            continue
        groups = {k: (v or "") for k, v in m.groupdict().items()}
        reference = normalise_for_matching(rule.case.format(**groups))
        try:
            folder = case_folder_name(reference, slash=slash)
        except InvalidCaseReference as exc:
            return RouteDecision(None, unassigned, rule.name, (f"invalid-case-reference:{exc.reason}",))
        return RouteDecision(
            reference,
            folder,
            rule.name,
            (),
            rule.policy,
            rule.require_clean_identity,
            rule.require_demail_authoritative,
        )
    return RouteDecision(None, unassigned, None, ("no-rule-matched",))
