"""The reports show, per case, what was sent to whom and what the relay answered.

Documents go through the real outbox to a scripted SMTP peer (aiosmtpd), so the replies,
queue ids, attempts and sent copies in the report are the ones the delivery agent recorded.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.outbox import document, smtp_config
from support.smtp_peer import ScriptedPeer
from typer.testing import CliRunner

from cli.common import use_locale
from cli.main import app
from gateway.audit import outbound_view
from gateway.audit.html import render_html
from gateway.audit.outbound_view import DeliveryInfo, case_documents, delivery_text, document_view, read_subject
from gateway.audit.report import AuditQuery
from gateway.config import Config, load_config
from gateway.outbound import outbox
from gateway.outbound.drain import Drain
from gateway.records.open import open_store
from gateway.records.store import EntryFilter, Store
from gateway.ui import DEFAULT, Locale
from gateway.ui.german import GERMAN

CASE = "63-BV-2026-0412"
GENERATED = "2026-12-02T10:00:00.000000Z"


@pytest.fixture(autouse=True)
def _default_locale() -> Iterator[None]:
    yield
    use_locale(DEFAULT)


@pytest.fixture
def peer() -> Iterator[ScriptedPeer]:
    with ScriptedPeer() as p:
        yield p


@pytest.fixture
def config_path(tmp_path: Path, peer: ScriptedPeer) -> Path:
    return smtp_config(tmp_path, port=peer.port)


@pytest.fixture
def config(config_path: Path) -> Config:
    return load_config(config_path)


@pytest.fixture
def store(config: Config) -> Iterator[Store]:
    s = open_store(config)
    yield s
    s.close()


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def page_text(page: str) -> tuple[str, list[str]]:
    p = _Text()
    p.feed(page)
    return " ".join(" ".join(p.parts).split()), p.tags


def send_one_bounced_one_accepted(config: Config, store: Store, peer: ScriptedPeer) -> str:
    peer.script("gone@remote.test", "550 5.1.1 no such user")
    oid = outbox.enqueue(config, store, document(to=("gone@remote.test", "ok@remote.test")))
    Drain(config, store).run_once()
    return oid


def render(store: Store, language: str = "en") -> str:
    entries = list(store.select(EntryFilter(case_names=(CASE,))))
    return render_html(
        entries,
        records={},
        query=AuditQuery(case=CASE),
        generated_at=GENERATED,
        verification=None,
        locale=Locale(language=language),
        outbound={CASE: case_documents(store, CASE)},
    )


def test_html_report_shows_each_sent_document_with_recipients_replies_queue_ids_and_copy(
    config_path: Path, config: Config, store: Store, peer: ScriptedPeer, tmp_path: Path
) -> None:
    oid = send_one_bounced_one_accepted(config, store, peer)
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        app, ["audit", "export", "--config", str(config_path), "--format", "html", "-o", str(out), "--no-verify"]
    )
    assert result.exit_code == 0, result.output
    text, _ = page_text(out.read_text(encoding="utf-8"))
    case_part = text.split(f"Case {CASE}", 2)[2]
    overview, timeline = case_part.split("Outgoing document", 1)
    assert "Sent documents" in overview and f"Az. {CASE} Bescheid" in overview
    assert "gone@remote.test (refused)" in overview and "ok@remote.test (accepted by the relay)" in overview
    assert f"outbox id {oid}" in timeline and "1 attempt" in timeline and "not delivered" in timeline
    assert "gone@remote.test refused 550 5.1.1 no such user" in timeline
    assert "ok@remote.test accepted by the relay 250 2.0.0 Ok: queued as PEER0001 PEER0001" in timeline
    assert f"sent copy: {CASE}/sent/" in timeline and timeline.count("no delivery confirmation") == 2
    for sentence in (
        "Queued for sending to gone@remote.test, ok@remote.test",
        "Not delivered to gone@remote.test",
        f"The sent copy was filed in {CASE}/sent/",
    ):
        assert sentence in timeline, sentence
    assert "resent after a crash" not in timeline


def test_html_report_in_german_labels_the_sent_documents_in_german(
    config: Config, store: Store, peer: ScriptedPeer
) -> None:
    send_one_bounced_one_accepted(config, store, peer)
    text, _ = page_text(render(store, "de"))
    for words in (
        "Gesendete Dokumente",
        "Ausgangsdokument",
        "Antwort des Mailservers",
        "Warteschlangen-ID",
        "vom Mailserver angenommen",
        "abgelehnt",
        "nicht zugestellt",
        "keine Zustellbestätigung",
        "1 Versuch",
        "gesendete Fassung:",
    ):
        assert words in text, words
    for english in ("Sent documents", "Relay's reply", "accepted by the relay", "no delivery confirmation"):
        assert english not in text, english


def test_a_strangers_reply_and_subject_stay_text_with_controls_shown(
    config: Config, store: Store, peer: ScriptedPeer
) -> None:
    peer.script("x@remote.test", "550 5.7.1 <img src=x onerror=alert(1)> \u202eblocked")
    doc = document(to=("x@remote.test",))
    hostile = f"Az. {CASE} <script>alert(1)</script> \u202egnp.exe".encode()
    raw = doc.raw.replace(f"Az. {CASE} Bescheid".encode(), hostile)
    oid = outbox.enqueue(
        config,
        store,
        type(doc)(
            doc.message_id, doc.case, doc.mail_from, doc.recipients, raw, doc.signed, doc.encrypted, doc.key_sources
        ),
    )
    Drain(config, store).run_once()
    page = render(store)
    text, tags = page_text(page)
    assert "script" not in tags and "img" not in tags
    assert "\u202e" not in page
    assert f"Az. {CASE} <script>alert(1)</script> \ufffdgnp.exe" in text  # the header decoder's mark
    assert "550 5.7.1 <img src=x onerror=alert(1)> \\u202eblocked" in text
    assert f'id="document-{oid}"' in page


def test_a_document_whose_subject_cannot_be_read_is_shown_by_its_message_id(
    config: Config, store: Store, peer: ScriptedPeer
) -> None:
    doc = document()
    oid = outbox.enqueue(config, store, doc)
    rec = store.outbox_get(oid)
    assert rec is not None
    Path(rec.path).unlink()  # not sent yet, no sent copy: nothing to read the subject from
    [view] = case_documents(store, CASE)
    assert view.subject is None and view.title == f"<{doc.message_id}>"
    text, _ = page_text(render(store))
    assert f"Subject: <{doc.message_id}>" in text and "queued" in text


def test_a_document_resent_after_a_crash_is_marked_and_receipts_show_per_recipient(
    config: Config, store: Store, peer: ScriptedPeer
) -> None:
    oid = outbox.enqueue(config, store, document(to=("a@remote.test", "b@remote.test")))
    Drain(config, store).run_once()
    rec = store.outbox_get(oid)
    assert rec is not None
    rec.resent = True
    delivered = DeliveryInfo("delivered", "2026-12-02T09:30:00.000000Z", f"{CASE}/receipts/dsn-1.eml")
    view = document_view(rec, subject="Bescheid", deliveries={(oid, "a@remote.test"): delivered})
    entries = list(store.select(EntryFilter(document=oid)))
    page = render_html(
        entries, records={}, query=AuditQuery(), generated_at=GENERATED, verification=None, outbound={CASE: [view]}
    )
    text, _ = page_text(page)
    assert "resent after a crash (same Message-ID)" in text
    row_a = text.split("a@remote.test accepted by the relay", 1)[1].split("b@remote.test")[0]
    assert "delivered since 2026-12-02 10:30:00 CET (evidence: 63-BV-2026-0412/receipts/dsn-1.eml)" in row_a
    assert "no delivery confirmation" in text.split("b@remote.test accepted by the relay", 1)[1]


def test_json_export_lists_the_cases_documents_beside_the_entries(
    config_path: Path, config: Config, store: Store, peer: ScriptedPeer
) -> None:
    oid = send_one_bounced_one_accepted(config, store, peer)
    result = CliRunner().invoke(app, ["audit", "export", "--config", str(config_path), "--format", "json", "-o", "-"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    [sent] = doc["outbox"]
    assert sent["id"] == oid and sent["subject"] == f"Az. {CASE} Bescheid" and sent["state"] == "bounced"
    assert sent["resent_after_crash"] is False and sent["attempts"] == 1
    assert sent["sent_path"].startswith(f"{CASE}/sent/")
    by_address = {r["address"]: r for r in sent["recipients"]}
    assert by_address["gone@remote.test"]["reply"] == "550 5.1.1 no such user"
    assert by_address["ok@remote.test"]["queue_id"] == "PEER0001" and by_address["ok@remote.test"]["delivery"] is None
    assert {e["document"] for e in doc["entries"] if e["document"]} == {oid}


def test_bcc_recipients_and_refused_certificates_are_shown_as_such_not_as_to_or_cc(
    config: Config, store: Store, peer: ScriptedPeer
) -> None:
    from dataclasses import replace

    letter = document(to=("a@remote.test", "hidden@remote.test"))
    refusal = "certificate of a@remote.test refused: expired (correspondents directory)"
    copy = replace(document(to=("blind@remote.test",)), bcc=("blind@remote.test",))
    oid = outbox.enqueue(
        config,
        store,
        replace(letter, bcc=("hidden@remote.test", "blind@remote.test"), key_refusals=(refusal,), bcc_copies=(copy,)),
    )
    Drain(config, store).run_once()
    views = {v.id: v for v in case_documents(store, CASE)}
    [copy_id] = [i for i in views if i != oid]
    assert views[copy_id].bcc_copy_of == oid and views[oid].key_refusals == (refusal,)
    page = render(store)
    text, _ = page_text(page)
    overview = text.split("Sent documents", 1)[1].split("Outgoing document", 1)[0]
    assert "a@remote.test (accepted by the relay)" in overview
    assert "hidden@remote.test (Bcc) (accepted by the relay)" in overview
    assert "blind@remote.test (Bcc) (accepted by the relay)" in overview
    assert f"Warning: a recipient's key was not used: {refusal}" in text
    assert f"blind copy (Bcc) of {oid}" in text and f'href="#document-{oid}"' in page
    german, _ = page_text(render(store, "de"))
    assert f"Blindkopie (Bcc) von {oid}" in german and "Schlüssel eines Empfängers nicht verwendet" in german
    exported = views[oid].to_json()
    assert exported["bcc"] == ["hidden@remote.test", "blind@remote.test"] and exported["key_refusals"] == [refusal]
    assert views[copy_id].to_json()["bcc_copy_of"] == oid


def test_subject_reading_never_raises_on_odd_files(tmp_path: Path) -> None:
    folded = tmp_path / "folded.eml"
    folded.write_bytes(b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n aus Hofheim\r\n\r\nbody")
    no_separator = tmp_path / "cut.eml"
    no_separator.write_bytes(b"Subject: x" + b"y" * outbound_view.HEADER_LIMIT)
    two = tmp_path / "two.eml"
    two.write_bytes(b"Subject: a\r\nSubject: b\r\n\r\n")
    link = tmp_path / "link.eml"
    link.symlink_to(folded)
    assert read_subject([tmp_path / "missing.eml", tmp_path, folded]) == "Grüße aus Hofheim"
    assert read_subject([no_separator]) is None and read_subject([two]) is None
    assert read_subject([link]) is None and read_subject([None, ""]) is None


def test_every_outbound_word_of_the_reports_has_a_german_entry() -> None:
    words = {
        *outbound_view.DELIVERY_STATES.values(),
        *outbound_view.RECIPIENT_STATES.values(),
        *outbound_view.DOCUMENT_STATES.values(),
        "Queued",
        "Document",
        "State",
        "Recipients",
        "Recipient",
        "Relay's reply",
        "Queue id",
        "Delivery",
    }
    assert sorted(w for w in words if w not in GERMAN) == []
    assert delivery_text(None, Locale(language="de")) == "keine Zustellbestätigung"
    assert delivery_text(DeliveryInfo("retrieved"), Locale(language="de")) == "abgeholt (De-Mail, Abholbestätigung)"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(head=st.binary(max_size=400))
def test_any_header_block_gives_one_line_of_text_or_nothing(head: bytes, tmp_path: Path) -> None:
    f = tmp_path / "any.eml"
    f.write_bytes(b"Subject: " + head + b"\r\n\r\nbody")
    subject = read_subject([f])
    # Format characters (bidi, soft hyphen) may remain: every report shows them through gateway.display.
    assert subject is None or (subject.strip() == subject and not any(unicodedata.category(c) == "Cc" for c in subject))
