"""The reader's locale: ``translate`` a text, show a recorded UTC instant in the configured zone.

Translations are a Python dict keyed by the English text (``gateway.ui.german``), not
gettext catalogues: there are two languages and a few hundred strings, a dict needs no
compile step (``.po`` -> ``.mo``) at build or install time, mypy and the tests see every
entry, and a test checks that each English text in use has a German one. A text with
``{fields}`` is a template; its translation must keep the same fields (tested too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from gateway.ui.german import GERMAN

CATALOGUES: dict[str, dict[str, str]] = {"de": GERMAN}

#: The gateway's own timestamp form (``gateway.clock.iso``), optionally without fraction; or
#: an instant with the offset a server gave it (an arrival time, ``2026-11-27T23:30:00+01:00``).
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})")

#: German names of the zone abbreviations a German reader knows; others are shown as the zone gives them.
_GERMAN_ABBREVIATIONS = {"CET": "MEZ", "CEST": "MESZ"}


def translate(text: str, language: str) -> str:
    """``text`` in ``language``; English, and any text without an entry, come back unchanged."""
    catalogue = CATALOGUES.get(language)
    return text if catalogue is None else catalogue.get(text, text)


def is_timestamp(value: object) -> bool:
    """Whether ``value`` is an instant as recorded: ``2026-11-25T09:15:00.000000Z``, or with an offset."""
    return isinstance(value, str) and _TIMESTAMP.fullmatch(value) is not None


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@dataclass(frozen=True)
class Locale:
    """A language (``en``/``de``) and an IANA time zone, as configured in ``[ui]``."""

    language: str = "en"
    timezone: str = "Europe/Berlin"

    def t(self, text: str, **fields: Any) -> str:
        """The translation of ``text``, with ``fields`` filled in (values are never parsed as templates)."""
        words = translate(text, self.language)
        return words.format(**fields) if fields else words

    def local(self, at: str | datetime) -> datetime:
        """A recorded instant (string or aware datetime) in the configured zone."""
        dt = datetime.fromisoformat(at.replace("Z", "+00:00")) if isinstance(at, str) else at
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.astimezone(_zone(self.timezone))

    def abbreviation(self, dt: datetime) -> str:
        name = dt.tzname() or dt.strftime("%z")
        return _GERMAN_ABBREVIATIONS.get(name, name) if self.language == "de" else name

    def time(self, at: str | datetime) -> str:
        """``2026-01-15T12:00:00Z`` -> ``2026-01-15 13:00:00 CET`` (de: ``15.01.2026 13:00:00 MEZ``).

        The abbreviation travels with each time: it tells the reader the zone and, in the
        hour that repeats when summer time ends, which of the two is meant. Text that is not
        an instant is returned as it is.
        """
        try:
            dt = self.local(at)
        except ValueError:
            return str(at)
        day = dt.strftime("%d.%m.%Y") if self.language == "de" else dt.strftime("%Y-%m-%d")
        return f"{day} {dt.strftime('%H:%M:%S')} {self.abbreviation(dt)}"

    def zone_note(self) -> str:
        """ "Times in Europe/Berlin (CET/CEST)": the zone and its abbreviations (winter/summer)."""
        names: list[str] = []
        year = datetime.now(UTC).year  # the zone's current rules, not those of a fixed year
        for month in (1, 7):
            abbr = self.abbreviation(datetime(year, month, 15, 12, tzinfo=UTC).astimezone(_zone(self.timezone)))
            if abbr not in names:
                names.append(abbr)
        return self.t("Times in {zone} ({names})", zone=self.timezone, names="/".join(names))


DEFAULT = Locale()
