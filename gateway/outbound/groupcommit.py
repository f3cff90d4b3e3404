"""Group commit for the drain's lanes: changes that arrive while another lane commits go in together.

Each lane commits a document's outcome before it sends its next document (the crash story
in ``drain.py``), so with several lanes the commits queue on the store's write lock, and
each one is a flush of the ledger. Here a lane that finds a commit in progress leaves its
changes and waits; when that commit ends, the first waiter commits everything that
gathered meanwhile in one transaction, as a database's log writer does. No lane goes on
before its own changes are committed, so nothing is sent earlier than it would be with a
commit of its own, and at most one document per lane is inside the window in which a
crash leads to a resend. A lane only shares the flush instead of waiting for one of its own.

The store checks each change's expected state on its own (``outbox_save_many``), so a
document a person held meanwhile leaves out that change alone. An error that fails the
transaction fails it for every lane whose changes were in it: each raises it, as it would
have raised its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.records.store import OutboxChange

__all__ = ["GroupCommit"]


@dataclass
class _Request:
    changes: Sequence[OutboxChange]
    made: list[bool] = field(default_factory=list)
    error: BaseException | None = None
    done: bool = False


class GroupCommit:
    """``save_many`` for several threads, one transaction for the changes that wait together."""

    def __init__(self, save_many: Callable[[Sequence[OutboxChange]], list[bool]]) -> None:
        self._save_many = save_many
        self._cond = threading.Condition()
        self._waiting: list[_Request] = []
        self._busy = False

    def save_many(self, changes: Sequence[OutboxChange]) -> list[bool]:
        """Commit ``changes`` (with whatever else waits); per change, whether it was made."""
        request = _Request(changes)
        batch: list[_Request] = []
        with self._cond:
            self._waiting.append(request)
            while self._busy and not request.done:
                self._cond.wait()
            if not request.done:  # this thread commits for everyone waiting
                self._busy = True
                batch, self._waiting = self._waiting, []
        if batch:
            self._commit(batch)
        if request.error is not None:
            raise request.error
        return request.made

    def _commit(self, batch: list[_Request]) -> None:
        try:
            made = self._save_many([c for r in batch for c in r.changes])
        except BaseException as exc:  # noqa: BLE001 - handed to every request of the batch
            for r in batch:
                r.error = exc
        else:
            start = 0
            for r in batch:
                r.made = made[start : start + len(r.changes)]
                start += len(r.changes)
        finally:
            with self._cond:
                for r in batch:
                    r.done = True
                self._busy = False
                self._cond.notify_all()
