"""The store contract: what the gateway asks of wherever it keeps messages and the audit trail.

Callers (intake, daemon, CLI, audit verify and reports) use only these Protocols, never
SQL, so the SQLite backend (``records/sqlite``) and a later PostgreSQL one are
interchangeable. Two guarantees every backend keeps:

* A message's state change and the audit events describing it commit in one
  transaction (a ``UnitOfWork``): no event for work that was not committed, no
  committed work without its event.
* The chain has one head, taken under an explicit lock inside that transaction, so
  several writers (mailbox workers, the CLI, other nodes) extend one chain without
  forking it. SQLite holds its write lock from BEGIN IMMEDIATE; PostgreSQL would read
  the head row with ``SELECT … FOR UPDATE``.

``snapshot()`` gives reads that all see one moment, which ``audit verify`` needs to
compare the chain, the checkpoints and the message rows. ``StoreOperations`` writes the
operations once over any backend's unit of work. The outbox (``OutboxStore``) and the
delivery records (``DeliveryStore``) sit beside ``MessageStore`` under the same two
guarantees; a delivery step given with an outbox change commits with it.

Mailbox leases (``LeaseStore``, ``records.leases``) let several nodes share one database:
a store given a ``fence`` (the lease its mailbox worker holds) checks it inside every
unit of work, after the head lock, and refuses the whole transaction with ``LeaseLost``
once another node holds a newer epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Protocol

from gateway.clock import iso, utcnow
from gateway.errors import PermanentError, PoststelleError
from gateway.receipts.deliveries import advance, new_record, state_event
from gateway.receipts.model import DeliveryState
from gateway.records.actors import DAEMON
from gateway.records.chain import AuditEntry, AuditEvent, ChainHead, ChainRow
from gateway.records.deliveries import DeliveryRecord, DeliveryStep, DeliveryTarget, Outcome
from gateway.records.export import JsonlExport
from gateway.records.leases import Acquisition, Fence, Lease, acquired_event, released_event
from gateway.records.messages import CaseSummary, MailboxState, MailboxStatus, MessagePlace, MessageRecord, State
from gateway.records.outbox import ClaimTerms, OutboxRecord, OutboxState
from gateway.records.signing import Checkpoint, Signer


class StoreError(PoststelleError):
    """The store could not be opened, read or written; the message names the backend's reason."""


class ChangedMeanwhile(StoreError, PermanentError):
    """A person's decision was based on a state another process has changed since; nothing was written."""


class DuplicateKey(StoreError):
    """A message with this id or idempotency key is already recorded; nothing was written."""


class LeaseLost(StoreError):
    """The mailbox's lease row names another holder or a newer epoch than this worker's; nothing was written.

    The worker stops the mailbox before its next batch and follows (tries to acquire again later).
    """

    def __init__(self, message: str, fence: Fence, now: Lease | None) -> None:
        super().__init__(message)
        self.fence = fence
        self.now = now


def lease_lost(fence: Fence, now: Lease | None) -> LeaseLost:
    """The refusal of a commit or renewal made under ``fence`` when the row shows ``now``."""
    held = "no lease row" if now is None else f"now held by {now.holder} under epoch {now.epoch}"
    return LeaseLost(
        f"mailbox {fence.mailbox}: lease lost by node {fence.node} (epoch {fence.epoch}), {held}; nothing was written",
        fence,
        now,
    )


class StaleOutboxState(StoreError):
    """An outbox document was not in the state the caller read it in (someone else acted first)."""


@dataclass(frozen=True)
class OutboxChange:
    """One document's state change for ``outbox_save_many``, as ``outbox_save`` takes it."""

    rec: OutboxRecord
    events: Sequence[AuditEvent]
    expect: Sequence[OutboxState] | None = None
    expect_claim: str | None = None
    #: Delivery steps committed with the change (``submitted``, ``delayed``, ``failed``: the relay's answer).
    deliveries: Sequence[DeliveryStep] = ()
    #: The claim the change requires or makes (a claim, a take-over, a fenced completion).
    claim: ClaimTerms | None = None


