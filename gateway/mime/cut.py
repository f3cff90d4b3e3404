"""Byte-exact MIME cutting: headers, Content-Type, multipart parts, canonical CRLF.

Signatures are over the bytes the sender produced, so this module never re-serializes
anything with ``email``: it finds the parts of a multipart body between boundary
delimiters (the line break before a delimiter belongs to the delimiter, RFC 2046 §5.1.1)
and hands out slices of the original. Parsing errs toward rejection: a malformed
structure raises ``MimeError`` and the caller reports a reason instead of guessing.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import pybase64

from gateway.errors import SecurityError

#: Defensive bounds for hostile input. ``MAX_PARTS`` is also the largest
#: ``limits.max_mime_parts`` the configuration accepts (``config.load``): cutting a multipart
#: stops there whatever the caller's limit, because every part is a copy of its bytes plus
#: an object, and a message of a million empty parts must not cost a million of them
#: before the caller's count is reached. With the configured limit at most this, the
#: configured limit is the one that decides, and both say ``too-many-parts``.
MAX_HEADER_BYTES = 1024 * 1024
MAX_PARTS = 1000
MAX_DEPTH = 20

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_LINE_SPLIT = re.compile(rb"\r?\n")
_TOKEN = re.compile(r"[^\s()<>@,;:\\\"/\[\]?=]+")


class MimeError(SecurityError):
    """The MIME structure is malformed in a way that must not be guessed around.

    A ``SecurityError`` with reason ``malformed-mime``: a message whose structure cannot be
    cut is quarantined, never guessed around. ``detail`` says what was wrong.
    """

    def __init__(self, detail: str, reason: str = "malformed-mime") -> None:
        super().__init__(reason, detail)


class TooManyParts(MimeError):
    """More MIME parts than a bound allows: the structure is fine, there is just too much of it.

    A ``MimeError`` (callers that refuse any unreadable structure still do), with the
    reason ``too-many-parts``, the same reason the configured ``max_mime_parts`` gives.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail, "too-many-parts")


