"""The outgoing documents of a case as the reports show them: what was sent to whom, what the relay answered.

The outbox record (``records.outbox``) says where a document stands now; the audit trail
says how it got there. The reports show both: this module turns the record into plain
values (``DocumentView``) that the HTML and JSON reports render, and keeps the one place
where, per recipient, the delivery state from receipts is shown (``delivery_text``):
what the relay accepted is not yet what reached the recipient. ``case_deliveries`` reads
that state from the store's delivery records; only a receipt (DSN, MDN, De-Mail
confirmation) counts, so a record that only the relay's answer moved reads "no delivery
confirmation", the relay's reply standing in its own column.

The subject is not part of the outbox record: it is read from the outer header block of
the sent copy or the spool file (the header block only, bounded), and when neither can be
read (an auditor's account without access to the spool) the Message-ID stands in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gateway.receipts.deliveries import RECEIPT_KINDS, ServiceRule, service_of
from gateway.records.deliveries import DeliveryRecord
from gateway.records.outbox import OutboxRecord, RecipientStatus
from gateway.records.store import DeliveryReader, OutboxReader
from gateway.ui import DEFAULT, Locale

__all__ = [
    "HEADER_LIMIT",
    "DeliveryInfo",
    "DocumentView",
    "RecipientView",
    "case_deliveries",
    "case_documents",
    "delivery_info",
    "delivery_text",
    "document_view",
    "read_subject",
]

#: Bytes read at most to find a document's outer header block.
HEADER_LIMIT = 64 * 1024


@dataclass(frozen=True)
class DeliveryInfo:
    """What is known about one recipient's delivery beyond the relay's answer (issue 13's receipts).

    ``state`` is a delivery state such as ``queued``, ``submitted``, ``relayed``,
    ``delivered``, ``displayed``, ``processed``, ``failed``; ``at`` the recorded instant of
    the latest transition; ``evidence`` names what proves it (a receipt file). Kept small
    and independent of the delivery records, which any source can fill it from.
    """

    state: str
    at: str | None = None
    evidence: str | None = None
    #: A De-Mail document's service (§5a VwZG): "served on DATE (retrieval)" or "deemed served on DATE".
    served: tuple[str, str] | None = None  # (basis: retrieval | fiction, ISO date)


@dataclass(frozen=True)
class RecipientView:
    """One envelope recipient of a document: the relay's answer, and the delivery when known."""

    address: str
    state: str
    reply: str | None
    queue_id: str | None
    updated_at: str
    delivery: DeliveryInfo | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "address": self.address,
            "state": self.state,
            "reply": self.reply,
            "queue_id": self.queue_id,
            "updated_at": self.updated_at,
            "delivery": None,
        }
        if self.delivery is not None:
            d["delivery"] = {"state": self.delivery.state, "at": self.delivery.at, "evidence": self.delivery.evidence}
            if self.delivery.served is not None:
                d["delivery"]["served"] = {"basis": self.delivery.served[0], "date": self.delivery.served[1]}
        return d


@dataclass(frozen=True)
class DocumentView:
    """One outgoing document of a case, as the reports show it."""

    id: str
    message_id: str
    subject: str | None
    case_ref: str
    queued_at: str
    state: str
    attempts: int
    resent: bool
    signed: str
    encrypted: bool
    sent_path: str | None
    last_reply: str | None
    recipients: tuple[RecipientView, ...] = field(default_factory=tuple)
    #: Envelope recipients no header shows (``send --bcc``): the report must not present them as To/Cc.
    bcc: tuple[str, ...] = ()
    #: For a Bcc recipient's own encrypted copy: the outbox id of the letter it copies.
    bcc_copy_of: str | None = None
    #: Why a recipient's certificate or key was not used (so an unencrypted letter says why).
    key_refusals: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        """The subject when known, else the Message-ID (a document always has one)."""
        return self.subject if self.subject else f"<{self.message_id}>"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "message_id": self.message_id,
            "subject": self.subject,
            "case": self.case_ref,
            "queued_at": self.queued_at,
            "state": self.state,
            "attempts": self.attempts,
            "resent_after_crash": self.resent,
            "signed": self.signed,
            "encrypted": self.encrypted,
            "sent_path": self.sent_path,
            "last_reply": self.last_reply,
            "recipients": [r.to_json() for r in self.recipients],
            "bcc": list(self.bcc),
            "bcc_copy_of": self.bcc_copy_of,
            "key_refusals": list(self.key_refusals),
        }


