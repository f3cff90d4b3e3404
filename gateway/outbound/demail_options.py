"""De-Mail's legal send options (TR 01201) as header fields, and the private id receipts are matched by.

The options ask the provider for confirmations (Versand-, Eingangs-, Abholbestätigung) and
for "persönlich" and "absenderbestätigt" delivery. Every De-Mail the gateway sends carries
a fresh ``X-de-mail-private-id``; it is also the document's ENVID, so a provider's
confirmation and a relay's DSN are matched to the document the same way
(``receipts/match.py``). The TR allows an Abholbestätigung only for a "persönlich" De-Mail:
asked without it, the letter is refused before anything is built.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from gateway.errors import PermanentError


class DemailOptionError(PermanentError):
    """Options the TR does not allow together; nothing was composed."""


@dataclass(frozen=True)
class DemailOptions:
    """What a clerk asks of the De-Mail provider for one document."""

    dispatch_confirmation: bool = False  # Versandbestätigung
    receipt_confirmation: bool = False  # Eingangsbestätigung
    retrieval_confirmation: bool = False  # Abholbestätigung (needs private)
    private: bool = False  # persönlich
    authoritative: bool = False  # absenderbestätigt

    def check(self) -> None:
        if self.retrieval_confirmation and not self.private:
            raise DemailOptionError(
                "--retrieval-confirmation (Abholbestätigung) needs --private (persönlich): TR 01201 allows it "
                "only for a personal De-Mail; nothing was queued"
            )

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def new_private_id() -> str:
    """A fresh private id: printable ASCII, no ``+`` or ``=`` (an ENVID needs no xtext escaping)."""
    return f"pst.{secrets.token_hex(12)}"


def demail_fields(options: DemailOptions, private_id: str) -> tuple[tuple[str, str], ...]:
    """The option header fields, in the TR's order, and the private id."""
    options.check()
    yn = {True: "yes", False: "no"}
    return (
        ("X-de-mail-confirmation-of-dispatch", yn[options.dispatch_confirmation]),
        ("X-de-mail-confirmation-of-receipt", yn[options.receipt_confirmation]),
        ("X-de-mail-confirmation-of-retrieve", yn[options.retrieval_confirmation]),
        ("X-de-mail-authoritative", yn[options.authoritative]),
        ("X-de-mail-private", yn[options.private]),
        ("X-de-mail-private-id", private_id),
    )
