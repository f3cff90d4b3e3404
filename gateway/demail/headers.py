"""The ``X-de-mail-*`` header fields of a fetched message, read into a ``DemailMeta``.

TR 01201 says a field that occurs twice counts by its FIRST occurrence, also for the fields
the integrity value covers. Mail programs disagree about which copy they show, and an
attacker who adds a second ``X-de-mail-authoritative: yes`` or a second ``From`` hopes that
some reader takes the copy the provider never vouched for. So this module does not ask
``email`` which copy it returns: :func:`split_fields` cuts the header block into fields
byte-exactly (also what the integrity check hashes), the first one of each name is used,
and every repetition of a De-Mail field or of ``From`` is reported as a flag.

Values are read as written: ``yes``/``no`` become booleans; any other value of a yes/no
field or of a field with a fixed vocabulary is kept as text (``raw_values``) with an
``unknown-value:<field>`` flag, and the boolean stays ``None``, so ``meta.authoritative is
True`` can only mean the field said ``yes``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gateway.mime.headers import decode_header_text

__all__ = [
    "AUTH_LEVELS",
    "MESSAGE_TYPES",
    "NOTIFICATION_TYPES",
    "OPTION_FIELDS",
    "PRIVATE_ID_MAX",
    "DemailMeta",
    "RawField",
    "parse_demail_headers",
    "split_fields",
]

PREFIX = "x-de-mail-"
PRIVATE_ID_MAX = 1024
MESSAGE_TYPES = (
    "normal",
    "confirmation of dispatch",
    "confirmation of receipt",
    "confirmation of retrieve",
    "malware-acknowledge",
    "malware-notification",
    "notification",
    "identification",
)
AUTH_LEVELS = ("normal", "high")
NOTIFICATION_TYPES = ("unknown-recipient", "closed-account", "invalid-format", "other")
#: The send options (values yes/no), by field name; the DemailMeta attribute is the value.
OPTION_FIELDS = {
    "x-de-mail-confirmation-of-dispatch": "confirmation_of_dispatch",
    "x-de-mail-confirmation-of-receipt": "confirmation_of_receipt",
    "x-de-mail-confirmation-of-retrieve": "confirmation_of_retrieve",
    "x-de-mail-authoritative": "authoritative",
    "x-de-mail-private": "private",
}
_TEXT_FIELDS = {
    "x-de-mail-sender": "sender",
    "x-de-mail-chosen-recipient": "chosen_recipient",
    "x-de-mail-actual-recipient": "actual_recipient",
    "x-de-mail-auth-mechanism": "auth_mechanism",
    "x-de-mail-message-id": "demail_message_id",
    "x-de-mail-originator-provider": "originator_provider",
    "x-de-mail-account-holder": "account_holder",
    "x-de-mail-private-id": "private_id",
    "x-de-mail-version": "version",
}
_VOCABULARY_FIELDS = {
    "x-de-mail-message-type": ("message_type", MESSAGE_TYPES),
    "x-de-mail-auth-level": ("auth_level", AUTH_LEVELS),
    "x-de-mail-notification-type": ("notification_type", NOTIFICATION_TYPES),
}
#: The integrity value and the certificate are the integrity check's business, not metadata.
_BULKY = ("x-de-mail-integrity", "x-de-mail-signature-certificate")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_LINE = re.compile(rb"[^\n]*\n|[^\n]+$")
_RECIPIENT_PART = re.compile(r"\s*(to|cc|bcc)\s*=\s*(.*)", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class RawField:
    """One header field as sent: ``raw`` is the whole field with its folding and line end."""

    name: str  # as written (without trailing white space before the colon)
    lower: str
    raw: bytes

    @property
    def value_bytes(self) -> bytes:
        """The bytes after the colon, folding included, without the final line end."""
        value = self.raw.split(b":", 1)[1]
        if value.endswith(b"\r\n"):
            return value[:-2]
        return value[:-1] if value.endswith(b"\n") else value

    def text(self) -> str:
        """The value unfolded and made safe to show (RFC 2047 not applied: De-Mail values are plain)."""
        return decode_header_text(self.value_bytes, encoded_words=False).strip()


def split_fields(raw: bytes) -> tuple[tuple[RawField, ...], bytes | None, tuple[str, ...]]:
    """Cut the header block of ``raw`` into fields, byte for byte, and find the body.

    Returns the fields in order, the body (``None`` when there is no empty line, i.e. no
    body at all) and problems: ``malformed-header-line`` for a line that is neither a field
    nor a continuation (it is attached to nothing and covered by nothing).
    """
    end = _HEADER_END.search(raw)
    if raw.startswith((b"\r\n", b"\n")):
        block, body = b"", raw[2 if raw.startswith(b"\r\n") else 1 :]
    elif end is None:
        block, body = raw, None
    else:
        # The header block keeps the line end of its last field; the body starts after the
        # empty line.
        first_nl = raw.index(b"\n", end.start())
        block, body = raw[: first_nl + 1], raw[end.end() :]
    fields: list[tuple[str, bytearray]] = []
    problems: list[str] = []
    for match in _LINE.finditer(block):
        line = match.group(0)
        if line[:1] in (b" ", b"\t"):
            if fields:
                fields[-1][1].extend(line)
            else:
                problems.append("malformed-header-line")
            continue
        name_b, sep, _ = line.partition(b":")
        name = name_b.rstrip(b" \t")
        if not sep or not name or any(c <= 0x20 or c >= 0x7F for c in name):
            problems.append("malformed-header-line")
            continue
        fields.append((name.decode("ascii"), bytearray(line)))
    out = tuple(RawField(n, n.lower(), bytes(b)) for n, b in fields)
    return out, body, tuple(dict.fromkeys(problems))


def first_fields(fields: tuple[RawField, ...]) -> dict[str, RawField]:
    """The first occurrence of each field name (lower case), as TR 01201 counts them."""
    out: dict[str, RawField] = {}
    for f in fields:
        out.setdefault(f.lower, f)
    return out


def duplicate_flags(fields: tuple[RawField, ...]) -> tuple[str, ...]:
    """``duplicate-header:<name>`` for every De-Mail field and ``From`` that occurs twice."""
    seen: dict[str, int] = {}
    for f in fields:
        seen[f.lower] = seen.get(f.lower, 0) + 1
    return tuple(
        f"duplicate-header:{name}"
        for name, count in seen.items()
        if count > 1 and (name.startswith(PREFIX) or name == "from")
    )


def _yes_no(text: str) -> bool | None:
    word = text.strip().lower()
    return True if word == "yes" else False if word == "no" else None


def _recipients(text: str) -> tuple[tuple[str, str], ...]:
    """``to=a@x, b@y; cc=c@z`` as (kind, address) pairs; parts of another shape are skipped."""
    out: list[tuple[str, str]] = []
    for part in text.split(";"):
        m = _RECIPIENT_PART.fullmatch(part)
        if m is None:
            continue
        kind = m.group(1).lower()
        out.extend((kind, a.strip()) for a in m.group(2).split(",") if a.strip())
    return tuple(out)


@dataclass(frozen=True)
class DemailMeta:
    """What the ``X-de-mail-*`` fields of one message say (first occurrences; see the module doc).

    ``present`` is false when the message has no De-Mail field at all. ``flags`` name what
    a reader must know: duplicates, unknown values, an over-long private id, malformed
    header lines. ``raw_values`` keeps the text of every De-Mail field (first occurrence)
    except the integrity value and the certificate, which ``integrity.py`` reads.
    """

    present: bool
    from_: str | None = None
    message_type: str | None = None
    authoritative: bool | None = None
    private: bool | None = None
    confirmation_of_dispatch: bool | None = None
    confirmation_of_receipt: bool | None = None
    confirmation_of_retrieve: bool | None = None
    auth_level: str | None = None
    auth_mechanism: str | None = None
    sender: str | None = None
    chosen_recipient: str | None = None
    chosen_recipients: tuple[tuple[str, str], ...] = ()
    actual_recipient: str | None = None
    originator_provider: str | None = None
    account_holder: str | None = None
    private_id: str | None = None
    version: str | None = None
    demail_message_id: str | None = None
    notification_type: str | None = None
    raw_values: tuple[tuple[str, str], ...] = ()
    flags: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The record's shape: every attribute, recipients as ``{"kind", "address"}`` objects."""
        return {
            "present": self.present,
            "from": self.from_,
            "message_type": self.message_type,
            "authoritative": self.authoritative,
            "private": self.private,
            "confirmation_of_dispatch": self.confirmation_of_dispatch,
            "confirmation_of_receipt": self.confirmation_of_receipt,
            "confirmation_of_retrieve": self.confirmation_of_retrieve,
            "auth_level": self.auth_level,
            "auth_mechanism": self.auth_mechanism,
            "sender": self.sender,
            "chosen_recipient": self.chosen_recipient,
            "chosen_recipients": [{"kind": k, "address": a} for k, a in self.chosen_recipients],
            "actual_recipient": self.actual_recipient,
            "originator_provider": self.originator_provider,
            "account_holder": self.account_holder,
            "private_id": self.private_id,
            "version": self.version,
            "demail_message_id": self.demail_message_id,
            "notification_type": self.notification_type,
            "raw_values": {name: value for name, value in self.raw_values},
            "flags": list(self.flags),
        }


