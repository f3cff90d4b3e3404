"""The court's return receipt in the demo: an MDN (RFC 8098) the way Thunderbird writes one.

When the court's clerk opens the town hall's letter and agrees to send a return receipt,
Thunderbird answers with a ``multipart/report; report-type=disposition-notification``: a
human-readable part, the ``message/disposition-notification`` fields and the original's
header block (``text/rfc822-headers``). The gateway matches it by its
``Original-Message-ID`` and its ``Final-Recipient``, so the demo builds exactly that shape
and sends it through the demo's Postfix like any mail program would.

It is built here rather than through ``receipts.acknowledge``: that module builds the
authority's own signed ``processed`` acknowledgement for verified incoming letters, which
is the other side of the exchange and says something else (``processed``, automatic).
Tests build their receipts with ``tests/support/receipts.py``, which ships with no package.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from email.header import Header
from email.utils import format_datetime

__all__ = ["DISPLAYED", "thunderbird_mdn"]

#: What Thunderbird writes when the reader agrees to send a receipt for a displayed message.
DISPLAYED = "manual-action/MDN-sent-manually; displayed"


def _returned_headers(original: bytes) -> str:
    """The original's header block as Thunderbird returns it: only its fields, ASCII, CRLF."""
    head = original.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    text = head.decode("ascii", errors="replace").replace("\ufffd", "?")
    return "".join(f"{line}\r\n" for line in text.split("\n"))


def thunderbird_mdn(
    *,
    original: bytes,
    original_message_id: str,
    reader: str,
    sender: str,
    subject: str,
    at: datetime,
) -> bytes:
    """The return receipt ``reader`` sends to ``sender`` for the message ``original`` (its bytes).

    ``original_message_id`` is the Message-ID without angle brackets; ``at`` the moment the
    letter was displayed (the receipt's Date). Returns the whole message, CRLF line ends.
    """
    boundary = "------------" + secrets.token_hex(12)
    # The subject is quoted from the letter: one line, no control characters, so it cannot
    # add header fields of its own.
    quoted = " ".join("".join(ch if ch.isprintable() else " " for ch in subject).split())
    title = f"Return Receipt (displayed) - {quoted}"
    if not title.isascii():
        title = Header(title, "utf-8").encode(maxlinelen=76, linesep="\r\n")
    domain = reader.rpartition("@")[2]
    fields = (
        f"Reporting-UA: {domain}; Mozilla Thunderbird\r\n"
        f"Final-Recipient: rfc822;{reader}\r\n"
        f"Original-Message-ID: <{original_message_id}>\r\n"
        f"Disposition: {DISPLAYED}\r\n"
    )
    head = (
        f'Content-Type: multipart/report; report-type=disposition-notification;\r\n boundary="{boundary}"\r\n'
        f"Message-ID: <{secrets.token_hex(8)}@{domain}>\r\n"
        f"Date: {format_datetime(at)}\r\n"
        "MIME-Version: 1.0\r\nUser-Agent: Mozilla Thunderbird\r\n"
        f"From: {reader}\r\nTo: {sender}\r\n"
        f"Subject: {title}\r\n\r\n"
    )
    body = (
        "This is a multi-part message in MIME format.\r\n"
        f"--{boundary}\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        f"This is a Return Receipt for the mail that you sent to {reader}.\r\n\r\n"
        "Note: This Return Receipt only acknowledges that the message was displayed on the recipient's "
        "computer. There is no guarantee that the recipient has read or understood the message contents.\r\n\r\n"
        f'--{boundary}\r\nContent-Type: message/disposition-notification; name="MDNPart2.txt"\r\n'
        "Content-Disposition: inline\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        f"{fields}\r\n"
        f'--{boundary}\r\nContent-Type: text/rfc822-headers; name="MDNPart3.txt"\r\n'
        "Content-Disposition: inline\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        f"{_returned_headers(original)}\r\n"
        f"--{boundary}--\r\n"
    )
    return (head + body).encode("ascii")