def _recipient(r: RecipientStatus, delivery: DeliveryInfo | None) -> RecipientView:
    return RecipientView(r.address, r.state, r.reply, r.queue_id, r.updated_at, delivery)


def document_view(
    rec: OutboxRecord,
    *,
    subject: str | None = None,
    deliveries: Mapping[tuple[str, str], DeliveryInfo] | None = None,
) -> DocumentView:
    """The view of ``rec``; ``deliveries`` by (outbox id, recipient address), when receipts say more."""
    found = deliveries or {}
    return DocumentView(
        id=rec.id,
        message_id=rec.message_id,
        subject=subject,
        case_ref=rec.case_ref,
        queued_at=rec.created_at,
        state=rec.state,
        attempts=rec.attempts,
        resent=rec.resent,
        signed=rec.signed,
        encrypted=rec.encrypted,
        sent_path=sent_copy_name(rec),
        last_reply=rec.last_reply,
        recipients=tuple(_recipient(r, found.get((rec.id, r.address))) for r in rec.recipients),
        bcc=tuple(rec.bcc),
        bcc_copy_of=rec.bcc_copy_of,
        key_refusals=tuple(rec.key_refusals),
    )


def sent_copy_name(rec: OutboxRecord) -> str | None:
    """The sent copy as the ``filed-sent`` event names it: ``<case folder>/sent/<entry>``."""
    return f"{rec.case_folder}/sent/{Path(rec.sent_path).name}" if rec.sent_path else None


def case_documents(
    store: OutboxReader,
    case_ref: str,
    *,
    deliveries: Mapping[tuple[str, str], DeliveryInfo] | None = None,
) -> list[DocumentView]:
    """The outgoing documents of ``case_ref``, oldest first, with their subjects where readable."""
    from gateway.filing.sent import SENT_FILE

    views = []
    for rec in store.outbox_list(case_ref=case_ref):
        copy = Path(rec.sent_path) / SENT_FILE if rec.sent_path else None
        views.append(document_view(rec, subject=read_subject([copy, rec.path]), deliveries=deliveries))
    return views


def delivery_info(rec: DeliveryRecord) -> DeliveryInfo | None:
    """What the receipts say about one recipient: the state, when it was reached, its evidence.

    None while no receipt has set the state (queued, or submitted on the relay's 250 alone):
    the report then says "no delivery confirmation". ``at`` is the moment the evidence
    states; ``evidence`` the stored receipt file (relative to the case folders).
    """
    setting = [t for t in rec.timeline if t.outcome in ("advanced", "failed") and t.after == rec.state]
    if not setting or setting[-1].evidence.kind not in RECEIPT_KINDS:
        return None
    last = setting[-1]
    return DeliveryInfo(rec.state, last.at, last.evidence.path or last.evidence.detail)


def case_deliveries(
    store: DeliveryReader, case_ref: str, rule: ServiceRule | None = None
) -> dict[tuple[str, str], DeliveryInfo]:
    """The case's delivery states from receipts, by (outbox id, recipient), for ``case_documents``.

    With ``rule`` (``receipts.deliveries.service_rule``), a De-Mail document's service date too.
    """
    found: dict[tuple[str, str], DeliveryInfo] = {}
    for rec in store.deliveries_list(case_ref=case_ref):
        info = delivery_info(rec)
        if info is not None:
            service = service_of(rec, rule) if rule is not None else None
            if service is not None and service.basis == "retrieval" and service.served_on is not None:
                info = replace(info, served=("retrieval", service.served_on.isoformat()))
            elif service is not None and service.basis == "fiction" and service.deemed_served_on is not None:
                info = replace(info, served=("fiction", service.deemed_served_on.isoformat()))
            found[(rec.document_id, rec.recipient)] = info
    return found


