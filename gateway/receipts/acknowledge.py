"""A signed acknowledgement of receipt for a verified incoming document: an MDN (RFC 8098).

Per route (``acknowledge = true``), the sender of a *verified* document filed in a case may
get a signed confirmation that it was received and stored: a ``multipart/report;
report-type=disposition-notification`` with disposition
``automatic-action/MDN-sent-automatically; processed``, signed with the authority's
identity through the ordinary outbound path (``outbound.protect``) and queued like any
document (``outbound.outbox.enqueue``).

Why it says so little. What the acknowledgement says, and whether it is made at all, must
depend on nothing but "received and stored": never on what decryption produced, or an
attacker could send altered ciphertext and learn from the answer (decryption-oracle attacks,
EFAIL's family). So its only inputs are the facts of the stored entry (``Receipt``):
the Message-ID, the verified signer's address, the case reference, the arrival time and
the subject it was filed with (for the subject line, sanitised), plus the authority's
address. Nothing of the body is quoted or attached; the optional third part of an MDN
(the original message or its headers) is left out on purpose.

Why only to the signer. The address the acknowledgement goes to is the one the signature
proved (``signature.signer`` of a ``verified`` verdict), never Reply-To,
Disposition-Notification-To or an unverified From: anything else would let a stranger
direct the authority's signed mail at a third party.

This module builds; it does not decide when to send. The intake calls
``acknowledgement_for`` after an entry is stored and ``wants_acknowledgement`` says yes,
and hands the result to the outbox.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.clock import utcnow
from gateway.config import Config, OutboundConfig
from gateway.errors import PermanentError
from gateway.outbound.compose import MAX_SUBJECT_CHARS, check_address, report_draft, report_entity
from gateway.outbound.document import ComposedDocument
from gateway.outbound.protect import OutboundKeys, protect_draft
from gateway.records.messages import FILED_STATES, MessageRecord
from gateway.ui import Locale

__all__ = [
    "DISPOSITION",
    "SUBJECT_PREFIX",
    "AcknowledgementError",
    "Receipt",
    "acknowledgement_for",
    "receipt_of",
    "wants_acknowledgement",
]

SUBJECT_PREFIX = "Empfangsbestätigung: "
DISPOSITION = "automatic-action/MDN-sent-automatically; processed"
REPORTING_UA = "Poststelle"
#: A msg-id as the outbox accepts it: printable ASCII without angle brackets and spaces.
_MSG_ID = re.compile(r"[!-;=?-~]+@[!-;=?-~]+")
#: What never reaches a subject line: controls, format characters (bidi, zero-width),
#: surrogates, private-use and unassigned code points, line and paragraph separators.
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


class AcknowledgementError(PermanentError):
    """No acknowledgement can be made for this entry (``reason`` says why); nothing was built."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True)
class Receipt:
    """The facts of "received and stored", and nothing else: all an acknowledgement may say."""

    message_id: str | None  # the stored entry's Message-ID (with or without angle brackets)
    signer: str  # the verified signer's address
    case: str  # the case reference the entry was filed under
    arrived_at: datetime  # when it arrived in the mailbox
    subject: str | None = None  # the subject it was filed with, for the subject line only


