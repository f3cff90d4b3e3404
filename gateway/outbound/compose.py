"""A clerk's letter to MIME bytes: validated first, then built without the ``email`` generator.

Why by hand: the bytes built here are the bytes that get signed and sent, so every header
and every line must be exactly what this module decides, CRLF throughout. The ``email``
generator re-folds headers and re-wraps parts depending on policy and version, and its
folding of arbitrary text has had round-trip bugs; the few encodings needed (RFC 2047
encoded words, RFC 2231 parameters, quoted-printable, base64) are small and testable.

Every input is checked before anything is built, and a problem raises ``ComposeError``
with a machine-readable ``reason`` and a detail naming the field, address or file:
nothing half-made ever reaches the outbox.
"""

from __future__ import annotations

import base64
import mimetypes
import os
import re
import secrets
import unicodedata
from dataclasses import dataclass, replace
from datetime import datetime
from email import quoprimime
from email.utils import format_datetime
from pathlib import Path

import pybase64

from gateway.errors import PermanentError
from gateway.outbound.demail_options import DemailOptionError, DemailOptions, demail_fields, new_private_id
from gateway.routing.casenames import InvalidCaseReference, case_folder_name

__all__ = [
    "Attachment",
    "ComposeError",
    "Draft",
    "Letter",
    "check_address",
    "check_filename",
    "check_subject",
    "draft",
    "encode_filename_param",
    "encode_subject",
    "full_subject",
    "report_draft",
    "report_entity",
]

