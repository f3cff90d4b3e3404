"""The one decoder of untrusted header text (RFC 2047, 8-bit, folding, controls, NFC).

Subjects arrive from anyone on the internet. They may be RFC 2047 encoded (correctly or not),
folded, split in the middle of a multi-byte character, labelled with charsets that do not exist,
or not encoded at all and sent as raw 8-bit bytes. A subject we cannot decode must still be
recorded and routed (at worst to ``_unassigned``), so nothing in this module raises on bad input.

:func:`decode_header_text` gives the text *as written* (decoded, unfolded, NFC): what the
audit trail and the case folder record. Routing folds it further
(:mod:`gateway.routing.subject`); that lossy form is never stored.

Every header value that reaches a file, a folder name, a log line or the audit trail goes
through it, so its output is safe to write anywhere as one line: no control character ever
comes out (see :func:`decode_header_text` for what replaces them).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata

__all__ = ["decode_header_text", "is_clean_header_text"]

# One RFC 2047 encoded word. The charset may carry an RFC 2231 language suffix
# ("utf-8*de"). The encoded text may not contain '?' (RFC 2047 section 2); we tolerate
# spaces in it because some mailers emit them in Q words, and we match on unfolded text.
_ENCODED_WORD = re.compile(r"=\?(?P<charset>[^?*\s]+)(?:\*[^?\s]*)?\?(?P<encoding>[bBqQ])\?(?P<text>[^?]*)\?=")
# Whitespace between two encoded words is not part of the text (RFC 2047 section 6.2).
_ONLY_WSP = re.compile(r"[ \t\r\n]*")
# Header folding: a line break followed by white space is removed (RFC 5322 section 2.2.3).
_FOLD = re.compile(r"\r\n(?=[ \t])|\r(?=[ \t])|\n(?=[ \t])")
_BARE_NEWLINE = re.compile(r"\r\n|\r|\n")
# Lone surrogates: the email library smuggles undecodable header bytes through str with the
# "surrogateescape" handler (U+DC80..U+DCFF); anything else is simply broken.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_NON_ESCAPE_SURROGATE = re.compile(r"[\ud800-\udc7f\udd00-\udfff]")
# What never leaves the decoder (Unicode category Cc: C0, DEL, C1). White-space controls (TAB,
# VT, FF, the information separators, NEL) read as a space; the others would move a terminal's
# cursor, ring it, or cut a C string, and become U+FFFD so the clerk sees that something was there.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_SPACE = frozenset("\t\n\v\f\r\x1c\x1d\x1e\x1f\x85")
# Bidirectional embeddings, overrides and isolates reorder what follows them on display
# ("Trojan Source", CVE-2021-42574); line and paragraph separators break lines in some viewers.
_BIDI_CONTROL = re.compile("[\u202a-\u202e\u2066-\u2069]")
_LINE_SEPARATOR = re.compile("[\u2028\u2029]")
# Printable ASCII only: nothing to unfold, repair, replace or normalise (most header values).
_PLAIN = re.compile(r"[\x20-\x7e]*")
_Q_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
# Charset labels we are willing to hand to codecs.lookup(): short and plain, so a hostile
# label cannot make us import odd modules or hit odd code paths.
_CHARSET_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+-]{0,39}")
# Codecs that exist in Python but are not mail charsets: they interpret escape sequences or
# are IDNA helpers that reject the "replace" error handler.
_NOT_A_CHARSET = frozenset({"idna", "punycode", "unicode-escape", "raw-unicode-escape"})
# Labels that senders use when they really mean a superset (the WHATWG encoding standard
# does the same): "iso-8859-1" mail routinely contains cp1252 quotes and euro signs.
_SUPERSET = {"ascii": "cp1252", "iso8859-1": "cp1252", "gb2312": "gb18030", "gbk": "gb18030"}


def _codec_name(label: str) -> str | None:
    """Return Python's codec name for a MIME charset label, or ``None`` if unusable."""
    if not _CHARSET_LABEL.fullmatch(label):
        return None
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        return None
    name = info.name
    if name in _NOT_A_CHARSET or not getattr(info, "_is_text_encoding", True):
        return None
    return _SUPERSET.get(name, name)


def codec_for_charset(label: str) -> str | None:
    """Python's codec for a MIME charset label; ``None`` for one that is unusable or not a charset."""
    return _codec_name(label)


def _try_decode(data: bytes, codec: str, errors: str = "strict") -> str | None:
    try:
        return data.decode(codec, errors)
    except (LookupError, ValueError, TypeError):
        # ValueError covers UnicodeDecodeError; some codecs raise plain UnicodeError.
        return None


def _decode_bytes(data: bytes, charset: str | None = None) -> str:
    """Decode bytes of uncertain charset; always returns text.

    Order: the declared charset (strict), then UTF-8 (strict; mislabelled UTF-8 is the most
    common error), then the declared charset with replacement characters, then cp1252
    (strict), then latin-1, which maps every byte and therefore cannot fail.
    """
    codec = _codec_name(charset) if charset else None
    if codec is not None:
        text = _try_decode(data, codec)
        if text is not None:
            return text
    text = _try_decode(data, "utf-8")
    if text is not None:
        return text
    if codec is not None:
        text = _try_decode(data, codec, "replace")
        if text is not None:
            return text
    text = _try_decode(data, "cp1252")
    if text is not None:
        return text
    return data.decode("latin-1")


