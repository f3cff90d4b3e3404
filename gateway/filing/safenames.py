"""Safe file names for attachments whose names come from untrusted MIME headers.

An attachment name is chosen by the sender. Written to disk unchecked it can escape the
message folder (``../../evil.sh``), hide itself (``.bashrc``), disguise its type with a bidi
override (``\u202etxt.exe`` displays as ``exe.txt``), hit a Windows device (``CON``), or
simply be too long for the file system. :func:`safe_filename` turns any such input into one
harmless, readable path component; :class:`NameAllocator` makes the names unique within a
folder, case-insensitively, so the folder survives a copy to SMB or macOS shares intact.

Rules are listed in ``docs/case-folders.md`` ("Attachment file names").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from gateway.mime.headers import decode_header_text

__all__ = ["DEFAULT_MAX_BYTES", "MIN_MAX_BYTES", "NameAllocator", "is_device_name", "safe_filename"]

DEFAULT_MAX_BYTES = 120
"""Below the common 255-byte limit with room for the ``" (n)"`` suffix and a long folder."""
MIN_MAX_BYTES = 32
"""Smaller caps leave no room for a readable stem, an extension and a uniqueness suffix."""

_SEPARATORS = re.compile(r"[/\\]")
# Characters Windows refuses in file names; '/' and '\\' are handled as path separators.
_WINDOWS_FORBIDDEN = str.maketrans({ch: "_" for ch in '<>:"|?*'})
# Slash look-alikes are harmless to the file system but make a name *look* like a path.
_SLASH_LOOKALIKES = str.maketrans({ch: "_" for ch in "\u2044\u2215\u2216\u29f5\u29f8\u29f9\ufe68\uff0f\uff3c"})
_REMOVED_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})
_SPACE_RUN = re.compile(r" {2,}")
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,10}")
_DEVICE_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"}
)


def is_device_name(name: str) -> bool:
    """Whether Windows would open a device instead of a file of this name (``CON``, ``com1.txt``).

    Windows ignores the extension and trailing spaces when it checks for device names.
    Shared by attachment names and case folder names, so both refuse the same set.
    """
    stem = name.split(".", 1)[0].rstrip(" ")
    return stem.upper() in _DEVICE_NAMES


def _clean(text: str) -> str:
    """Everything except the length cap; may return ``""`` for garbage."""
    text = decode_header_text(text, replacement="")  # RFC 2047 leftovers, surrogates, controls, NFC
    # Last non-empty path component: "C:\\Windows\\evil.exe" -> "evil.exe", "dir/" -> "dir".
    components = [part for part in _SEPARATORS.split(text) if part]
    text = components[-1] if components else ""
    chars: list[str] = []
    for ch in text:
        if ch.isspace():
            chars.append(" ")
        elif unicodedata.category(ch) not in _REMOVED_CATEGORIES:
            chars.append(ch)
    text = "".join(chars).translate(_WINDOWS_FORBIDDEN).translate(_SLASH_LOOKALIKES)
    text = unicodedata.normalize("NFC", text)  # dropping a character may expose a composable pair
    text = _SPACE_RUN.sub(" ", text)
    text = text.lstrip(". ").rstrip(". ")
    if not any(ch.isalnum() for ch in text):
        return ""  # "....", "___", "???": nothing worth keeping
    if text.startswith("-"):
        text = "_" + text  # never mistaken for a command-line option by someone in a shell
    if is_device_name(text):
        text = "_" + text
    return text


def _split_extension(name: str) -> tuple[str, str]:
    """Split off a short ASCII extension (".pdf", ".docx"); long or odd ones stay in the stem."""
    dot = name.rfind(".")
    if dot > 0 and _EXTENSION.fullmatch(name[dot:]):
        return name[:dot], name[dot:]
    return name, ""


def _truncate_utf8(text: str, max_bytes: int) -> str:
    """Longest prefix of ``text`` within ``max_bytes`` UTF-8 bytes; never cuts a character."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", "ignore")


