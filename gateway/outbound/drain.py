"""One pass over the outbox: recover, pick what is due, hand it to the relay, record the answers.

The order of commits is the whole crash story:

1. ``active`` is committed before the relay sees DATA (with ``attempts`` counted).
2. After the relay's 250 the recipients' ``sent`` is committed at once.
3. The sent copy is filed in the case folder, then its path is committed.

A crash between 1 and 2 leaves the document ``active``: the next pass resends it (same
bytes, same Message-ID) and records ``resent`` with ``resent-after-crash``; on another
node, once the claim has expired (``claim.py``). While the relay has a document its claim
is renewed (``claimkeeper.py``), and the commits of 2 and 3's state are fenced by the
claim's token: a process that was paused past its claim's expiry, and wakes after another
node took the document over, has its completion refused (``completion-refused``). The network
has the same window: a connection that dies after the end of DATA and before the relay's
answer leaves it unknown whether the relay queued the document (RFC 1047); the attempt is
deferred like any lost connection, and the next one is recorded as ``resent`` with
``reply-lost``. These two are the only ways a recipient can get a document twice, and
both are marked. A crash between 2 and 3 leaves a
finished document without its sent copy: the next pass files it. ``hooks`` let tests
stop the pass exactly inside these windows.

Like Postfix's delivery agents, a pass works on up to ``[smtp] connections`` documents at
once: each lane has its own relay connection, shares the store (commits that meet are
made as one, ``groupcommit.py``) and runs the steps above for one document at a time, so at most that many
documents are inside the window when a crash comes. Waiting for the relay's answer and for the disk is most of a
document's time; lanes overlap those waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import structlog

from gateway.clock import iso, utcnow
from gateway.config import Config, OutboundConfig
from gateway.diskfull import disk_full_code, disk_full_text, full_path
from gateway.errors import TransientError
from gateway.filing.areas import Area
from gateway.filing.sent import SentCopy, file_sent_copies
from gateway.outbound import scheduler
from gateway.outbound.claim import may_take_over, node_name, this_process
from gateway.outbound.claimkeeper import ClaimKeeper
from gateway.outbound.groupcommit import GroupCommit
from gateway.outbound.outbox import OutboxError, spool_bytes
from gateway.outbound.smtp import REPLY_LOST, Attempt, SmtpAgent
from gateway.receipts.model import DeliveryState
from gateway.records.chain import AuditEvent
from gateway.records.deliveries import DeliveryStep, Evidence
from gateway.records.outbox import DONE, WAITING, ClaimTerms, OutboxRecord
from gateway.records.store import OutboxChange, Store
from gateway.statedir import area_root

log = structlog.get_logger("poststelle.outbox")
RESENT_AFTER_CRASH = "resent-after-crash"
RESENT_REPLY_LOST = "reply-lost"
#: Documents whose sent copy this process found no room for, with the error recorded as ``disk-full``.
_FULL_REPORTED: dict[str, str] = {}
FILE_BATCH = 64  # sent copies filed per group commit


@dataclass
class DrainHooks:
    """Points where tests make the pass fail as a crash would (no-ops in production)."""

    after_accept: Callable[[OutboxRecord, Attempt], None] = lambda rec, att: None
    after_sent_commit: Callable[[OutboxRecord], None] = lambda rec: None


@dataclass(frozen=True)
class _Carried:
    """An attempt's outcome waiting to be committed with the next change, and what follows its commit."""

    change: OutboxChange
    then: Callable[[], None]
    refused: Callable[[], None] = lambda: None


@dataclass
class DrainReport:
    sent: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    bounced: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)
    filed: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    unfiled: list[str] = field(default_factory=list)
    filing_deferred: list[str] = field(default_factory=list)  # sent, their copies left to a later pass
    #: Claims this process lost to another node: given up before sending, or completion refused.
    lost: list[str] = field(default_factory=list)
    next_wakeup: str | None = None


