"""The hand-over between compose (the producer) and the outbox (the consumer).

Compose builds, signs and encrypts; what it hands over is final: the outbox never
re-serialises ``raw``, so the bytes queued are the bytes sent and the bytes filed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ComposedDocument:
    """A finished message, ready to queue: bytes exactly as they will be sent."""

    message_id: str  # without angle brackets
    case: str  # case reference (Aktenzeichen) as given
    mail_from: str  # envelope sender ([smtp] from)
    recipients: tuple[str, ...]  # envelope recipients (To + Cc, and Bcc riding along unencrypted)
    raw: bytes  # RFC 5322 message, CRLF line ends
    signed: str  # "smime" | "openpgp" | "none"
    encrypted: bool
    key_sources: tuple[tuple[str, str], ...]  # (recipient, which certificate/key was used)
    envid: str | None = None  # the ENVID to use (a De-Mail's private id); None: the outbox makes one
    demail: dict[str, Any] | None = None  # the De-Mail options asked for, for the record
    #: The letter's Bcc recipients (this document's own, for a Bcc copy): in no header, recorded
    #: so the authority knows who got it; those also in ``recipients`` ride in this envelope.
    bcc: tuple[str, ...] = ()
    #: "certificate of X refused: expired (source)" for recipients left without one.
    key_refusals: tuple[str, ...] = ()
    #: Separate messages for Bcc recipients (encrypted to them and the authority only); queued
    #: with this one, in the same transaction.
    bcc_copies: tuple[ComposedDocument, ...] = ()


def send_summary(doc: ComposedDocument, outbound_id: str | None, *, queued: bool) -> dict[str, Any]:
    """What ``send --json`` prints about a composed letter, whichever process composed it."""

    def keys(d: ComposedDocument) -> list[dict[str, str]]:
        return [{"recipient": r, "source": s} for r, s in d.key_sources]

    return {
        "outbound_id": outbound_id or None,
        "message_id": doc.message_id,
        "case": doc.case,
        "recipients": list(doc.recipients),
        "signed": doc.signed,
        "encrypted": doc.encrypted,
        "keys": keys(doc),
        "key_refusals": list(doc.key_refusals),
        "bcc": list(doc.bcc),
        "bcc_copies": [
            {
                "message_id": c.message_id,
                "recipients": list(c.recipients),
                "encrypted": c.encrypted,
                "keys": keys(c),
                "key_refusals": list(c.key_refusals),
            }
            for c in doc.bcc_copies
        ],
        "bytes": len(doc.raw),
        **({"demail": doc.demail, "private_id": doc.envid} if doc.demail is not None else {}),
        "queued": queued,
    }
