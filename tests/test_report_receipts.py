"""The reports show what the receipts proved: per recipient the delivery state, since when, and the evidence file.

A document goes through the real outbox to a scripted SMTP peer; a DSN (Postfix's shape)
and an unmatched one are appended to the gateway's real Dovecot mailbox and one
``run --once`` takes them in, so the delivery records and the trail the reports read are
the ones the intake wrote. The exports are made by ``poststelle audit export`` itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Env, mailbox_entry, write_config
from support.outbox import document
from support.receipts import Rcpt, postfix_dsn, thunderbird_mdn
from support.smtp_peer import ScriptedPeer
from test_report_outbound import page_text

from gateway.audit.html import render_html
from gateway.audit.outbound_view import case_deliveries, case_documents
from gateway.audit.report import AuditQuery
from gateway.outbound import outbox
from gateway.outbound.drain import Drain
from gateway.records.open import open_store
from gateway.records.store import EntryFilter
from gateway.statedir import init_storage
from gateway.ui import Locale

CASE = "63-BV-2026-0412"
BOB, CAROL = "bob@example.org", "carol@example.org"
#: The DSN builder's Date (09:00:05 +0100) as the report shows it in the default zone.
DSN_TIME = "2026-12-02 09:00:05 CET"


@pytest.fixture
def delivered(env: Env) -> Iterator[tuple[Env, str]]:
    """A document accepted by the relay for bob and carol; a DSN says delivered for bob; one run took it in."""
    with ScriptedPeer() as peer:
        smtp = f'[smtp]\nhost = "127.0.0.1"\nport = {peer.port}\nsecurity = "plain"\nfrom = "rathaus@mailbox.test"\n'
        path = write_config(env.root, [mailbox_entry(env.dovecot, env.user, env.root)], extra=smtp)
        env = Env(env.dovecot, env.user, env.root, path)
        init_storage(env.config)
        store = open_store(env.config)
        oid = outbox.enqueue(env.config, store, document(to=(BOB, CAROL)))
        assert Drain(env.config, store).run_once().sent == [oid]
        rec = store.outbox_get(oid)
        store.close()
    assert rec is not None
    env.append(
        postfix_dsn(
            envid=rec.envid,
            original_message_id=rec.message_id,
            recipients=[Rcpt(BOB, "delivered", "2.0.0", diagnostic="smtp; 250 2.0.0 Ok: delivered")],
        ),
        postfix_dsn(envid="0badc0ffee00.1111222233334444", recipients=[Rcpt(CAROL, "failed", "5.1.1")], queue_id="B2"),
    )
    env.cli("run", "--once", check=True)
    yield env, oid


def dsn_path(env: Env, oid: str) -> str:
    store = open_store(env.config, readonly=True)
    try:
        bob = next(r for r in store.delivery_get(oid) if r.recipient == BOB)
    finally:
        store.close()
    path = bob.timeline[-1].evidence.path
    assert path is not None and path.startswith(f"{CASE}/receipts/") and (env.cases_dir / path).is_file()
    return path


def test_a_sent_document_whose_dsn_was_taken_in_shows_delivered_with_its_evidence_in_the_html_report(
    delivered: tuple[Env, str], tmp_path: Path
) -> None:
    env, oid = delivered
    evidence = dsn_path(env, oid)
    out = tmp_path / "report.html"
    env.cli("audit", "export", "--format", "html", "-o", str(out), "--no-verify", check=True)
    text, _ = page_text(out.read_text(encoding="utf-8"))
    overview, document = text.split(f"Case {CASE}", 2)[2].split("Outgoing document", 1)
    assert f"{BOB} (delivered), {CAROL} (accepted by the relay)" in overview
    bob_row = document.split(f"{BOB} accepted by the relay", 1)[1].split(CAROL, 1)[0]
    assert f"delivered since {DSN_TIME} (evidence: {evidence})" in bob_row
    assert "no delivery confirmation" in document.split(f"{CAROL} accepted by the relay", 1)[1].split("Queued")[0]
    assert f"Delivery to {BOB}: delivered (evidence: delivery status notification, {evidence})" in document


def test_the_receipt_is_on_the_case_timeline_in_words_and_the_unmatched_one_says_why(
    delivered: tuple[Env, str], tmp_path: Path
) -> None:
    env, oid = delivered
    out = tmp_path / "report.html"
    env.cli("audit", "export", "--format", "html", "-o", str(out), "--no-verify", check=True)
    text, _ = page_text(out.read_text(encoding="utf-8"))
    case_part = text.split(f"Case {CASE}", 2)[2]
    assert "Receipt received" in case_part
    assert (
        f"Delivery status notification for the sent document {oid}, matched by its envelope id (ENVID): "
        f"{BOB}: delivered"
    ) in case_part
    assert f"Assigned to case {CASE}, the case of the sent document it is about" in case_part
    unassigned = text.split("Not assigned to a case", 2)[2]
    assert (
        "Delivery status notification that changes no delivery record: a receipt for none of our sent documents"
        in unassigned
    )


def test_the_json_export_gives_each_recipients_delivery_state_time_and_evidence(delivered: tuple[Env, str]) -> None:
    env, oid = delivered
    evidence = dsn_path(env, oid)
    done = env.cli("audit", "export", "--format", "json", "-o", "-", check=True)
    [sent] = json.loads(done.stdout)["outbox"]
    by_address = {r["address"]: r for r in sent["recipients"]}
    assert by_address[BOB]["delivery"] == {
        "state": "delivered",
        "at": "2026-12-02T08:00:05.000000Z",
        "evidence": evidence,
    }
    assert by_address[CAROL]["delivery"] is None  # only the relay's 250: no confirmation yet


def test_an_mdn_after_the_dsn_shows_displayed_and_the_report_speaks_german(delivered: tuple[Env, str]) -> None:
    env, oid = delivered
    store = open_store(env.config, readonly=True)
    rec = store.outbox_get(oid)
    store.close()
    assert rec is not None
    env.append(thunderbird_mdn(original_message_id=rec.message_id, final_recipient=BOB))
    env.cli("run", "--once", check=True)
    store = open_store(env.config, readonly=True)
    try:
        entries = list(store.select(EntryFilter(case_names=(CASE,))))
        views = case_documents(store, CASE, deliveries=case_deliveries(store, CASE))
        page = render_html(
            entries,
            records={r.id: r for r in store.all_messages()},
            query=AuditQuery(case=CASE),
            generated_at="2026-12-02T10:00:00.000000Z",
            verification=None,
            locale=Locale(language="de"),
            outbound={CASE: views},
        )
    finally:
        store.close()
    [view] = views
    assert {r.address: r.delivery.state if r.delivery else None for r in view.recipients} == {
        BOB: "displayed",
        CAROL: None,
    }
    text, _ = page_text(page)
    for words in (
        "vom Empfänger angezeigt seit",
        "Nachweis eingegangen",
        "Lesebestätigung zum gesendeten Dokument",
        "zugeordnet über die Message-ID des Dokuments",
        f"Zustellung an {BOB}: zugestellt (Nachweis: Zustellbenachrichtigung",
        "keine Zustellbestätigung",
    ):
        assert words in text, words
    for english in ("Receipt received", "Return receipt", "delivery status notification"):
        assert english not in text, english
