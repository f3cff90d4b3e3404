"""What the gateway records about each outgoing document and each of its recipients.

The states follow Postfix's queue:

  queued     accepted into the outbox, bytes durable, waiting for its first attempt
  active     handed to the delivery agent; committed *before* the relay sees DATA, so a
             document found active after a crash is resent (the one duplicate window)
  deferred   the relay answered 4xx or went away; ``next_attempt_at`` says when again
  sent       every recipient accepted by the relay
  bounced    refused (5xx) or older than ``max_lifetime``, for at least one recipient
  hold       a person stopped it; ``release`` makes it due again
  cancelled  a person withdrew it before it was sent

Recipients have their own state (pending, sent, bounced): a retry goes only to those
still pending, so a recipient who accepted is never sent the document twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

OutboxState = Literal["queued", "active", "deferred", "sent", "bounced", "hold", "cancelled"]
OUTBOX_STATES: tuple[OutboxState, ...] = ("queued", "active", "deferred", "sent", "bounced", "hold", "cancelled")
#: States in which the document still waits to go out (the scheduler looks at these).
WAITING: tuple[OutboxState, ...] = ("queued", "deferred")
#: States nothing changes any more.
DONE: tuple[OutboxState, ...] = ("sent", "bounced", "cancelled")
RecipientState = Literal["pending", "sent", "bounced"]


@dataclass
class RecipientStatus:
    """One envelope recipient: what the relay last said about it."""

    address: str
    state: RecipientState = "pending"
    reply: str | None = None  # "250 2.0.0 Ok: queued as 4Xz…", "550 5.1.1 …"
    queue_id: str | None = None
    updated_at: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class OutboxRecord:
    """One document in the outbox; ``path`` is its spool file (the exact bytes to send)."""

    id: str
    message_id: str
    case_ref: str
    case_folder: str
    mail_from: str
    sha256: str
    size: int
    path: str
    signed: str
    encrypted: bool
    envid: str
    state: OutboxState = "queued"
    recipients: list[RecipientStatus] = field(default_factory=list)
    key_sources: list[tuple[str, str]] = field(default_factory=list)
    attempts: int = 0
    next_attempt_at: str | None = None
    created_at: str = ""
    updated_at: str = ""
    last_reply: str | None = None
    resent: bool = False
    sent_path: str | None = None
    sent_manifest_sha256: str | None = None
    sent_folder: str | None = None  # the IMAP folder a copy was appended to
    claimed_by: str | None = None  # node:pid:start of the process that made it active
    claim_token: int = 0  # one more with every claim: a completion names the claim it ends (fencing)
    claim_expires_at: str | None = None  # when the claim lapses unless renewed (the database's clock)
    bcc: list[str] = field(default_factory=list)  # Bcc recipients (in no header); see docs/outbound.md
    bcc_copy_of: str | None = None  # a Bcc recipient's own message: the outbox id of the letter
    key_refusals: list[str] = field(default_factory=list)  # "certificate of X refused: expired (…)"

    def sent_to_someone(self) -> bool:
        return any(r.state == "sent" for r in self.recipients)

    def pending(self) -> list[RecipientStatus]:
        return [r for r in self.recipients if r.state == "pending"]

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["recipients"] = [r.to_json() for r in self.recipients]
        d["key_sources"] = [list(k) for k in self.key_sources]
        return d


@dataclass(frozen=True)
class ClaimTerms:
    """What an outbox change requires of, and does to, the document's claim (``outbound/claim.py``).

    ``fence``: the claim token the row must still carry, else the change is stale (a
    completion, or a take-over of that very claim). ``expired``: the row's claim must have
    lapsed by the database's clock (taking over from another node). ``ttl``: the change is a
    claim: the token grows by one and the claim lapses ``ttl`` seconds after the database's
    now; the new token and expiry are written back into the record. ``unfiled``: the row
    must record no sent copy yet (``sent_path``): of two processes filing one document's
    copy (its sender, and a node that found the claim expired), only the first records it.
    """

    fence: int | None = None
    expired: bool = False
    ttl: float | None = None
    unfiled: bool = False
