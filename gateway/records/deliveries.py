"""What the gateway records about the delivery of one document to one recipient, as plain values.

A delivery record is keyed by (document, recipient): the outbox id and the envelope
address. Its ``state`` is decided by ``gateway.receipts.deliveries.advance``; its
``timeline`` keeps every step ever applied, with its evidence, including the steps that
did not change the state (a delayed notice, a receipt arriving out of order, a
contradiction), because a receipt is evidence and must not be lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.receipts.model import DeliveryState, EvidenceKind

#: What applying one step did to its record (see ``gateway.receipts.deliveries``).
OutcomeKind = Literal[
    "advanced",  # the state moved forward to the step's state
    "same",  # the step confirms the state the record is in
    "delayed",  # a delay notice: kept, state unchanged
    "failed",  # the record failed (from a state before delivery)
    "ignored-backwards",  # the step names an earlier state than the record's: kept, state unchanged
    "contradictory",  # failure after delivery, or progress after failure: kept, state unchanged
    "not-ours",  # no such document or recipient: nothing recorded
]
OUTCOME_KINDS: tuple[OutcomeKind, ...] = (
    "advanced",
    "same",
    "delayed",
    "failed",
    "ignored-backwards",
    "contradictory",
    "not-ours",
)


@dataclass(frozen=True)
class Evidence:
    """What proves a step: its kind, the stored file (relative to ``cases_dir``) and its sha256.

    ``detail`` is the part of the evidence a person reads first: a DSN's Status and
    Diagnostic-Code, an MDN's disposition, the relay's reply.
    """

    kind: EvidenceKind
    path: str | None = None
    sha256: str | None = None
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "sha256": self.sha256, "detail": self.detail}


@dataclass(frozen=True)
class DeliveryStep:
    """One piece of evidence about one (document, recipient): the state it names and when.

    ``at`` is the moment the evidence states (the relay's answer, a DSN's arrival date, a
    confirmation's Time or DeliveryTime); ``received_at`` is when the evidence reached the
    gateway, when that differs (a confirmation read from the mailbox later).
    """

    document_id: str
    recipient: str
    state: DeliveryState
    at: str
    evidence: Evidence
    received_at: str | None = None


@dataclass(frozen=True)
class TimelineEntry:
    """A step as applied: the step, the state before and after, and what it did."""

    state: DeliveryState  # the state the step named
    at: str
    evidence: Evidence
    outcome: OutcomeKind
    before: DeliveryState | None  # None for a record's first step
    after: DeliveryState
    received_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "at": self.at,
            "received_at": self.received_at,
            "outcome": self.outcome,
            "from": self.before,
            "to": self.after,
            "evidence": self.evidence.to_json(),
        }


@dataclass(frozen=True)
class DeliveryRecord:
    """The delivery of one document to one recipient: its state and every step, oldest first."""

    document_id: str
    recipient: str
    case_ref: str
    state: DeliveryState = "queued"
    timeline: tuple[TimelineEntry, ...] = ()
    created_at: str = ""
    updated_at: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "recipient": self.recipient,
            "case_ref": self.case_ref,
            "state": self.state,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "timeline": [t.to_json() for t in self.timeline],
        }


@dataclass(frozen=True)
class DeliveryTarget:
    """What the outbox says about a (document, recipient) a step names.

    ``handed_over``: the relay accepted the document for this recipient, or an attempt is
    under way (``active``), so a receipt can be genuine. A receipt for a recipient never
    handed over (a cancelled or held document, one still waiting) contradicts the outbox.
    """

    case_ref: str
    handed_over: bool


@dataclass(frozen=True)
class Outcome:
    """What ``advance`` (or the store applying a step) did: the record after the step, and why.

    ``record`` is None only for ``not-ours``: the step named no recorded document and
    recipient, so nothing was written.
    """

    kind: OutcomeKind
    step: DeliveryStep
    before: DeliveryState | None
    after: DeliveryState | None
    record: DeliveryRecord | None = field(default=None, compare=False)

    @property
    def changed(self) -> bool:
        return self.kind in ("advanced", "failed") and self.before != self.after
