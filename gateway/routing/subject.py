"""Fold decoded subjects so that routing rules written in ASCII see what a human sees.

:func:`normalise_for_matching` gives a folded form (NFKC, look-alike dashes and spaces
unified, invisible characters removed) that only the routing regexes see. It is lossy and
must never be stored as "the subject"; the subject *as written* comes from
:func:`gateway.mime.headers.decode_header_text`.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalise_for_matching", "strip_reply_prefixes"]

# Dash look-alikes that NFKC leaves alone (or maps to another look-alike).
_DASHES = frozenset("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d")
_REMOVED_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})
_SPACE_RUN = re.compile(r" {2,}")


def _fold_characters(text: str) -> str:
    out: list[str] = []
    for ch in text:
        if ch in _DASHES:
            out.append("-")
        elif ch.isspace():
            # Includes TAB/LF (Cc) and NBSP, thin space, narrow NBSP, ideographic space.
            out.append(" ")
        elif unicodedata.category(ch) in _REMOVED_CATEGORIES:
            # Zero-width characters, bidi controls, soft hyphen, NUL, lone surrogates:
            # invisible to a human reading the subject, so invisible to routing too.
            continue
        else:
            out.append(ch)
    return "".join(out)


def normalise_for_matching(text: str) -> str:
    """Fold ``text`` so that a routing regex written with ASCII sees what a human sees.

    ``1 K\u00a01234\u2013\uff12\uff15`` and ``1 K 1234-25`` must route alike. Steps: NFKC
    (full-width digits and letters become ASCII), dash look-alikes become ``-``, every kind of
    white space becomes a plain space, control and format characters are dropped, NFKC again
    (dropping a character can bring a base and its combining mark together), runs of spaces
    collapse and the ends are stripped. Never raises; the result is only for matching, the
    original is what gets recorded.
    """
    text = unicodedata.normalize("NFKC", str(text))
    text = _fold_characters(text)
    text = unicodedata.normalize("NFKC", text)
    text = _fold_characters(text)
    return _SPACE_RUN.sub(" ", text).strip(" ")


# Reply/forward prefixes in the languages we see: English, German, and Outlook's variants.
# A counter may follow ("Re[2]:", "AW(3):", "Re^2:"); Outlook in some locales puts a space
# before the colon ("RE :"); full-width colons survive if the caller did not NFKC first.
# One prefix per match, looped in Python: a single regex with "(...)+" and white space on
# both sides of each prefix backtracks quadratically on "Re" followed by many spaces.
_REPLY_PREFIX = re.compile(
    r"(?:re|aw|antw|antwort|wg|fw|fwd)[ \t]*"
    r"(?:(?:\[\d{1,4}\]|\(\d{1,4}\)|\^\d{1,4})[ \t]*)?[:\uff1a]",
    re.IGNORECASE,
)


def strip_reply_prefixes(text: str) -> str:
    """Remove stacked reply and forward prefixes (``RE: AW: WG: Fwd:``) from the start.

    Routing and de-duplication want the subject of the correspondence, not how many times it
    bounced between inboxes. Only prefixes followed by a colon are removed, so a subject that
    merely starts with the letters "Re" or "AW" is left alone (and returned unchanged).
    """
    rest = text.lstrip(" \t")
    stripped = False
    while match := _REPLY_PREFIX.match(rest):
        rest = rest[match.end() :].lstrip(" \t")
        stripped = True
    return rest if stripped else text
