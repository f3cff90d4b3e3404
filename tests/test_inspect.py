"""``poststelle inspect``: offline verdicts for .eml files, read-only, exit 0 unless misused."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from email.utils import format_datetime
from pathlib import Path

import pytest
import structlog
from support.smime_pki import (
    DAY,
    NOW,
    RECIPIENT,
    TestPKI,
    body_of,
    build_pki,
    encrypt_der,
    encrypted_message,
    mime_text,
    pkcs7_mime,
    signed_message,
)
from typer.testing import CliRunner

from cli.main import app


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return build_pki()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """inspect configures structlog to print to the (CliRunner-captured) stderr; undo that.

    Otherwise later tests in this process log into a closed stream.
    """
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def outer_headers(from_: str = "alice@example.org", subject: str = "Verschlüsselte Nachricht") -> bytes:
    return (
        f"From: Alice Example <{from_}>\r\nTo: {RECIPIENT}\r\nSubject: {subject}\r\n"
        f"Date: {format_datetime(NOW)}\r\nMessage-ID: <inspect@example.org>\r\nMIME-Version: 1.0\r\n"
    ).encode()


def signed_and_encrypted(pki: TestPKI, signer: str = "sender", to: str = "recipient") -> bytes:
    signed = body_of(signed_message(pki[signer], mime_text(subject="Ladung Az. 1 K 1234/25")))
    return pkcs7_mime(outer_headers(), encrypt_der([pki[to].cert], signed), "enveloped-data")


@pytest.fixture
def setup(pki: TestPKI, tmp_path: Path) -> tuple[Path, Path]:
    """A config with the recipient's key, the test root as anchor and the CRL; and a mail dir."""
    files = pki.write(tmp_path / "pki")
    config = tmp_path / "poststelle.toml"
    config.write_text(
        f"""[storage]
state_dir = "{tmp_path}/state"

[smime]
identities = [{{ key_file = "{files["recipient.key"]}", cert_file = "{files["recipient.pem"]}" }}]
trust_anchors = ["{files["root"]}"]
crl_files = ["{files["crl"]}"]
""",
        encoding="utf-8",
    )
    mails = tmp_path / "mail"
    mails.mkdir()
    (mails / "good.eml").write_bytes(signed_and_encrypted(pki))
    (mails / "rogue.eml").write_bytes(signed_and_encrypted(pki, signer="rogue"))
    (mails / "other.eml").write_bytes(encrypted_message([pki["sender"].cert], mime_text()))
    (mails / "plain.eml").write_bytes(outer_headers() + b"Content-Type: text/plain\r\n\r\nHallo\r\n")
    return config, mails


def inspect(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["inspect", "--config", str(config), *args])
    return result.exit_code, result.stdout, result.stderr


def json_lines(out: str) -> dict[str, dict[str, object]]:
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {Path(str(r["file"])).name: r for r in rows}


def test_json_gives_one_verdict_object_per_file_with_the_file_name(setup: tuple[Path, Path]) -> None:
    config, mails = setup
    names = ["good.eml", "rogue.eml", "other.eml", "plain.eml"]
    code, out, _ = inspect(config, "--json", *(str(mails / n) for n in names))
    assert code == 0
    rows = json_lines(out)
    assert list(rows) == names
    good = rows["good.eml"]
    assert good["verdict"] == "verified" and good["reasons"] == []
    assert good["signature"]["status"] == "valid"  # type: ignore[index]
    assert good["signature"]["signer"] == "alice@example.org"  # type: ignore[index]
    assert good["encryption"] == {"status": "decrypted", "scheme": "smime"}
    assert good["subject_source"] == "protected"
    assert rows["rogue.eml"]["verdict"] == "unverified"
    assert "untrusted-chain" in rows["rogue.eml"]["reasons"]  # type: ignore[operator]
    assert rows["rogue.eml"]["signature"]["status"] == "untrusted"  # type: ignore[index]
    assert rows["other.eml"]["verdict"] == "quarantined"
    assert rows["other.eml"]["reasons"] == ["decryption-failed-no-key"]
    assert rows["plain.eml"]["verdict"] == "unverified"
    assert rows["plain.eml"]["reasons"] == ["no-signature"]


def test_json_shows_the_revocation_evidence(setup: tuple[Path, Path], pki: TestPKI) -> None:
    """Which CRL was checked for which certificate: the configured intermediate CRL for the signer."""
    config, mails = setup
    code, out, _ = inspect(config, "--json", str(mails / "good.eml"))
    assert code == 0
    revocation = json_lines(out)["good.eml"]["signature"]["revocation"]  # type: ignore[index]
    assert revocation["mode"] == "if-configured"
    leaf, inter = revocation["certificates"]
    assert leaf["subject"] == pki["sender"].cert.subject.rfc4514_string()
    assert leaf["status"] == "good"
    assert leaf["crls"][0]["issuer"] == pki.inter.cert.subject.rfc4514_string()
    assert leaf["crls"][0]["number"] == 1
    assert leaf["crls"][0]["this_update"] == (NOW - DAY).isoformat()
    assert leaf["crls"][0]["source"].endswith("inter.crl.pem")
    assert inter["status"] == "not-checked"  # no CRL of the root is configured here


