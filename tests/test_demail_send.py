"""Sending with De-Mail options: the fields, a private id that is the ENVID, the TR's rule, confirmations matched."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Env, mailbox_entry, write_config
from support.demail_provider import build_message, demail_fields, provider_pki
from support.outbox import document
from support.receipts import demail_confirmation
from support.smime_pki import RECIPIENT, SENDER, TestPKI, build_pki
from support.smtp_peer import ScriptedPeer
from typer.testing import CliRunner

import cli.send
from cli.main import app
from gateway.config import Config
from gateway.demo.dovecot import Dovecot
from gateway.outbound import outbox
from gateway.outbound.demail_options import new_private_id
from gateway.outbound.document import ComposedDocument
from gateway.outbound.drain import Drain
from gateway.records.open import open_store
from gateway.statedir import init_storage

runner = CliRunner()


def signed_confirmation(message_type: str, private_id: str) -> bytes:
    """A provider's confirmation (XML and PDF, support.receipts) with the provider's integrity value."""
    unsigned = demail_confirmation(message_type, private_id=private_id)
    head, body = unsigned.split(b"\r\n\r\n", 1)
    content_type = (
        next(
            line
            for line in head.decode().replace("\r\n\t", " ").replace("\r\n ", " ").split("\r\n")
            if line.lower().startswith("content-type:")
        )
        .split(":", 1)[1]
        .strip()
    )
    fields = [
        *demail_fields(authoritative=False, private_id=private_id, message_type=message_type),
        ("MIME-Version", "1.0"),
        ("Content-Type", content_type),
    ]
    return build_message(fields=fields, body=body)


def demail_gateway(dovecot: Dovecot, root: Path, user: str, relay_port: int) -> Env:
    anchor = provider_pki().write_anchor(root)
    extra = (
        f'[smtp]\nhost = "127.0.0.1"\nport = {relay_port}\nsecurity = "plain"\nfrom = "{user}@mailbox.test"\n'
        f'\n[demail]\nenabled = true\nprovider_trust_anchors = ["{anchor}"]\n'
    )
    env = Env(dovecot, user, root, write_config(root, [mailbox_entry(dovecot, user, root)], extra=extra))
    init_storage(env.config)
    return env


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return build_pki()


def config_file(pki: TestPKI, root: Path, *, demail: bool) -> Path:
    files = pki.write(root / "pki")
    corr = root / "corr"
    corr.mkdir(exist_ok=True)
    (corr / "alice.pem").write_bytes(pki["sender"].cert_pem())
    anchor = provider_pki().write_anchor(root)
    section = f'\n[demail]\nenabled = true\nprovider_trust_anchors = ["{anchor}"]\n' if demail else ""
    path = root / "poststelle.toml"
    path.write_text(f"""[storage]
state_dir = "{root}/state"

[smime]
identities = [{{ key_file = "{files["recipient.key"]}", cert_file = "{files["recipient.pem"]}" }}]
trust_anchors = ["{files["root"]}"]

