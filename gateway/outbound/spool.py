"""The seam between the submission listener and the outbox: what accepting a letter means.

The listener answers 250 only after ``submit`` has returned, so whatever implements this
must have the letter on stable storage (and its audit event recorded) when it returns.
"""

from __future__ import annotations

from typing import Protocol


class Spool(Protocol):
    def submit(self, raw: bytes, *, mail_from: str, recipients: tuple[str, ...], case: str, submitted_by: str) -> str:
        """Sign/encrypt as configured, queue durably, return the outbound id.

        ``raw`` is the message exactly as the clerk's mail program sent it; ``case`` the
        case reference the routing rules found in its subject; ``submitted_by`` the
        authenticated user. Raises ``gateway.errors.PermanentError`` (the listener answers
        5xx with its message) or ``TransientError`` (4xx: the mail program tries again).
        """
        ...
