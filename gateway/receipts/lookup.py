"""The ledger as matching sees it: a read-only connection per thread, opened at the first receipt.

Receipts are matched where they are read (a worker process, or the intake's thread when
there is no pool), before anything about them is written; a read-only connection can
never change the ledger from there. Most batches hold no receipt and never open one.
"""

from __future__ import annotations

import threading

from gateway.config import Config
from gateway.receipts.match import OutboxLookup
from gateway.records.open import open_store, store_name

_local = threading.local()


def outbox_lookup(config: Config) -> OutboxLookup:
    """This thread's read-only view of the outbox of ``config``'s ledger."""
    key = store_name(config)
    opened: dict[str, OutboxLookup] = getattr(_local, "stores", None) or {}
    _local.stores = opened
    if key not in opened:
        opened[key] = open_store(config, readonly=True)
    return opened[key]