def _word_bytes(encoding: str, text: str) -> bytes | None:
    """Decode the payload of one encoded word to bytes, or ``None`` if it is malformed."""
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        return None
    if encoding in "qQ":
        # Q encoding: '_' is a space, '=XX' a byte; a stray '=' is kept as is.
        raw = raw.replace(b"_", b" ")
        return _Q_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), raw)
    # B encoding: tolerate missing or excess padding, reject anything else.
    stripped = raw.replace(b" ", b"").rstrip(b"=")
    if len(stripped) % 4 == 1:
        return None
    padded = stripped + b"=" * (-len(stripped) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None


def _decode_encoded_words(text: str) -> str:
    """Replace RFC 2047 encoded words in ``text`` by their decoded text.

    Adjacent encoded words in the same charset are concatenated at the *byte* level before
    decoding, so a multi-byte character split across two words (a common bug) survives.
    Malformed words stay in the text literally.
    """
    out: list[str] = []
    pending: bytearray = bytearray()
    pending_charset: str | None = None
    pos = 0

    def flush() -> None:
        nonlocal pending_charset
        if pending_charset is not None:
            out.append(_decode_bytes(bytes(pending), pending_charset))
            pending.clear()
            pending_charset = None

    for match in _ENCODED_WORD.finditer(text):
        gap = text[pos : match.start()]
        data = _word_bytes(match.group("encoding"), match.group("text"))
        if data is None:
            flush()
            out.append(gap)
            out.append(match.group(0))
            pos = match.end()
            continue
        charset = match.group("charset").lower()
        if pending_charset is not None and _ONLY_WSP.fullmatch(gap):
            if charset != pending_charset:
                flush()
        else:
            flush()
            out.append(gap)
        if pending_charset is None:
            pending_charset = charset
        pending.extend(data)
        pos = match.end()
    flush()
    out.append(text[pos:])
    return "".join(out)


def _repair_surrogates(text: str) -> str:
    """Turn surrogate-escaped bytes back into characters; other lone surrogates become U+FFFD."""
    if not _SURROGATE.search(text):
        return text
    text = _NON_ESCAPE_SURROGATE.sub("\ufffd", text)
    return _decode_bytes(text.encode("utf-8", "surrogateescape"))


def _clean(text: str, replacement: str) -> str:
    """One line without control characters, NFC."""
    # An *encoded* CR or LF would let a sender break lines in logs and in the ledger record.
    text = _BARE_NEWLINE.sub(" ", text)
    text = _CONTROL.sub(lambda m: " " if m.group() in _CONTROL_SPACE else replacement, text)
    text = _LINE_SEPARATOR.sub(" ", text)
    text = _BIDI_CONTROL.sub(replacement, text)
    return unicodedata.normalize("NFC", text)


def decode_header_text(raw: str | bytes | None, *, encoded_words: bool = True, replacement: str = "\ufffd") -> str:
    """Decode a header value to Unicode text safe to store, show and log; never raises.

    Accepts what the email library hands over (``str``, possibly with surrogate-escaped
    8-bit bytes), raw header bytes, or ``None`` (missing header, returns ``""``). Folded lines
    are unfolded, encoded words decoded (see :func:`_decode_encoded_words`), and the result
    is NFC so that the same subject always compares equal to itself.

    ``encoded_words=False`` is for fields where RFC 2047 does not apply (addresses,
    Message-ID, Date): an "encoded word" there is literal text, and decoding it would show
    something the header does not say (``=?utf-8?q?boss@example.org?=`` is not an address).

    The result is the value *as written* on one line, with nothing a terminal, a log reader or
    a file format would act on (even when the sender encoded it): CR, LF, TAB and the other
    white-space controls become a space; every other C0/C1 control character (NUL, ESC, DEL,
    ...) and every bidirectional embedding, override or isolate becomes ``replacement``
    (U+FFFD, so a reader sees that something was there; a file name, which has its own
    rules, passes ``""``); U+2028 and U+2029 become a space. Use
    :func:`gateway.routing.subject.normalise_for_matching` before matching.
    """
    if raw is None:
        return ""
    if isinstance(raw, str) and _PLAIN.fullmatch(raw) and not (encoded_words and "=?" in raw):
        return raw
    text = _decode_bytes(raw) if isinstance(raw, bytes | bytearray) else str(raw)
    text = _repair_surrogates(text)
    text = _FOLD.sub("", text)
    # A bare line break not followed by white space is not valid folding; keep the words apart.
    text = _BARE_NEWLINE.sub(" ", text)
    if encoded_words:
        text = _decode_encoded_words(text)
        text = _repair_surrogates(text)  # a codec such as utf-7 can produce lone surrogates
    return _clean(text, replacement)


def is_clean_header_text(text: str) -> bool:
    """``text`` is what :func:`decode_header_text` could have produced (for checks and tests)."""
    return (
        not _CONTROL.search(text)
        and not _BIDI_CONTROL.search(text)
        and not _LINE_SEPARATOR.search(text)
        and not _SURROGATE.search(text)
        and unicodedata.is_normalized("NFC", text)
    )
