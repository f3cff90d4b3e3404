"""What a piece of evidence does to a delivery record: pure decisions, no I/O.

The states of one (document, recipient) form one total order, so that evidence from the
relay, from DSNs, from MDNs and from De-Mail confirmations can be compared whatever
arrives first (docs/deliveries.md explains each rank)::

    queued < submitted < relayed < dispatched < delivered < received
           < processed < displayed < retrieved

A step only ever moves a record forward. Evidence for an earlier state (a DSN that
overtook its predecessor, a duplicate) is kept in the timeline but leaves the state.
``delayed`` is a notice, never a state of its own. ``failed`` is taken from any state
before ``delivered`` and is final; a failure after delivery, or progress after a failure,
contradicts what was recorded: such a step is kept and the outcome says ``contradictory``,
so a person looks at it instead of the gateway choosing which receipt lies.

The service fiction of §5a VwZG (a De-Mail document counts as served on day N after its
dispatch unless a retrieval confirmation reaches the authority first) and the overdue
flag are derived from the timeline here as well, with the calendar rule passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from gateway.config import Config
from gateway.config.model import DeemedServedShift
from gateway.receipts.model import DeliveryState, EvidenceKind
from gateway.records.chain import AuditEvent
from gateway.records.deliveries import DeliveryRecord, DeliveryStep, Outcome, OutcomeKind, TimelineEntry

#: The forward order; ``delayed``, ``failed`` and ``deemed-served`` are not in it.
ORDER: tuple[DeliveryState, ...] = (
    "queued",
    "submitted",
    "relayed",
    "dispatched",
    "delivered",
    "received",
    "processed",
    "displayed",
    "retrieved",
)
RANK: dict[DeliveryState, int] = {state: i for i, state in enumerate(ORDER)}
#: States a step may name (``deemed-served`` is a date derived from the timeline, not evidence).
STEP_STATES: tuple[DeliveryState, ...] = (*ORDER, "delayed", "failed")
#: States whose records have no evidence yet that the document reached the recipient's side.
WITHOUT_DELIVERY: tuple[DeliveryState, ...] = ("queued", "submitted", "relayed", "delayed")
#: States a record can be in (what ``deliveries list --state`` accepts).
RECORD_STATES: tuple[DeliveryState, ...] = (*ORDER, "failed")

#: Evidence that comes from outside (the relay's and the outbox's own records are not receipts).
RECEIPT_KINDS: tuple[EvidenceKind, ...] = ("dsn", "mdn", "demail")

Shift = DeemedServedShift


def rank(state: DeliveryState) -> int:
    if state not in RANK:
        raise ValueError(f"{state!r} has no rank in the delivery order")
    return RANK[state]


def new_record(document_id: str, recipient: str, case_ref: str, at: str) -> DeliveryRecord:
    """A record before its first step: ``queued``, with an empty timeline."""
    return DeliveryRecord(document_id, recipient, case_ref, "queued", (), at, at)


def _decide(
    state: DeliveryState, step: DeliveryState, first: bool, receipt_out_of_place: bool
) -> tuple[OutcomeKind, DeliveryState]:
    """(what the step does, the state after it) for a record in ``state``."""
    if step not in STEP_STATES:
        raise ValueError(f"a delivery step cannot name {step!r}")
    if receipt_out_of_place:
        return "contradictory", state
    delivered = RANK["delivered"]
    if state == "failed":
        if step == "failed":
            return "same", state
        return ("delayed" if step == "delayed" else "contradictory"), state
    if step == "failed":
        return ("failed", "failed") if rank(state) < delivered else ("contradictory", state)
    if step == "delayed":
        return ("delayed" if rank(state) < delivered else "ignored-backwards"), state
    if rank(step) > rank(state) or (first and step == state):
        return "advanced", step
    return ("same" if step == state else "ignored-backwards"), state


def advance(record: DeliveryRecord, step: DeliveryStep, *, handed_over: bool = True) -> Outcome:
    """Apply ``step`` to ``record``: the new record (timeline extended by the step) and what it did.

    Every step lands in the timeline with its evidence, whatever it does to the state.
    ``handed_over``: whether the relay took the document for this recipient (or is
    taking it); a receipt (DSN, MDN, De-Mail) for a recipient never handed over, such as
    one of a cancelled document, contradicts the outbox and changes nothing.
    ``ValueError`` if the step names another document or recipient, or a state no
    evidence can name.
    """
    if (step.document_id, step.recipient) != (record.document_id, record.recipient):
        raise ValueError(
            f"step for {step.document_id}/{step.recipient} applied to {record.document_id}/{record.recipient}"
        )
    first = not record.timeline
    out_of_place = not handed_over and step.evidence.kind in RECEIPT_KINDS
    kind, after = _decide(record.state, step.state, first, out_of_place)
    before = None if first else record.state
    entry = TimelineEntry(step.state, step.at, step.evidence, kind, before, after, step.received_at)
    new = replace(record, state=after, timeline=(*record.timeline, entry))
    return Outcome(kind, step, before, after, new)


def state_event(outcome: Outcome) -> AuditEvent:
    """The ``delivery-state`` audit event of an applied step (also of one that changed nothing)."""
    rec = outcome.record
    step = outcome.step
    return AuditEvent(
        "delivery-state",
        case=rec.case_ref if rec is not None else None,
        document=step.document_id,
        correspondent=step.recipient,
        details={
            "recipient": step.recipient,
            "from": outcome.before,
            "to": outcome.after,
            "step": step.state,
            "outcome": outcome.kind,
            "at": step.at,
            "received_at": step.received_at,
            "evidence": step.evidence.to_json(),
        },
    )


# -- the service fiction (§5a VwZG) -------------------------------------------------------------
@dataclass(frozen=True)
class ServiceRule:
    """How the deemed-served date is counted: N days after dispatch, then the calendar rule.

    ``shift = "next-working-day"`` moves a day N that falls on a Saturday, Sunday or one of
    ``holidays`` to the next working day (§108(3) AO / §193 BGB applied to the fiction, as
    the Federal Fiscal Court does for §122(2) AO); ``"none"`` keeps day N as it falls.
    Dates are calendar days in ``timezone``, the authority's.
    """

    days: int = 4
    shift: Shift = "next-working-day"
    holidays: frozenset[date] = frozenset()
    timezone: str = "Europe/Berlin"

    def local_date(self, at: str) -> date:
        dt = datetime.fromisoformat(at.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.astimezone(ZoneInfo(self.timezone)).date()

    def working_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.holidays

    def deemed_day(self, dispatched_on: date) -> date:
        day = dispatched_on + timedelta(days=self.days)
        if self.shift == "next-working-day":
            while not self.working_day(day):
                day += timedelta(days=1)
        return day


def service_rule(config: Config) -> ServiceRule:
    """The configured rule: ``[deliveries]`` for the count and calendar, ``[ui]`` for the zone."""
    d = config.deliveries
    return ServiceRule(d.service_fiction_days, d.deemed_served_shift, frozenset(d.public_holidays), config.ui.timezone)


ServiceBasis = Literal["retrieval", "fiction", "failed"]


@dataclass(frozen=True)
class Service:
    """When a De-Mail document counts as served, and on what basis.

    ``basis``: ``retrieval`` (the retrieval confirmation reached the gateway by the end of
    the deemed day: served on the retrieval date, proven), ``fiction`` (deemed served on
    ``deemed_served_on``), ``failed`` (the delivery failed: no service).
    """

    basis: ServiceBasis
    dispatched_at: str | None
    retrieved_at: str | None
    deemed_served_on: date | None
    served_on: date | None

    def to_json(self) -> dict[str, Any]:
        return {
            "basis": self.basis,
            "dispatched_at": self.dispatched_at,
            "retrieved_at": self.retrieved_at,
            "deemed_served_on": self.deemed_served_on.isoformat() if self.deemed_served_on else None,
            "served_on": self.served_on.isoformat() if self.served_on else None,
        }


def _first(record: DeliveryRecord, state: DeliveryState) -> TimelineEntry | None:
    found = [t for t in record.timeline if t.state == state and t.evidence.kind == "demail"]
    return min(found, key=lambda t: t.at) if found else None


def service_of(record: DeliveryRecord, rule: ServiceRule) -> Service | None:
    """The service of a De-Mail document from its recorded confirmations; None without any.

    Only De-Mail evidence counts: a Versandbestätigung starts the fiction, an
    Abholbestätigung proves service on its retrieval date (DeliveryTime) when it reached the
    gateway no later than the deemed day; one arriving later leaves the fiction in force.
    Derived on every read, so a corrected holiday list corrects every date.
    """
    dispatch = _first(record, "dispatched")
    retrieval = _first(record, "retrieved")
    if dispatch is None and retrieval is None:
        return None
    dispatched_at = dispatch.at if dispatch else None
    retrieved_at = retrieval.at if retrieval else None
    if record.state == "failed":
        return Service("failed", dispatched_at, retrieved_at, None, None)
    deemed = rule.deemed_day(rule.local_date(dispatch.at)) if dispatch is not None else None
    if retrieval is not None:
        reached = rule.local_date(retrieval.received_at or retrieval.at)
        if deemed is None or reached <= deemed:
            return Service("retrieval", dispatched_at, retrieved_at, None, rule.local_date(retrieval.at))
    assert deemed is not None
    return Service("fiction", dispatched_at, retrieved_at, deemed, deemed)


# -- overdue ------------------------------------------------------------------------------------
def started_at(record: DeliveryRecord) -> str:
    """When the record's first step happened (its creation time when it has none)."""
    return min((t.at for t in record.timeline), default=record.created_at)


def is_overdue(record: DeliveryRecord, now: datetime, after: timedelta) -> bool:
    """Whether the record still lacks delivery evidence ``after`` its first step."""
    if record.state not in WITHOUT_DELIVERY:
        return False
    start = started_at(record)
    if not start:
        return False
    began = datetime.fromisoformat(start.replace("Z", "+00:00"))
    if began.tzinfo is None:
        began = began.replace(tzinfo=UTC)
    return now - began >= after
