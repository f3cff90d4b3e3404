"""A letter handed in by a clerk's mail program, signed, encrypted and queued like ``send``'s.

The submission listener (``submission.py``, ``acceptance.py``) decides whether a letter is
taken; this is the ``Spool`` it hands the letter to. The mail program built the MIME
message, so only the protection is ours: the outer header lines (From, To, Subject, Date,
Message-ID) stay outside, the Content-* headers and the body become the entity that is
signed and encrypted exactly as ``send`` protects its own (``protect.protect_draft``).
``Bcc`` is dropped from the header (its recipients are in the envelope only, and every
envelope recipient that To and Cc do not show is treated as Bcc, like ``send --bcc``), a missing
Message-ID or Date is added, and line ends become CRLF before anything is signed, since
the relay would otherwise change the signed bytes on the way.
"""

from __future__ import annotations

import secrets
from email.utils import format_datetime, getaddresses

from gateway.clock import utcnow
from gateway.config import Config
from gateway.outbound.compose import ComposeError, Draft, check_address, check_case
from gateway.outbound.outbox import enqueue
from gateway.outbound.protect import OutboundKeys, protect_draft
from gateway.records.open import open_store

#: Header fields that describe the content: they move into the signed entity.
_CONTENT = (b"content-", b"mime-version:")


def _crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def _fields(head: bytes) -> list[bytes]:
    """Header fields with their folded continuation lines, each ending in CRLF."""
    fields: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line + b"\r\n"
        elif line:
            fields.append(line + b"\r\n")
    return fields


def submitted_draft(raw: bytes, *, mail_from: str, recipients: tuple[str, ...], case: str) -> Draft:
    """Split a mail program's message into the outer headers and the entity to protect."""
    message = _crlf(raw)
    head, sep, body = message.partition(b"\r\n\r\n")
    if not sep:
        head, body = message.removesuffix(b"\r\n"), b""
    outer: list[bytes] = []
    content: list[bytes] = []
    message_id = None
    has_date = False
    shown: list[str] = []
    for f in _fields(head):
        name = f.split(b":", 1)[0].strip().lower()
        if f.lower().startswith(_CONTENT):
            if name != b"mime-version":
                content.append(f)
        elif name == b"bcc":
            continue
        else:
            if name == b"message-id":
                message_id = f.split(b":", 1)[1].strip().strip(b"<>").decode("ascii", "replace")
            has_date = has_date or name == b"date"
            if name in (b"to", b"cc"):
                value = f.split(b":", 1)[1].decode("utf-8", "replace").replace("\r\n", "")
                shown.extend(addr.lower() for _, addr in getaddresses([value]) if addr)
            outer.append(f)
    sender = check_address(mail_from, field="from")
    if not message_id or any(c in message_id for c in " <>\r\n") or "@" not in message_id:
        message_id = f"{secrets.token_hex(16)}@{sender.rpartition('@')[2]}"
        outer = [f for f in outer if not f.lower().startswith(b"message-id:")]
        outer.append(f"Message-ID: <{message_id}>\r\n".encode("ascii"))
    if not has_date:
        outer.append(f"Date: {format_datetime(utcnow())}\r\n".encode("ascii"))
    outer.append(b"MIME-Version: 1.0\r\n")
    if not content:
        charset = "us-ascii" if body.isascii() else "utf-8"
        content = [f"Content-Type: text/plain; charset={charset}\r\n".encode("ascii")]
        if not body.isascii():
            content.append(b"Content-Transfer-Encoding: 8bit\r\n")
    entity = b"".join(content) + b"\r\n" + body
    to = tuple(check_address(r, field="to") for r in recipients)
    if not to:
        raise ComposeError("no-recipients", "the envelope names no recipient")
    # Envelope recipients the header does not show are Bcc (the mail program took them off).
    bcc = tuple(a for a in to if a.lower() not in shown)
    return Draft(message_id, check_case(case), sender, to, b"".join(outer), entity, bcc=bcc)


class OutboxSpool:
    """``Spool`` for the submission listener: protect as configured, then queue durably."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def submit(self, raw: bytes, *, mail_from: str, recipients: tuple[str, ...], case: str, submitted_by: str) -> str:
        d = submitted_draft(raw, mail_from=mail_from, recipients=recipients, case=case)
        keys = OutboundKeys.from_config(self.config)
        try:
            doc = protect_draft(d, config=self.config, keys=keys, at=utcnow())
        finally:
            keys.close()
        store = open_store(self.config, actor=f"submission:{submitted_by}")
        try:
            return enqueue(self.config, store, doc, actor=f"submission:{submitted_by}")
        finally:
            store.close()
