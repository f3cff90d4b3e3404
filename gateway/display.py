"""Text from strangers, made safe to show a person: no character reaches a terminal as a command.

Subjects, addresses, file names and server messages come from whoever wrote the e-mail.
A terminal obeys some of their characters instead of showing them: ESC and the C1 CSI
(U+009B) start control sequences (colours, cursor moves, OSC 8 links, window titles),
BEL rings, BS overwrites what was printed, bidi controls reorder the line, zero-width and
tag characters hide text. ``safe_text`` shows every such character as a visible escape
(``\\x1b``, ``\\u202e``) so the clerk sees what was sent; ``json_text`` does the same for
JSON without changing what a JSON parser reads back.

A backslash is left as it is: the text stays readable (paths, Windows names), and a
literal ``\\x1b`` someone typed into a subject is harmless to show.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

#: Control (Cc), format (Cf: bidi, zero-width, tags, soft hyphen), lone surrogates (Cs)
#: and the line and paragraph separators (Zl, Zp), which some terminals treat as newlines.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def is_unsafe(ch: str) -> bool:
    """Whether a terminal might act on ``ch`` (or hide it) instead of showing it."""
    return unicodedata.category(ch) in UNSAFE_CATEGORIES


def escape_char(ch: str) -> str:
    """``\\x1b``, ``\\u202e``, ``\\U000e0041``: the Python spelling, unambiguous and ASCII."""
    n = ord(ch)
    if n < 0x100:
        return f"\\x{n:02x}"
    if n < 0x10000:
        return f"\\u{n:04x}"
    return f"\\U{n:08x}"


def safe_text(value: object) -> str:
    """``str(value)`` with every unsafe character shown as a visible escape."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():  # no Cc, Cf, Cs, Zl, Zp (nor other non-printables) in it
        return text
    return "".join(escape_char(ch) if is_unsafe(ch) else ch for ch in text)


def _json_escape(ch: str) -> str:
    n = ord(ch)
    if n < 0x10000:
        return f"\\u{n:04x}"
    n -= 0x10000  # JSON spells characters beyond the BMP as a surrogate pair
    return f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}"


# Outside the ASCII range json.dumps(ensure_ascii=False) writes every character raw; the
# unsafe ones there are DEL and beyond (it escapes C0 itself, and the indentation's
# newlines must stay as they are). Most text is ASCII, so only its other characters are
# looked at.
_BEYOND_ASCII = re.compile(r"[^\x00-\x7e]")


def _json_char(m: re.Match[str]) -> str:
    ch = m.group()
    return _json_escape(ch) if is_unsafe(ch) else ch


def json_text(obj: Any, **kwargs: Any) -> str:
    """``json.dumps(obj, ensure_ascii=False, **kwargs)`` with unsafe characters as ``\\uXXXX`` escapes.

    Umlauts and other letters stay readable; what a parser reads back is unchanged.
    """
    text = json.dumps(obj, ensure_ascii=False, **kwargs)
    return _BEYOND_ASCII.sub(_json_char, text)