@dataclass(frozen=True)
class EntryFilter:
    """Which audit entries to select; every condition given must hold. Results in chain order.

    ``case_names`` selects whole items: every entry of a message that was ever assigned
    to a case with one of these references or folder names (also through a ``routed``
    entry's ``case_folder``), and every entry of a document filed under one, so that
    entries carrying no case (``fetched``, ``moved``) are part of the story.
    ``correspondent`` is part of an address (ASCII letters match in either case) and
    selects whole messages the same way.
    """

    case_names: tuple[str, ...] = ()
    message: str | None = None
    document: str | None = None
    correspondent: str | None = None
    since: str | None = None  # trail timestamp, inclusive
    until: str | None = None  # trail timestamp, exclusive
    events: tuple[str, ...] = ()


@dataclass
class AuditSettings:
    """How a writing store chains: the default actor, checkpoint signing, the JSON-lines copy."""

    actor: str = DAEMON
    signer: Signer | None = None
    checkpoint_every: int = 1000
    export: JsonlExport | None = None
    #: The node name put into every entry's details (``node``) when several nodes share the trail.
    node: str | None = None


# -- reading -----------------------------------------------------------------------------------
class MessageReader(Protocol):
    def get(self, msg_id: str) -> MessageRecord | None: ...

    def get_many(self, ids: Sequence[str]) -> dict[str, MessageRecord]:
        """The records of those ``ids`` that exist, by id (one query per few hundred ids)."""
        ...

    def by_key(self, mailbox: str, folder: str, uidvalidity: int, uids: Sequence[int]) -> dict[int, MessageRecord]:
        """The recorded messages among ``uids`` of one folder, by UID."""
        ...

    def first_by_sha256(self, sha256: str) -> MessageRecord | None:
        """The message these exact bytes first arrived as (stored, quarantined or released)."""
        ...

    def by_message_id(self, message_id: str) -> list[MessageRecord]: ...

    def first_by_sha256_many(self, sha256s: Sequence[str]) -> dict[str, MessageRecord]:
        """``first_by_sha256`` for a batch's digests in one read: those found, by digest."""
        ...

    def by_message_ids(self, message_ids: Sequence[str]) -> dict[str, list[MessageRecord]]:
        """``by_message_id`` for a batch's Message-IDs in one read: those found, each list oldest first."""
        ...

    def in_state(self, state: State, *, mailbox: str | None = None) -> list[MessageRecord]: ...

    def awaiting_server(self, mailbox: str, folder: str) -> list[MessageRecord]:
        """Finished messages whose server-side move is not yet confirmed."""
        ...

    def all_messages(self) -> Iterator[MessageRecord]: ...

    def message_places(self) -> Iterator[MessagePlace]:
        """Every message's place (``all_messages`` in the same order, five fields each)."""
        ...

    def places_of(self, ids: Sequence[str]) -> dict[str, MessagePlace]:
        """The places of those ``ids`` that exist, by id (``get_many`` with five fields each)."""
        ...

    def messages_of_case(self, case_folder: str) -> list[MessageRecord]:
        """Messages filed (stored or released) in one case folder, oldest first."""
        ...

    def cases(self) -> list[CaseSummary]: ...

    def counts_by_state(self) -> dict[str, int]: ...

    def verification_counts(self) -> dict[str, int]:
        """How many recorded messages got each verdict (verified, unverified, quarantined)."""
        ...

    def statuses(self) -> list[MailboxStatus]: ...


