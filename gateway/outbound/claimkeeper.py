"""Renewing this process's outbox claims while the relay has their documents.

A claim lapses ``claim_ttl`` after it was made or last renewed (the database's clock), and
another node may then take the document over. A keeper thread renews every claim this
process holds at a third of that interval, so a slow relay never lets a live claim lapse.
Before a document is handed to the relay its claim must have been confirmed within half
the interval, else it is renewed first: a process that was paused (SIGSTOP, a frozen VM)
and wakes up finds its claim gone and does not send what another node has already sent.
The completion that follows is fenced by the claim token anyway (``ClaimTerms.fence``);
the check only keeps a woken process from sending at all.
"""

from __future__ import annotations

import threading
import time

import structlog

from gateway.records.outbox import OutboxRecord
from gateway.records.store import Store

log = structlog.get_logger("poststelle.outbox")


class ClaimKeeper:
    """The claims of one drain pass (shared by its lanes), renewed in a thread until ``close``."""

    def __init__(self, store: Store, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self._held: dict[str, tuple[int, float]] = {}  # id -> (claim token, monotonic time last confirmed)
        self._lost: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, rec: OutboxRecord, confirmed_at: float) -> None:
        """Keep renewing ``rec``'s claim, made at ``confirmed_at`` (monotonic, taken before the commit)."""
        with self._lock:
            self._held[rec.id] = (rec.claim_token, confirmed_at)
            self._lost.discard(rec.id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="outbox-claims", daemon=True)
                self._thread.start()

    def let_go(self, outbox_id: str) -> None:
        with self._lock:
            self._held.pop(outbox_id, None)
            self._lost.discard(outbox_id)

    def still_ours(self, rec: OutboxRecord) -> bool:
        """Whether ``rec``'s claim holds: confirmed within half the interval, or renewed now."""
        with self._lock:
            if rec.id in self._lost or rec.id not in self._held:
                return False
            token, at = self._held[rec.id]
        if time.monotonic() - at < self.ttl / 2:
            return True
        return rec.id in self._renew([(rec.id, token)])

    def _renew(self, claims: list[tuple[str, int]]) -> set[str]:
        started = time.monotonic()
        renewed = set(self.store.outbox_renew(claims, self.ttl))
        with self._lock:
            for outbox_id, token in claims:
                if self._held.get(outbox_id, (None, 0.0))[0] != token:
                    continue  # let go meanwhile
                if outbox_id in renewed:
                    self._held[outbox_id] = (token, started)
                else:
                    self._lost.add(outbox_id)
                    log.warning(
                        "outbox claim lost: another process took the document over", id=outbox_id, claim_token=token
                    )
        return renewed

    def _run(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            with self._lock:
                claims = [(i, token) for i, (token, _) in self._held.items() if i not in self._lost]
            if not claims:
                continue
            try:
                self._renew(claims)
            except Exception as exc:  # noqa: BLE001 - the next renewal tries again; a lapse is fenced
                log.warning("renewing outbox claims failed", error=str(exc))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
