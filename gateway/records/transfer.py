"""Moving a whole ledger from one backend to another: the rows, table by table, in a fixed order.

The copy is of rows, not of the store's values: an audit entry's stored bytes (its time,
its canonical details, its hashes) and a checkpoint's signature must arrive exactly as
they were hashed and signed, and nothing on the way may re-encode them. The tables come
in an order that satisfies the foreign keys (a document before its recipients and its
delivery records), each in its own insertion order, so that ties the readers break by
arrival (messages fetched in the same microsecond) come out as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: The tables a ledger copy holds, in the order they are written. ``audit_head`` is not
#: among them: the target's head is set to the source's (``LedgerCopy.head``).
TABLES = (
    "messages",
    "mailbox_status",
    "audit",
    "audit_checkpoints",
    "outbox",
    "outbox_recipients",
    "deliveries",
    "delivery_timeline",
)


@dataclass(frozen=True)
class TableRows:
    """One table's rows as stored, column for column (``columns`` names them)."""

    table: str
    columns: tuple[str, ...]
    rows: Iterable[tuple[Any, ...]]
