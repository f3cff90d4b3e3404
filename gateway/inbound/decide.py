"""From fetched bytes to a decision: parse, unwrap, route, apply policy. No I/O.

``analyse`` is a function of the bytes, the configuration and the time; it never raises
for any input (a bug or a hostile message ends as a quarantine plan with a reason), so
one bad message can never stop a batch. Fetching, writing and acknowledging happen in
``intake``, at the edges.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import structlog

from gateway.config import Config, PolicyConfig
from gateway.errors import SecurityError
from gateway.mime.message import ParsedMessage, Part, decode_parts, headers_only, parse_message
from gateway.receipts.match import ReceiptMatch
from gateway.receipts.model import MalformedReceipt, Receipt
from gateway.receipts.recognise import recognise
from gateway.routing.rules import RouteDecision, route
from gateway.unwrap import UnwrapContext, UnwrapEvent, unwrap
from gateway.unwrap.verdict import TimeSource, Verdict

log = structlog.get_logger("poststelle.pipeline")
Target = Literal["stored", "quarantined"]


@dataclass
class Plan:
    """Everything decided about one message before anything is written."""

    target: Target
    reasons: list[str]
    verdict: Verdict
    route: RouteDecision | None
    subject: str = ""
    from_addrs: list[str] = field(default_factory=list)
    message_id: str | None = None
    date: str | None = None
    parts: list[Part] = field(default_factory=list)
    decrypted: bytes | None = None
    unwrap_events: tuple[UnwrapEvent, ...] = ()
    signer_certificates: tuple[bytes, ...] = ()
    warnings: list[str] = field(default_factory=list)
    receipt: Receipt | MalformedReceipt | None = None  # a DSN, MDN or De-Mail confirmation, not a letter
    receipt_match: ReceiptMatch | None = None  # the sent document it is about (matched where the ledger is)


def _quarantine(plan_reasons: list[str], verdict: Verdict | None, **kw: object) -> Plan:
    base = verdict or Verdict("quarantined")
    v = dataclasses.replace(base, verdict="quarantined", reasons=tuple(dict.fromkeys([*base.reasons, *plan_reasons])))
    return Plan(target="quarantined", reasons=plan_reasons, verdict=v, route=kw.pop("route", None), **kw)  # type: ignore[arg-type]


def _policy_for(config: Config, decision: RouteDecision | None) -> PolicyConfig:
    if decision is not None and decision.policy is not None:
        return decision.policy
    return config.policy


def analyse(raw: bytes, config: Config, ctx: UnwrapContext, *, at: datetime, at_source: TimeSource = "given") -> Plan:
    """Decide what happens to ``raw``, judging signatures as of ``at`` (its arrival). Never raises."""
    try:
        return _analyse(raw, config, ctx, at, at_source)
    except Exception as exc:
        log.exception("analysis failed", error=type(exc).__name__)
        return _quarantine([f"processing-error:{type(exc).__name__}"], None)


def _analyse(raw: bytes, config: Config, ctx: UnwrapContext, at: datetime, at_source: TimeSource) -> Plan:
    try:
        outer = parse_message(raw, config.limits, decode=False)  # bodies decoded below, if they are the content
    except SecurityError as exc:
        head = headers_only(raw)
        return _quarantine(
            [exc.reason],
            None,
            warnings=[exc.detail] if exc.detail else [],
            subject=head.subject,
            from_addrs=head.from_addrs,
            message_id=head.message_id,
            date=head.date,
        )
    result = unwrap(raw, ctx, at=at, at_source=at_source)
    verdict = result.verdict
    subject = result.inner_subject if result.inner_subject is not None else outer.subject
    decision = route(subject, outer.from_addrs, config.routes, config.routing.unassigned, config.routing.folder_slash)
    common = {
        "subject": subject,
        "from_addrs": outer.from_addrs,
        "message_id": outer.message_id,
        "date": outer.date,
        "unwrap_events": result.events,
        "route": decision,
    }
    if verdict.verdict == "quarantined" or result.quarantine_reason:
        return _quarantine([result.quarantine_reason or "unwrap-failed"], verdict, **common)
    if verdict.demail is not None and verdict.demail.get("reasons"):
        # A De-Mail claiming "absenderbestätigt" that its provider's signature does not prove:
        # a forgery until someone looks.
        return _quarantine(list(verdict.demail["reasons"]), verdict, **common)
    content: ParsedMessage = outer
    decrypted = None
    if result.content != raw:
        decrypted = result.content
        try:
            content = parse_message(result.content, config.limits)
        except SecurityError as exc:
            return _quarantine([f"inner-{exc.reason}"], verdict, **common)
    else:
        decode_parts(outer)
    receipt = recognise(raw, result.content)
    if receipt is not None:
        # Evidence about a document we sent, not a letter: no routing by subject, no letter
        # policy. Where it goes is decided once it is matched (``receipt_plan``).
        return Plan(
            target="stored",
            reasons=[],
            verdict=verdict,
            signer_certificates=result.signer_certificates,
            parts=content.parts,
            decrypted=decrypted,
            warnings=content.warnings,
            receipt=receipt,
            **common,  # type: ignore[arg-type]
        )
    policy = _policy_for(config, decision)
    reasons: list[str] = []
    if policy.require_signature and not verdict.verified:
        reasons.append("policy-signature-required")
    if policy.require_encryption and verdict.encryption.status != "decrypted":
        reasons.append("policy-encryption-required")
    if decision.require_demail_authoritative and not (verdict.demail or {}).get("authoritative_proven"):
        reasons.append("policy-demail-authoritative-required")
    if decision.require_clean_identity and verdict.warnings:
        reasons.append("policy-clean-identity-required")
    if reasons:
        return _quarantine(reasons, verdict, parts=content.parts, decrypted=decrypted, **common)
    return Plan(
        target="stored",
        signer_certificates=result.signer_certificates,
        reasons=list(decision.reasons),
        verdict=verdict,
        parts=content.parts,
        decrypted=decrypted,
        warnings=content.warnings,
        **common,  # type: ignore[arg-type]
    )


def receipt_plan(plan: Plan, found: ReceiptMatch) -> Plan:
    """A recognised receipt's plan once matched: into its document's case, or quarantined with the reason."""
    if found.matched:
        assert found.case_folder is not None
        route = RouteDecision(found.case_ref, found.case_folder, f"receipt:{found.kind}", ("receipt-matched",))
        return dataclasses.replace(plan, route=route, receipt_match=found)
    assert found.problem is not None
    quarantined = _quarantine(
        [found.problem],
        plan.verdict,
        route=None,
        subject=plan.subject,
        from_addrs=plan.from_addrs,
        message_id=plan.message_id,
        date=plan.date,
        parts=plan.parts,
        decrypted=plan.decrypted,
        unwrap_events=plan.unwrap_events,
        warnings=[*plan.warnings, *found.ignored],
    )
    return dataclasses.replace(quarantined, receipt=plan.receipt, receipt_match=found)


def oversize_plan(head: bytes, size: int, limit: int) -> Plan:
    """The plan for a message the server says is larger than ``max_message_bytes``.

    Decided from its first bytes only (``head``: the header block, as far as it goes), so
    that the message itself never has to be in memory: its bytes are streamed to disk and
    kept, and it is quarantined with the reason ``parse_message`` gives too (``oversize``).
    """
    found = headers_only(head)
    return _quarantine(
        ["oversize"],
        None,
        warnings=[f"{size} bytes > limit {limit}"],
        subject=found.subject,
        from_addrs=found.from_addrs,
        message_id=found.message_id,
        date=found.date,
    )


def unsafe_folder_plan(plan: Plan, detail: str) -> Plan:
    """A stored plan whose case folder cannot be written safely (a link...), quarantined instead.

    Everything decided stays (verdict, route, parts), so a person can release the message
    once the folder is fixed; ``unsafe-case-folder`` is the reason, ``detail`` says what was
    found.
    """
    return _quarantine(
        ["unsafe-case-folder"],
        plan.verdict,
        route=plan.route,
        subject=plan.subject,
        from_addrs=plan.from_addrs,
        message_id=plan.message_id,
        date=plan.date,
        parts=plan.parts,
        decrypted=plan.decrypted,
        unwrap_events=plan.unwrap_events,
        warnings=[*plan.warnings, detail],
    )


__all__ = ["Plan", "analyse", "oversize_plan", "receipt_plan", "unsafe_folder_plan"]