class AuditReader(Protocol):
    def entries(self, since_seq: int = 0) -> Iterator[AuditEntry]:
        """Entries after ``since_seq``, in chain order."""
        ...

    def chain_rows(self, since_seq: int = 0) -> Iterator[ChainRow]:
        """Entries after ``since_seq`` as plain rows (``chain.ChainRow``), in chain order, streamed.

        What verification reads: every entry once, hashed from the stored bytes.
        """
        ...

    def seqs_of_hash(self, entry_hash: str) -> list[int]:
        """The seqs of the entries whose stored hash is ``entry_hash`` (one, in a sound chain)."""
        ...

    def entry(self, seq: int) -> AuditEntry | None: ...

    def entry_hashes(self, since_seq: int = 0) -> Iterator[tuple[int, str]]:
        """(seq, stored hash) after ``since_seq``, in chain order; cheaper than whole entries."""
        ...

    def select(self, f: EntryFilter) -> Iterator[AuditEntry]: ...

    def checkpoints(self) -> list[Checkpoint]:
        """Every signed checkpoint, by seq."""
        ...

    def head(self) -> ChainHead | None:
        """The head row the next entry attaches to; None if this store keeps none (an old schema)."""
        ...

    def count(self) -> int:
        """How many entries the trail holds."""
        ...


class OutboxReader(Protocol):
    def outbox_get(self, outbox_id: str) -> OutboxRecord | None: ...

    def outbox_list(self, states: Sequence[OutboxState] = (), *, case_ref: str | None = None) -> list[OutboxRecord]:
        """Documents in any of ``states`` (all when empty), oldest first."""
        ...

    def outbox_counts(self) -> dict[str, int]:
        """How many documents are in each state."""
        ...

    def outbox_lacking_copies(self, *, sent_folder: bool = False) -> list[OutboxRecord]:
        """Finished documents sent to someone without their case-folder copy (``sent_folder``: or Sent copy)."""
        ...

    def outbox_oldest_waiting(self) -> str | None:
        """When the oldest document still waiting to go out (queued or deferred) was queued; None if none."""
        ...


class DeliveryReader(Protocol):
    def deliveries_list(
        self, states: Sequence[DeliveryState] = (), *, case_ref: str | None = None
    ) -> list[DeliveryRecord]:
        """Delivery records in any of ``states`` (all when empty), of one case if given, oldest document first."""
        ...

    def delivery_get(self, document_id: str) -> list[DeliveryRecord]:
        """One document's delivery records, in the order of its envelope recipients (empty if none)."""
        ...

    def delivery_counts(self) -> dict[str, int]:
        """How many delivery records (document, recipient) are in each state."""
        ...

    def outbox_by_envid(self, envid: str) -> OutboxRecord | None:
        """The document sent with this ENVID (a DSN's Original-Envelope-Id, De-Mail's private id)."""
        ...

    def outbox_by_message_id(self, message_id: str) -> OutboxRecord | None:
        """The document sent with this Message-ID (without angle brackets), as an MDN names it."""
        ...


class ReadSnapshot(MessageReader, AuditReader, OutboxReader, DeliveryReader, Protocol):
    """Reads that all see the same moment of the store."""


