"""The dataclasses the verification views share: the report and the database snapshot.

``verify.py`` (the database side and the whole run), ``jsonl.py`` (the shipped copy) and
``files.py`` (the files on disk) all read a ``DbSnapshot`` and add to a ``VerifyReport``;
they live here so that ``verify.py`` can import the other two without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.audit.digests import DigestsBySeq
from gateway.records.chain import GENESIS, ChainBreak
from gateway.records.messages import MessagePlace


# -- the report -----------------------------------------------------------------------------------
@dataclass
class VerifyReport:
    """What was checked and every break found; ``ok`` decides the exit status."""

    entries: int = 0
    head_hash: str = GENESIS
    checkpoints: int = 0
    sealed_up_to: int = 0
    public_key_id: str | None = None
    case_folders: int = 0
    case_entries: int = 0
    quarantine_entries: int = 0
    sent_entries: int = 0
    ledger_messages: int = 0
    jsonl_file: str | None = None
    jsonl_lines: int = 0
    jsonl_lagging: int = 0
    #: ``audit verify --since``: the head an earlier run proved, and its entry's seq.
    since_hash: str | None = None
    since_seq: int | None = None
    breaks: list[ChainBreak] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.breaks

    @property
    def unsealed(self) -> int:
        """Entries after the last signed checkpoint (``entries`` counts from ``since_seq`` with --since)."""
        return max(0, (self.since_seq or 0) + self.entries - self.sealed_up_to)

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("breaks",)}
        out["ok"] = self.ok
        out["unsealed"] = self.unsealed
        out["breaks"] = [b.to_json() for b in self.breaks]
        return out


# -- what the database contributes ---------------------------------------------------------------
@dataclass(frozen=True)
class Placement:
    """The last stored/quarantined/released (or refiled) event of a message: where the record says it is."""

    seq: int
    event: str
    rel: str | None
    manifest_sha256: str | None


@dataclass
class DbSnapshot:
    entries: int = 0
    head_hash: str = GENESIS
    line_digests: DigestsBySeq = field(default_factory=DigestsBySeq)  # seq -> sha256 of the shipped line
    #: The stored hash of each entry a checkpoint names, and of the last entry (``last_seq``).
    entry_hashes: dict[int, str] = field(default_factory=dict)
    last_seq: int = 0
    placements: dict[str, Placement] = field(default_factory=dict)
    refiled_from: dict[str, str] = field(default_factory=dict)  # old "<folder>/<entry>" -> its manifest sha256
    checkpoints: list[tuple[int, str]] = field(default_factory=list)  # (seq, at)
    messages: list[MessagePlace] = field(default_factory=list)
    #: Sent copies the outbox recorded: "<folder>/sent/<entry>" -> (outbox id, manifest sha256).
    sent_copies: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    #: Outbox documents sent to someone whose copy is not recorded yet (filed at the next pass).
    sent_unfiled: set[str] = field(default_factory=set)
    content_hash: Callable[[int], str | None] = lambda seq: None
    stored_hash: Callable[[int], str | None] = lambda seq: None
