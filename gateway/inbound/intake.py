"""Intake of one mailbox: fetch -> ledger -> unwrap/route -> case folder -> tidy the server.

Why one module over 500 lines: the batch pipeline and crash recovery are two halves of one
contract (every state a crash can leave between the steps below); they stay side by side
so that a change to one is read against the other.

The order is the whole point (Postfix, getmail6):

1. fetch a batch with BODY.PEEK[] (nothing changes on the server);
2. decide each message's fate and write its files into the mailbox's staging area,
   invisible and not yet flushed (``workers.prepare``, in worker processes);
3. commit the intent to the ledger (state ``processing``, planned path) with the
   ``fetched`` events;
4. add each entry's manifest, flush the batch, and publish each entry with one atomic
   rename;
5. commit the final states with their events;
6. only then MOVE the messages on the server, and record that.

A crash between 3 and 5 is repaired by ``recover``: a published entry is complete (the
rename is atomic) and its row is finished; an unpublished one is abandoned and the
message, still in the folder, is fetched again. Whatever a crash left in the staging area
without an intent (between 2 and 3) is swept by ``recover`` too. A crash between 5 and 6 leaves the
message in the folder with a finished row: it is recognised by its key and only moved.
The same bytes arriving again (re-delivery, a message moved back, a UIDVALIDITY change)
are recognised by their sha256 and recorded as a duplicate, not stored twice.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from gateway.clock import iso, utcnow
from gateway.config import Config, MailboxConfig
from gateway.diskfull import disk_full_code, disk_full_text, full_path
from gateway.errors import DiskFull, PermanentError, TransientError
from gateway.filing.areas import Areas
from gateway.filing.dirs import UnsafeDirectory
from gateway.filing.entries import (
    StagedEntry,
    discard_staging,
    final_path,
    publish_entries,
    published_manifest,
    seal_staging,
    sha256_hex,
    sweep_staging,
)
from gateway.inbound.arrival import Arrival
from gateway.inbound.decide import Plan
from gateway.inbound.imap import MailboxSession
from gateway.inbound.records import (
    abandoned_event,
    certificate_event,
    duplicate_event,
    fetched_event,
    manifest_metadata,
    outcome_events,
    outcome_log_fields,
    reconciled_events,
    server_moved_events,
    stored_event,
)
from gateway.inbound.workers import Analyser, EntryJob, PendingPlan, Prepared, prepare_oversize
from gateway.outbound.outbox import enqueue
from gateway.outbound.protect import OutboundKeys
from gateway.receipts.acknowledge import AcknowledgementError, acknowledgement_for, receipt_of, wants_acknowledgement
from gateway.receipts.evidence import delivery_steps, stated_time
from gateway.records.chain import AuditEvent
from gateway.records.deliveries import DeliveryStep
from gateway.records.messages import MessageRecord
from gateway.records.store import Store
from gateway.statedir import area_root
from gateway.unwrap import UnwrapContext

log = structlog.get_logger("poststelle.intake")
Work = tuple[int, Arrival, EntryJob, PendingPlan]  # uid, arrival (INTERNALDATE and fetch), job, its preparation


@dataclass(frozen=True)
class Known:
    """The ledger's records for a batch: the first arrival of each digest, the messages of each Message-ID."""

    firsts: dict[str, MessageRecord]
    by_message_id: dict[str, list[MessageRecord]]


def new_message_id() -> str:
    return secrets.token_hex(6)


@dataclass
class BatchOutcome:
    stored: int = 0
    quarantined: int = 0
    duplicates: int = 0
    moved: int = 0

    def add(self, other: BatchOutcome) -> None:
        self.stored += other.stored
        self.quarantined += other.quarantined
        self.duplicates += other.duplicates
        self.moved += other.moved