# -- writing -----------------------------------------------------------------------------------
class UnitOfWork(Protocol):
    """One transaction: everything done through it commits together or not at all."""

    def insert_messages(self, records: Sequence[MessageRecord]) -> None:
        """Record new messages; ``DuplicateKey`` if an id or idempotency key is taken."""
        ...

    def current_placement(self, msg_id: str) -> tuple[str, str | None] | None:
        """(state, manifest sha256) of a message as this transaction sees it, under its write lock."""
        ...

    def finish_messages(self, records: Sequence[MessageRecord]) -> None:
        """Write each record's outcome: state, path, manifest, reasons, case, route, verdict, duplicate_of."""
        ...

    def forget_processing(self, ids: Sequence[str]) -> None:
        """Delete these messages if they are still in ``processing``."""
        ...

    def set_server_done(self, ids: Sequence[str]) -> None: ...

    def update_status(self, status: MailboxStatus) -> None:
        """Upsert a mailbox's status row; ``None`` fields keep their stored values, ``state="ok"`` clears the error."""
        ...

    def append(self, events: Sequence[AuditEvent]) -> None:
        """Chain ``events`` after the head, taken under the head lock, and move the head.

        Signs a checkpoint when ``checkpoint_every`` entries are unsealed.
        """
        ...

    def seal(self) -> None:
        """Sign the current head unless a checkpoint covers it already (needs a signer)."""
        ...

    def insert_outbox(self, rec: OutboxRecord) -> None:
        """Record a new outbox document and its recipients; ``DuplicateKey`` if the id is taken."""
        ...

    def save_outbox(
        self,
        rec: OutboxRecord,
        expect: Sequence[OutboxState] | None,
        expect_claim: str | None = None,
        claim: ClaimTerms | None = None,
    ) -> None:
        """Write the document's state and recipients; ``StaleOutboxState`` unless its state is in
        ``expect`` (and its claim is ``expect_claim``, when given, and meets ``claim``)."""
        ...

    def renew_claims(self, claims: Sequence[tuple[str, int]], ttl: float) -> list[str]:
        """Extend each (document, claim token) still active under that token by ``ttl`` seconds
        of the database's clock; the documents whose claim was renewed."""
        ...

    def load_delivery(self, document_id: str, recipient: str) -> DeliveryRecord | None:
        """A delivery record as this transaction sees it, under its write lock."""
        ...

    def delivery_target(self, document_id: str, recipient: str) -> DeliveryTarget | None:
        """What the outbox says of the document and ``recipient`` (None unless one of its envelope recipients)."""
        ...

    def save_delivery(self, rec: DeliveryRecord, new_entries: int) -> None:
        """Write the record's state and append its last ``new_entries`` timeline entries."""
        ...

    def check_fence(self, fence: Fence) -> None:
        """``LeaseLost`` unless the mailbox's lease row still names ``fence``'s holder and epoch."""
        ...

    def lease_take(self, mailbox: str, node: str, ttl: float) -> Acquisition:
        """Take the lease if it is free, expired or ``node``'s own (a restart): epoch + 1, ``ttl`` seconds."""
        ...

    def lease_give_up(self, lease: Lease) -> bool:
        """End ``lease`` now if the row still names its holder and epoch; whether it did."""
        ...


class MessageStore(MessageReader, Protocol):
    """Message state changes, each committed together with the events that describe it."""

    def plan(self, records: Sequence[MessageRecord], events: Sequence[AuditEvent]) -> None:
        """Record the intent for a batch (state ``processing``) before any file is written."""
        ...

    def finish(
        self,
        records: Sequence[MessageRecord],
        events: Sequence[AuditEvent],
        *,
        server_done: Sequence[str] = (),
        deliveries: Sequence[DeliveryStep] = (),
    ) -> None:
        """Move planned records to their final state; ``server_done``: ids whose server-side move happened.

        ``deliveries``: the steps the batch's receipts prove, applied in the same transaction,
        so a receipt is never stored without moving its records, nor the other way round.
        """
        ...

    def abandon(self, records: Sequence[MessageRecord], events: Sequence[AuditEvent]) -> None:
        """Forget intents whose files never reached their place; the message will be fetched again."""
        ...

    def mark_server_done(self, ids: Sequence[str], events: Sequence[AuditEvent]) -> None: ...

    def release(self, rec: MessageRecord, events: Sequence[AuditEvent]) -> None:
        """A quarantined message was placed into a case folder by a person."""
        ...

    def decide(self, rec: MessageRecord, events: Sequence[AuditEvent], *, was: tuple[str, str | None]) -> None:
        """A person's decision about a filed or quarantined message, written only if the message
        is still where the person saw it (``was``: state, manifest sha256); else ``ChangedMeanwhile``."""
        ...

    def set_status(
        self,
        mailbox: str,
        *,
        last_poll: str | None = None,
        last_success: str | None = None,
        last_error: str | None = None,
        last_error_at: str | None = None,
        backlog: int | None = None,
        uidvalidity: int | None = None,
        state: MailboxState | None = None,
        state_since: str | None = None,
    ) -> None:
        """Update a mailbox's status; fields not given keep their values (``state="ok"`` clears the error)."""
        ...


