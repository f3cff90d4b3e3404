"""Which sent document a receipt is about, and what it says for each of its recipients.

Pure decisions over two lookups (the outbox by ENVID and by Message-ID), so the worker
that read the receipt can match it without writing anything. Only evidence that belongs
to a document moves its delivery record:

- a DSN is matched by its Original-Envelope-Id (our ENVID, with a random part nobody
  outside the relay path has seen), and only without one by the returned headers'
  Message-ID; within the document each per-recipient block is matched by its
  Original-Recipient (the ORCPT we sent), else its Final-Recipient;
- an MDN by its Original-Message-ID, and its Final-Recipient must be one of the
  document's recipients;
- a De-Mail confirmation by its ``X-de-mail-private-id`` (our ENVID).

A receipt for a recipient the relay never accepted, for a document that was cancelled, or
naming nobody the document went to, belongs to nothing: it is kept in quarantine with the
reason, and no record moves.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from gateway.receipts.model import (
    DeliveryState,
    DemailConfirmation,
    Dsn,
    MalformedReceipt,
    Mdn,
    Receipt,
    ReceiptKind,
    kind_of,
)
from gateway.records.outbox import OutboxRecord

UNMATCHED = "unmatched-receipt"
UNPROVEN = "demail-confirmation-unproven"
CANCELLED = "receipt-for-cancelled-document"
NOBODY = "receipt-names-no-recipient"

_DSN_STATES: dict[str, DeliveryState] = {
    "delivered": "delivered",
    "expanded": "delivered",
    "relayed": "relayed",
    "delayed": "delayed",
    "failed": "failed",
}
_MDN_STATES: dict[str, DeliveryState] = {"displayed": "displayed", "processed": "processed"}
_DEMAIL_STATES: dict[str, DeliveryState] = {
    "confirmation of dispatch": "dispatched",
    "confirmation of receipt": "received",
    "confirmation of retrieve": "retrieved",
    "notification": "failed",
}


class OutboxLookup(Protocol):
    """The two questions matching asks the store."""

    def outbox_by_envid(self, envid: str) -> OutboxRecord | None: ...

    def outbox_by_message_id(self, message_id: str) -> OutboxRecord | None: ...


@dataclass(frozen=True)
class ReceiptStep:
    """What the receipt says for one recipient of the document."""

    recipient: str
    state: DeliveryState
    detail: str  # DSN status and diagnostic, MDN disposition, De-Mail message type


@dataclass(frozen=True)
class ReceiptMatch:
    """The document a receipt belongs to and its steps, or why it belongs to none (``problem``)."""

    kind: ReceiptKind
    document_id: str | None = None
    case_ref: str | None = None
    case_folder: str | None = None
    how: str | None = None  # envid | message-id | private-id
    steps: tuple[ReceiptStep, ...] = ()
    problem: str | None = None
    ignored: tuple[str, ...] = ()  # what was left out and why ("bob@x: delivered, but never accepted by the relay")

    @property
    def matched(self) -> bool:
        return self.problem is None

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "document": self.document_id,
            "case_reference": self.case_ref,
            "matched_by": self.how,
            "steps": [{"recipient": s.recipient, "state": s.state, "detail": s.detail} for s in self.steps],
            "problem": self.problem,
            "ignored": list(self.ignored),
        }


def _bare_id(value: str | None) -> str | None:
    if not value:
        return None
    v = value.strip()
    if v.startswith("<") and v.endswith(">"):
        v = v[1:-1].strip()
    return v or None


def _address(value: str | None) -> str | None:
    if not value:
        return None
    v = value.strip()
    if ";" in v:  # "rfc822;addr" when a parser kept the type
        kind, _, v = v.partition(";")
        if kind.strip().lower() != "rfc822":
            return None
    v = v.strip().strip("<>").strip()
    return v.lower() or None


def _recipient(doc: OutboxRecord, *candidates: str | None) -> str | None:
    by_lower = {r.address.lower(): r.address for r in doc.recipients}
    for c in candidates:
        a = _address(c)
        if a is not None and a in by_lower:
            return by_lower[a]
    return None


def unproven(receipt: Receipt | MalformedReceipt, demail: dict[str, object] | None) -> str | None:
    """Why a De-Mail confirmation is not evidence, or None (any other receipt: None).

    A confirmation is the provider's word: it counts only with the provider's valid
    integrity value (``[demail]`` enabled, ``demail.verdict``). Anyone can write the
    fields and the XML; without that signature it would let a stranger mark a document
    retrieved and start or stop a service deadline.
    """
    if not isinstance(receipt, DemailConfirmation):
        return None
    return None if demail is not None and demail.get("integrity") == "valid" else UNPROVEN


def match_receipt(receipt: Receipt | MalformedReceipt, lookup: OutboxLookup) -> ReceiptMatch:
    """The document ``receipt`` is about and what it says per recipient; never raises for what a sender wrote."""
    kind = kind_of(receipt)
    if isinstance(receipt, MalformedReceipt):
        return ReceiptMatch(kind, problem=receipt.reason)
    doc, how = _document(receipt, lookup)
    if doc is None:
        return ReceiptMatch(kind, problem=UNMATCHED)
    base = ReceiptMatch(kind, document_id=doc.id, case_ref=doc.case_ref, case_folder=doc.case_folder, how=how)
    if doc.state == "cancelled":
        return replace(base, problem=CANCELLED)
    steps: list[ReceiptStep] = []
    ignored: list[str] = []
    for recipient, state, detail in _claims(receipt, doc):
        if recipient is None:
            ignored.append(f"{detail}: names none of the document's recipients")
            continue
        if state is None:
            ignored.append(f"{recipient}: {detail}: not a delivery state")
            continue
        r = next(r for r in doc.recipients if r.address == recipient)
        if r.state != "sent":
            ignored.append(f"{recipient}: {state}, but the relay never accepted the document for it")
            continue
        steps.append(ReceiptStep(recipient, state, detail))
    if not steps and not any("not a delivery state" in i for i in ignored):
        return replace(base, problem=NOBODY, ignored=tuple(ignored))
    return replace(base, steps=tuple(steps), ignored=tuple(ignored))


def _document(receipt: Receipt, lookup: OutboxLookup) -> tuple[OutboxRecord | None, str | None]:
    if isinstance(receipt, Dsn):
        if receipt.envid:
            # An ENVID that is ours decides; one that is not is somebody else's DSN, whatever
            # Message-ID its returned headers carry.
            return lookup.outbox_by_envid(receipt.envid.strip()), "envid"
        mid = _bare_id(receipt.original_message_id)
        return (lookup.outbox_by_message_id(mid), "message-id") if mid else (None, None)
    if isinstance(receipt, Mdn):
        mid = _bare_id(receipt.original_message_id)
        return (lookup.outbox_by_message_id(mid), "message-id") if mid else (None, None)
    pid = (receipt.private_id or "").strip()
    return (lookup.outbox_by_envid(pid), "private-id") if pid else (None, None)


def _claims(receipt: Receipt, doc: OutboxRecord) -> list[tuple[str | None, DeliveryState | None, str]]:
    """(recipient of ``doc`` or None, state or None, detail) for everything the receipt asserts."""
    if isinstance(receipt, Dsn):
        out: list[tuple[str | None, DeliveryState | None, str]] = []
        for b in receipt.recipients:
            detail = " ".join(x for x in (b.action, b.status, b.diagnostic or "") if x)
            out.append((_recipient(doc, b.original_recipient, b.final_recipient), _DSN_STATES.get(b.action), detail))
        return out
    if isinstance(receipt, Mdn):
        state = _MDN_STATES.get(receipt.disposition_type)
        return [(_recipient(doc, receipt.original_recipient, receipt.final_recipient), state, receipt.disposition)]
    assert isinstance(receipt, DemailConfirmation)
    state = _DEMAIL_STATES.get(receipt.message_type.strip().lower())
    detail = receipt.message_type + (f" ({receipt.notification_type})" if receipt.notification_type else "")
    # A provider's confirmation is about the document as sent through it: every recipient the
    # relay accepted (De-Mail documents go to one recipient each in practice).
    return [(r.address, state, detail) for r in doc.recipients]
