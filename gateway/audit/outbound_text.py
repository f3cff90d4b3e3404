"""The outbox's audit events in one sentence each, for the text, CSV and HTML reports.

Outbox events carry the outbox id as ``document`` and no ``message``; ``held``,
``released`` and ``bounced`` share their names with other events, so ``describe`` asks
here first for entries of that shape. What was sent to whom and what the relay answered
is in the sentences, so a case's report answers it without the details column.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.records.chain import AuditEntry
from gateway.ui import Locale


def _d(e: AuditEntry, key: str) -> str:
    value = e.details.get(key)
    return "?" if value is None else str(value)


def _replies(e: AuditEntry) -> str:
    replies: Any = e.details.get("replies") or {}
    if not isinstance(replies, dict):
        return "?"
    return "; ".join(f"{rcpt}: {reply}" for rcpt, reply in sorted(replies.items())) or "?"


def _who(actor: str, lc: Locale) -> str:
    from gateway.audit.report import actor_text

    return actor_text(actor, lc)


def _note(text: str, e: AuditEntry, lc: Locale) -> str:
    note = e.details.get("note")
    return text + lc.t("; note: {note}", note=note) if note else text


def _recipients(e: AuditEntry) -> str:
    found: Any = e.details.get("recipients") or []
    return ", ".join(str(r) for r in found) if isinstance(found, list) else "?"


#: What proves a delivery step, in words (``receipts.model.EvidenceKind``).
EVIDENCE_KINDS = {
    "dsn": "delivery status notification",
    "mdn": "return receipt",
    "demail": "De-Mail confirmation",
    "relay": "the relay's reply",
    "outbox": "the outbox",
}

#: Why a step left the state as it was (``records.deliveries.OutcomeKind``), in words.
OUTCOMES = {
    "same": "confirmed again",
    "delayed": "a delay notice",
    "ignored-backwards": "an earlier step, arrived late",
    "contradictory": "contradicts the recorded state",
    "not-ours": "not one of our documents",
}


def state_words(state: str, lc: Locale) -> str:
    """A delivery state in words (``outbound_view.DELIVERY_STATES``); unknown ones as recorded."""
    from gateway.audit.outbound_view import DELIVERY_STATES

    return lc.t(DELIVERY_STATES.get(state, state))


def _delivery(e: AuditEntry, lc: Locale) -> str:
    """A delivery step: what it named and its evidence; when the state stayed, which and why."""
    found: Any = e.details.get("evidence")
    evidence: dict[str, Any] = found if isinstance(found, dict) else {}
    kind = str(evidence.get("kind") or "?")
    text = lc.t(
        "Delivery to {recipient}: {state} (evidence: {kind}, {evidence})",
        recipient=_d(e, "recipient"),
        state=state_words(_d(e, "step"), lc),
        kind=lc.t(EVIDENCE_KINDS.get(kind, kind)),
        evidence=evidence.get("path") or evidence.get("detail") or "-",
    )
    outcome = _d(e, "outcome")
    if outcome not in ("advanced", "failed"):
        text += lc.t(
            "; the state stays {state} ({outcome})",
            state=state_words(_d(e, "to"), lc),
            outcome=lc.t(OUTCOMES.get(outcome, outcome)),
        )
    return text


OUTBOUND: dict[str, Callable[[AuditEntry, Locale], str]] = {
    "queued": lambda e, lc: lc.t(
        "Queued for sending to {recipients} (Message-ID {message_id})",
        recipients=_recipients(e),
        message_id=_d(e, "message_id"),
    ),
    "submitted": lambda e, lc: lc.t(
        "Handed to the relay for {recipients}; it answered: {replies}", recipients=_recipients(e), replies=_replies(e)
    ),
    "deferred": lambda e, lc: lc.t(
        "The relay deferred it ({replies}); next attempt at {next}", replies=_replies(e), next=_d(e, "next_attempt_at")
    ),
    "bounced": lambda e, lc: lc.t(
        "Not delivered to {recipients}: {replies}", recipients=_recipients(e), replies=_replies(e)
    ),
    "resent": lambda e, lc: lc.t(
        "Sent again: the relay's answer to the last attempt was lost (same Message-ID {message_id})"
        if e.details.get("reason") == "reply-lost"
        else "Sent again after a crash (same Message-ID {message_id})",
        message_id=_d(e, "message_id"),
    ),
    "held": lambda e, lc: _note(lc.t("Stopped in the outbox by {actor}", actor=_who(e.actor, lc)), e, lc),
    "released": lambda e, lc: _note(lc.t("Released from the outbox hold by {actor}", actor=_who(e.actor, lc)), e, lc),
    "retry-requested": lambda e, lc: _note(lc.t("Retry requested by {actor}", actor=_who(e.actor, lc)), e, lc),
    "cancelled": lambda e, lc: _note(lc.t("Withdrawn from the outbox by {actor}", actor=_who(e.actor, lc)), e, lc),
    "filed-sent": lambda e, lc: lc.t("The sent copy was filed in {path}", path=_d(e, "path")),
    "copied-to-sent-folder": lambda e, lc: lc.t("Copied to the mailbox folder {folder}", folder=_d(e, "folder")),
    "disk-full": lambda e, lc: lc.t(
        "The disk is full at {path}: the sent copy is filed once there is room again", path=_d(e, "path")
    ),
    "delivery-state": _delivery,
}


def describe_outbound(e: AuditEntry, lc: Locale) -> str | None:
    """The sentence for an outbox event, or None when ``e`` is not one."""
    if e.document is None or e.message is not None:
        return None
    fn = OUTBOUND.get(e.event)
    return fn(e, lc) if fn is not None else None