@dataclass(frozen=True)
class Entity:
    """One MIME entity as received: its bytes, unfolded headers and Content-Type."""

    raw: bytes
    headers: tuple[tuple[str, str], ...]
    body: bytes
    content_type: str = "text/plain"
    params: Mapping[str, str] = field(default_factory=dict)
    crlf: bool = False  # ``raw`` is known to be canonical CRLF (an opened layer's content)

    def header(self, name: str) -> str | None:
        """The first occurrence counts (as in De-Mail and most clients)."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [value for key, value in self.headers if key.lower() == lname]

    @property
    def is_multipart(self) -> bool:
        return self.content_type.startswith("multipart/")


def canonical_bytes(entity: Entity) -> bytes:
    """``entity.raw`` in canonical CRLF form, without scanning what is known to be canonical.

    Every part cut from canonical bytes is canonical (a part starts after a delimiter
    line's CRLF and ends before the CRLF of the next), so the signed part of an opened
    layer needs no second scan.
    """
    return entity.raw if entity.crlf else canonical_crlf(entity.raw)


def canonical_crlf(data: bytes) -> bytes:
    """Every line break as CRLF (RFC 5751 §3.1.1 canonical form); bare CR is kept."""
    if data.count(b"\n") == data.count(b"\r\n"):  # already canonical: two scans, no copies
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _decode_header_bytes(data: bytes) -> str:
    # RFC 6532 allows UTF-8 in headers; anything else survives as surrogates and
    # will simply not match what we look for.
    return data.decode("utf-8", errors="surrogateescape")


def parse_headers(block: bytes) -> tuple[tuple[str, str], ...]:
    """Unfold a header block into (name, value) pairs; lines without a colon are dropped."""
    out: list[tuple[str, str]] = []
    for line in _LINE_SPLIT.split(block):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            if out:
                name, value = out[-1]
                out[-1] = (name, value + " " + _decode_header_bytes(line.strip()))
            continue
        name_b, sep, value_b = line.partition(b":")
        if not sep or not name_b or name_b != name_b.strip():
            continue
        out.append((_decode_header_bytes(name_b), _decode_header_bytes(value_b.strip())))
    return tuple(out)


def _params(text: str) -> dict[str, str]:
    """Parse ``; name=value`` parameters, quoted strings with backslash escapes."""
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        if text[i] in "; \t":
            i += 1
            continue
        m = _TOKEN.match(text, i)
        if not m:
            # Skip one garbage character rather than guess its meaning.
            i += 1
            continue
        name = m.group(0).lower()
        i = m.end()
        while i < n and text[i] in " \t":
            i += 1
        if i >= n or text[i] != "=":
            continue
        i += 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            i += 1
            chars: list[str] = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(text[i])
                i += 1
            i += 1
            value = "".join(chars)
        else:
            start = i
            while i < n and text[i] != ";":
                i += 1
            value = text[start:i].strip()
        # First occurrence wins, as for headers: a second boundary= must not override.
        params.setdefault(name, value)
    return params


def parse_content_type(value: str | None) -> tuple[str, dict[str, str]]:
    """``(type/subtype, params)``; a missing or unparseable type is text/plain (RFC 2045 §5.2)."""
    if not value:
        return "text/plain", {}
    main, _, rest = value.partition(";")
    main = main.strip().lower()
    if main.count("/") != 1 or not all(_TOKEN.fullmatch(x) for x in main.split("/")):
        return "text/plain", {}
    return main, _params(rest)


def parse_entity(raw: bytes, *, crlf: bool = False) -> Entity:
    """Split one entity into headers and body without copying the body more than once.

    ``crlf=True`` records that ``raw`` is canonical CRLF (the caller made it so); the
    entity's parts inherit it.
    """
    if raw.startswith((b"\r\n", b"\n")):
        header_block, body = b"", raw[2:] if raw.startswith(b"\r\n") else raw[1:]
    else:
        m = _HEADER_END.search(raw, 0, MAX_HEADER_BYTES + 4)
        if m is None:
            if len(raw) > MAX_HEADER_BYTES:
                raise MimeError("header block too large")
            header_block, body = raw, b""
        else:
            header_block, body = raw[: m.start()], raw[m.end() :]
    headers = parse_headers(header_block)
    ctype_values = [v for k, v in headers if k.lower() == "content-type"]
    ctype, params = parse_content_type(ctype_values[0] if ctype_values else None)
    return Entity(raw=raw, headers=headers, body=body, content_type=ctype, params=params, crlf=crlf)


def split_multipart(body: bytes, boundary: str) -> list[bytes]:
    """The exact bytes of each body part between the delimiters, preamble/epilogue dropped.

    Raises MimeError when the boundary is invalid, no part exists or the close delimiter
    is missing: a truncated multipart/signed must not verify as a shorter message.
    """
    if not boundary or len(boundary) > 200:
        raise MimeError("invalid boundary")
    try:
        bnd = boundary.encode("ascii")
    except UnicodeEncodeError:
        raise MimeError("non-ASCII boundary") from None
    parts: list[bytes] = []
    start: int | None = None
    closed = False
    for delim_start, after, is_close in _delimiters(body, b"--" + bnd):
        if start is not None:
            parts.append(body[start:delim_start])
            if len(parts) > MAX_PARTS:
                raise TooManyParts(f"more than {MAX_PARTS} parts in one multipart")
        if is_close:
            closed = True
            break
        start = after
    if not closed:
        raise MimeError("missing close delimiter")
    if not parts:
        raise MimeError("multipart without parts")
    return parts


def _delimiters(body: bytes, marker: bytes) -> Iterator[tuple[int, int, bool]]:
    """(start incl. the preceding line break, index after the delimiter line, is close).

    A delimiter line is ``--boundary`` at the start of a line, optionally ``--``, then
    only spaces/tabs up to CRLF, LF or the end (RFC 2046 §5.1.1). bytes.find keeps this
    linear and fast on large bodies.
    """
    n = len(body)
    pos = 0
    while True:
        i = body.find(marker, pos)
        if i < 0:
            return
        pos = i + 1
        if i == 0:
            begin = 0
        elif body[i - 1] == 0x0A:
            begin = i - 2 if i >= 2 and body[i - 2] == 0x0D else i - 1
        else:
            continue
        k = i + len(marker)
        is_close = body.startswith(b"--", k)
        if is_close:
            k += 2
        while k < n and body[k] in (0x20, 0x09):
            k += 1
        if k == n:
            yield begin, k, is_close
        elif body.startswith(b"\r\n", k):
            yield begin, k + 2, is_close
        elif body[k] == 0x0A:
            yield begin, k + 1, is_close


def children(entity: Entity) -> list[Entity]:
    """The parsed body parts of a multipart entity."""
    boundary = entity.params.get("boundary")
    if boundary is None:
        raise MimeError("multipart without boundary")
    return [parse_entity(p, crlf=entity.crlf) for p in split_multipart(entity.body, boundary)]


def walk(entity: Entity, *, max_depth: int = MAX_DEPTH, max_parts: int = MAX_PARTS) -> Iterator[Entity]:
    """Every nested part below ``entity`` (not itself), depth first; message/rfc822 is a leaf.

    An attached message is a separate message whose signatures speak for its own author,
    so it is not searched. Raises MimeError beyond the bounds.
    """
    count = 0
    stack: list[tuple[Entity, int]] = [(entity, 0)]
    while stack:
        current, depth = stack.pop()
        if not current.is_multipart:
            continue
        if depth >= max_depth:
            raise MimeError("MIME nesting too deep")
        kids = children(current)
        count += len(kids)
        if count > max_parts:
            raise TooManyParts(f"more than {max_parts} MIME parts")
        for kid in reversed(kids):
            stack.append((kid, depth + 1))
        yield from kids


def base64_decode(data: bytes) -> bytes:
    """``binascii.a2b_base64`` (lenient: line breaks and stray characters skipped), faster.

    The stdlib decoder is the largest single cost of opening an encrypted message;
    pybase64 (SIMD) decodes the same input many times faster. The two differ on '='
    inside the data (binascii stops at a completed padding, pybase64 skips the '='): a
    parser differential that must not exist in a verifier. So pybase64 only sees input
    whose '=' are all trailing, where both agree (tests/test_mimecut.py checks this
    property against binascii); anything else, and anything pybase64 refuses, is decoded
    by binascii, whose answer counts.
    """
    pad = data.find(b"=")
    if pad < 0 or not data[pad:].strip(b"= \t\r\n"):
        try:
            return pybase64.b64decode(data, validate=False)
        except (binascii.Error, ValueError):
            pass
    return binascii.a2b_base64(data)


def decode_body(entity: Entity) -> bytes:
    """The body with its Content-Transfer-Encoding removed."""
    cte = (entity.header("content-transfer-encoding") or "7bit").strip().lower()
    if cte == "base64":
        try:
            return base64_decode(entity.body)
        except binascii.Error as exc:
            raise MimeError(f"bad base64: {exc}") from None
    if cte == "quoted-printable":
        return binascii.a2b_qp(entity.body)
    if cte in ("7bit", "8bit", "binary"):
        return entity.body
    raise MimeError(f"unknown Content-Transfer-Encoding {cte!r}")
