"""Map case references (Aktenzeichen) to folder names on disk, and back.

A reference such as ``1 K 1234/25`` comes out of a routing rule applied to an untrusted
subject, yet it becomes a directory name under ``cases_dir``. The mapping therefore has to be

* **safe**: always a single path component on POSIX and Windows, never ``.``/``..``, never
  hidden, never a Windows device name, never one of the gateway's reserved ``_``/``.`` names;
* **injective**: two different references never share a folder (a merged case file is a data
  protection incident), which also means we never truncate;
* **invertible**: the folder name alone tells which reference it holds;
* **readable**: a clerk browsing the share recognises ``1 K 1234%2F25``.

The rule (documented for users in ``docs/case-folders.md``):

1. Normalise the reference: NFC, every run of white space becomes one space, strip. Case and
   dashes are *not* folded: the routing layer did that already, and folding here would merge
   references the routing layer deliberately kept apart.
2. Reject it (:class:`InvalidCaseReference`) if it is empty or contains control, format or
   surrogate characters.
3. Keep ASCII letters and digits, space, ``-``, ``.``, ``_`` and the cased Latin letters
   U+00C0..U+024F (``ä ö ü ß é ł``...). Write every other character as ``%XX`` per UTF-8
   byte, upper-case hex (``/`` -> ``%2F``, ``%`` -> ``%25``).
4. Escape the first character if it is ``.``, ``_``, ``-`` or space, and the last if it is
   ``.`` or space. Escape the first character if the name is a Windows device name (``CON``,
   ``PRN``, ``AUX``, ``NUL``, ``COM0``-``COM9``, ``LPT0``-``LPT9``), also with an extension and
   in any case. The list is the one attachment names use (``filing.safenames``); its other
   entries (``CONIN$``, ``COM¹``...) cannot occur here, as ``$`` and ``¹`` are escaped.
5. Reject results longer than 150 UTF-8 bytes.

Kept characters never include ``%`` and escapes always start with ``%``, so decoding is
unambiguous; that is the whole injectivity argument.

With ``slash="readable"`` (an installation's choice, ``[routing] folder_slash``), ``/`` is
written as U+2215 DIVISION SLASH ``∕`` instead of ``%2F``: ``1 K 1234∕25``. A ``∕`` in the
reference itself is not a kept character, so it is still escaped (``%E2%88%95``) and a ``∕``
in a name always stands for ``/``: the argument above holds unchanged. U+2215 has no
compatibility decomposition, so no NFC/NFD/NFKC step on a share turns it into a separator.
"""

from __future__ import annotations

import re
import unicodedata

from gateway.errors import PermanentError
from gateway.filing.safenames import is_device_name

__all__ = [
    "MAX_FOLDER_NAME_BYTES",
    "READABLE_SLASH",
    "SLASH_STYLES",
    "InvalidCaseReference",
    "case_folder_name",
    "case_reference_from_folder",
    "is_reserved_folder",
]

MAX_FOLDER_NAME_BYTES = 150
"""Leaves room under the usual 255-byte limit and keeps paths on SMB shares short."""

_WHITESPACE_RUN = re.compile(r"\s+")
_ASCII_KEPT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -._")
_CASED_LETTER = frozenset({"Lu", "Ll", "Lt"})
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})
_ESCAPE_FIRST = frozenset(".-_ ")
_ESCAPE_LAST = frozenset(". ")
_PERCENT_RUN = re.compile(r"(?:%[0-9A-F]{2})+")
READABLE_SLASH = "\u2215"
SLASH_STYLES = ("percent", "readable")


