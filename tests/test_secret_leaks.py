"""No secret leaves its file: after a full run (a mailbox that works, one whose password the
server rejects, a PKCS#12 identity with its password, debug logging) neither the log, the
ledger and its WAL, the audit trail and its copy, the case folders, the quarantine nor the
reports and `check`/`status` output contain a password."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conftest import Env, dovecot_password, mailbox_entry, write_config
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

from gateway.demo.dovecot import Dovecot
from gateway.demo.samples import letter

WRONG_PASSWORD = "Wr0ng-Passw0rd-7f3a9c"
P12_PASSWORD = "P12-Passw0rt-55e1d0"


def test_no_password_appears_in_logs_ledger_trail_case_folders_or_reports(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str], pki: object
) -> None:
    good, rejected = new_user(), new_user()
    p12 = tmp_path / "rathaus.p12"
    p12.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"rathaus",
            pki["recipient"].key,  # type: ignore[index]
            pki["recipient"].cert,  # type: ignore[index]
            None,
            BestAvailableEncryption(P12_PASSWORD.encode()),
        )
    )
    p12.chmod(0o600)
    p12_pass = tmp_path / "rathaus.p12.pass"
    p12_pass.write_text(P12_PASSWORD + "\n")
    p12_pass.chmod(0o640)
    anchor = tmp_path / "root.pem"
    anchor.write_bytes(pki.root.cert_pem())  # type: ignore[attr-defined]
    extra = (
        f'[smime]\nidentities = [{{ pkcs12_file = "{p12}", password_file = "{p12_pass}" }}]\n'
        f'trust_anchors = ["{anchor}"]\n'
    )
    config = write_config(
        tmp_path,
        [
            mailbox_entry(dovecot, good, tmp_path, name="rathaus"),
            mailbox_entry(dovecot, rejected, tmp_path, name="bauamt"),
        ],
        extra=extra,
    )
    # write_config sets [logging] format; the level goes into the same table.
    text = config.read_text().replace('[logging]\nformat = "json"\n', '[logging]\nformat = "json"\nlevel = "debug"\n')
    config.write_text(text)
    (tmp_path / "bauamt.secret").write_text(WRONG_PASSWORD)
    env = Env(dovecot, good, tmp_path, config)
    env.append(letter(subject="Az. 63-BV-2026-0300 Bauantrag"), letter(subject="kein Aktenzeichen"))

    outputs = [env.cli("run", "--once"), env.cli("check"), env.cli("status", "--json"), env.cli("audit", "log")]
    outputs.append(env.cli("audit", "verify"))
    for fmt in ("html", "json", "csv"):
        outputs.append(env.cli("audit", "export", "--format", fmt, "-o", str(tmp_path / f"report.{fmt}")))
    assert env.entries(), outputs[0].stderr
    assert "bauamt" in outputs[0].stderr, "the rejected login ran and was reported"

    secrets = [dovecot_password(good), WRONG_PASSWORD, P12_PASSWORD]
    kept_in = {tmp_path / "rathaus.secret", tmp_path / "bauamt.secret", p12_pass, p12}
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p not in kept_in]
    assert any(p.name.startswith("ledger") for p in written)
    for secret in secrets:
        for proc in outputs:
            assert secret not in proc.stdout and secret not in proc.stderr, proc.args
        for path in written:
            assert secret.encode() not in path.read_bytes(), path