def test_table_shows_verdict_signature_signer_encryption_and_reasons(setup: tuple[Path, Path]) -> None:
    config, mails = setup
    code, out, _ = inspect(config, str(mails / "good.eml"), str(mails / "rogue.eml"))
    assert code == 0
    header, good, rogue = out.splitlines()
    columns = ["FILE", "VERDICT", "SIGNATURE", "SIGNER", "ENCRYPTION", "REASONS", "WARNINGS", "VALIDATED"]
    assert header.split() == columns
    assert good.split()[1:7] == ["verified", "valid", "alice@example.org", "decrypted", "-", "-"]
    assert good.endswith("(now)"), "a file outside an entry is validated as of now, and says so"
    assert rogue.split()[1:4] == ["unverified", "untrusted", "alice@example.org"]
    assert "untrusted-chain" in rogue


def test_at_validates_as_of_another_moment(setup: tuple[Path, Path]) -> None:
    """The sender's certificate is valid for a year: two years on, the same bytes are untrusted."""
    config, mails = setup
    good = str(mails / "good.eml")
    later = (NOW + 730 * DAY).isoformat()
    code, out, _ = inspect(config, "--json", "--at", later, good)
    assert code == 0
    row = json_lines(out)["good.eml"]
    assert row["verdict"] == "unverified"
    assert "cert-expired" in row["reasons"]  # type: ignore[operator]
    assert row["validated_at"] == later
    naive = NOW.replace(tzinfo=None).isoformat()
    row = json_lines(inspect(config, "--json", "--at", naive, good)[1])["good.eml"]
    assert row["verdict"] == "verified"
    assert row["validated_at"] == NOW.isoformat()  # a time without offset is UTC


def test_inspect_writes_nothing(setup: tuple[Path, Path]) -> None:
    config, mails = setup
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in mails.iterdir()}
    code, _, _ = inspect(config, *(str(p) for p in sorted(mails.iterdir())))
    assert code == 0
    assert not (config.parent / "state").exists()  # no ledger, no certificate store
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in mails.iterdir()} == before


def test_bad_at_is_a_usage_error(setup: tuple[Path, Path]) -> None:
    config, mails = setup
    code, out, err = inspect(config, "--at", "yesterday", str(mails / "good.eml"))
    assert code == 2
    assert "--at" in err and out == ""


def test_unreadable_file_is_reported_exit_2_and_the_others_still_inspected(setup: tuple[Path, Path]) -> None:
    config, mails = setup
    code, out, err = inspect(config, "--json", str(mails / "missing.eml"), str(mails), str(mails / "good.eml"))
    assert code == 2
    assert f"cannot read {mails / 'missing.eml'}: no such file" in err
    assert f"cannot read {mails}: is a directory" in err
    assert list(json_lines(out)) == ["good.eml"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of their mode")
def test_file_without_read_permission_is_reported(setup: tuple[Path, Path]) -> None:
    config, mails = setup
    (mails / "good.eml").chmod(0)
    code, _, err = inspect(config, str(mails / "good.eml"))
    assert code == 2 and "permission denied" in err


def test_config_errors_exit_2(setup: tuple[Path, Path], tmp_path: Path) -> None:
    config, mails = setup
    code, _, err = inspect(tmp_path / "nope.toml", str(mails / "good.eml"))
    assert code == 2 and "configuration error" in err
    broken_key = tmp_path / "broken.key"
    broken_key.write_text("not a key")
    text = config.read_text()
    key_line = next(line for line in text.splitlines() if line.startswith("identities"))
    broken = text.replace(key_line, key_line.replace(key_line.split('"')[1], str(broken_key)))
    config.write_text(broken)
    code, out, err = inspect(config, str(mails / "good.eml"))
    assert code == 2 and "configuration error" in err and out == ""


def test_without_smime_config_encrypted_mail_fails_closed(setup: tuple[Path, Path], tmp_path: Path) -> None:
    _, mails = setup
    bare = tmp_path / "bare.toml"
    bare.write_text(f'[storage]\nstate_dir = "{tmp_path}/state"\n')
    code, out, _ = inspect(bare, "--json", str(mails / "good.eml"))
    assert code == 0
    assert json_lines(out)["good.eml"]["verdict"] == "quarantined"


def test_no_files_is_a_usage_error(setup: tuple[Path, Path]) -> None:
    config, _ = setup
    assert inspect(config)[0] == 2


def test_demo_letters_get_the_verdicts_the_demo_promises(tmp_path: Path) -> None:
    """gateway/demo_pki.py: verified, unverified (unknown CA), quarantined (not for us)."""
    from gateway.demo.pki import build_demo_pki, smime_letters

    pki = build_demo_pki(tmp_path / "pki")
    assert (pki.recipient_key_file.stat().st_mode & 0o777) == 0o600
    config = tmp_path / "demo.toml"
    config.write_text(f'[storage]\nstate_dir = "{tmp_path}/state"\n\n{pki.smime_toml()}', encoding="utf-8")
    paths = []
    for i, (_, raw) in enumerate(smime_letters(pki)):
        paths.append(tmp_path / f"letter{i}.eml")
        paths[-1].write_bytes(raw)
    code, out, _ = inspect(config, "--json", *map(str, paths))
    assert code == 0
    rows = list(json_lines(out).values())
    assert [(r["verdict"], r["reasons"]) for r in rows] == [
        ("verified", []),
        ("unverified", ["untrusted-chain"]),
        ("quarantined", ["decryption-failed-no-key"]),
    ]
    assert rows[0]["subject_source"] == "protected"
    assert rows[0]["signature"]["signer"] == "poststelle@vg-beispielstadt.example"  # type: ignore[index]