class Intake:
    """Processes one mailbox's folder with one ledger connection."""

    def __init__(
        self,
        config: Config,
        mailbox: MailboxConfig,
        ledger: Store,
        ctx: UnwrapContext,
        *,
        after_commit: Callable[[], None] = lambda: None,
        analyser: Analyser | None = None,
        before_batch: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.mb = mailbox
        self.ledger = ledger
        self.ctx = ctx
        self.after_commit = after_commit
        #: Called before a batch's first commit; raises to stop the mailbox (a lease lost to another node).
        self.before_batch = before_batch
        self.log = log.bind(mailbox=mailbox.name)
        self.analyser = analyser or Analyser(config, ctx, workers=0)
        self.areas = Areas(config)  # the case folders and the quarantine, opened on first use
        self._io: ThreadPoolExecutor | None = None  # the pass's I/O thread (``io``)
        self._status_written: tuple[float, int] | None = None  # (monotonic time, uidvalidity) of the last idle status
        #: Seconds after which an idle mailbox's status (``last_poll``) is written again anyway.
        self.status_refresh = STATUS_REFRESH
        self._keys: OutboundKeys | None = None  # the authority's keys, loaded at the first acknowledgement

    @property
    def io(self) -> ThreadPoolExecutor:
        """The I/O thread of the current pass, started at its first IMAP command.

        It ends with the pass (``_end_io``): an idle mailbox then costs one thread (its
        worker's), not two, which matters when one process watches hundreds of mailboxes.
        """
        if self._io is None:
            self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"imap-{self.mb.name}")
        return self._io

    def _end_io(self) -> None:
        io, self._io = self._io, None
        if io is not None:
            io.shutdown(wait=True)

    def close(self) -> None:
        self._end_io()  # the analyser belongs to whoever passed it in
        self.areas.close()
        if self._keys is not None:
            self._keys.close()

    # -- crash recovery -------------------------------------------------------------------
    def recover(self) -> int:
        """Finish or abandon every intent this mailbox left in ``processing``."""
        n = 0
        for rec in self.ledger.in_state("processing", mailbox=self.mb.name):
            n += 1
            assert rec.path is not None
            final = Path(rec.path)
            area = self.areas[_area(rec.target_state)]
            folder = _folder_in(area.root, final)
            # Withdrawn from staging before looking: a previous holder of the mailbox that
            # wakes from a pause can no longer publish it after "not published" was found.
            discard_staging(area, final.name, self.mb.name)
            if final_path(area.root, folder, final.name) == final:
                manifest = published_manifest(area, folder, final.name)
            else:  # planned under a root the configuration has moved since: look where it was planned
                path = final / "manifest.json"
                manifest = path.read_bytes() if path.is_file() and not path.is_symlink() else None
            if manifest is not None:
                rec.state = rec.target_state
                rec.manifest_sha256 = sha256_hex(manifest)
                self.ledger.finish(
                    [rec],
                    [stored_event(rec, area.root, recovered=True)],
                    deliveries=self._recovered_steps(rec, manifest),
                )
                self.log.info("recovered published entry", uid=rec.uid, msg=rec.id, state=rec.state)
            else:
                self.ledger.abandon([rec], [abandoned_event(rec)])
                self.log.info("abandoned incomplete entry", uid=rec.uid, msg=rec.id)
        for name in ("cases", "quarantine"):
            sweep = sweep_staging(self.areas[name], self.mb.name)
            for entry in sweep.removed:
                self.log.info("removed staged files without an intent", entry=entry)
            for what in sweep.left:
                self.log.warning("left alone in staging", found=what)
        if n:
            self.after_commit()
        return n

    # -- the loop -------------------------------------------------------------------------
    def run(self, session: MailboxSession, *, max_rounds: int = 1000) -> BatchOutcome:
        """Process everything waiting in the folder; returns what was done.

        The mailbox's status is written while a backlog of more than one batch drains and
        when a pass that found mail ends; a pass that finds the folder empty writes nothing
        unless the status is older than ``STATUS_REFRESH`` or the UIDVALIDITY changed. An
        idle mailbox looked at after every IDLE renewal must not cost a disk write each
        time (hundreds of mailboxes would keep the disk busy for nothing), and a letter
        trickling in costs one commit less.
        """
        try:
            return self._run(session, max_rounds)
        finally:
            self._end_io()

    def _run(self, session: MailboxSession, max_rounds: int) -> BatchOutcome:
        total = BatchOutcome()
        self.recover()
        busy = False
        for _ in range(max_rounds):
            uids = session.list_uids()
            busy = busy or bool(uids)
            if len(uids) > self.mb.batch_size:  # a backlog worth showing while it drains (one batch is soon done)
                self.ledger.set_status(
                    self.mb.name, last_poll=iso(utcnow()), backlog=len(uids), uidvalidity=session.uidvalidity
                )
            self._reconcile(session, uids)
            if not uids:
                break
            known = self.ledger.by_key(self.mb.name, self.mb.folder, session.uidvalidity, uids)
            finished = [rec for rec in known.values() if rec.state != "processing"]
            total.moved += self._dispose(session, finished, note="already processed")
            new = [u for u in uids if u not in known]
            if not new and not finished:
                raise TransientError("no progress: messages remain that are in processing elsewhere")
            sizes = session.sizes(new)
            limit = self.config.limits.max_message_bytes
            oversize = {uid for uid, size in sizes.items() if size > limit}
            # An oversize message is streamed to disk, never held: it weighs nothing in a batch.
            weights = {uid: 0 if uid in oversize else size for uid, size in sizes.items()}
            batches = plan_batches(new, weights, self.mb.batch_size)
            total.add(self._batches(session, batches, {u: sizes[u] for u in oversize}))
        if busy or self._status_stale(session.uidvalidity):
            now = iso(utcnow())
            self.ledger.set_status(
                self.mb.name, last_poll=now, last_success=now, backlog=0, uidvalidity=session.uidvalidity
            )
            self._status_written = (time.monotonic(), session.uidvalidity)
        return total

    def _status_stale(self, uidvalidity: int) -> bool:
        """Whether an empty pass must write the status anyway (first pass, refresh due, new UIDVALIDITY)."""
        if self._status_written is None:
            return True
        at, written = self._status_written
        return written != uidvalidity or time.monotonic() - at >= self.status_refresh

    def _reconcile(self, session: MailboxSession, uids: Sequence[int]) -> None:
        """Rows whose move happened just before a crash: the server no longer has them."""
        present = set(uids)
        gone = [
            r
            for r in self.ledger.awaiting_server(self.mb.name, self.mb.folder)
            if r.uidvalidity != session.uidvalidity or r.uid not in present
        ]
        if gone:
            self.ledger.mark_server_done([r.id for r in gone], reconciled_events(gone))

    def _root(self, state: str) -> Path:
        """The root an entry in ``state`` is published under."""
        return area_root(self.config, _area(state))

    # -- one batch ------------------------------------------------------------------------
    def _batches(
        self, session: MailboxSession, batches: list[list[int]], oversize: dict[int, int] | None = None
    ) -> BatchOutcome:
        """Process batches as a pipeline: later batches are fetched and prepared while one is written.

        The I/O thread fetches up to ``PREFETCH`` batches ahead and hands every message to
        analysis (the worker processes, or right there in the I/O thread when there are
        none), while this thread commits and publishes the current one. Its MOVE is queued
        on the I/O thread after the commit and recorded in the final commit of a later
        batch once it has happened: waiting for it would keep this thread idle behind the
        fetches queued before it, and a commit of its own would cost a WAL flush per batch.
        Every IMAP command runs on the I/O thread (``self.io``), in the order it was
        submitted, so the one connection is never used by two threads. Writing and
        committing stay here, in order, so the ledger sees batches as they were fetched.
        """
        total = BatchOutcome()
        ahead: deque[Future[list[Work]]] = deque()
        moving: list[Move] = []
        unmoved: list[MessageRecord] = []  # committed, their move not yet queued
        queued = 0
        try:
            big = oversize or {}
            while queued < len(batches) and len(ahead) < PREFETCH:
                ahead.append(self.io.submit(self._fetch_and_analyse, session, batches[queued], big))
                queued += 1
            while ahead:
                current = ahead.popleft().result()
                if queued < len(batches):
                    ahead.append(self.io.submit(self._fetch_and_analyse, session, batches[queued], big))
                    queued += 1
                # Moves of earlier batches that have happened are recorded in this batch's
                # final commit; the others stay pending (never waited for here).
                done_moves = [m for m in moving if m[2].done()]
                moving = [m for m in moving if not m[2].done()]
                # Duplicates within a batch are found in ``seen``; across batches in the ledger,
                # where the previous batch is committed by now (so memory stays flat in N).
                outcome, finished = self._batch(session, current, {}, done_moves)
                total.add(outcome)
                unmoved += finished
                if len(unmoved) >= MOVE_GROUP or not ahead:
                    moving += self._start_moves(session, unmoved)
                    unmoved = []
            total.moved += self._record_moves(moving)
            moving = []
        finally:
            busy: list[Future[Any]] = [*ahead, *(f for _, _, f in moving)]
            wait(busy)  # the connection must be idle before anyone else uses it
        return total

    def _fetch_and_analyse(
        self, session: MailboxSession, uids: Sequence[int], oversize: dict[int, int] | None = None
    ) -> list[Work]:
        """On the I/O thread: fetch a batch and start analysing every message in it.

        A message the server reports larger than ``max_message_bytes`` (``oversize``: UID ->
        RFC822.SIZE) is not fetched whole: it is streamed into a quarantine entry here
        (``workers.prepare_oversize``), so memory never follows its size. Duplicates are
        only recognised later, in order, by ``_decide``; analysing one of them is wasted
        work but never a wrong decision.
        """
        big = oversize or {}
        fetched = list(session.fetch([u for u in uids if u not in big]))
        jobs = [
            EntryJob(
                msg_id=new_message_id(), sha256=hashlib.sha256(f.raw).hexdigest(), bucket=self.mb.name, size=len(f.raw)
            )
            for f in fetched
        ]
        pending = self.analyser.submit([(f.raw, f.arrival, job) for f, job in zip(fetched, jobs, strict=True)])
        work: dict[int, Work] = {
            f.uid: (f.uid, f.arrival, job, p) for f, job, p in zip(fetched, jobs, pending, strict=True)
        }
        for uid in uids:
            if uid in big:
                arrival, pieces = session.fetch_stream(uid)
                job, prepared = prepare_oversize(
                    pieces, arrival, new_message_id(), self.mb.name, big[uid], self.config, self.areas
                )
                work[uid] = (uid, arrival, job, PendingPlan(self.analyser, None, value=prepared))
        return [work[uid] for uid in uids]

    def _batch(
        self,
        session: MailboxSession,
        work: list[Work],
        seen: dict[str, MessageRecord],
        moves: Sequence[Move] = (),
    ) -> tuple[BatchOutcome, list[MessageRecord]]:
        """Commit, write and finish one batch; returns what was done and what the server may move now.

        ``moves`` (of earlier batches, already carried out or failed) are recorded in the
        same final commit; a failed one is raised after it.
        """
        self.before_batch()
        out = BatchOutcome()
        planned: list[tuple[MessageRecord, Prepared]] = []
        duplicates: list[MessageRecord] = []
        events: list[AuditEvent] = []
        known = self._known(work)
        for uid, arrival, job, pending in work:
            rec, prepared = self._decide(session, uid, arrival, job, seen, pending, known)
            events.append(fetched_event(rec))
            if prepared is None:
                duplicates.append(rec)
                events.append(duplicate_event(rec))
            else:
                planned.append((rec, prepared))
            seen[rec.sha256] = rec
        self.ledger.plan([r for r, _ in planned] + duplicates, events)
        out.duplicates = len(duplicates)

        done: list[MessageRecord] = []
        events = []
        try:
            staged = [self._seal(rec, prepared) for rec, prepared in planned]
            publish_entries(self.areas, staged)
        except UnsafeDirectory as exc:
            # A case folder became a link (or someone else's) after analysis checked it:
            # recovery abandons what is unpublished, and analysis of the fetch that follows
            # quarantines that message (``unsafe-case-folder``) instead of failing again.
            self.log.warning("unsafe case folder at publishing", error=str(exc))
            raise TransientError(f"writing entries failed: {exc}") from None
        except OSError as exc:
            # Disk full or similar: nothing of this batch is finished; recovery finishes
            # what was published and abandons the rest, which is then fetched again.
            if disk_full_code(exc) is not None:
                where = full_path(exc, self.areas["cases"].root)
                raise DiskFull(f"writing entries failed: {disk_full_text(exc, where)}", where) from None
            raise TransientError(f"writing entries failed: {exc}") from None
        steps: list[DeliveryStep] = []
        for rec, prepared in planned:
            rec.state = prepared.plan.target
            done.append(rec)
            events.extend(outcome_events(rec, prepared.plan, self._root(rec.state)))
            self.log.info(rec.state, **outcome_log_fields(rec, prepared.plan))
            found = prepared.plan.receipt_match
            if found is not None and found.matched and rec.state == "stored":
                steps.extend(self._receipt_steps(rec, found.to_json(), prepared.plan.date))
        moved_ids, moved_events, failure = self._moves_done(moves)
        self.ledger.finish(done, [*events, *moved_events], server_done=moved_ids, deliveries=steps)
        out.moved = len(moved_ids)
        self._collect_certificates([(rec, prepared.plan) for rec, prepared in planned])
        self._acknowledge([rec for rec, prepared in planned if prepared.plan.receipt is None])
        self.after_commit()
        if failure is not None:
            raise failure
        out.stored = sum(1 for r in done if r.state == "stored")
        out.quarantined = sum(1 for r in done if r.state == "quarantined")
        return out, done + duplicates

    def _known(self, work: list[Work]) -> Known:
        """What the ledger already holds of the batch's digests and Message-IDs, in two reads.

        Asked once per batch, not twice per message: on PostgreSQL every read is a round
        trip to the server. Nothing of the batch is committed before its plan, so the
        answers are the same as asking message by message.
        """
        firsts = self.ledger.first_by_sha256_many([job.sha256 for _, _, job, _ in work])
        mids = {mid for *_, pending in work if (mid := pending.result().plan.message_id)}
        return Known(firsts, self.ledger.by_message_ids(sorted(mids)) if mids else {})

    def _decide(
        self,
        session: MailboxSession,
        uid: int,
        arrival: Arrival,
        job: EntryJob,
        seen: dict[str, MessageRecord],
        pending: PendingPlan,
        known: Known,
    ) -> tuple[MessageRecord, Prepared | None]:
        """The message's ledger record, and its prepared entry unless it is a duplicate.

        A write failure while staging raises ``TransientError``: nothing of the batch is
        committed yet, and recovery sweeps what was staged.
        """
        sha = job.sha256
        first = seen.get(sha) or known.firsts.get(sha)
        base = MessageRecord(
            id=job.msg_id,
            mailbox=self.mb.name,
            folder=self.mb.folder,
            uidvalidity=session.uidvalidity,
            uid=uid,
            sha256=sha,
            message_id=None,
            size=job.size,
            internaldate=arrival.received_text,
            fetched_at=arrival.fetched_text,
            state="processing",
            target_state="stored",
        )
        prepared = pending.result()
        if prepared.staged is None and prepared.disk_full is not None:
            raise DiskFull(f"writing entries failed: {prepared.write_error}", prepared.disk_full)
        if prepared.staged is None:
            raise TransientError(f"writing entries failed: {prepared.write_error}")
        if first is not None:
            discard_staging(self.areas[prepared.staged.area], prepared.staged.name, self.mb.name)
            base.state = base.target_state = "duplicate"
            base.duplicate_of = first.id
            base.case_ref, base.case_folder, base.message_id = first.case_ref, first.case_folder, first.message_id
            base.subject, base.from_addr = first.subject, first.from_addr
            return base, None
        plan = prepared.plan
        base.message_id = plan.message_id
        base.subject = plan.subject[:500]
        base.from_addr = ", ".join(plan.from_addrs)[:500] or None
        base.target_state = plan.target
        base.reasons = list(plan.reasons)
        base.verdict = plan.verdict.to_json()
        if plan.message_id:
            earlier = [r for r in known.by_message_id.get(plan.message_id, []) if r.sha256 != sha]
            if earlier:
                base.reasons.append(f"same-message-id-as:{earlier[0].id}")
        base.path = str(prepared.staged.final)
        if plan.route is not None:
            base.case_ref, base.case_folder, base.route = plan.route.case_ref, plan.route.case_folder, plan.route.rule
        return base, prepared

    def _receipt_steps(self, rec: MessageRecord, match: dict[str, Any], stated: str | None) -> list[DeliveryStep]:
        """The delivery steps a stored receipt proves; its original bytes are the evidence."""
        assert rec.path is not None
        root = self._root("stored")
        entry = Path(rec.path)
        path = str((entry.relative_to(root) if entry.is_relative_to(root) else entry) / "original.eml")
        received = rec.internaldate or rec.fetched_at or iso(utcnow())
        at = stated_time(stated) or received
        return delivery_steps(match, evidence_path=path, sha256=rec.sha256, at=at, received_at=received)

    def _recovered_steps(self, rec: MessageRecord, manifest: bytes) -> list[DeliveryStep]:
        """A receipt published before a crash: the steps from its manifest, as the batch would have committed."""
        if rec.state != "stored":
            return []
        try:
            meta = json.loads(manifest)
        except ValueError:
            return []
        match = meta.get("receipt") if isinstance(meta, dict) else None
        if not isinstance(match, dict) or match.get("problem") is not None:
            return []
        return self._receipt_steps(rec, match, meta.get("date"))

    def _seal(self, rec: MessageRecord, prepared: Prepared) -> StagedEntry:
        """Add the manifest (it holds ledger facts, such as reasons found by looking back)."""
        assert prepared.staged is not None
        staged = seal_staging(
            self.areas[prepared.staged.area], prepared.staged, manifest_metadata(rec, prepared.plan), sync=False
        )
        rec.manifest_sha256 = staged.manifest_sha256
        return staged

    def _acknowledge(self, records: Sequence[MessageRecord]) -> None:
        """Queue a signed acknowledgement for each stored, verified letter whose route asks for one.

        After the batch's commit and before the server is tidied, the same for every letter:
        what is sent and when depends only on "received and stored" (``receipts/acknowledge``).
        At most once: a crash before the queueing loses the acknowledgement, never repeats it.
        Receipts are never acknowledged (two gateways would answer each other for ever).
        """
        wanted = [r for r in records if r.state == "stored" and wants_acknowledgement(self.config, r)]
        if not wanted:
            return
        if self._keys is None:
            self._keys = OutboundKeys.from_config(self.config)
        events: list[AuditEvent] = []
        for rec in wanted:
            try:
                doc = acknowledgement_for(receipt_of(rec), config=self.config, keys=self._keys)
                outbox_id = enqueue(self.config, self.ledger, doc, actor="poststelle:acknowledgement")
            except (AcknowledgementError, PermanentError) as exc:
                self.log.warning("no acknowledgement", msg=rec.id, error=str(exc))
                events.append(
                    AuditEvent(
                        "acknowledgement-refused",
                        message=rec.id,
                        case=rec.case_ref,
                        details={"reason": getattr(exc, "reason", type(exc).__name__), "error": str(exc)[:300]},
                    )
                )
                continue
            events.append(
                AuditEvent(
                    "acknowledgement-queued",
                    message=rec.id,
                    case=rec.case_ref,
                    document=outbox_id,
                    details={"to": doc.recipients[0]},
                )
            )
        if events:
            self.ledger.record_events(events)

    def _collect_certificates(self, items: Sequence[tuple[MessageRecord, Plan]]) -> None:
        """Signer certificates of verified, committed messages go to the correspondents' store.

        They are used later to encrypt replies and never become trust anchors.
        """
        store = self.ctx.certstore
        if store is None:
            return
        events: list[AuditEvent] = []
        for rec, plan in items:
            for der in plan.signer_certificates:
                if store.path_for(sha256_hex(der)).exists():
                    continue
                try:
                    digest = store.add(der)
                except (OSError, ValueError) as exc:
                    self.log.warning("could not store signer certificate", msg=rec.id, error=str(exc))
                    continue
                events.append(certificate_event(rec, digest))
        if events:
            self.ledger.record_events(events)

    def _dispose(self, session: MailboxSession, recs: Sequence[MessageRecord], *, note: str | None) -> int:
        """Move finished messages on the server, then record it. Never before the commit."""
        return self._record_moves(self._start_moves(session, recs), note=note)

    def _start_moves(self, session: MailboxSession, recs: Sequence[MessageRecord]) -> list[Move]:
        """Queue the server-side moves of committed messages on the I/O thread.

        They run after the fetches queued before them; ``_record_moves`` waits for them
        and records each one that happened.
        """
        moves: list[Move] = []
        for dest, group in (
            (self.mb.quarantine_folder, [r for r in recs if r.state == "quarantined"]),
            (self.mb.processed_folder, [r for r in recs if r.state != "quarantined"]),
        ):
            if group:
                moves.append((dest, group, self.io.submit(session.dispose, [r.uid for r in group], dest)))
        return moves

    def _record_moves(self, moves: Sequence[Move], *, note: str | None = None) -> int:
        """Wait for moves, record those that happened; then raise the first failure, if any."""
        ids, events, failure = self._moves_done(moves, note=note)
        if ids:
            self.ledger.mark_server_done(ids, events)
            self.after_commit()
        if failure is not None:
            raise failure
        return len(ids)

    def _moves_done(
        self, moves: Sequence[Move], *, note: str | None = None
    ) -> tuple[list[str], list[AuditEvent], BaseException | None]:
        """The ids and ``moved`` events of the moves that happened, and the first failure.

        A move that happened but is not recorded (a crash just before the commit) is
        found by ``_reconcile`` on the next pass: the row waits for the server, and the
        folder no longer holds the message.
        """
        ids: list[str] = []
        events: list[AuditEvent] = []
        failure: BaseException | None = None
        for dest, group, future in moves:
            try:
                method = future.result()
            except BaseException as exc:  # noqa: BLE001 - returned, raised by the caller after its commit
                failure = failure or exc
                continue
            details = {"to": dest, "method": method}
            if note:
                details["note"] = note
            ids.extend(r.id for r in group)
            events.extend(server_moved_events(group, details))
        return ids, events, failure


