"""``poststelle send``: validates and composes; queues through one injectable function, else refuses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from support.smime_pki import RECIPIENT, SENDER, TestPKI, build_pki, openssl_verify
from typer.testing import CliRunner

import cli.send
from cli.main import app
from gateway.config import Config
from gateway.outbound.document import ComposedDocument

runner = CliRunner()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return build_pki()


@pytest.fixture
def config(pki: TestPKI, tmp_path: Path) -> Path:
    files = pki.write(tmp_path / "pki")
    chain = tmp_path / "chain.pem"
    chain.write_bytes(pki["recipient"].cert_pem() + pki.inter.cert_pem())
    corr = tmp_path / "corr"
    corr.mkdir()
    (corr / "alice.pem").write_bytes(pki["sender"].cert_pem())
    path = tmp_path / "poststelle.toml"
    path.write_text(f"""[storage]
state_dir = "{tmp_path}/state"

[smime]
identities = [{{ key_file = "{files["recipient.key"]}", cert_file = "{chain}" }}]
trust_anchors = ["{files["root"]}"]

[outbound]
sign = "smime"
encrypt = "always"
correspondents_dir = "{corr}"
""")
    (tmp_path / "Bescheid.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    (tmp_path / "body.txt").write_text("Guten Tag,\nanbei der Bescheid.\n")
    return path


def args(config: Path, *extra: str, to: str = SENDER) -> list[str]:
    return [
        "send",
        "--config",
        str(config),
        "--from",
        RECIPIENT,
        "--case",
        "1 K 1234/25",
        "--to",
        to,
        "--subject",
        "Bescheid",
        "--body",
        str(config.parent / "body.txt"),
        str(config.parent / "Bescheid.pdf"),
        *extra,
    ]


def test_dry_run_composes_signed_and_encrypted_and_queues_nothing(config: Path) -> None:
    result = runner.invoke(app, args(config, "--dry-run", "--json"))
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["queued"] is False and out["outbound_id"] is None
    assert (out["signed"], out["encrypted"]) == ("smime", True)
    assert out["keys"][0]["recipient"] == SENDER


def test_without_a_relay_send_refuses_and_queues_nothing(config: Path) -> None:
    result = runner.invoke(app, args(config))
    assert result.exit_code == 2
    assert "no [smtp] relay is configured" in result.output


def test_the_composed_document_goes_to_enqueue_and_its_id_is_printed(
    config: Path, pki: TestPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued: list[ComposedDocument] = []

    def enqueue(cfg: Config, doc: ComposedDocument) -> str:
        queued.append(doc)
        return "out-0001"

    monkeypatch.setattr(cli.send, "ENQUEUE", enqueue)
    result = runner.invoke(app, args(config))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "out-0001"
    (doc,) = queued
    assert doc.recipients == (SENDER,) and doc.mail_from == RECIPIENT and doc.encrypted


def test_unknown_recipient_with_encrypt_always_is_refused_naming_it(config: Path) -> None:
    result = runner.invoke(app, args(config, to="fremd@example.org"))
    assert result.exit_code == 1
    assert "fremd@example.org" in result.output and "recipient-key-unknown" in result.output


def test_missing_file_and_crlf_subject_are_refused(config: Path) -> None:
    missing = runner.invoke(app, [*args(config), str(config.parent / "fehlt.pdf")])
    assert missing.exit_code == 1 and "missing-file" in missing.output
    bad = args(config)
    bad[bad.index("Bescheid")] = "Bescheid\r\nBcc: x@example.org"
    crlf = runner.invoke(app, bad)
    assert crlf.exit_code == 1 and "control-character" in crlf.output


def test_without_a_recipient_certificate_auto_sends_signed_only(config: Path, pki: TestPKI) -> None:
    from gateway.config import load_config
    from gateway.outbound.compose import Letter

    config.write_text(config.read_text().replace('encrypt = "always"', 'encrypt = "auto"'))
    doc, queued_id = cli.send.send_letter(
        load_config(config), Letter("1 K 1/25", ("fremd@example.org",), "Hinweis"), RECIPIENT, None
    )
    assert queued_id == "" and not doc.encrypted and openssl_verify(pki, doc.raw, crl=False)


def test_check_reports_the_outbound_keys(config: Path) -> None:
    from gateway.config import load_config
    from gateway.service.health import run_checks

    rows = [r for r in run_checks(load_config(config)) if r.check == "outbound"]
    assert len(rows) == 1 and rows[0].ok and "sign=smime encrypt=always, 1 certificate" in rows[0].detail
