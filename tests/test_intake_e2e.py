"""End to end through a real Dovecot: mail in the INBOX ends up in case folders, exactly once."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

from conftest import Env, mailbox_entry, write_config
from support.tcpproxy import TcpProxy

from gateway.demo.dovecot import Dovecot
from gateway.demo.samples import fake_pdf, letter
from gateway.records.open import open_store


def manifests(env: Env) -> list[dict[str, object]]:
    return [json.loads((e / "manifest.json").read_text()) for e in env.entries()]


def ledger_rows(env: Env) -> list[dict[str, object]]:
    store = open_store(env.config, readonly=True)
    try:
        return [r.to_json() for r in store.all_messages()]
    finally:
        store.close()


def test_messages_are_filed_by_case_reference_and_moved_on_the_server(env: Env) -> None:
    env.append(
        letter(subject="Bauantrag Az.: 63-BV-2026-0147", attachment=("Antrag.pdf", fake_pdf(5000))),
        letter(subject="AW: WG: Ihr Zeichen: 63–BV–2026–0147"),
        letter(subject="Ladung Az. 1 K 1234/25"),
        letter(subject="Sommerfest"),
    )
    env.cli("run", "--once", check=True)
    folders = sorted(p.parent.name for p in env.entries())
    assert folders == ["63-BV-2026-0147", "63-BV-2026-0147", "VG 1 K 1234%2F25", "_unassigned"]
    assert env.uids("INBOX") == []
    assert len(env.uids("Poststelle/Processed")) == 4
    entry = next(e for e in env.entries() if (e / "attachments" / "Antrag.pdf").exists())
    assert (entry / "original.eml").read_bytes().startswith(b"From:") or b"Subject:" in (
        entry / "original.eml"
    ).read_bytes()
    manifest = json.loads((entry / "manifest.json").read_text())
    assert manifest["case_reference"] == "63-BV-2026-0147"
    assert manifest["route"]["rule"] == "building permits"
    assert set(manifest["files"]) >= {"original.eml", "attachments/Antrag.pdf", "verification.json"}


def test_original_bytes_are_kept_exactly(env: Env) -> None:
    raw = letter(subject="Az. 63-BV-2026-0001", attachment=("a.pdf", fake_pdf(2000)))
    env.append(raw)
    env.cli("run", "--once", check=True)
    (entry,) = env.entries()
    stored = (entry / "original.eml").read_bytes()
    # IMAP stores CRLF line ends; the gateway keeps exactly what the server delivered.
    assert stored.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")
    manifest = json.loads((entry / "manifest.json").read_text())
    import hashlib

    assert manifest["sha256"] == hashlib.sha256(stored).hexdigest()


def test_malformed_message_is_quarantined_on_disk_and_on_the_server(env: Env) -> None:
    env.append(
        b"From: x@example.org\r\nSubject: Az. 63-BV-2026-0002\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed\r\n\r\n--nope\r\nbroken\r\n"
    )
    env.cli("run", "--once", check=True)
    assert env.entries() == []
    (q,) = env.quarantined()
    assert json.loads((q / "reason.json").read_text())["reasons"] == ["malformed-mime"]
    assert (q / "original.eml").exists()
    assert len(env.uids("Poststelle/Quarantine")) == 1
    assert env.uids("INBOX") == []
    listing = json.loads(env.cli("quarantine", "list", "--json", check=True).stdout)
    assert listing[0]["reasons"] == ["malformed-mime"]


def test_redelivered_identical_message_is_recorded_as_duplicate_not_stored_twice(env: Env) -> None:
    raw = letter(subject="Az. 63-BV-2026-0003")
    env.append(raw)
    env.cli("run", "--once", check=True)
    env.append(raw)  # delivered again, e.g. by a retrying sender or moved back by a clerk
    env.append(raw)
    env.cli("run", "--once", check=True)
    assert len(env.entries()) == 1
    states = sorted(str(r["state"]) for r in ledger_rows(env))
    assert states == ["duplicate", "duplicate", "stored"]
    assert env.uids("INBOX") == []


def test_same_message_id_with_other_bytes_is_kept_and_flagged(env: Env) -> None:
    env.append(letter(subject="Az. 63-BV-2026-0004", message_id="<fixed@example.org>", body="one\n"))
    env.cli("run", "--once", check=True)
    env.append(letter(subject="Az. 63-BV-2026-0004", message_id="<fixed@example.org>", body="two\n"))
    env.cli("run", "--once", check=True)
    assert len(env.entries()) == 2
    flagged = [r for r in ledger_rows(env) if any(str(x).startswith("same-message-id-as:") for x in r["reasons"])]  # type: ignore[attr-defined]
    assert len(flagged) == 1


def test_uidvalidity_change_neither_loses_nor_duplicates(env: Env) -> None:
    a = letter(subject="Az. 63-BV-2026-0005")
    env.append(a)
    env.cli("run", "--once", check=True)
    before = env.dovecot.uidvalidity(env.user)
    # The same bytes come back into the INBOX (say, restored from a backup) and the server
    # then rebuilds its index: UIDs restart under a new UIDVALIDITY.
    env.append(a)
    env.dovecot.reset_uidvalidity(env.user)
    assert env.dovecot.uidvalidity(env.user) != before
    b = letter(subject="Az. 63-BV-2026-0006")
    env.append(b)  # gets a UID that an old message had under the old UIDVALIDITY
    env.cli("run", "--once", check=True)
    folders = sorted(p.parent.name for p in env.entries())
    assert folders == ["63-BV-2026-0005", "63-BV-2026-0006"]
    assert sorted(str(r["state"]) for r in ledger_rows(env)) == ["duplicate", "stored", "stored"]
    assert env.uids("INBOX") == []


def test_connection_dropped_mid_batch_loses_and_duplicates_nothing(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    user = new_user()
    messages = [
        letter(subject=f"Az. 63-BV-2026-{i:04d}", attachment=("x.pdf", fake_pdf(40_000, seed=i))) for i in range(30)
    ]
    dovecot.append(user, "INBOX", messages)
    with TcpProxy(dovecot.host, dovecot.imaps_port) as proxy:
        cfg = write_config(tmp_path, [mailbox_entry(dovecot, user, tmp_path, port=proxy.port, batch_size=10)])
        env = Env(dovecot, user, tmp_path, cfg)
        proxy.drop_after(250_000)  # inside the FETCH of the second batch of each connection
        first = env.cli("run", "--once")
        assert first.returncode == 1, first.stderr
        assert "short" in first.stderr or "FETCH" in first.stderr or "failed" in first.stderr
        partial = len(env.entries())
        assert partial < 30
        proxy.reset()
        env.cli("run", "--once", check=True)
    assert len(env.entries()) == 30
    assert len({p.name for p in env.entries()}) == 30
    assert sorted(str(r["state"]) for r in ledger_rows(env)) == ["stored"] * 30
    assert dovecot.folder_uids(user, "INBOX") == []


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def test_unreachable_mailbox_does_not_stop_a_working_one(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    good, dead = new_user(), new_user()
    dovecot.append(good, "INBOX", [letter(subject="Az. 63-BV-2026-0100")])
    cfg = write_config(
        tmp_path,
        [
            mailbox_entry(dovecot, dead, tmp_path, name="gone", port=_closed_port(), timeout=2),
            mailbox_entry(dovecot, good, tmp_path, name="rathaus"),
        ],
    )
    env = Env(dovecot, good, tmp_path, cfg)
    proc = env.cli("run", "--once")
    assert proc.returncode == 1
    assert "gone" in proc.stderr
    assert [p.parent.name for p in env.entries()] == ["63-BV-2026-0100"]
    status = json.loads(env.cli("status", "--json", check=True).stdout)
    by_name = {s["mailbox"]: s for s in status["mailboxes"]}
    assert by_name["gone"]["last_error"]
    assert by_name["rathaus"]["backlog"] == 0
    assert status["messages"] == {"stored": 1}


def test_wrong_password_is_reported_by_check_without_leaking_it(env: Env) -> None:
    (env.root / "rathaus.secret").write_text("definitely-wrong")
    proc = env.cli("check")
    assert proc.returncode == 1
    assert "login failed" in proc.stdout
    assert "definitely-wrong" not in proc.stdout + proc.stderr


def test_check_passes_against_a_healthy_mailbox(env: Env) -> None:
    proc = env.cli("check", "--json", check=True)
    results = json.loads(proc.stdout)
    assert {r["check"] for r in results} >= {"config", "storage", "mailbox"}
    assert all(r["result"] == "ok" for r in results)


def test_quarantined_message_can_be_released_into_a_case(env: Env) -> None:
    env.append(
        b"From: x@example.org\r\nSubject: Az. 63-BV-2026-0200\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed\r\n\r\n--nope\r\nbroken\r\n"
    )
    env.cli("run", "--once", check=True)
    (entry,) = json.loads(env.cli("quarantine", "list", "--json", check=True).stdout)
    env.cli("quarantine", "release", entry["id"], "--case", "63-BV-2026-0200", "--note", "checked by phone", check=True)
    assert env.quarantined() == []
    (released,) = env.entries()
    manifest = json.loads((released / "manifest.json").read_text())
    assert manifest["state"] == "released"
    assert manifest["released"]["by"].startswith("cli:")
    assert manifest["released"]["quarantine_reasons"] == ["malformed-mime"]
    shown = json.loads(env.cli("cases", "show", "63-BV-2026-0200", "--json", check=True).stdout)
    assert shown["messages"][0]["state"] == "released"


def test_cases_list_and_show_report_what_was_filed(env: Env) -> None:
    env.append(letter(subject="Az. 1 K 1234/25 Klageschrift"), letter(subject="Az. 1 K 1234/25 Nachtrag"))
    env.cli("run", "--once", check=True)
    cases = json.loads(env.cli("cases", "list", "--json", check=True).stdout)
    assert [(c["case_ref"], c["messages"]) for c in cases] == [("VG 1 K 1234/25", 2)]
    shown = json.loads(env.cli("cases", "show", "VG 1 K 1234/25", "--json", check=True).stdout)
    assert len(shown["messages"]) == 2
    assert all(m["verdict"] == "unverified" for m in shown["messages"])


def test_tls_certificate_is_verified_by_default(dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]) -> None:
    user = new_user()
    entry = mailbox_entry(dovecot, user, tmp_path)
    del entry["ca_file"]  # the test server's private CA is not in the system store
    env = Env(dovecot, user, tmp_path, write_config(tmp_path, [entry]))
    proc = env.cli("check")
    assert proc.returncode == 1
    assert "is not issued by a CA this gateway trusts" in proc.stdout and "ca_file" in proc.stdout


def test_starttls_mailbox_works(dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]) -> None:
    user = new_user()
    dovecot.append(user, "INBOX", [letter(subject="Az. 63-BV-2026-0400")])
    entry = mailbox_entry(dovecot, user, tmp_path, security="starttls", port=dovecot.imap_port)
    env = Env(dovecot, user, tmp_path, write_config(tmp_path, [entry]))
    env.cli("run", "--once", check=True)
    assert [p.parent.name for p in env.entries()] == ["63-BV-2026-0400"]