class Drain:
    """The outbox's delivery side for one process; ``clock`` is injectable for tests."""

    def __init__(
        self,
        config: Config,
        store: Store,
        agent: SmtpAgent | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        hooks: DrainHooks | None = None,
        copy_to_sent: Callable[[OutboxRecord, bytes], str] | None = None,
        lanes: int = 1,
        kept: list[SmtpAgent] | None = None,
        keeper: ClaimKeeper | None = None,
    ) -> None:
        """``lanes``: documents worked on at once (the daemon passes ``[smtp] connections``).

        ``kept``: relay connections (agents) the caller keeps between passes, taken from and
        put back there instead of being opened and closed by every pass.
        """
        if config.smtp is None:
            raise OutboxError("no [smtp] section: the outbox has no relay to drain to")
        self.config = config
        self.smtp = config.smtp
        self.store = store
        self.kept = kept
        self._kept_lock = threading.Lock()
        self.agent = agent or self._take_agent()
        self.clock = clock
        self.hooks = hooks or DrainHooks()
        self.copy_to_sent = copy_to_sent
        self._carried: _Carried | None = None
        self._group = GroupCommit(store.outbox_save_many)  # shared with this pass's lanes
        #: Spool bytes already checked against their sha256 in this pass, kept until filed.
        self._verified: dict[str, bytes] = {}
        self._waiting_copies: list[OutboxRecord] = []
        self.lanes = max(1, lanes)
        self.node = node_name(config)
        self.claim_ttl = (config.outbound or OutboundConfig()).claim_ttl
        self.keeper = keeper
        self.file_batch = max(8, FILE_BATCH // self.lanes)  # the bytes kept for filing stay bounded
        #: Set by the daemon while passes follow each other: a pass files its sent copies only
        #: once ``FILE_BATCH`` are waiting, and the daemon makes a filing pass when it goes idle,
        #: so a trickle of documents does not pay two file-system flushes per pass.
        self.defer_filing = False

    def run_once(self) -> DrainReport:
        """Recover crash leftovers, then attempt every due document once (on one relay connection)."""
        report = DrainReport()
        if not self.defer_filing:
            now = iso(utcnow())
            for rec in self.store.outbox_lacking_copies(sent_folder=self.copy_to_sent is not None):
                # The process that sent it files it; only if it is gone (or its claim expired) do we.
                if may_take_over(rec.claimed_by, rec.claim_expires_at, node=self.node, now=now):
                    self._copies(rec, report)
            self._file_waiting(report)
        own_keeper = self.keeper is None
        if self.keeper is None:
            self.keeper = ClaimKeeper(self.store, self.claim_ttl)
        try:
            self._claimed_pass(report)
        finally:
            if own_keeper:
                self.keeper.close()
                self.keeper = None
        report.next_wakeup = scheduler.next_wakeup(self.store.outbox_list(WAITING))
        return report

    def _claimed_pass(self, report: DrainReport) -> None:
        try:
            for rec in self.store.outbox_list(["active"]):
                if not may_take_over(rec.claimed_by, rec.claim_expires_at, node=self.node, now=iso(utcnow())):
                    continue  # another process (the daemon, another node) is sending it right now
                self._attempt(rec, report, after_crash=True)
            due = scheduler.due(self.store.outbox_list(WAITING), self.clock(), self.smtp.max_backoff)
            due.reverse()
            if self.lanes > 1 and len(due) > 1:
                self._in_lanes(due, report)
            else:
                while due:  # each record let go once attempted: memory stays flat however many are due
                    self._attempt(due.pop(), report, after_crash=False)
        finally:
            self._put_agent(self.agent)
        self._flush(report)

    def file_copies(self) -> DrainReport:
        """File every sent copy still missing, and send nothing (the daemon's outbox thread as it stops)."""
        report = DrainReport()
        now = iso(utcnow())
        for rec in self.store.outbox_lacking_copies(sent_folder=self.copy_to_sent is not None):
            if may_take_over(rec.claimed_by, rec.claim_expires_at, node=self.node, now=now):
                self._copies(rec, report)
        self._file_waiting(report)
        return report

    # -- lanes ------------------------------------------------------------------------------------
    def _in_lanes(self, due: list[OutboxRecord], report: DrainReport) -> None:
        """Attempt ``due`` (last first) in up to ``lanes`` lanes; this one is a lane too."""
        lock = threading.Lock()

        def take() -> Iterator[OutboxRecord]:
            while True:
                with lock:
                    if not due:
                        return
                    rec = due.pop()
                yield rec

        reports: list[DrainReport] = []
        threads: list[threading.Thread] = []
        failures: list[BaseException] = []
        finished: list[Drain] = []
        try:
            for _ in range(min(self.lanes, len(due)) - 1):
                reports.append(DrainReport())
                threads.append(
                    threading.Thread(
                        target=self._lane,
                        args=(take(), reports[-1], failures, finished),
                        name="outbox-lane",
                        daemon=True,
                    )
                )
            for t in threads:
                t.start()
            for rec in take():
                self._attempt(rec, report, after_crash=False)
        finally:
            if failures:
                with lock:
                    due.clear()  # a failed lane: the others stop after the document in hand
            for t in threads:
                t.join()
            for lane_report in reports:
                _merge(report, lane_report)
            for lane in finished:  # their last copies go into this pass's batch: one group commit for all
                self._waiting_copies += lane._waiting_copies
                self._verified.update(lane._verified)
        if failures:
            raise failures[0]

    def _lane(
        self, work: Iterator[OutboxRecord], report: DrainReport, failures: list[BaseException], finished: list[Drain]
    ) -> None:
        """Another lane, in its own thread, with its own relay connection and its own carried outcome.

        Its last outcome is committed here; the sent copies still waiting then are filed
        by the pass together with the other lanes' (``finished``).
        """
        try:
            lane = Drain(
                self.config,
                self.store,
                self._take_agent(),
                clock=self.clock,
                hooks=self.hooks,
                copy_to_sent=self.copy_to_sent,
                keeper=self.keeper,
            )
            lane.file_batch = self.file_batch
            lane._group = self._group
            try:
                for rec in work:
                    lane._attempt(rec, report, after_crash=False)
            finally:
                self._put_agent(lane.agent)
            if lane._carried is not None:
                lane._save_many([])
            finished.append(lane)
        except BaseException as exc:  # noqa: BLE001 - handed to the pass, which raises it
            failures.append(exc)

    def _take_agent(self) -> SmtpAgent:
        with self._kept_lock:
            if self.kept:
                return self.kept.pop()
        assert self.smtp is not None
        return SmtpAgent(self.smtp)

    def _put_agent(self, agent: SmtpAgent) -> None:
        """Back to the caller's ``kept`` (its connection open, checked at the next use), else closed."""
        if self.kept is None:
            agent.close()
            return
        with self._kept_lock:
            self.kept.append(agent)

    # -- one document ---------------------------------------------------------------------------
    def _event(self, kind: str, rec: OutboxRecord, **details: Any) -> AuditEvent:
        return AuditEvent(kind, case=rec.case_ref, document=rec.id, details={"message_id": rec.message_id, **details})

    def _attempt(self, rec: OutboxRecord, report: DrainReport, *, after_crash: bool) -> None:
        now = self.clock()
        before = rec.state
        if scheduler.expired(rec, now, self.smtp.max_lifetime) and not after_crash:
            self._expire(rec, report)
            return
        old_claim = rec.claimed_by if after_crash else None
        # Taking over: the very claim found (its token), and from another node only once it expired.
        fence = ClaimTerms(fence=rec.claim_token, expired=not self._own(rec)) if after_crash else None
        try:
            raw = spool_bytes(rec)
        except (OSError, OutboxError) as exc:
            rec.state, rec.last_reply = "hold", f"spool file unusable: {exc}"
            if self._save(
                rec,
                [self._event("held", rec, reason="spool-unusable", error=str(exc))],
                [before],
                claim=old_claim,
                terms=fence,
            ):
                report.held.append(rec.id)
            return
        rec.state = "active"
        rec.claimed_by = this_process(self.node)
        rec.attempts += 1
        events = []
        reply_lost = any(r.reply is not None and REPLY_LOST in r.reply for r in rec.pending())
        if after_crash or reply_lost:
            rec.resent = True
            reason = RESENT_AFTER_CRASH if after_crash else RESENT_REPLY_LOST
            taken = {"taken_over_from": old_claim} if after_crash else {}
            events.append(self._event("resent", rec, reason=reason, attempt=rec.attempts, **taken))
            report.resent.append(rec.id)
        terms = ClaimTerms(
            fence=fence.fence if fence else None, expired=bool(fence and fence.expired), ttl=self.claim_ttl
        )
        claimed_at = time.monotonic()
        if not self._save(rec, events, [before], claim=old_claim, terms=terms):
            if after_crash or reply_lost:
                report.resent.remove(rec.id)
            return  # a person held or cancelled it meanwhile, or another pass (another node) took it
        assert self.keeper is not None
        self.keeper.hold(rec, claimed_at)
        if not self.keeper.still_ours(rec):  # paused past the claim's expiry: someone else has it now
            self.keeper.let_go(rec.id)
            log.warning("outbox claim lost before sending; another process has the document", id=rec.id)
            report.lost.append(rec.id)
            return
        pending = [r.address for r in rec.pending()]
        att = self.agent.send(rec.mail_from, pending, raw, rec.envid)
        self.hooks.after_accept(rec, att)
        self._record(rec, att, report)
        if rec.state in DONE and rec.sent_to_someone():
            self._verified[rec.id] = raw  # for its sent copy: read and checked once

    def _record(self, rec: OutboxRecord, att: Attempt, report: DrainReport) -> None:
        now = self.clock()
        at = iso(now)
        accepted, temporary, permanent = [], [], []
        was_pending = {r.address for r in rec.pending()}
        for r in rec.recipients:
            if r.address not in att.replies:
                continue
            reply = att.replies[r.address]
            r.reply, r.updated_at = str(reply), at
            outcome = reply.outcome
            if outcome == "accepted":
                r.state, r.queue_id = "sent", att.queue_ids.get(r.address)
                accepted.append(r.address)
            elif outcome == "permanent":
                r.state = "bounced"
                permanent.append(r.address)
            else:
                temporary.append(r.address)
        rec.last_reply = att.error or (str(next(iter(att.replies.values()))) if att.replies else None)
        events: list[AuditEvent] = []
        if accepted:
            events.append(
                self._event(
                    "submitted",
                    rec,
                    recipients=accepted,
                    replies={a: str(att.replies[a]) for a in accepted},
                    queue_ids={a: att.queue_ids.get(a) for a in accepted},
                    dsn_requested=att.dsn,
                    envid=rec.envid if att.dsn else None,
                    attempt=rec.attempts,
                    resent_after_crash=rec.resent,
                )
            )
        if permanent:
            events.append(
                self._event("bounced", rec, recipients=permanent, replies={a: str(att.replies[a]) for a in permanent})
            )
        if rec.pending():
            if scheduler.expired(rec, now, self.smtp.max_lifetime):
                self._bounce_pending(rec, at, events)
            else:
                rec.state = "deferred"
                rec.next_attempt_at = scheduler.next_attempt(
                    now, rec.attempts, self.smtp.min_backoff, self.smtp.max_backoff
                )
                events.append(
                    self._event(
                        "deferred",
                        rec,
                        recipients=[r.address for r in rec.pending()],
                        replies={a: str(att.replies[a]) for a in temporary},
                        next_attempt_at=rec.next_attempt_at,
                        attempt=rec.attempts,
                        **({"reply_lost": True} if att.reply_lost else {}),
                    )
                )
        if not rec.pending():
            rec.state = "bounced" if any(r.state == "bounced" for r in rec.recipients) else "sent"
            rec.next_attempt_at = None
        steps = _relay_steps(rec, at, was_pending, temporary=temporary)

        def committed() -> None:
            {"sent": report.sent, "bounced": report.bounced, "deferred": report.deferred}[rec.state].append(rec.id)
            log.info("outbox attempt", id=rec.id, state=rec.state, accepted=len(accepted), error=att.error)
            if rec.state in DONE:
                self.hooks.after_sent_commit(rec)
                self._copies(rec, report)

        # Committed with the next document's claim (or at the end of the pass): one commit per
        # document instead of two. Nothing is sent between this relay answer and that commit,
        # so the window in which a crash leads to a resend is still this one document's.
        # (A stale save cannot happen while claims hold; the next pass would resend, marked.)
        self._carried = _Carried(
            OutboxChange(rec, events, ["active"], rec.claimed_by, steps, claim=ClaimTerms(fence=rec.claim_token)),
            committed,
            lambda: report.lost.append(rec.id),
        )

    def _bounce_pending(self, rec: OutboxRecord, at: str, events: list[AuditEvent]) -> None:
        expired = []
        for r in rec.pending():
            r.state, r.updated_at = "bounced", at
            r.reply = f"expired after max_lifetime; last reply: {r.reply}"
            expired.append(r.address)
        events.append(
            self._event(
                "bounced",
                rec,
                recipients=expired,
                reason="max-lifetime",
                replies={r.address: r.reply for r in rec.recipients if r.address in expired},
            )
        )

    def _expire(self, rec: OutboxRecord, report: DrainReport) -> None:
        before = rec.state
        was_pending = {r.address for r in rec.pending()}
        events: list[AuditEvent] = []
        self._bounce_pending(rec, iso(self.clock()), events)
        rec.state = "bounced"
        rec.next_attempt_at = None
        steps = _relay_steps(rec, iso(self.clock()), was_pending, temporary=[])
        if self._save(rec, events, [before], deliveries=steps):
            report.bounced.append(rec.id)
            self._copies(rec, report)

    def _save(
        self,
        rec: OutboxRecord,
        events: list[AuditEvent],
        expect: list[Any],
        *,
        claim: str | None = None,
        deliveries: list[DeliveryStep] | None = None,
        terms: ClaimTerms | None = None,
    ) -> bool:
        """Commit ``rec``'s change together with the last attempt's outcome, if one waits."""
        return self._save_many([OutboxChange(rec, events, expect, claim, deliveries or (), claim=terms)])[0]

    def _own(self, rec: OutboxRecord) -> bool:
        """Whether ``rec``'s claim was made on this node (its claimant can be looked at)."""
        return rec.claimed_by is None or rec.claimed_by.partition(":")[0] == self.node

    def _save_many(self, changes: list[OutboxChange]) -> list[bool]:
        carried, self._carried = self._carried, None
        made = self._group.save_many(([carried.change] if carried else []) + changes)
        carried_made = made.pop(0) if carried is not None else False
        for change, ok in zip(
            ([carried.change] if carried else []) + changes, [carried_made, *made] if carried else made, strict=True
        ):
            if not ok:
                log.info("outbox document changed meanwhile", id=change.rec.id, state=change.rec.state)
        if carried is not None:
            if self.keeper is not None:
                self.keeper.let_go(carried.change.rec.id)
            if carried_made:
                carried.then()
            else:
                self._refused(carried.change)
                carried.refused()
        return made

    def _refused(self, change: OutboxChange) -> None:
        """The relay's answer arrived after another process took the document over: recorded, not applied."""
        rec = change.rec
        details = {
            "node": self.node,
            "claim_token": rec.claim_token,
            "replies": {r.address: r.reply for r in rec.recipients if r.reply is not None},
        }
        self.store.record_events([self._event("completion-refused", rec, **details)])
        log.warning("outbox completion refused: the document was taken over meanwhile", id=rec.id, **details)

    def _flush(self, report: DrainReport) -> None:
        """Commit a waiting outcome, then file the sent copies waiting for their batch.

        With ``defer_filing``, fewer than ``FILE_BATCH`` documents without their copies
        (this pass's and earlier ones') are left to a later pass: the ledger lists them,
        exactly as after a crash before filing.
        """
        if self._carried is not None:
            self._save_many([])
        if self.defer_filing:
            self._waiting_copies, self._verified = [], {}
            now = iso(utcnow())
            lacking = [  # as in run_once: another live process's (node's) copies are its own to file
                rec
                for rec in self.store.outbox_lacking_copies(sent_folder=self.copy_to_sent is not None)
                if may_take_over(rec.claimed_by, rec.claim_expires_at, node=self.node, now=now)
            ]
            if len(lacking) < FILE_BATCH:
                report.filing_deferred = [rec.id for rec in lacking]
                return
            for rec in lacking:
                self._copies(rec, report)
        self._file_waiting(report)

    # -- the sent copies --------------------------------------------------------------------------
    def _copies(self, rec: OutboxRecord, report: DrainReport) -> None:
        """What a finished document still lacks: its copy in the case folder, then in Sent.

        Filed in batches of ``FILE_BATCH`` (group commit: two file-system flushes and one
        ledger commit for the batch); a crash before the batch is filed leaves finished
        documents without their copies, which the next pass files.
        """
        if not rec.sent_to_someone():
            return
        self._waiting_copies.append(rec)
        if len(self._waiting_copies) >= self.file_batch:
            self._file_waiting(report)

    def _file_waiting(self, report: DrainReport) -> None:
        recs, self._waiting_copies = self._waiting_copies, []
        verified, self._verified = self._verified, {}
        if not recs:
            return
        unfiled = [r for r in recs if r.sent_path is None]
        if unfiled:
            self._file(unfiled, report, verified)
        for rec in recs:
            if self.copy_to_sent is not None and rec.sent_path is not None and rec.sent_folder is None:
                self._copy_to_sent(rec, report)

    def _file_failed(self, rec: OutboxRecord, report: DrainReport, exc: Exception) -> None:
        # One case folder that cannot take the copy (a link, a full disk) must not stop
        # the outbox: the copy is tried again at every pass and audit verify names it.
        if disk_full_code(exc) is None:
            log.error("filing the sent copy failed; retried at the next pass", id=rec.id, error=str(exc))
        else:
            where = full_path(exc, area_root(self.config, "cases"))
            text = disk_full_text(exc, where)
            log.error("disk full: the sent copy is filed at the next pass", id=rec.id, error=text, path=where)
            if _FULL_REPORTED.get(rec.id) != text:  # once per document and error, not at every pass
                _FULL_REPORTED[rec.id] = text
                self.store.record_events([self._event("disk-full", rec, path=where, error=text)])
        report.unfiled.append(rec.id)

    def _copy_to_sent(self, rec: OutboxRecord, report: DrainReport) -> None:
        """IMAP APPEND to the mailbox's Sent folder; a failure is retried at the next pass."""
        assert self.copy_to_sent is not None
        try:
            folder = self.copy_to_sent(rec, spool_bytes(rec))
        except (TransientError, OSError, OutboxError) as exc:
            log.warning("copy to the Sent folder failed; retried at the next pass", id=rec.id, error=str(exc))
            return
        before = rec.state
        rec.sent_folder = folder
        if self._save(rec, [self._event("copied-to-sent-folder", rec, folder=folder)], [before]):
            report.copied.append(rec.id)

    def _file(self, recs: list[OutboxRecord], report: DrainReport, verified: dict[str, bytes]) -> None:
        copies: list[tuple[OutboxRecord, SentCopy]] = []
        for rec in recs:
            try:
                raw = verified.get(rec.id)
                copies.append(
                    (
                        rec,
                        SentCopy(
                            rec.case_folder,
                            rec.id,
                            raw if raw is not None else spool_bytes(rec),
                            self._manifest(rec),
                            sent_time(rec),
                            rec.sha256,
                        ),
                    )
                )
            except (OSError, OutboxError) as exc:
                self._file_failed(rec, report, exc)
        if not copies:
            return
        area = Area.open(self.config, "cases")
        try:
            results = file_sent_copies(area, [c for _, c in copies])
        finally:
            area.close()
        changes: list[OutboxChange] = []
        for (rec, _), result in zip(copies, results, strict=True):
            if isinstance(result, Exception):
                self._file_failed(rec, report, result)
                continue
            path, manifest_sha = result
            _FULL_REPORTED.pop(rec.id, None)
            rec.sent_path, rec.sent_manifest_sha256 = str(path), manifest_sha
            rel = f"{rec.case_folder}/{path.parent.name}/{path.name}"
            event = self._event("filed-sent", rec, path=rel, manifest_sha256=manifest_sha)
            # Only if no other process (the sender, a node that took over) recorded the copy first.
            changes.append(OutboxChange(rec, [event], [rec.state], claim=ClaimTerms(unfiled=True)))
        for change, ok in zip(changes, self._save_many(changes), strict=True):
            if ok:
                report.filed.append(change.rec.id)
            else:  # the same entry, recorded by the other: its Sent-folder copy is the other's too
                change.rec.sent_path = change.rec.sent_manifest_sha256 = None
                log.info("sent copy recorded by another process meanwhile", id=change.rec.id)

    @staticmethod
    def _manifest(rec: OutboxRecord) -> dict[str, Any]:
        return {
            "id": rec.id,
            "message_id": rec.message_id,
            "case_reference": rec.case_ref,
            "case_folder": rec.case_folder,
            "mail_from": rec.mail_from,
            "envid": rec.envid,
            "signed": rec.signed,
            "encrypted": rec.encrypted,
            "key_sources": [list(k) for k in rec.key_sources],
            "recipients": [r.to_json() for r in rec.recipients],
            **({"bcc": list(rec.bcc)} if rec.bcc else {}),
            **({"bcc_copy_of": rec.bcc_copy_of} if rec.bcc_copy_of else {}),
            **({"key_refusals": list(rec.key_refusals)} if rec.key_refusals else {}),
            "attempts": rec.attempts,
            "resent_after_crash": rec.resent,
            "queued_at": rec.created_at,
        }


def sent_time(rec: OutboxRecord) -> datetime:
    """When the relay took ``rec``: its last recipient's acceptance, as the ledger records it.

    Read from the row, so the sender and a node taking its filing over name the sent copy
    alike (``filing/sent.py``); a row without that time falls back to its last change.
    """
    accepted = [r.updated_at for r in rec.recipients if r.state == "sent" and r.updated_at]
    return datetime.fromisoformat(max(accepted) if accepted else rec.updated_at or iso(utcnow()))


def _merge(into: DrainReport, other: DrainReport) -> None:
    for f in fields(DrainReport):
        value = getattr(other, f.name)
        if isinstance(value, list):
            getattr(into, f.name).extend(value)


def _relay_steps(rec: OutboxRecord, at: str, was_pending: set[str], *, temporary: list[str]) -> list[DeliveryStep]:
    """The delivery steps of the recipients this attempt decided, the relay's reply as evidence.

    Accepted now: ``submitted``; refused (or expired) now: ``failed``; answered 4xx: ``delayed``.
    """
    steps: list[DeliveryStep] = []
    for r in rec.recipients:
        state: DeliveryState
        if r.address not in was_pending:
            continue
        if r.state == "pending":
            if r.address not in temporary:
                continue
            state = "delayed"
        else:
            state = "submitted" if r.state == "sent" else "failed"
        steps.append(DeliveryStep(rec.id, r.address, state, at, Evidence("relay", None, None, r.reply)))
    return steps