class InvalidCaseReference(PermanentError, ValueError):
    """The reference cannot be (or the folder name was not) produced by the mapping.

    ``reason`` is machine-readable so callers can log and route on it without parsing text:
    ``"empty"``, ``"control-character"``, ``"too-long"``, ``"not-a-case-folder"``.
    Permanent: the same text never maps, so the caller records the reason (routing falls
    back to the unassigned folder) instead of retrying. Also a ``ValueError``, the bad input
    value it always was, for callers that catch it as one.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


def _normalise_reference(reference: str) -> str:
    text = unicodedata.normalize("NFC", reference)
    return _WHITESPACE_RUN.sub(" ", text).strip(" ")


def _is_kept(ch: str) -> bool:
    """Characters written as they are: portable, visible and unambiguous on screen.

    Non-Latin letters are escaped on purpose: right-to-left scripts reorder how the name is
    displayed, some letters are invisible (Hangul fillers) or look like separators
    (U+01C0 'ǀ', which is why only *cased* letters qualify).
    """
    if ch in _ASCII_KEPT:
        return True
    return "\u00c0" <= ch <= "\u024f" and unicodedata.category(ch) in _CASED_LETTER


def _escape(ch: str) -> str:
    return "".join(f"%{byte:02X}" for byte in ch.encode("utf-8"))


def case_folder_name(reference: str, *, slash: str = "percent") -> str:
    """Return the folder name for ``reference``; see the module docstring for the rule.

    ``slash`` is ``"percent"`` (``/`` as ``%2F``) or ``"readable"`` (``/`` as ``∕``).

    Raises :class:`InvalidCaseReference` rather than guessing: the caller routes the message
    to ``_unassigned`` and a person looks at it.
    """
    text = _normalise_reference(reference)
    if not text:
        raise InvalidCaseReference("empty")
    if len(text) > MAX_FOLDER_NAME_BYTES:
        # Escaping never shortens, so this is already too long; don't scan 10 MB subjects.
        raise InvalidCaseReference("too-long", f"{len(text)} characters")
    for ch in text:
        if unicodedata.category(ch) in _FORBIDDEN_CATEGORIES:
            raise InvalidCaseReference("control-character", f"U+{ord(ch):04X}")
    if slash not in SLASH_STYLES:
        raise ValueError(f"slash must be one of {SLASH_STYLES}, not {slash!r}")
    readable = slash == "readable"
    parts = [ch if _is_kept(ch) else READABLE_SLASH if readable and ch == "/" else _escape(ch) for ch in text]
    if parts[0] in _ESCAPE_FIRST:
        parts[0] = _escape(parts[0])
    if parts[-1] in _ESCAPE_LAST:
        parts[-1] = _escape(parts[-1])
    name = "".join(parts)
    if is_device_name(name):
        parts[0] = _escape(parts[0])
        name = "".join(parts)
    size = len(name.encode("utf-8"))
    if size > MAX_FOLDER_NAME_BYTES:
        raise InvalidCaseReference("too-long", f"{size} bytes > {MAX_FOLDER_NAME_BYTES}")
    return name


def case_reference_from_folder(name: str) -> str:
    """Return the (normalised) reference whose folder is ``name``.

    Only names that :func:`case_folder_name` produces (with either ``slash`` style: a folder
    made before an installation changed the style still belongs to its case) are accepted,
    byte for byte: lower-case
    hex, needless escapes, reserved names or folders created by hand raise
    :class:`InvalidCaseReference` with reason ``"not-a-case-folder"``, so a stray directory
    is never mistaken for a case.
    """

    def unescape(match: re.Match[str]) -> str:
        data = bytes.fromhex(match.group(0).replace("%", ""))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidCaseReference("not-a-case-folder", "invalid UTF-8 escape") from exc

    if not name or is_reserved_folder(name):
        raise InvalidCaseReference("not-a-case-folder", repr(name[:40]))
    reference = _PERCENT_RUN.sub(unescape, name.replace(READABLE_SLASH, "/"))
    try:
        canonical = {case_folder_name(reference, slash=style) for style in SLASH_STYLES}
    except InvalidCaseReference as exc:
        raise InvalidCaseReference("not-a-case-folder", exc.reason) from exc
    if name not in canonical:
        raise InvalidCaseReference("not-a-case-folder", "not in canonical form")
    return reference


def is_reserved_folder(name: str) -> bool:
    """True for gateway-internal folders (``_unassigned``, ``.incoming``...).

    :func:`case_folder_name` never produces such names, so they cannot collide with a case.
    """
    return name.startswith(("_", "."))
