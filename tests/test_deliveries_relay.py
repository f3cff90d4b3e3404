"""The relay's answers as delivery steps: queued at enqueue, submitted, delayed or failed with the reply as evidence.

Against a scripted SMTP peer (aiosmtpd) and an injected clock, like test_outbox.py; each
step is committed in the same transaction as the outbox change it comes from.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.outbox import Clock, document, smtp_config
from support.smtp_peer import ScriptedPeer

from gateway.audit.report import describe
from gateway.config import Config, load_config
from gateway.outbound import outbox
from gateway.outbound.drain import Drain, DrainHooks
from gateway.outbound.smtp import Attempt
from gateway.records.deliveries import DeliveryStep, Evidence
from gateway.records.open import open_store
from gateway.records.outbox import OutboxRecord
from gateway.records.store import EntryFilter, Store
from gateway.ui import Locale


class SimulatedCrash(BaseException):
    """Ends the pass the way a power cut would."""


@pytest.fixture
def peer() -> Iterator[ScriptedPeer]:
    with ScriptedPeer() as p:
        yield p


@pytest.fixture
def config(tmp_path: Path, peer: ScriptedPeer) -> Config:
    return load_config(smtp_config(tmp_path, port=peer.port))


@pytest.fixture
def store(config: Config) -> Iterator[Store]:
    s = open_store(config)
    yield s
    s.close()


def states(store: Store, oid: str) -> dict[str, str]:
    return {r.recipient: r.state for r in store.delivery_get(oid)}


def test_accepted_and_refused_recipients_become_submitted_and_failed_with_the_relays_reply(
    config: Config, store: Store, peer: ScriptedPeer
) -> None:
    peer.script("gone@remote.test", "550 5.1.1 no such user")
    oid = outbox.enqueue(config, store, document(to=("gone@remote.test", "ok@remote.test")))
    assert states(store, oid) == {"gone@remote.test": "queued", "ok@remote.test": "queued"}
    Drain(config, store).run_once()
    assert states(store, oid) == {"gone@remote.test": "failed", "ok@remote.test": "submitted"}
    gone, ok = store.delivery_get(oid)
    assert gone.timeline[-1].evidence.kind == "relay" and gone.timeline[-1].evidence.detail == "550 5.1.1 no such user"
    assert (ok.timeline[-1].evidence.detail or "").startswith("250")
    assert ok.timeline[0].evidence.sha256 == (store.outbox_get(oid) or pytest.fail()).sha256
    entries = list(store.select(EntryFilter(document=oid, events=("delivery-state",))))
    assert [(e.correspondent, e.details["to"]) for e in entries] == [
        ("gone@remote.test", "queued"),
        ("ok@remote.test", "queued"),
        ("gone@remote.test", "failed"),
        ("ok@remote.test", "submitted"),
    ]
    assert describe(entries[2]) == (
        "Delivery to gone@remote.test: failed (evidence: the relay's reply, 550 5.1.1 no such user)"
    )
    assert describe(entries[2], Locale(language="de")) == (
        "Zustellung an gone@remote.test: gescheitert (Nachweis: Antwort des Mailservers, 550 5.1.1 no such user)"
    )


def test_a_step_that_leaves_the_state_says_so_in_the_audit_report(
    config: Config, store: Store, peer: ScriptedPeer
) -> None:
    oid = outbox.enqueue(config, store, document(to=("ok@remote.test",)))
    Drain(config, store).run_once()
    evidence = Evidence("dsn", "63-BV-2026-0412/receipts/x.eml", "ab" * 32, "5.0.0")
    store.delivery_apply([DeliveryStep(oid, "ok@remote.test", "delayed", "2026-12-02T10:00:00Z", evidence)], [])
    (last,) = list(store.select(EntryFilter(document=oid, events=("delivery-state",))))[-1:]
    assert describe(last) == (
        "Delivery to ok@remote.test: delayed (evidence: delivery status notification, "
        "63-BV-2026-0412/receipts/x.eml); the state stays handed to the relay (a delay notice)"
    )


def test_a_deferral_is_a_delay_in_the_timeline_and_expiry_fails_the_recipient(
    config: Config, store: Store, peer: ScriptedPeer
) -> None:
    peer.script("busy@remote.test", *["450 4.2.1 busy"] * 10)
    clock = Clock()
    drain = Drain(config, store, clock=clock)
    oid = outbox.enqueue(config, store, document(to=("busy@remote.test",)))
    drain.run_once()
    (rec,) = store.delivery_get(oid)
    assert rec.state == "queued" and [t.outcome for t in rec.timeline] == ["advanced", "delayed"]
    clock.advance(5 * 86400 + 1)
    assert drain.run_once().bounced == [oid]
    (rec,) = store.delivery_get(oid)
    assert rec.state == "failed" and "max_lifetime" in (rec.timeline[-1].evidence.detail or "")


def test_a_crash_before_the_commit_leaves_no_submitted_step_and_the_resend_records_one(
    config: Config, store: Store, peer: ScriptedPeer
) -> None:
    def crash(rec: OutboxRecord, att: Attempt) -> None:
        raise SimulatedCrash

    oid = outbox.enqueue(config, store, document())
    with pytest.raises(SimulatedCrash):
        Drain(config, store, hooks=DrainHooks(after_accept=crash)).run_once()
    assert set(states(store, oid).values()) == {"queued"}
    Drain(config, store).run_once()
    (rec,) = store.delivery_get(oid)
    assert rec.state == "submitted" and [t.state for t in rec.timeline] == ["queued", "submitted"]
