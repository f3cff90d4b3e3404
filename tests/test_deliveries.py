"""Delivery decisions, pure: the forward order, delays, failures, contradictions, service fiction, overdue."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_config import problem, write

from gateway.config import DeliveriesConfig, load_config
from gateway.receipts.deliveries import (
    ORDER,
    RANK,
    STEP_STATES,
    ServiceRule,
    advance,
    is_overdue,
    new_record,
    service_of,
    service_rule,
    state_event,
)
from gateway.receipts.model import EVIDENCE_KINDS, DeliveryState, EvidenceKind
from gateway.records.deliveries import DeliveryRecord, DeliveryStep, Evidence

DOC, RCPT = "a1b2c3d4e5f6", "buerger@example.org"


def step(
    state: DeliveryState,
    at: str = "2026-12-02T09:00:00.000000Z",
    kind: EvidenceKind = "dsn",
    *,
    received_at: str | None = None,
    detail: str | None = None,
) -> DeliveryStep:
    evidence = Evidence(kind, f"63-BV-2026-0412/receipts/{state}.eml", "ab" * 32, detail)
    return DeliveryStep(DOC, RCPT, state, at, evidence, received_at)


def run(*steps: DeliveryStep) -> tuple[DeliveryRecord, list[str]]:
    rec = new_record(DOC, RCPT, "63-BV-2026-0412", "2026-12-02T08:00:00.000000Z")
    kinds = []
    for s in steps:
        out = advance(rec, s)
        assert out.record is not None
        rec = out.record
        kinds.append(out.kind)
    return rec, kinds


def test_relay_and_receipts_move_a_record_forward_and_keep_every_step() -> None:
    rec, kinds = run(
        step("queued", kind="outbox"), step("submitted", kind="relay"), step("delivered"), step("displayed", kind="mdn")
    )
    assert rec.state == "displayed" and kinds == ["advanced"] * 4
    assert [(t.before, t.after) for t in rec.timeline] == [
        (None, "queued"),
        ("queued", "submitted"),
        ("submitted", "delivered"),
        ("delivered", "displayed"),
    ]


def test_a_delay_is_recorded_but_never_changes_the_state() -> None:
    rec, kinds = run(step("submitted", kind="relay"), step("delayed", detail="4.4.7 queue time"))
    assert rec.state == "submitted" and kinds[-1] == "delayed"
    assert rec.timeline[-1].evidence.detail == "4.4.7 queue time"


def test_a_dsn_that_overtook_its_predecessor_is_kept_but_does_not_move_the_record_back() -> None:
    rec, kinds = run(step("delivered"), step("relayed"))
    assert rec.state == "delivered" and kinds == ["advanced", "ignored-backwards"]
    assert rec.timeline[-1].evidence.path == "63-BV-2026-0412/receipts/relayed.eml"


def test_a_failure_before_delivery_fails_the_record_and_a_later_delivery_contradicts_it() -> None:
    rec, kinds = run(step("submitted", kind="relay"), step("failed", detail="5.1.1 user unknown"), step("delivered"))
    assert rec.state == "failed" and kinds == ["advanced", "failed", "contradictory"]


def test_a_failure_after_delivery_is_contradictory_and_the_record_stays_delivered() -> None:
    rec, kinds = run(step("delivered"), step("failed"))
    assert rec.state == "delivered" and kinds == ["advanced", "contradictory"]
    assert len(rec.timeline) == 2 and rec.timeline[-1].outcome == "contradictory"


def test_a_receipt_for_a_recipient_never_handed_over_is_contradictory_but_the_relays_word_counts() -> None:
    rec = new_record(DOC, RCPT, "C", "2026-12-02T08:00:00Z")
    for kind in ("dsn", "mdn", "demail"):
        out = advance(rec, step("delivered", kind=kind), handed_over=False)
        assert (out.kind, out.after) == ("contradictory", "queued")
    out = advance(rec, step("failed", kind="relay", detail="550 5.1.1"), handed_over=False)
    assert (out.kind, out.after) == ("failed", "failed")


def test_the_same_receipt_twice_is_kept_twice_as_the_same_state() -> None:
    rec, kinds = run(step("delivered"), step("delivered"))
    assert kinds == ["advanced", "same"] and len(rec.timeline) == 2


def test_a_step_for_another_recipient_or_naming_deemed_served_is_refused() -> None:
    rec = new_record(DOC, RCPT, "C", "2026-12-02T08:00:00Z")
    with pytest.raises(ValueError, match="applied to"):
        advance(rec, DeliveryStep(DOC, "other@example.org", "delivered", "2026-12-02T09:00:00Z", Evidence("dsn")))
    with pytest.raises(ValueError, match="cannot name"):
        advance(rec, step("deemed-served"))


def test_the_delivery_state_event_names_document_recipient_states_and_evidence() -> None:
    rec = new_record(DOC, RCPT, "63-BV-2026-0412", "2026-12-02T08:00:00Z")
    event = state_event(advance(rec, step("delivered", detail="2.0.0")))
    assert (event.type, event.document, event.correspondent, event.case) == (
        "delivery-state",
        DOC,
        RCPT,
        "63-BV-2026-0412",
    )
    assert event.details["from"] is None and event.details["to"] == "delivered"
    assert event.details["evidence"] == {
        "kind": "dsn",
        "path": "63-BV-2026-0412/receipts/delivered.eml",
        "sha256": "ab" * 32,
        "detail": "2.0.0",
    }


# -- properties ---------------------------------------------------------------------------------
steps_strategy = st.lists(
    st.builds(
        lambda state, kind, minute: step(state, f"2026-12-02T09:{minute:02d}:00.000000Z", kind),
        st.sampled_from(STEP_STATES),
        st.sampled_from(EVIDENCE_KINDS),
        st.integers(0, 59),
    ),
    max_size=30,
)


@given(steps_strategy, st.lists(st.booleans(), min_size=30, max_size=30))
@settings(max_examples=300, deadline=None)
def test_advance_never_moves_a_state_backwards_for_any_sequence_of_steps(
    steps: list[DeliveryStep], handed_over: list[bool]
) -> None:
    rec = new_record(DOC, RCPT, "C", "2026-12-02T08:00:00Z")
    for s, handed in zip(steps, handed_over, strict=False):
        before = rec.state
        out = advance(rec, s, handed_over=handed)
        assert out.record is not None
        rec = out.record
        if before == "failed":
            assert rec.state == "failed", "failed is final"
        elif rec.state == "failed":
            assert RANK[before] < RANK["delivered"], "failed only before delivery"
        else:
            assert RANK[rec.state] >= RANK[before]
        assert rec.state in (*ORDER, "failed")
        if out.before is not None:  # the first step opens the record
            assert out.changed == (rec.state != before)


@given(steps_strategy)
@settings(max_examples=300, deadline=None)
def test_the_timeline_keeps_every_step_with_its_evidence_in_order(steps: list[DeliveryStep]) -> None:
    rec, _ = run(*steps)
    assert [(t.state, t.at, t.evidence) for t in rec.timeline] == [(s.state, s.at, s.evidence) for s in steps]
    if rec.timeline:
        assert rec.timeline[-1].after == rec.state


# -- the service fiction (§5a VwZG) ---------------------------------------------------------------
CHRISTMAS_2029 = frozenset({date(2029, 12, 25), date(2029, 12, 26)})


def deemed(rec: DeliveryRecord, rule: ServiceRule) -> date | None:
    service = service_of(rec, rule)
    assert service is not None
    return service.deemed_served_on


def demail(state: DeliveryState, at: str, received_at: str | None = None) -> DeliveryStep:
    return step(state, at, "demail", received_at=received_at)


def test_a_dispatch_is_deemed_served_on_the_fourth_day() -> None:
    rec, _ = run(demail("dispatched", "2026-12-01T09:00:00Z"))  # a Tuesday
    service = service_of(rec, ServiceRule())
    assert service is not None and service.basis == "fiction"
    assert service.deemed_served_on == service.served_on == date(2026, 12, 7), "Saturday 5th moves to Monday 7th"
    assert deemed(rec, ServiceRule(shift="none")) == date(2026, 12, 5)


def test_a_dispatch_on_the_friday_before_christmas_is_served_after_the_holidays() -> None:
    """Friday 21 December 2029 + 4 days is Tuesday 25th (Christmas), then 26th: Thursday 27th."""
    rec, _ = run(demail("dispatched", "2029-12-21T10:30:00Z"))
    rule = ServiceRule(days=4, holidays=CHRISTMAS_2029)
    assert deemed(rec, rule) == date(2029, 12, 27)
    assert deemed(rec, ServiceRule(holidays=CHRISTMAS_2029, shift="none")) == date(2029, 12, 25)
    assert deemed(rec, ServiceRule(days=4)) == date(2029, 12, 25), "no holidays configured"
    assert deemed(rec, ServiceRule(days=3, holidays=CHRISTMAS_2029)) == date(2029, 12, 24), "day 3 is a working day"


def test_the_dispatch_date_is_the_authoritys_calendar_day_not_utc() -> None:
    """23:30 UTC on Thursday is already Friday in Berlin."""
    rec, _ = run(demail("dispatched", "2029-12-20T23:30:00Z"))
    assert deemed(rec, ServiceRule(holidays=CHRISTMAS_2029)) == date(2029, 12, 27)
    assert deemed(rec, ServiceRule(holidays=CHRISTMAS_2029, timezone="UTC")) == date(2029, 12, 24)


def test_a_retrieval_confirmation_before_the_deemed_day_proves_service_on_the_retrieval_date() -> None:
    rec, kinds = run(
        demail("dispatched", "2026-12-01T09:00:00Z"),
        demail("retrieved", "2026-12-02T14:00:00Z", received_at="2026-12-02T14:05:00Z"),
    )
    service = service_of(rec, ServiceRule())
    assert rec.state == "retrieved" and kinds == ["advanced", "advanced"]
    assert service is not None and service.basis == "retrieval"
    assert (service.served_on, service.deemed_served_on) == (date(2026, 12, 2), None)


def test_a_retrieval_confirmation_arriving_after_the_deemed_day_leaves_the_fiction_in_force() -> None:
    rec, _ = run(
        demail("dispatched", "2026-12-01T09:00:00Z"),
        demail("retrieved", "2026-12-03T08:00:00Z", received_at="2026-12-08T08:00:00Z"),
    )
    service = service_of(rec, ServiceRule())
    assert service is not None and service.basis == "fiction" and service.served_on == date(2026, 12, 7)


def test_a_retrieval_recorded_before_its_dispatch_confirmation_still_counts_first() -> None:
    rec, kinds = run(demail("retrieved", "2026-12-02T14:00:00Z"), demail("dispatched", "2026-12-01T09:00:00Z"))
    assert kinds == ["advanced", "ignored-backwards"] and rec.state == "retrieved"
    service = service_of(rec, ServiceRule())
    assert service is not None and (service.basis, service.served_on) == ("retrieval", date(2026, 12, 2))
    assert service.dispatched_at == "2026-12-01T09:00:00Z"


def test_a_failed_de_mail_is_not_served_and_smtp_only_records_have_no_service() -> None:
    failed, _ = run(demail("dispatched", "2026-12-01T09:00:00Z"), demail("failed", "2026-12-01T10:00:00Z"))
    service = service_of(failed, ServiceRule())
    assert service is not None and service.basis == "failed" and service.served_on is None
    smtp, _ = run(step("delivered"), step("retrieved"))  # a retrieval claimed by a DSN is no Abholbestätigung
    assert service_of(smtp, ServiceRule()) is None


# -- overdue -------------------------------------------------------------------------------------------
def test_a_record_without_delivery_evidence_is_overdue_after_the_configured_time() -> None:
    rec, _ = run(
        step("queued", "2026-12-01T09:00:00Z", "outbox"),
        step("submitted", "2026-12-01T09:01:00Z", "relay"),
        step("delayed", "2026-12-02T09:00:00Z"),
    )
    two_days = timedelta(days=2)
    assert not is_overdue(rec, datetime(2026, 12, 3, 8, 59, tzinfo=UTC), two_days)
    assert is_overdue(rec, datetime(2026, 12, 3, 9, 0, tzinfo=UTC), two_days)
    delivered, _ = run(step("queued", "2026-12-01T09:00:00Z", "outbox"), step("delivered"))
    failed, _ = run(step("queued", "2026-12-01T09:00:00Z", "outbox"), step("failed"))
    assert not is_overdue(delivered, datetime(2027, 1, 1, tzinfo=UTC), two_days)
    assert not is_overdue(failed, datetime(2027, 1, 1, tzinfo=UTC), two_days)


# -- [deliveries] in the config ---------------------------------------------------------------------
def test_deliveries_settings_default_to_four_days_shifted_and_two_days_overdue(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path))
    assert cfg.deliveries == DeliveriesConfig(4, "next-working-day", (), 2 * 86400.0)
    rule = service_rule(cfg)
    assert rule == ServiceRule(4, "next-working-day", frozenset(), "Europe/Berlin")


def test_deliveries_settings_are_read_with_holidays_as_dates_or_strings(tmp_path: Path) -> None:
    extra = (
        '[deliveries]\nservice_fiction_days = 3\ndeemed_served_shift = "none"\noverdue_after = "12h"\n'
        'public_holidays = ["2029-12-26", 2029-12-25]\n'
    )
    d = load_config(write(tmp_path, extra)).deliveries
    assert (d.service_fiction_days, d.deemed_served_shift, d.overdue_after) == (3, "none", 12 * 3600.0)
    assert d.public_holidays == (date(2029, 12, 25), date(2029, 12, 26))


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ("service_fiction_days = 0\n", "deliveries.service_fiction_days", "between 1 and 30"),
        ('service_fiction_days = "4"\n', "deliveries.service_fiction_days", "an integer"),
        ('deemed_served_shift = "previous"\n', "deliveries.deemed_served_shift", "next-working-day, none"),
        ('overdue_after = "soon"\n', "deliveries.overdue_after", "duration"),
        ('public_holidays = ["25.12.2029"]\n', "deliveries.public_holidays[0]", "2026-12-25"),
        ("public_holidays = [2029-12-25T10:00:00]\n", "deliveries.public_holidays[0]", "a date"),
        ('public_holidays = [2029-12-25, "2029-12-25"]\n', "deliveries.public_holidays[1]", "listed twice"),
        ("holidays = []\n", "deliveries.holidays", "unknown key"),
    ],
)
def test_a_bad_deliveries_setting_names_the_key_and_the_problem(
    tmp_path: Path, extra: str, key: str, words: str
) -> None:
    err = problem(tmp_path, "[deliveries]\n" + extra)
    assert err.key == key and words in str(err)


def test_the_example_configs_deliveries_block_is_valid_when_uncommented(tmp_path: Path) -> None:
    text = (Path(__file__).parent.parent / "config" / "poststelle.example.toml").read_text(encoding="utf-8")
    block = text[text.index("# [deliveries]") :].split("\n\n", 1)[0].splitlines()  # up to the next section
    lines = [ln[2:] for ln in block if ln.startswith("# ") and not ln.startswith("#  ")]
    d = load_config(write(tmp_path, "\n".join(lines) + "\n")).deliveries
    assert d.service_fiction_days == 4 and date(2026, 12, 25) in d.public_holidays and d.overdue_after == 2 * 86400.0