#: A document to record with ``outbox_enqueue``: its row, its events, its first delivery steps.
QueuedDocument = tuple[OutboxRecord, Sequence[AuditEvent], Sequence[DeliveryStep]]


class OutboxStore(OutboxReader, Protocol):
    """Outbox state changes, each committed together with the events that describe it."""

    def outbox_enqueue(
        self,
        rec: OutboxRecord,
        events: Sequence[AuditEvent],
        *,
        deliveries: Sequence[DeliveryStep] = (),
        more: Sequence[QueuedDocument] = (),
    ) -> None:
        """Record a document whose bytes are already durable in its spool file (with its
        recipients' first delivery steps, ``queued``); ``more``: documents that commit with it
        (a letter's separate messages for Bcc recipients)."""
        ...

    def outbox_save(
        self,
        rec: OutboxRecord,
        events: Sequence[AuditEvent],
        *,
        expect: Sequence[OutboxState] | None = None,
        expect_claim: str | None = None,
        claim: ClaimTerms | None = None,
    ) -> None:
        """Move a document to ``rec``'s state; ``expect``: the states it must be in, ``expect_claim``:
        the claim it must carry, ``claim``: its token, expiry, or a new claim (else ``StaleOutboxState``)."""
        ...

    def outbox_renew(self, claims: Sequence[tuple[str, int]], ttl: float) -> list[str]:
        """Extend claims (document, token) that still hold by ``ttl`` seconds of the database's clock.

        Returns the documents renewed; one missing was taken over by another process (or
        finished) and must not be completed by the caller.
        """
        ...

    def outbox_save_many(self, changes: Sequence[OutboxChange]) -> list[bool]:
        """Several ``outbox_save`` in one transaction (one commit); per change whether it was made.

        A change whose expectation no longer holds is left out (False), the others commit.
        """
        ...


class DeliveryStore(DeliveryReader, Protocol):
    """Delivery records, each step committed together with the events that describe it."""

    def delivery_apply(self, steps: Sequence[DeliveryStep], events: Sequence[AuditEvent]) -> list[Outcome]:
        """Apply ``steps`` in order (``receipts.deliveries.advance``) in one transaction with ``events``
        and one ``delivery-state`` event per recorded step; per step what it did.

        A step for a document or recipient the outbox does not know records nothing
        (``not-ours``); a recorded document without a record yet gets one; a receipt for a
        recipient never handed over to the relay is kept as ``contradictory``.
        """
        ...


class AuditStore(AuditReader, Protocol):
    def record_events(self, events: Sequence[AuditEvent]) -> None:
        """Events that change no message state (config loaded, certificates collected)."""
        ...

    def seal(self) -> None:
        """Sign the head now (end of a run, a person's decision), so no tail is left unsealed."""
        ...

    def export_jsonl(self) -> int:
        """Append the entries the JSON-lines copy lacks; returns how many (0 without a copy)."""
        ...


class LeaseStore(Protocol):
    """Mailbox leases, judged by the database's clock; see ``records.leases``."""

    #: The lease this store's commits are fenced with (set by ``lease_acquire``); None: unfenced.
    fence: Fence | None

    def lease_acquire(self, mailbox: str, node: str, ttl: float) -> Acquisition:
        """Take the mailbox's lease if free, expired or ``node``'s own; on success the store is fenced with it.

        Granted, it commits with a ``lease-acquired`` or ``lease-taken-over`` event; refused, nothing is written.
        """
        ...

    def lease_renew(self, lease: Lease, ttl: float) -> Lease:
        """Extend ``lease`` by ``ttl`` seconds from now; ``LeaseLost`` once another holder or epoch is in the row."""
        ...

    def lease_renew_many(self, leases: Sequence[Lease], ttl: float) -> dict[str, Lease]:
        """Renew several leases of one node in one commit; the renewed ones by mailbox (a missing one is lost)."""
        ...

    def lease_release(self, lease: Lease) -> bool:
        """End ``lease`` at a clean stop (``lease-released``), so another node need not wait for its expiry."""
        ...

    def leases(self) -> list[Lease]:
        """Every mailbox's lease row, by mailbox, ``expired`` judged by the database's clock now."""
        ...


