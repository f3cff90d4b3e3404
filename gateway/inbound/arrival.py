"""When a message arrived (Zugang) and when the gateway fetched it: two different moments.

The arrival is the server's INTERNALDATE: the moment the message was delivered into the
mailbox, which is what a records office dates a letter by and the moment its signature
must be judged at. The gateway may fetch it much later (after an outage, on the first
import of an existing mailbox), so the fetch time is recorded next to it, never in its
place. The arrival keeps the offset the server gave (``+01:00``), because that is what the
server said; the UTC instant follows from it. Only a server that sends no INTERNALDATE
leaves the fetch time as the best moment there is, and the record says so
(``source = "fetch"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from gateway.clock import iso

ArrivalSource = Literal["arrival", "fetch"]


@dataclass(frozen=True)
class Arrival:
    """The server's INTERNALDATE (aware, its own offset) or ``None``, and the fetch moment (UTC)."""

    received: datetime | None
    fetched: datetime

    def __post_init__(self) -> None:
        if self.fetched.tzinfo is None or (self.received is not None and self.received.tzinfo is None):
            raise ValueError("arrival times must be timezone-aware")

    @property
    def at(self) -> datetime:
        """The moment the message counts as arrived: INTERNALDATE, else the fetch."""
        return self.received if self.received is not None else self.fetched

    @property
    def source(self) -> ArrivalSource:
        """Which of the two moments ``at`` is."""
        return "arrival" if self.received is not None else "fetch"

    @property
    def received_text(self) -> str | None:
        """INTERNALDATE as recorded: ISO 8601 with the server's offset (``2026-11-27T23:30:00+01:00``)."""
        return self.received.isoformat() if self.received is not None else None

    @property
    def fetched_text(self) -> str:
        """The fetch moment as the gateway writes times (UTC, ``Z``)."""
        return iso(self.fetched)

    @property
    def utc(self) -> datetime:
        """``at`` as a UTC instant (the entry folder's name uses it)."""
        return self.at.astimezone(UTC)