def _folder_in(root: Path, final: Path) -> str | None:
    """The folder below ``root`` an entry path is in (``<case>`` or ``<case>/receipts``); None at the root."""
    try:
        rel = final.parent.relative_to(root)
    except ValueError:
        return final.parent.name  # not under the root any more: the caller reads it where it was planned
    return None if rel == Path(".") else rel.as_posix()


def _area(state: str) -> str:
    """The area an entry in ``state`` is published in."""
    return "quarantine" if state == "quarantined" else "cases"


Move = tuple[str, list[MessageRecord], Future[str]]
BATCH_BYTES = 24 * 1024 * 1024
PREFETCH = 2  # batches fetched and being prepared ahead of the one being written
# Committed messages are moved on the server in groups of about this many: a MOVE costs
# the server work that grows with the folder (Dovecot rewrites its Maildir index and
# uidlist), so fewer, larger MOVEs. A crash before the move leaves them in the folder,
# finished in the ledger: they are recognised by their key and only moved.
MOVE_GROUP = 250
#: An idle mailbox's ``last_poll``/``last_success`` are rewritten at most this often (seconds);
#: the running daemon knows the exact moment, the ledger needs only to show that it lives.
STATUS_REFRESH = 3600.0


def plan_batches(
    uids: Sequence[int], sizes: dict[int, int], count: int, max_bytes: int = BATCH_BYTES
) -> list[list[int]]:
    """Split UIDs into batches of at most ``count`` messages and about ``max_bytes`` bytes.

    Memory stays bounded however large the messages are (a message larger than the bound
    travels alone); 1 + ``PREFETCH`` batches are in memory at a time (one being written, the
    others fetched and being prepared).
    """
    batches: list[list[int]] = []
    current: list[int] = []
    size = 0
    for uid in uids:
        n = sizes.get(uid, 0)
        if current and (len(current) >= count or size + n > max_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(uid)
        size += n
    if current:
        batches.append(current)
    return batches