def _fit(stem: str, suffix: str, extension: str, max_bytes: int) -> str:
    """``stem + suffix + extension`` within ``max_bytes``, shortening only the stem.

    The result keeps every invariant of :func:`safe_filename`: shortening may expose a trailing
    dot or space, or leave a device name ("LPT1 2025.pdf" -> "LPT1.pdf"), so both are re-checked.
    """
    tail = suffix + extension
    budget = max_bytes - len(tail.encode("utf-8"))
    if budget < 8 and extension:
        # Hardly any room for the stem: give up the extension rather than the name.
        return _fit(stem + extension, suffix, "", max_bytes)
    shortened = _truncate_utf8(stem, budget)
    if shortened != stem:
        shortened = shortened.rstrip(". ")
    if not shortened or is_device_name(shortened + tail):
        shortened = _truncate_utf8("_" + shortened, budget).rstrip(". ")
    return shortened + tail


def safe_filename(raw: str | None, *, fallback: str = "attachment", max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """Return a single, harmless path component derived from an untrusted attachment name.

    The result never contains ``/``, ``\\``, NUL, control or format characters (bidi
    overrides, zero-width characters) or ``<>:"|?*``; never is ``""``, ``.`` or ``..``; never
    starts with ``.``, space or ``-``, never ends with ``.`` or space; is never a Windows device
    name (``CON``, ``con.txt``, ``COM1``...: those get a ``_`` prefix); is NFC and at most
    ``max_bytes`` UTF-8 bytes, shortening the stem and keeping a short extension. Anything that
    looks like a path is reduced to its last component. If nothing readable is left,
    ``fallback`` (itself cleaned) is returned.

    Accepts names the email library already decoded (RFC 2231/2047) and decodes leftover
    encoded words itself, because broken mailers put RFC 2047 words into ``filename=``.
    """
    if max_bytes < MIN_MAX_BYTES:
        raise ValueError(f"max_bytes must be at least {MIN_MAX_BYTES}, got {max_bytes}")
    name = _clean(raw) if raw is not None else ""
    if not name:
        name = _clean(fallback)
        if not name:
            raise ValueError(f"fallback {fallback!r} is not a usable file name")
    stem, extension = _split_extension(name)
    return _fit(stem, "", extension, max_bytes)


def _collision_key(name: str) -> str:
    """Compatibility caseless form: names equal under it may clash on some file system.

    Over-approximating is safe (we merely add a "(2)" suffix); Windows, SMB and macOS compare
    case-insensitively and macOS also normalises Unicode.
    """
    folded = unicodedata.normalize("NFKC", name).casefold()
    return unicodedata.normalize("NFKC", folded)


class NameAllocator:
    """Hands out unique names within one folder: 'a.pdf', 'a (2).pdf', 'a (3).pdf' ...

    Names are unique case-insensitively (so the folder also works on case-insensitive file
    systems) and every name obeys the rules of :func:`safe_filename`, including the byte cap.
    Seed ``reserved`` with the names the gateway writes itself (``original.eml``,
    ``manifest.json``...) so an attachment can never overwrite them.
    """

    def __init__(
        self,
        reserved: Iterable[str] = (),
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        fallback: str = "attachment",
    ) -> None:
        if max_bytes < MIN_MAX_BYTES:
            raise ValueError(f"max_bytes must be at least {MIN_MAX_BYTES}, got {max_bytes}")
        self._max_bytes = max_bytes
        self._fallback = fallback
        self._taken: set[str] = {_collision_key(name) for name in reserved}

    def allocate(self, wanted: str | None) -> str:
        """Return a safe name for ``wanted`` that no earlier call (or reserved name) used."""
        name = safe_filename(wanted, fallback=self._fallback, max_bytes=self._max_bytes)
        stem, extension = _split_extension(name)
        counter = 1
        while _collision_key(name) in self._taken:
            counter += 1
            name = _fit(stem, f" ({counter})", extension, self._max_bytes)
        self._taken.add(_collision_key(name))
        return name
