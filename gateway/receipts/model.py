"""What a receipt says, as read from the message: the shapes shared by parsers, matching and records.

Parsers (``dsn.py``, ``mdn.py``, ``demail.py``) turn a message into one of these and never
decide anything; ``match.py`` finds the sent document a receipt belongs to; ``deliveries.py``
decides what the evidence does to the delivery record. Everything here is plain data, so a
receipt read in a worker process travels to the intake's process unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: Where a receipt came from; also the ``kind`` of its evidence in the delivery timeline.
ReceiptKind = Literal["dsn", "mdn", "demail"]

#: The kind of a delivery step's evidence: a receipt, the relay's reply (``relay``), or the
#: outbox's own record of the enqueue (``outbox``, for ``queued``).
EvidenceKind = Literal["dsn", "mdn", "demail", "relay", "outbox"]
EVIDENCE_KINDS: tuple[EvidenceKind, ...] = ("dsn", "mdn", "demail", "relay", "outbox")

#: The states of one (document, recipient) delivery record, in their forward order; ``delayed``
#: and ``failed`` sit outside the order (see ``deliveries.py``).
DeliveryState = Literal[
    "queued",
    "submitted",
    "delayed",
    "relayed",
    "dispatched",
    "delivered",
    "received",
    "displayed",
    "processed",
    "retrieved",
    "deemed-served",
    "failed",
]


@dataclass(frozen=True)
class DsnRecipient:
    """One per-recipient block of a ``message/delivery-status`` part (RFC 3464 section 2.3)."""

    action: str  # delivered | relayed | expanded | delayed | failed (lower case)
    status: str  # "2.0.0", "5.1.1"
    final_recipient: str | None  # the address after "rfc822;" (lower-cased domain kept as given)
    original_recipient: str | None  # ORCPT, the address we named, if the MTA returned it
    diagnostic: str | None = None  # Diagnostic-Code, as given
    remote_mta: str | None = None
    last_attempt: str | None = None  # Last-Attempt-Date, as given


@dataclass(frozen=True)
class Dsn:
    """A delivery status notification (``multipart/report; report-type=delivery-status``)."""

    envid: str | None  # Original-Envelope-Id, xtext-decoded: our outbox envid
    reporting_mta: str | None
    arrival_date: str | None
    recipients: tuple[DsnRecipient, ...]
    original_message_id: str | None  # Message-ID of the returned headers (text/rfc822-headers or message/rfc822)


@dataclass(frozen=True)
class Mdn:
    """A message disposition notification (RFC 8098, ``report-type=disposition-notification``)."""

    original_message_id: str | None
    final_recipient: str | None
    original_recipient: str | None
    disposition: str  # the whole field, e.g. "manual-action/MDN-sent-manually; displayed"
    disposition_type: str  # displayed | processed | deleted | dispatched | ... (lower case)
    reporting_ua: str | None = None


@dataclass(frozen=True)
class DemailConfirmation:
    """A De-Mail provider's confirmation or notification (TR 01201; see ``demail.md``)."""

    #: "confirmation of dispatch" | "confirmation of receipt" | "confirmation of retrieve" | "notification" | ...
    message_type: str
    private_id: str | None  # X-de-mail-private-id: our outbox envid
    sender: str | None  # the provider's system address (From)
    time: str | None  # Acknowledge-Message/Time
    delivery_time: str | None  # Acknowledge-Message/DeliveryTime (Abholbestätigung)
    hash: str | None  # Acknowledge-Message/Hash: the original's integrity value
    notification_type: str | None = None  # X-de-mail-notification-type
    has_xml: bool = False
    has_pdf: bool = False


Receipt = Dsn | Mdn | DemailConfirmation


@dataclass(frozen=True)
class MalformedReceipt:
    """Claims to be a receipt (its type says so) but cannot be read: quarantined with ``reason``."""

    kind: ReceiptKind
    reason: str  # machine-readable, e.g. "malformed-delivery-status"
    detail: str = ""


def kind_of(receipt: Receipt | MalformedReceipt) -> ReceiptKind:
    if isinstance(receipt, MalformedReceipt):
        return receipt.kind
    if isinstance(receipt, Dsn):
        return "dsn"
    return "mdn" if isinstance(receipt, Mdn) else "demail"