[outbound]
sign = "smime"
encrypt = "auto"
correspondents_dir = "{corr}"
{section}""")
    (root / "body.txt").write_text("Guten Tag,\nanbei der Bescheid.\n")
    return path


def send(path: Path, *extra: str) -> list[str]:
    return [
        "send",
        "--config",
        str(path),
        "--from",
        RECIPIENT,
        "--case",
        "1 K 1234/25",
        "--to",
        SENDER,
        "--subject",
        "Bescheid",
        "--body",
        str(path.parent / "body.txt"),
        *extra,
    ]


def sent_demail(dovecot: Dovecot, root: Path, user: str) -> tuple[Env, str, str]:
    """A gateway whose relay (a scripted peer) accepted one De-Mail: the gateway, its outbox id, its private id."""
    with ScriptedPeer() as peer:
        env = demail_gateway(dovecot, root, user, peer.port)
        store = open_store(env.config)
        private_id = new_private_id()
        doc = dataclasses.replace(document(to=("buerger@provider.de-mail.test",)), envid=private_id)
        oid = outbox.enqueue(env.config, store, doc)
        assert Drain(env.config, store).run_once().sent == [oid]
        store.close()
    return env, oid, private_id


def test_demail_options_set_the_fields_and_a_private_id_that_becomes_the_envid(
    pki: TestPKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config_file(pki, tmp_path, demail=True)
    queued: list[ComposedDocument] = []

    def enqueue(cfg: Config, doc: ComposedDocument) -> str:
        queued.append(doc)
        return "out-0001"

    monkeypatch.setattr(cli.send, "ENQUEUE", enqueue)
    result = runner.invoke(app, send(path, "--demail", "--private", "--retrieval-confirmation", "--authoritative"))
    assert result.exit_code == 0, result.output
    (doc,) = queued
    head = doc.raw.split(b"\r\n\r\n", 1)[0].decode()
    assert "X-de-mail-confirmation-of-retrieve: yes" in head and "X-de-mail-private: yes" in head
    assert "X-de-mail-authoritative: yes" in head and "X-de-mail-confirmation-of-dispatch: no" in head
    assert doc.envid is not None and f"X-de-mail-private-id: {doc.envid}\r\n" in head + "\r\n"
    assert doc.demail == {
        "dispatch_confirmation": False,
        "receipt_confirmation": False,
        "retrieval_confirmation": True,
        "private": True,
        "authoritative": True,
    }


def test_an_abholbestaetigung_without_persoenlich_is_refused_and_nothing_queued(pki: TestPKI, tmp_path: Path) -> None:
    result = runner.invoke(app, send(config_file(pki, tmp_path, demail=True), "--demail", "--retrieval-confirmation"))
    assert result.exit_code == 1
    assert "--private" in result.output and "Abholbestätigung" in result.output


def test_demail_needs_the_demail_section_and_options_need_demail(pki: TestPKI, tmp_path: Path) -> None:
    path = config_file(pki, tmp_path, demail=False)
    assert runner.invoke(app, send(path, "--demail")).exit_code == 2
    result = runner.invoke(app, send(path, "--private"))
    assert result.exit_code == 1 and "need --demail" in result.output


def test_the_providers_abholbestaetigung_matched_by_private_id_marks_the_document_retrieved(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    user = new_user()
    with ScriptedPeer() as peer:
        env = demail_gateway(dovecot, tmp_path, user, peer.port)
        store = open_store(env.config)
        private_id = new_private_id()
        doc = dataclasses.replace(document(to=("buerger@provider.de-mail.test",)), envid=private_id)
        oid = outbox.enqueue(env.config, store, doc)
        assert Drain(env.config, store).run_once().sent == [oid]
        rec = store.outbox_get(oid)
        store.close()
    assert rec is not None and rec.envid == private_id
    env.append(signed_confirmation("confirmation of retrieve", private_id))
    env.cli("run", "--once", check=True)
    store = open_store(env.config, readonly=True)
    try:
        (delivery,) = store.delivery_get(oid)
    finally:
        store.close()
    assert delivery.state == "retrieved" and delivery.timeline[-1].evidence.kind == "demail"
    (manifest,) = env.cases_dir.glob("*/receipts/*/manifest.json")
    assert json.loads(manifest.read_text())["receipt"]["matched_by"] == "private-id"


def test_the_report_shows_a_demail_documents_dispatch_and_its_deemed_served_date(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    env, _, private_id = sent_demail(dovecot, tmp_path, new_user())
    env.append(signed_confirmation("confirmation of dispatch", private_id))
    env.cli("run", "--once", check=True)
    out = tmp_path / "report.json"
    env.cli("audit", "export", "--format", "json", "--output", str(out), check=True)
    (sent,) = json.loads(out.read_text())["outbox"]
    delivery = sent["recipients"][0]["delivery"]
    assert delivery["state"] == "dispatched" and delivery["served"]["basis"] == "fiction"
    html = tmp_path / "report.html"
    env.cli("audit", "export", "--format", "html", "--output", str(html), "--no-verify", check=True)
    assert f"deemed served on {delivery['served']['date']}" in html.read_text()


def test_a_confirmation_without_the_providers_signature_is_quarantined_and_moves_nothing(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    env, oid, private_id = sent_demail(dovecot, tmp_path, new_user())
    env.append(demail_confirmation("confirmation of retrieve", private_id=private_id))
    env.cli("run", "--once", check=True)
    (entry,) = env.quarantined()
    assert json.loads((entry / "reason.json").read_text())["reasons"] == ["demail-confirmation-unproven"]
    store = open_store(env.config, readonly=True)
    try:
        (delivery,) = store.delivery_get(oid)
    finally:
        store.close()
    assert delivery.state == "submitted"