#: RFC 5322 recommends lines of at most 78 characters; every header built here keeps to it.
MAX_LINE = 78
MAX_SUBJECT_CHARS = 900
MAX_FILENAME_BYTES = 255
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@{_LABEL}(?:\.{_LABEL})+")
#: RFC 2231 attribute-char: what may stand unescaped in an extended parameter value.
_ATTR_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$&+-.^_`|~")
_PLAIN_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._()+,-]{0,59}")
#: Characters that break a header or a line wherever they appear: controls (CR, LF, TAB,
#: NUL...), lone surrogates, and the Unicode line and paragraph separators.
_FORBIDDEN = frozenset({"Cc", "Cs", "Zl", "Zp"})


class ComposeError(PermanentError, ValueError):
    """The letter cannot be sent as asked; nothing was produced.

    ``reason`` is machine-readable (``control-character``, ``invalid-address``,
    ``no-recipients``, ``empty-subject``, ``invalid-text``, ``subject-too-long``, ``invalid-filename``,
    ``missing-file``, ``unreadable-file``, ``invalid-case``, ``too-large``,
    ``recipient-key-unknown``, ``signing-failed``, ``encryption-failed``); ``detail`` names
    what was wrong. Permanent: the same request fails the same way. Also a ``ValueError``,
    the bad input it is.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True)
class Attachment:
    """A file to attach; ``filename`` is the name the recipient sees (default: the file's)."""

    path: Path
    filename: str | None = None
    #: The file's bytes when they were read elsewhere: by a clerk's ``send`` that hands the
    #: letter to the daemon over its socket (``path`` is then only the clerk's file name).
    data: bytes | None = None


@dataclass(frozen=True)
class Letter:
    """What a clerk asks to send: the case, the recipients, a subject, a text and files."""

    case: str
    to: tuple[str, ...]
    subject: str
    body: str = ""
    cc: tuple[str, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    demail: DemailOptions | None = None  # send as a De-Mail with these options
    bcc: tuple[str, ...] = ()  # blind copies: in the envelope, never in a header


@dataclass(frozen=True)
class Draft:
    """The built, unprotected message: outer headers and the MIME entity to sign/encrypt.

    ``headers`` are the header lines (CRLF each, no blank line) without Content-*;
    ``entity`` starts with the entity's Content-* headers: ``headers + entity`` is a
    complete RFC 5322 message.
    """

    message_id: str
    case: str
    mail_from: str
    recipients: tuple[str, ...]
    headers: bytes
    entity: bytes
    envid: str | None = None  # set by the caller (a De-Mail's private id); else the outbox makes one
    demail: DemailOptions | None = None
    bcc: tuple[str, ...] = ()  # the recipients that are Bcc (also in ``recipients``, in no header)


def _forbidden_char(text: str) -> str | None:
    for ch in text:
        if unicodedata.category(ch) in _FORBIDDEN:
            return f"U+{ord(ch):04X}"
    return None


def check_address(address: str, *, field: str = "address") -> str:
    """A plain ASCII addr-spec (``local@domain.tld``), or ComposeError naming it.

    Display names, comments and internationalised addresses are refused: the address goes
    into the SMTP envelope and into headers unchanged, and a relay without SMTPUTF8 would
    bounce it later rather than now.
    """
    bad = _forbidden_char(address)
    if bad is not None:
        raise ComposeError("control-character", f"{field} {address!r} contains {bad} (CR/LF or a control character)")
    if len(address) > 254 or not _ADDRESS.fullmatch(address):
        raise ComposeError("invalid-address", f"{field} {address!r} is not an address like name@example.org")
    return address


def check_subject(subject: str) -> str:
    """The subject as given, or ComposeError: empty, too long, or with CR/LF/control characters."""
    bad = _forbidden_char(subject)
    if bad is not None:
        raise ComposeError("control-character", f"subject contains {bad} (CR/LF or a control character)")
    if not subject.strip():
        raise ComposeError("empty-subject", "the subject is empty")
    if len(subject) > MAX_SUBJECT_CHARS:
        raise ComposeError("subject-too-long", f"{len(subject)} characters > {MAX_SUBJECT_CHARS}")
    return subject


def check_filename(name: str) -> str:
    """A name for an attachment as the recipient sees it; anything printable, bounded."""
    bad = _forbidden_char(name)
    if bad is not None:
        raise ComposeError("invalid-filename", f"file name {name!r} contains {bad}")
    if not name.strip():
        raise ComposeError("invalid-filename", "empty file name")
    if name != name.strip():
        # Mail programs strip it when they read the name, and Windows when it saves the file.
        raise ComposeError("invalid-filename", f"file name {name!r} starts or ends with white space")
    if len(name.encode("utf-8")) > MAX_FILENAME_BYTES:
        raise ComposeError("invalid-filename", f"file name longer than {MAX_FILENAME_BYTES} bytes")
    return name


def check_case(case: str) -> str:
    """A case reference that can name a case folder (``routing.casenames``); a new case is fine.

    Line breaks and other controls are refused here although the folder mapping would fold
    them into spaces: the reference goes into the subject as given.
    """
    bad = _forbidden_char(case)
    if bad is not None:
        raise ComposeError("invalid-case", f"case reference {case!r} contains {bad}")
    try:
        case_folder_name(case)
    except InvalidCaseReference as exc:
        raise ComposeError("invalid-case", f"case reference {case!r}: {exc.reason}") from None
    return case


def full_subject(case: str, subject: str) -> str:
    """The subject with the case reference, so replies find their case folder by routing.

    Unchanged when the subject already names the reference as a whole (``1 K 12`` is not
    named by ``1 K 123``).
    """
    if _names_whole(subject, case):
        return subject
    return f"[Az. {case}] {subject}"


def _names_whole(text: str, ref: str) -> bool:
    """Whether ``ref`` occurs in ``text`` with neither a word character nor ``/`` next to it.

    What ``(?<![\\w/])REF(?![\\w/])`` matches, without compiling a pattern for every case
    reference (the regular-expression cache does not hold one per letter of a busy outbox).
    """

    def joins(c: str) -> bool:  # \w is str.isalnum() or "_" (the re module's definition)
        return c.isalnum() or c in "_/"

    start = text.find(ref)
    while start != -1:
        end = start + len(ref)
        if not (start and joins(text[start - 1])) and not (end < len(text) and joins(text[end])):
            return True
        start = text.find(ref, start + 1)
    return False


def _encoded_words(text: str, first_line_used: int) -> str:
    """RFC 2047 ``=?utf-8?b?...?=`` words, whole characters each, one per folded line."""
    words: list[str] = []
    chunk = b""
    budget = 42  # 42 bytes -> 56 base64 characters -> a 68-character encoded word
    for ch in text:
        data = ch.encode("utf-8")
        if len(chunk) + len(data) > budget:
            words.append(chunk.decode("utf-8"))
            chunk = b""
        chunk += data
    if chunk:
        words.append(chunk.decode("utf-8"))
    encoded = [f"=?utf-8?b?{base64.b64encode(w.encode('utf-8')).decode('ascii')}?=" for w in words]
    assert first_line_used + len(encoded[0]) <= MAX_LINE
    return "\r\n ".join(encoded)


def encode_subject(subject: str) -> str:
    """The Subject field value: as is when plain short ASCII, else encoded words.

    Plain means printable ASCII with single spaces between words and nothing that looks
    like an encoded word; anything else is encoded so that a parser returns exactly
    ``subject`` (whitespace between encoded words is dropped when decoding).
    """
    plain = (
        all(" " <= c <= "~" for c in subject)
        and "=?" not in subject
        and "  " not in subject
        and subject == subject.strip()
        and len("Subject: ") + len(subject) <= MAX_LINE
    )
    return subject if plain else _encoded_words(subject, len("Subject: "))


def encode_filename_param(name: str, attr: str = "filename") -> str:
    """``filename="..."`` for plain names, else RFC 2231 ``filename*0*=utf-8''...`` continuations."""
    if _PLAIN_FILENAME.fullmatch(name) and name == name.strip():
        return f'{attr}="{name}"'
    escaped = [chr(b) if b in _ATTR_CHARS else f"%{b:02X}" for b in name.encode("utf-8")]
    segments: list[str] = []
    current = ""
    for piece in escaped:
        if len(current) + len(piece) > 54:
            segments.append(current)
            current = ""
        current += piece
    segments.append(current)
    params = [f"{attr}*{i}*={'utf-8' + chr(39) * 2 if i == 0 else ''}{seg}" for i, seg in enumerate(segments)]
    return ";\r\n ".join(params)


def _address_field(name: str, addresses: tuple[str, ...]) -> bytes:
    line = f"{name}: "
    out = line
    width = len(line)
    for i, addr in enumerate(addresses):
        piece = addr + ("," if i < len(addresses) - 1 else "")
        if i and width + 1 + len(piece) > MAX_LINE:
            out += "\r\n " + piece
            width = 1 + len(piece)
        else:
            out += ("" if not i else " ") + piece
            width += (0 if not i else 1) + len(piece)
    return (out + "\r\n").encode("ascii")


def base64_lines(data: bytes) -> bytes:
    """Base64 in 76-character CRLF lines (RFC 2045).

    pybase64's ``encodebytes`` gives the same bytes as the standard library's, which
    calls the encoder once per 57-byte line from Python: for a document's attachment,
    signature and envelope that loop was the largest single cost of composing.
    """
    return pybase64.encodebytes(data).replace(b"\n", b"\r\n")


def text_entity(body: str) -> bytes:
    """text/plain, UTF-8, quoted-printable: 7-bit safe, so no relay re-encodes signed bytes.

    Lines starting with ``From `` are escaped (``=46rom``) because some mail stores add
    ``>`` to them, which would break the signature.
    """
    lines = re.split(r"\r\n|\r|\n", body)  # not splitlines(): form feeds and U+2028 stay text
    latin = "\r\n".join(lines).encode("utf-8").decode("latin-1")
    qp = quoprimime.body_encode(latin, maxlinelen=76, eol="\r\n")
    qp = re.sub(r"(?m)^From ", "=46rom ", qp)
    if not qp.endswith("\r\n"):
        qp += "\r\n"
    return (
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        + qp.encode("ascii")
    )


def content_type_for(name: str, data: bytes) -> str:
    """The type by the file name's extension, PDF by its magic bytes, else octet-stream."""
    guessed, encoding = mimetypes.guess_type(name, strict=False)
    if guessed and encoding is None:
        return guessed
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    return "application/octet-stream"


def attachment_entity(name: str, data: bytes) -> bytes:
    ctype = content_type_for(name, data)
    return (
        f"Content-Type: {ctype}\r\nContent-Transfer-Encoding: base64\r\n"
        f"Content-Disposition: attachment;\r\n {encode_filename_param(name)}\r\n\r\n"
    ).encode("ascii") + base64_lines(data)


def boundary() -> str:
    """``=_`` never occurs in base64 or quoted-printable output, so no part can contain it."""
    return f"=_{secrets.token_hex(16)}"


def multipart(subtype: str, parts: list[bytes], params: str = "") -> bytes:
    """A multipart entity; each part is a complete entity (headers, blank line, body)."""
    b = boundary()
    head = f'Content-Type: multipart/{subtype};{params} boundary="{b}"\r\n\r\n'.encode("ascii")
    body = b"".join(f"--{b}\r\n".encode("ascii") + p + (b"" if p.endswith(b"\r\n") else b"\r\n") for p in parts)
    return head + body + f"--{b}--\r\n".encode("ascii")


def _read_attachment(att: Attachment, budget: int) -> tuple[str, bytes]:
    name = check_filename(att.filename if att.filename is not None else att.path.name)
    if att.data is not None:
        if len(att.data) > budget:
            raise ComposeError("too-large", f"{att.path}: {len(att.data)} bytes exceed the message limit")
        return name, att.data
    try:
        with att.path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > budget:
                raise ComposeError("too-large", f"{att.path}: {size} bytes exceed the message limit")
            data = fh.read(budget + 1)
    except FileNotFoundError:
        raise ComposeError("missing-file", f"{att.path}: no such file") from None
    except IsADirectoryError:
        raise ComposeError("unreadable-file", f"{att.path}: is a directory") from None
    except PermissionError:
        raise ComposeError("unreadable-file", f"{att.path}: permission denied") from None
    except OSError as exc:
        raise ComposeError("unreadable-file", f"{att.path}: {exc.strerror or type(exc).__name__}") from None
    if len(data) > budget:
        raise ComposeError("too-large", f"{att.path}: exceeds the message limit")
    return name, data


def draft(letter: Letter, *, mail_from: str, now: datetime, max_bytes: int) -> Draft:
    """Validate ``letter`` and build the unprotected message; ComposeError on any problem."""
    case = check_case(letter.case)
    sender = check_address(mail_from, field="from")
    to = tuple(check_address(a, field="to") for a in letter.to)
    cc = tuple(check_address(a, field="cc") for a in letter.cc)
    bcc = tuple(a for a in dict.fromkeys(check_address(a, field="bcc") for a in letter.bcc) if a not in to + cc)
    if bcc and letter.demail is not None:
        raise ComposeError("demail-options", "Bcc is not offered for De-Mail: the provider states every recipient")
    if not to:
        raise ComposeError("no-recipients", "give at least one --to address")
    subject = full_subject(case, check_subject(letter.subject))
    if any("\ud800" <= ch <= "\udfff" for ch in letter.body):
        # Anything else is fine in the text: quoted-printable carries every byte.
        raise ComposeError("invalid-text", "the text is not valid Unicode (lone surrogates)")
    files = []
    budget = max_bytes
    for att in letter.attachments:
        name, data = _read_attachment(att, budget)
        budget -= len(data)
        files.append((name, data))
    text = text_entity(letter.body)
    entity = multipart("mixed", [text, *(attachment_entity(n, d) for n, d in files)]) if files else text
    if letter.demail is None:
        d = _draft(case, sender, to, cc, subject, entity, now=now, max_bytes=max_bytes)
        return replace(d, recipients=(*d.recipients, *bcc), bcc=bcc) if bcc else d
    try:
        private_id = new_private_id()
        extra = demail_fields(letter.demail, private_id)
    except DemailOptionError as exc:
        raise ComposeError("demail-options", str(exc)) from None
    d = _draft(case, sender, to, cc, subject, entity, now=now, max_bytes=max_bytes, extra=extra)
    return replace(d, envid=private_id, demail=letter.demail)


def _draft(
    case: str,
    sender: str,
    to: tuple[str, ...],
    cc: tuple[str, ...],
    subject: str,
    entity: bytes,
    *,
    now: datetime,
    max_bytes: int,
    extra: tuple[tuple[str, str], ...] = (),
) -> Draft:
    """The outer headers for checked values around a built entity; ``extra`` fields are ASCII, checked by the caller."""
    domain = sender.rpartition("@")[2]
    message_id = f"{secrets.token_hex(16)}@{domain}"
    headers = (
        f"From: {sender}\r\n".encode("ascii")
        + _address_field("To", to)
        + (_address_field("Cc", cc) if cc else b"")
        + f"Subject: {encode_subject(subject)}\r\n".encode("ascii")
        + f"Date: {format_datetime(now)}\r\nMessage-ID: <{message_id}>\r\n".encode("ascii")
        + b"".join(f"{name}: {value}\r\n".encode("ascii") for name, value in extra)
        + b"MIME-Version: 1.0\r\n"
    )
    if len(headers) + len(entity) > max_bytes:
        raise ComposeError("too-large", f"{len(headers) + len(entity)} bytes > [limits] max_message_bytes {max_bytes}")
    recipients = tuple(dict.fromkeys(to + cc))
    return Draft(message_id, case, sender, recipients, headers, entity)


def report_entity(report_type: str, human_text: str, report: bytes) -> bytes:
    """``multipart/report`` (RFC 6522): the text for people, then the machine-readable part.

    ``report`` is a complete entity (its Content-Type, a blank line, its body) in 7-bit
    CRLF lines; nothing of the reported message is added, the caller decides what is told.
    """
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,63}", report_type):
        raise ComposeError("invalid-text", f"report type {report_type!r}")
    return multipart("report", [text_entity(human_text), report], f" report-type={report_type};")


def report_draft(
    *,
    case: str,
    mail_from: str,
    to: str,
    subject: str,
    entity: bytes,
    now: datetime,
    max_bytes: int,
    extra: tuple[tuple[str, str], ...] = (),
) -> Draft:
    """A message around a prepared entity (a ``report_entity``) to one recipient, checked like a letter.

    ``extra`` header fields must be printable ASCII without CR/LF (refused otherwise): they
    go into the message as given.
    """
    for name, value in extra:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", name) or not re.fullmatch(r"[ -~]{1,900}", value):
            raise ComposeError("control-character", f"header {name!r} must be printable ASCII on one line")
    return _draft(
        check_case(case),
        check_address(mail_from, field="from"),
        (check_address(to, field="to"),),
        (),
        check_subject(subject),
        entity,
        now=now,
        max_bytes=max_bytes,
        extra=extra,
    )
