"""What the gateway records about each message and each mailbox, as plain values.

A message is known by its idempotency key (mailbox, folder, UIDVALIDITY, UID), with the
sha256 of its raw bytes and its Message-ID as second checks. Its state says where it is:

  processing   intent recorded, files being written (crash recovery looks at these)
  stored       in a case folder
  quarantined  in the quarantine store
  duplicate    same bytes as an earlier message; nothing new written
  released     was quarantined, released by a person into a case folder

These values carry no storage detail; each store backend converts its rows to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

State = Literal["processing", "stored", "quarantined", "duplicate", "released"]
FINAL_STATES: tuple[State, ...] = ("stored", "quarantined", "duplicate", "released")
#: States of a message whose bytes arrived first (a later copy is a duplicate of it).
ORIGINAL_STATES: tuple[State, ...] = ("stored", "quarantined", "released")
#: States of a message filed in a case folder.
FILED_STATES: tuple[State, ...] = ("stored", "released")


@dataclass
class MessageRecord:
    """One message the gateway has taken responsibility for."""

    id: str
    mailbox: str
    folder: str
    uidvalidity: int
    uid: int
    sha256: str
    message_id: str | None
    size: int
    internaldate: str | None
    state: State
    target_state: State
    fetched_at: str = ""
    updated_at: str = ""
    case_ref: str | None = None
    case_folder: str | None = None
    path: str | None = None
    route: str | None = None
    reasons: list[str] = field(default_factory=list)
    verdict: dict[str, Any] | None = None
    duplicate_of: str | None = None
    manifest_sha256: str | None = None
    server_done: bool = False
    subject: str | None = None
    from_addr: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class MessagePlace(NamedTuple):
    """Where the ledger says a message's entry is: what verification compares with the disk.

    The few fields of a ``MessageRecord`` that ``audit verify`` reads for every message,
    without the rest (a provider's ledger holds hundreds of thousands of messages).
    """

    id: str
    state: str
    target_state: str
    path: str | None
    manifest_sha256: str | None

    @classmethod
    def of(cls, rec: MessageRecord) -> MessagePlace:
        return cls(rec.id, rec.state, rec.target_state, rec.path, rec.manifest_sha256)


MailboxState = Literal["ok", "error", "auth-failed"]


@dataclass(frozen=True)
class MailboxStatus:
    """The last poll, success and error of one mailbox, and its state since when.

    ``state`` is ``ok``, ``error`` (failing, retried with backoff) or ``auth-failed`` (the
    server rejected the login; retried only after a restart or ``auth_retry_interval``).
    As an update (``MessageStore.set_status``), a field left ``None`` keeps its stored
    value, except that ``state="ok"`` clears ``last_error`` and ``last_error_at``: the
    error is over, and its history is in the audit trail.
    """

    mailbox: str
    last_poll: str | None = None
    last_success: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    backlog: int | None = None
    uidvalidity: int | None = None
    state: MailboxState | None = None
    state_since: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class CaseSummary:
    """One case folder: how many messages are filed there and when the last one arrived."""

    case_folder: str | None
    case_ref: str | None
    messages: int
    last: str | None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)