def _header_block(path: Path) -> bytes | None:
    """The bytes before the first blank line, read without following a link; None when there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        chunks: list[bytes] = []
        size = 0
        while size < HEADER_LIMIT:
            chunk = os.read(fd, HEADER_LIMIT - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError:  # a directory, a device that refuses
        return None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    end = data.find(b"\r\n\r\n")
    if end < 0:
        end = data.find(b"\n\n")
    return data[:end] if end >= 0 else None


def read_subject(paths: Sequence[str | Path | None]) -> str | None:
    """The decoded outer Subject of the first of ``paths`` whose header block can be read.

    Never raises: a missing, unreadable or odd file only means the subject is not known.
    The text is a stranger's only for documents handed in by a mail program, and is
    escaped by whoever shows it, like every subject.
    """
    from gateway.mime.headers import decode_header_text

    for p in paths:
        if not p:
            continue
        head = _header_block(Path(p))
        if head is None:
            continue
        values = [v for name, v in _fields(head) if name.lower() == b"subject"]
        if len(values) != 1:
            return None
        text = " ".join(decode_header_text(values[0]).split())
        return text or None
    return None


def _fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """The header block's fields as (name, raw value), continuation lines joined."""
    fields: list[tuple[bytes, bytes]] = []
    for line in head.replace(b"\r\n", b"\n").split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
        elif b":" in line:
            name, _, value = line.partition(b":")
            fields.append((name.strip(), value.strip()))
    return fields


#: Delivery states in words (English; German in gateway.ui.german). Unknown states are shown as recorded.
DELIVERY_STATES = {
    "queued": "queued",
    "submitted": "handed to the relay",
    "relayed": "relayed onwards",
    "delivered": "delivered",
    "displayed": "displayed to the recipient",
    "processed": "processed by the recipient",
    "dispatched": "dispatched (De-Mail)",
    "received": "received (De-Mail)",
    "retrieved": "retrieved (De-Mail)",
    "deemed-served": "deemed served",
    "delayed": "delayed",
    "failed": "failed",
}

#: The relay's view of one recipient in words.
RECIPIENT_STATES = {"pending": "waiting", "sent": "accepted by the relay", "bounced": "refused"}

#: The outbox's states in words.
DOCUMENT_STATES = {
    "queued": "queued",
    "active": "being sent",
    "deferred": "deferred",
    "sent": "sent",
    "bounced": "not delivered",
    "hold": "on hold",
    "cancelled": "withdrawn",
}


def delivery_text(delivery: DeliveryInfo | None, lc: Locale = DEFAULT) -> str:
    """One recipient's delivery in words: the state, since when, and its evidence.

    Without delivery information (no receipt yet, or receipts not recorded) the text says
    so, so that a relay's 250 is never read as "delivered".
    """
    if delivery is None:
        return lc.t("no delivery confirmation")
    text = lc.t(DELIVERY_STATES.get(delivery.state, delivery.state))
    if delivery.at:
        text += " " + lc.t("since {time}", time=lc.time(delivery.at))
    if delivery.evidence:
        text += " " + lc.t("(evidence: {evidence})", evidence=delivery.evidence)
    if delivery.served is not None:
        basis, day = delivery.served
        text += "; " + (
            lc.t("served on {date} (Abholbestätigung)", date=day)
            if basis == "retrieval"
            else lc.t("deemed served on {date} (§5a VwZG)", date=day)
        )
    return text
