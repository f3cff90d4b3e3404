"""Realistic sample correspondence for the demo, the tests and the benchmarks.

Subjects follow ../shared/design/case-references.md: labels, reply prefixes, Unicode
look-alikes and encoded words around real-looking Aktenzeichen.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid


def fake_pdf(size: int, seed: int = 0) -> bytes:
    """A small, well-formed-looking PDF padded to about ``size`` bytes (content is filler)."""
    head = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
    tail = b"\n%%EOF\n"
    filler = (os.urandom(16).hex().encode() if seed < 0 else f"{seed:08d}".encode() * 2) * (size // 16 + 1)
    return head + b"% " + filler[: max(0, size - len(head) - len(tail) - 2)] + tail


def letter(
    *,
    subject: str,
    sender: str = "buergeramt@nachbarstadt.example",
    to: str = "rathaus@stadt.example",
    body: str = "Sehr geehrte Damen und Herren,\n\nanbei erhalten Sie die Unterlagen.\n\nMit freundlichen Grüßen\n",
    attachment: tuple[str, bytes] | None = None,
    date: datetime | None = None,
    message_id: str | None = None,
) -> bytes:
    """A multipart/mixed letter with an optional attachment, as a mail client sends it."""
    msg = EmailMessage()
    local, _, domain = sender.partition("@")
    msg["From"] = Address("Bürgeramt Nachbarstadt", local, domain)
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime.now(UTC))
    msg["Message-ID"] = message_id or make_msgid(domain=domain or "example")
    msg.set_content(body)
    if attachment is not None:
        name, data = attachment
        msg.add_attachment(data, maintype="application", subtype="pdf", filename=name)
    return bytes(msg)


def demo_corpus() -> list[tuple[str, bytes]]:
    """(description, message) pairs: several cases, noise, an unroutable and a malformed one."""
    pdf = fake_pdf(30_000, seed=1)
    return [
        (
            "building permit application",
            letter(subject="Bauantrag Az.: 63-BV-2026-0147 – Unterlagen", attachment=("Bauantrag.pdf", pdf)),
        ),
        (
            "reply quoting our reference (en dash, stacked prefixes)",
            letter(
                subject="RE: AW: Ihr Zeichen: 63–BV–2026–0147; Unser Zeichen: 32.1-4711/2026",
                attachment=("Stellungnahme.pdf", pdf),
            ),
        ),
        (
            "another building permit, encoded subject",
            letter(
                subject="Nachreichung Aktenzeichen 63-BV-2026-0212 (Grundriss)", attachment=("Grundriss ÄÖÜ.pdf", pdf)
            ),
        ),
        (
            "administrative court",
            letter(
                sender="poststelle@vg-beispielstadt.example",
                subject="Verwaltungsgericht: Ladung Az. 1 K 1234/25",
                attachment=("Ladung.pdf", pdf),
            ),
        ),
        (
            "hostile attachment name",
            letter(subject="WG: Az. 1 K 1234/25 Nachtrag", attachment=("../../etc/passwd", b"not really")),
        ),
        ("no case reference", letter(subject="Einladung zum Sommerfest")),
        (
            "malformed MIME",
            (
                b"From: unbekannt@example.org\r\nTo: rathaus@stadt.example\r\nSubject: Az. 63-BV-2026-0147\r\n"
                b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\n--oops\r\nbroken\r\n"
            ),
        ),
    ]