class Store(MessageStore, AuditStore, OutboxStore, DeliveryStore, LeaseStore, Protocol):
    """One open store. Not shared between threads: each thread opens its own."""

    readonly_note: str | None  # set when a read-only opening may not see the newest entries

    @property
    def schema_version(self) -> int: ...

    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]: ...

    def snapshot(self) -> AbstractContextManager[ReadSnapshot]: ...

    def close(self) -> None: ...


# -- the operations, once for every backend -----------------------------------------------------
class StoreOperations:
    """The writes of ``MessageStore``, ``AuditStore``, ``OutboxStore`` and ``DeliveryStore`` over a
    backend's ``unit_of_work``."""

    audit_settings: AuditSettings
    fence: Fence | None = None

    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]:
        raise NotImplementedError

    def snapshot(self) -> AbstractContextManager[ReadSnapshot]:
        raise NotImplementedError

    def leases(self) -> list[Lease]:
        raise NotImplementedError

    def plan(self, records: Sequence[MessageRecord], events: Sequence[AuditEvent]) -> None:
        now = iso(utcnow())
        for rec in records:
            rec.fetched_at = rec.fetched_at or now
            rec.updated_at = now
        with self.unit_of_work() as uow:
            uow.insert_messages(records)
            uow.append(events)

    def finish(
        self,
        records: Sequence[MessageRecord],
        events: Sequence[AuditEvent],
        *,
        server_done: Sequence[str] = (),
        deliveries: Sequence[DeliveryStep] = (),
    ) -> None:
        now = iso(utcnow())
        for rec in records:
            rec.updated_at = now
        with self.unit_of_work() as uow:
            uow.set_server_done(server_done)
            uow.finish_messages(records)
            uow.append(events)
            apply_deliveries(uow, deliveries)

    def abandon(self, records: Sequence[MessageRecord], events: Sequence[AuditEvent]) -> None:
        with self.unit_of_work() as uow:
            uow.forget_processing([rec.id for rec in records])
            uow.append(events)

    def mark_server_done(self, ids: Sequence[str], events: Sequence[AuditEvent]) -> None:
        with self.unit_of_work() as uow:
            uow.set_server_done(ids)
            uow.append(events)

    def release(self, rec: MessageRecord, events: Sequence[AuditEvent]) -> None:
        self.finish([rec], events)

    def decide(self, rec: MessageRecord, events: Sequence[AuditEvent], *, was: tuple[str, str | None]) -> None:
        rec.updated_at = iso(utcnow())
        with self.unit_of_work() as uow:
            now = uow.current_placement(rec.id)
            if now != was:
                raise ChangedMeanwhile(
                    f"message {rec.id} changed while this decision was made (now {now[0] if now else 'gone'}); "
                    "nothing was written: look at it again and repeat if still right"
                )
            uow.finish_messages([rec])
            uow.append(events)

    def set_status(
        self,
        mailbox: str,
        *,
        last_poll: str | None = None,
        last_success: str | None = None,
        last_error: str | None = None,
        last_error_at: str | None = None,
        backlog: int | None = None,
        uidvalidity: int | None = None,
        state: MailboxState | None = None,
        state_since: str | None = None,
    ) -> None:
        status = MailboxStatus(
            mailbox, last_poll, last_success, last_error, last_error_at, backlog, uidvalidity, state, state_since
        )
        with self.unit_of_work() as uow:
            uow.update_status(status)

    def record_events(self, events: Sequence[AuditEvent]) -> None:
        with self.unit_of_work() as uow:
            uow.append(events)

    def outbox_enqueue(
        self,
        rec: OutboxRecord,
        events: Sequence[AuditEvent],
        *,
        deliveries: Sequence[DeliveryStep] = (),
        more: Sequence[QueuedDocument] = (),
    ) -> None:
        with self.unit_of_work() as uow:
            for r, evs, steps in ((rec, events, deliveries), *more):
                r.created_at = r.created_at or iso(utcnow())
                r.updated_at = r.updated_at or r.created_at
                uow.insert_outbox(r)
                uow.append(evs)
                apply_deliveries(uow, steps)

    def outbox_save(
        self,
        rec: OutboxRecord,
        events: Sequence[AuditEvent],
        *,
        expect: Sequence[OutboxState] | None = None,
        expect_claim: str | None = None,
        claim: ClaimTerms | None = None,
    ) -> None:
        rec.updated_at = iso(utcnow())
        with self.unit_of_work() as uow:
            uow.save_outbox(rec, expect, expect_claim, claim)
            uow.append(events)

    def outbox_renew(self, claims: Sequence[tuple[str, int]], ttl: float) -> list[str]:
        if not claims:
            return []
        with self.unit_of_work() as uow:
            return uow.renew_claims(claims, ttl)

    def outbox_save_many(self, changes: Sequence[OutboxChange]) -> list[bool]:
        now = iso(utcnow())
        made: list[bool] = []
        with self.unit_of_work() as uow:
            for c in changes:
                c.rec.updated_at = now
                try:
                    # The expectation is checked before anything of this change is written.
                    uow.save_outbox(c.rec, c.expect, c.expect_claim, c.claim)
                except StaleOutboxState:
                    made.append(False)
                    continue
                uow.append(c.events)
                apply_deliveries(uow, c.deliveries)
                made.append(True)
        return made

    def delivery_apply(self, steps: Sequence[DeliveryStep], events: Sequence[AuditEvent]) -> list[Outcome]:
        with self.unit_of_work() as uow:
            uow.append(events)
            return apply_deliveries(uow, steps)

    def seal(self) -> None:
        with self.unit_of_work() as uow:
            uow.seal()

    def lease_acquire(self, mailbox: str, node: str, ttl: float) -> Acquisition:
        self.fence = None  # the attempt itself is not fenced; a granted lease fences what follows
        # Followers ask every third of the lease time: a lease another node holds and has not
        # let expire is answered by a read, so they do not queue for the chain head the
        # holders' commits (and the take-overs of dead nodes' mailboxes) wait for.
        held = next((lease for lease in self.leases() if lease.mailbox == mailbox), None)
        if held is not None and held.holder != node and not held.expired:
            return Acquisition(None, held)
        with self.unit_of_work() as uow:
            got = uow.lease_take(mailbox, node, ttl)
            if got.lease is not None:
                uow.append([acquired_event(got)])
        if got.lease is not None:
            self.fence = got.lease.fence
        return got

    def lease_release(self, lease: Lease) -> bool:
        self.fence = None
        with self.unit_of_work() as uow:
            ended = uow.lease_give_up(lease)
            if ended:
                uow.append([released_event(lease)])
        return ended

    def export_jsonl(self) -> int:
        if self.audit_settings.export is None:
            return 0
        with self.snapshot() as snap:
            return self.audit_settings.export.export(snap)


def apply_deliveries(uow: UnitOfWork, steps: Sequence[DeliveryStep]) -> list[Outcome]:
    """Advance each step's record inside ``uow`` and chain a ``delivery-state`` event per recorded step."""
    if not steps:
        return []
    now = iso(utcnow())
    outcomes: list[Outcome] = []
    for step in steps:
        target = uow.delivery_target(step.document_id, step.recipient)
        if target is None:
            outcomes.append(Outcome("not-ours", step, None, None))
            continue
        rec = uow.load_delivery(step.document_id, step.recipient)
        if rec is None:
            rec = new_record(step.document_id, step.recipient, target.case_ref, now)
        outcome = advance(rec, step, handed_over=target.handed_over)
        assert outcome.record is not None
        saved = replace(outcome.record, updated_at=now)
        uow.save_delivery(saved, 1)
        outcomes.append(replace(outcome, record=saved))
    uow.append([state_event(o) for o in outcomes if o.record is not None])
    return outcomes