def receipt_of(record: MessageRecord) -> Receipt:
    """The facts of a filed, verified message; AcknowledgementError when it is not both.

    ``verified`` is the verdict's word (docs/verdict.md): a valid signature by the From
    address over the whole content. Anything less gets no acknowledgement: the address
    would be a claim, not a proof.
    """
    if record.state not in FILED_STATES:
        raise AcknowledgementError("not-stored", f"message {record.id} is {record.state}")
    verdict: dict[str, Any] = record.verdict or {}
    signature = verdict.get("signature")
    if verdict.get("verdict") != "verified" or not isinstance(signature, dict) or signature.get("status") != "valid":
        raise AcknowledgementError("not-verified", f"message {record.id} is not verified")
    signer = signature.get("signer")
    if not isinstance(signer, str) or not signer:
        raise AcknowledgementError("no-signer", f"message {record.id} names no signer address")
    if not record.case_ref:
        raise AcknowledgementError("no-case", f"message {record.id} is not filed under a case reference")
    arrived = record.internaldate or record.fetched_at
    try:
        at = datetime.fromisoformat(arrived.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise AcknowledgementError("no-arrival-time", f"message {record.id}: {arrived!r}") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return Receipt(record.message_id, signer, record.case_ref, at, record.subject)


def wants_acknowledgement(config: Config, record: MessageRecord) -> bool:
    """Whether the route that filed ``record`` asks for an acknowledgement (default: no)."""
    return any(r.name == record.route and r.acknowledge for r in config.routes)


def _message_id(value: str | None) -> str | None:
    """``<id>`` for a well-formed Message-ID, None for none; AcknowledgementError for anything else.

    The value is a stranger's header: it is echoed only when it is one plain msg-id, so
    nothing can be smuggled into the report's fields or the header lines.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if not _MSG_ID.fullmatch(text) or len(text) > 900:
        raise AcknowledgementError("unusable-message-id", f"{value!r} is not one plain Message-ID")
    return f"<{text}>"


def acknowledgement_subject(subject: str | None, case: str) -> str:
    """``Empfangsbestätigung: <subject>`` on one line: unsafe characters dropped, white space
    collapsed, shortened to what a subject may hold; the case reference when there is no subject."""
    text = "".join(" " if unicodedata.category(ch) in _UNSAFE else ch for ch in subject or "")
    text = " ".join(text.split()) or " ".join(case.split())
    room = MAX_SUBJECT_CHARS - len(SUBJECT_PREFIX)
    if len(text) > room:
        text = text[: room - 1].rstrip() + "…"
    return SUBJECT_PREFIX + text


def _human_text(receipt: Receipt, original: str | None, authority: str, zone: str) -> str:
    english, german = Locale("en", zone), Locale("de", zone)
    case = " ".join(receipt.case.split())
    yours_en = f"Your message {original}" if original else "Your message"
    yours_de = f"Ihre Nachricht {original}" if original else "Ihre Nachricht"
    return (
        "This is an automatic acknowledgement of receipt.\n\n"
        f"{yours_en} was received on {english.time(receipt.arrived_at)} and stored by {authority} "
        f"under the case reference {case}.\n"
        "It confirms receipt and storage only, not the content or how it will be dealt with.\n\n"
        "Dies ist eine automatische Empfangsbestätigung.\n\n"
        f"{yours_de} ist am {german.time(receipt.arrived_at)} eingegangen und wurde von {authority} "
        f"unter dem Aktenzeichen {case} gespeichert.\n"
        "Bestätigt werden nur Eingang und Speicherung, nicht der Inhalt oder seine Bearbeitung.\n"
    )


def _notification(original: str | None, authority: str) -> bytes:
    """The ``message/disposition-notification`` part (RFC 8098 section 3.2), 7-bit."""
    domain = authority.rpartition("@")[2]
    fields = [f"Reporting-UA: {domain}; {REPORTING_UA}", f"Final-Recipient: rfc822; {authority}"]
    if original is not None:
        fields.append(f"Original-Message-ID: {original}")
    fields.append(f"Disposition: {DISPOSITION}")
    body = "".join(f"{f}\r\n" for f in fields)
    return b"Content-Type: message/disposition-notification\r\n\r\n" + body.encode("ascii")


def acknowledgement_for(
    receipt: Receipt,
    *,
    config: Config,
    keys: OutboundKeys,
    authority: str | None = None,
    now: datetime | None = None,
) -> ComposedDocument:
    """The signed MDN acknowledging ``receipt``, ready for ``outbound.outbox.enqueue``.

    ``authority`` defaults to ``[smtp] from``. Refused (AcknowledgementError, or
    ComposeError from the outbound path) rather than sent unsigned or to anyone but the
    signer.
    """
    sender = authority if authority is not None else (config.smtp.mail_from if config.smtp else None)
    if not sender:
        raise AcknowledgementError("no-authority-address", "set [smtp] from (the address acknowledgements come from)")
    if (config.outbound or OutboundConfig()).sign == "none":
        raise AcknowledgementError("unsigned", 'an acknowledgement is sent only signed; [outbound] sign is "none"')
    sender = check_address(sender, field="from")
    signer = check_address(receipt.signer, field="signer")
    original = _message_id(receipt.message_id)
    entity = report_entity(
        "disposition-notification",
        _human_text(receipt, original, sender, config.ui.timezone),
        _notification(original, sender),
    )
    extra: tuple[tuple[str, str], ...] = (("Auto-Submitted", "auto-replied"),)
    if original is not None:
        extra += (("In-Reply-To", original), ("References", original))
    at = now if now is not None else utcnow()
    draft = report_draft(
        case=receipt.case,
        mail_from=sender,
        to=signer,
        subject=acknowledgement_subject(receipt.subject, receipt.case),
        entity=entity,
        now=at,
        max_bytes=config.limits.max_message_bytes,
        extra=extra,
    )
    return protect_draft(draft, config=config, keys=keys, at=at)