def parse_demail_headers(raw: bytes) -> DemailMeta:
    """Read the De-Mail metadata of a message (its bytes, or only its header block); never raises."""
    fields, _, problems = split_fields(raw)
    first = first_fields(fields)
    flags: list[str] = [*duplicate_flags(fields), *problems]
    values: dict[str, Any] = {}
    raw_values: list[tuple[str, str]] = []
    for lower, f in first.items():
        if not lower.startswith(PREFIX) or lower in _BULKY:
            continue
        text = f.text()
        raw_values.append((lower, text))
        if lower in OPTION_FIELDS:
            value = _yes_no(text)
            if value is None:
                flags.append(f"unknown-value:{lower}")
            values[OPTION_FIELDS[lower]] = value
        elif lower in _VOCABULARY_FIELDS:
            attr, allowed = _VOCABULARY_FIELDS[lower]
            norm = " ".join(text.lower().split())
            if norm not in allowed:
                flags.append(f"unknown-value:{lower}")
                values[attr] = text
            else:
                values[attr] = norm
        elif lower in _TEXT_FIELDS:
            values[_TEXT_FIELDS[lower]] = text
    private_id = values.get("private_id")
    if isinstance(private_id, str) and len(private_id) > PRIVATE_ID_MAX:
        flags.append("too-long:x-de-mail-private-id")
    chosen = values.get("chosen_recipient")
    from_field = first.get("from")
    return DemailMeta(
        present=any(name.startswith(PREFIX) for name in first),
        from_=from_field.text() if from_field is not None else None,
        chosen_recipients=_recipients(chosen) if isinstance(chosen, str) else (),
        raw_values=tuple(raw_values),
        flags=tuple(dict.fromkeys(flags)),
        **values,
    )
