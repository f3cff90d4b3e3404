"""What the intake records about a message: its audit events and its entry's manifest.

Pure functions of the ledger record and the plan, so that the shape of every event an
auditor reads is in one place and the intake keeps only the order of things.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.inbound.decide import Plan
from gateway.records.chain import AuditEvent
from gateway.records.messages import MessageRecord
from gateway.ui.reasons import signature_state


def message_key(rec: MessageRecord) -> dict[str, Any]:
    """Where the message was on the server: the fetch key of every server-side event."""
    return {"mailbox": rec.mailbox, "folder": rec.folder, "uidvalidity": rec.uidvalidity, "uid": rec.uid}


def fetched_event(rec: MessageRecord) -> AuditEvent:
    return AuditEvent(
        "fetched",
        message=rec.id,
        details={
            **message_key(rec),
            "sha256": rec.sha256,
            "size": rec.size,
            "message_id": rec.message_id,
            "received": rec.internaldate,  # the arrival (INTERNALDATE, server's offset); None if not given
            "fetched": rec.fetched_at,
        },
    )


def duplicate_event(rec: MessageRecord) -> AuditEvent:
    return AuditEvent(
        "duplicate",
        message=rec.id,
        case=rec.case_ref,
        details={"duplicate_of": rec.duplicate_of, "sha256": rec.sha256},
    )


def abandoned_event(rec: MessageRecord) -> AuditEvent:
    """An intent whose entry was never published: the message stays on the server."""
    return AuditEvent(
        "processing-abandoned",
        message=rec.id,
        details={"reason": "interrupted before the entry was complete; will fetch again", **message_key(rec)},
    )


def server_moved_events(recs: Sequence[MessageRecord], details: dict[str, Any]) -> list[AuditEvent]:
    """One ``moved`` event per message; ``details`` says where to and how."""
    return [AuditEvent("moved", message=r.id, case=r.case_ref, details={**details, **message_key(r)}) for r in recs]


def reconciled_events(recs: Sequence[MessageRecord]) -> list[AuditEvent]:
    """Moves that happened just before a crash, found because the server no longer has them."""
    return server_moved_events(recs, {"reconciled": True, "note": "no longer in the folder"})


def stored_event(rec: MessageRecord, root: Path, *, recovered: bool = False) -> AuditEvent:
    """``stored`` or ``quarantined``, with the entry's path relative to ``root`` and its manifest hash."""
    details: dict[str, Any] = {
        "path": str(Path(rec.path or "").relative_to(root)) if rec.path else None,
        "manifest_sha256": rec.manifest_sha256,
    }
    if rec.state == "quarantined":
        details["reasons"] = rec.reasons
    if recovered:
        details["recovered"] = True
    return AuditEvent(
        "quarantined" if rec.state == "quarantined" else "stored",
        message=rec.id,
        case=rec.case_ref,
        correspondent=rec.from_addr,
        details=details,
    )


def outcome_events(rec: MessageRecord, plan: Plan, root: Path) -> list[AuditEvent]:
    """What unwrapping found, the verdict, the route and where the entry went, in that order."""
    events = [
        AuditEvent(e.type, message=rec.id, case=rec.case_ref, correspondent=rec.from_addr, details=dict(e.details))
        for e in plan.unwrap_events
    ]
    events.append(
        AuditEvent(
            "verdict",
            message=rec.id,
            case=rec.case_ref,
            correspondent=rec.from_addr,
            details=plan.verdict.to_json(),
        )
    )
    if plan.route is not None:
        events.append(
            AuditEvent(
                "routed",
                message=rec.id,
                case=rec.case_ref,
                correspondent=rec.from_addr,
                details={**plan.route.to_json(), "subject": rec.subject},
            )
        )
    if plan.receipt_match is not None:
        found = plan.receipt_match
        events.append(
            AuditEvent(
                "receipt-matched" if found.matched else "receipt-unmatched",
                message=rec.id,
                case=found.case_ref,
                document=found.document_id,
                correspondent=rec.from_addr,
                details=found.to_json(),
            )
        )
    events.append(stored_event(rec, root))
    return events


def certificate_event(rec: MessageRecord, digest: str) -> AuditEvent:
    """A verified signer's certificate kept for replies (never a trust anchor)."""
    return AuditEvent(
        "certificate-collected",
        message=rec.id,
        correspondent=rec.from_addr,
        details={"sha256": digest, "store": "smime"},
    )


def manifest_metadata(rec: MessageRecord, plan: Plan) -> dict[str, Any]:
    """The message facts in ``manifest.json``, next to the files' hashes."""
    return {
        "id": rec.id,
        "mailbox": rec.mailbox,
        "folder": rec.folder,
        "uidvalidity": rec.uidvalidity,
        "uid": rec.uid,
        "received": rec.internaldate,
        "fetched": rec.fetched_at or None,
        "sha256": rec.sha256,
        "size": rec.size,
        "message_id": rec.message_id,
        "subject": plan.subject,
        "from": plan.from_addrs,
        "date": plan.date,
        "case_reference": rec.case_ref,
        "case_folder": rec.case_folder,
        "route": plan.route.to_json() if plan.route else None,
        "state": plan.target,
        "reasons": rec.reasons,
        "verdict": plan.verdict.verdict,
        "signature": _signature(plan),
        "warnings": list(plan.verdict.warnings),
        **({"receipt": plan.receipt_match.to_json()} if plan.receipt_match is not None else {}),
        **({"demail": _demail_summary(plan.verdict.demail)} if plan.verdict.demail is not None else {}),
    }


def _demail_summary(demail: dict[str, Any]) -> dict[str, Any]:
    """What a clerk needs of the De-Mail check in the manifest (the full check is in verification.json)."""
    meta = demail.get("meta") or {}
    return {
        "integrity": demail.get("integrity"),
        "authoritative": demail.get("authoritative"),
        "authoritative_proven": demail.get("authoritative_proven"),
        "private": meta.get("private"),
        "private_id": meta.get("private_id"),
        "message_type": meta.get("message_type"),
        "provider_certificate_sha256": demail.get("provider_certificate_sha256"),
        "reasons": demail.get("reasons") or [],
    }


def _signature(plan: Plan) -> dict[str, Any]:
    state = signature_state(plan.verdict.to_json())
    assert state is not None  # a verdict always has a signature status
    return state.to_json()


def outcome_log_fields(rec: MessageRecord, plan: Plan) -> dict[str, Any]:
    """The intake's log line for a decided message: the verdict and every reason, in codes and words.

    ``reasons`` holds the verdict's reasons (why it is not verified) and the plan's (routing,
    policy, quarantine), so a bad signature is never logged as ``reasons=[]``.
    """
    verdict = plan.verdict.to_json()
    state = signature_state(verdict)
    return {
        "uid": rec.uid,
        "msg": rec.id,
        "case": rec.case_ref,
        "verdict": plan.verdict.verdict,
        "signature": state.text() if state is not None else None,
        "reasons": list(dict.fromkeys([*plan.verdict.reasons, *rec.reasons])),
    }
