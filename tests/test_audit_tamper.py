"""`audit verify` catches every kind of tampering with the record and names where it is.

Each test files real mail through Dovecot, changes one thing the way an intruder with
file access could, and checks the break's kind, entry number, file and hashes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time

import pytest
from conftest import Env
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.audit import breaks, entries, file_correspondence, jsonl, records, store_path, the_break, verify
from support.tamper import tamper_sql

from gateway.records.chain import GENESIS, canonical, entry_hash
from gateway.records.signing import checkpoint_payload, key_id, public_key_pem


@pytest.fixture
def filed(env: Env) -> Env:
    file_correspondence(env)
    return env


def test_untouched_record_verifies_with_a_summary(filed: Env) -> None:
    """Baseline: every check passes, and the summary counts what was checked."""
    rc, report = verify(filed)
    assert rc == 0, report["breaks"]
    assert report["entries"] == len(entries(filed))
    assert report["checkpoints"] >= 1 and report["sealed_up_to"] == report["entries"]
    assert report["case_entries"] == 3 and report["quarantine_entries"] == 1 and report["case_folders"] == 2
    assert report["jsonl_lines"] == report["entries"] and report["jsonl_lagging"] == 0
    text = filed.cli("audit", "verify").stdout
    assert "audit verify: OK" in text and "sealed up to entry" in text


def test_one_changed_byte_in_an_entry_is_named_with_both_hashes(filed: Env) -> None:
    """A single digit of a `fetched` entry's details changed in the database."""
    target = next(e for e in entries(filed) if e.event == "fetched")
    db = store_path(filed)
    ((details,),) = tamper_sql(db, "SELECT details FROM audit WHERE seq=?", (target.seq,))
    altered = re.sub(r'"uid":(\s*)1\b', r'"uid":\g<1>7', details, count=1)
    assert altered != details
    tamper_sql(db, "UPDATE audit SET details=? WHERE seq=?", (altered, target.seq))
    rc, report = verify(filed)
    assert rc == 1
    b = the_break(report, "altered-entry")
    assert b["seq"] == target.seq and b["expected"] == target.hash and b["found"] != target.hash
    # the shipped copy still holds the original: it disagrees with the database at that entry
    copy = the_break(report, "jsonl-altered-line")
    assert copy["seq"] == target.seq
    assert copy["found"] == target.hash and copy["expected"] == b["found"], "the copy still says what was chained"
    out = filed.cli("audit", "verify")
    assert out.returncode == 1
    assert f"entry {target.seq}" in out.stdout and "altered-entry" in out.stdout and target.hash in out.stdout


def test_deleted_entry_breaks_the_chain_and_the_shipped_copy_still_has_it(filed: Env) -> None:
    victim = next(e for e in entries(filed) if e.event == "quarantined")
    tamper_sql(store_path(filed), "DELETE FROM audit WHERE seq=?", (victim.seq,))
    rc, report = verify(filed)
    assert rc == 1
    assert ("sequence-gap", victim.seq + 1) in breaks(report)
    assert ("broken-link", victim.seq + 1) in breaks(report)
    assert ("jsonl-entry-not-in-ledger", victim.seq) in breaks(report)


def test_two_reordered_entries_are_named(filed: Env) -> None:
    """Swap the contents of two neighbouring rows (keeping the seq column in order)."""
    a, b = entries(filed)[4:6]
    cols = "at, event, actor, message, case_ref, document, correspondent, details, prev_hash, hash"
    db = store_path(filed)
    (row_a,) = tamper_sql(db, f"SELECT {cols} FROM audit WHERE seq=?", (a.seq,))  # noqa: S608
    (row_b,) = tamper_sql(db, f"SELECT {cols} FROM audit WHERE seq=?", (b.seq,))  # noqa: S608
    sets = ", ".join(f"{c}=?" for c in cols.split(", "))
    tamper_sql(db, f"UPDATE audit SET {sets} WHERE seq=?", (*row_b, a.seq), (*row_a, b.seq))  # noqa: S608
    rc, report = verify(filed)
    assert rc == 1
    assert {("broken-link", a.seq), ("broken-link", b.seq)} <= set(breaks(report))
    assert {("altered-entry", a.seq), ("altered-entry", b.seq)} <= set(breaks(report))


def test_truncated_database_is_caught_by_the_signed_checkpoint(filed: Env) -> None:
    last = entries(filed)[-1].seq
    tamper_sql(store_path(filed), "DELETE FROM audit WHERE seq > ?", (last - 3,))
    rc, report = verify(filed)
    assert rc == 1
    b = the_break(report, "truncated")
    assert b["seq"] == last and b["expected"] == str(last) and b["found"] == str(last - 3)
    assert ("jsonl-entry-not-in-ledger", last - 2) in breaks(report)
    assert f"entries {last - 2}-{last}" in the_break(report, "jsonl-entry-not-in-ledger")["detail"]
    assert ("head-differs", last) in breaks(report), "the head row still names the removed last entry"


def test_head_row_that_disagrees_with_the_last_entry_is_named(filed: Env) -> None:
    """The head row moves with every append: pointing elsewhere, it was edited behind the gateway's back."""
    last = entries(filed)[-1]
    tamper_sql(store_path(filed), "UPDATE audit_head SET seq=?, hash=?", (last.seq - 1, last.prev_hash))
    rc, report = verify(filed)
    assert rc == 1
    b = the_break(report, "head-differs")
    assert b["seq"] == last.seq - 1 and b["found"] == f"{last.seq} {last.hash}"
    assert breaks(report) == [("head-differs", last.seq - 1)], "chain, checkpoints and copy are intact"


def test_truncated_jsonl_file_is_a_break_not_a_lag(filed: Env) -> None:
    path = jsonl(filed)
    lines = path.read_bytes().splitlines(keepends=True)
    time.sleep(1.1)  # truncated later than the export that followed the run's seal
    path.write_bytes(b"".join(lines[:10]))
    rc, report = verify(filed)
    assert rc == 1
    b = the_break(report, "jsonl-truncated")
    assert b["seq"] == 11 and b["found"] == "10" and b["file"] == str(path)


def test_jsonl_file_behind_the_database_only_lags_when_no_checkpoint_says_otherwise(filed: Env) -> None:
    """Entries committed after the last export (a crash before the copy) are reported, not failed."""
    path = jsonl(filed)
    lines = path.read_bytes().splitlines(keepends=True)
    ((seq,),) = tamper_sql(store_path(filed), "SELECT MAX(seq) FROM audit_checkpoints")
    path.write_bytes(b"".join(lines[:-2]))
    before_the_seal = time.time() - 3600  # last written before the run's checkpoint was signed
    os.utime(path, (before_the_seal, before_the_seal))
    rc, report = verify(filed)
    assert rc == 0, report["breaks"]
    assert report["jsonl_lagging"] == 2 and seq == report["entries"]
    assert any("lags 2 entries" in w for w in report["warnings"])


@pytest.mark.parametrize("change", ["delete", "swap", "byte", "forge"])
def test_jsonl_lines_deleted_reordered_or_changed_are_named(filed: Env, change: str) -> None:
    path = jsonl(filed)
    lines = path.read_bytes().splitlines(keepends=True)
    if change == "delete":
        del lines[6]
        expected = ("jsonl-missing-lines", 7)
    elif change == "swap":
        lines[5], lines[6] = lines[6], lines[5]
        expected = ("jsonl-out-of-order", 6)
    elif change == "byte":
        lines[3] = lines[3].replace(b'"uid":', b'"uid":9', 1)
        expected = ("jsonl-altered-line", 4)
    else:  # a consistent forgery of one line: hash recomputed, but it is not what the ledger says
        obj = json.loads(lines[2])
        obj["actor"] = "cli:mallory"
        obj["hash"] = entry_hash({k: v for k, v in obj.items() if k != "hash"})
        lines[2] = canonical(obj) + b"\n"
        expected = ("jsonl-altered-line", 3)
    path.write_bytes(b"".join(lines))
    rc, report = verify(filed)
    assert rc == 1
    assert expected in breaks(report)
    assert all(k.startswith("jsonl-") for k, _ in breaks(report)), "the database itself is intact"


def test_altered_case_file_is_named_with_expected_and_found_sha256(filed: Env) -> None:
    entry = next(e for e in filed.entries() if (e / "attachments" / "Bauantrag.pdf").exists())
    pdf = entry / "attachments" / "Bauantrag.pdf"
    data = bytearray(pdf.read_bytes())
    listed = json.loads((entry / "manifest.json").read_text())["files"]["attachments/Bauantrag.pdf"]["sha256"]
    data[100] ^= 0x01
    pdf.write_bytes(bytes(data))
    rc, report = verify(filed)
    assert rc == 1
    b = the_break(report, "file-altered")
    assert b["file"] == str(pdf) and b["expected"] == listed and b["found"] == hashlib.sha256(data).hexdigest()
    out = filed.cli("audit", "verify").stdout
    assert str(pdf) in out and listed in out


def test_case_file_rewritten_with_a_matching_manifest_is_caught_by_the_recorded_manifest_hash(filed: Env) -> None:
    """An intruder who also fixes manifest.json: the ledger and the trail remember the old manifest."""
    entry = filed.entries()[0]
    body = entry / "body.txt"
    body.write_bytes(b"Alles erledigt.\n")
    manifest_path = entry / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["body.txt"] = {"sha256": hashlib.sha256(b"Alles erledigt.\n").hexdigest(), "size": 16}
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    rc, report = verify(filed)
    assert rc == 1
    assert "file-altered" not in {k for k, _ in breaks(report)}
    assert the_break(report, "manifest-differs-from-ledger")["file"] == str(manifest_path)
    placement = the_break(report, "manifest-differs-from-audit")
    stored = [e for e in entries(filed) if e.event == "stored" and e.details["path"].endswith(entry.name)]
    assert placement["seq"] == stored[0].seq and placement["expected"] == stored[0].details["manifest_sha256"]


def test_removed_and_smuggled_in_entries_are_named(filed: Env) -> None:
    victim = filed.entries()[0]
    smuggled = filed.cases_dir / "63-BV-2026-0147" / "20260101T000000Z_feedfacecafe"
    victim.rename(smuggled)
    rc, report = verify(filed)
    assert rc == 1
    assert the_break(report, "entry-missing")["file"] == str(victim)
    assert the_break(report, "entry-unknown-to-ledger")["file"] == str(smuggled)


def test_replaced_checkpoint_signature_is_named(filed: Env) -> None:
    other = Ed25519PrivateKey.generate()
    db = store_path(filed)
    ((seq, at, h),) = tamper_sql(db, "SELECT seq, at, hash FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
    forged = base64.b64encode(other.sign(checkpoint_payload(seq, h, at))).decode()
    tamper_sql(db, "UPDATE audit_checkpoints SET signature=? WHERE seq=?", (forged, seq))
    rc, report = verify(filed)
    assert rc == 1
    assert ("bad-checkpoint-signature", seq) in breaks(report)


def test_history_rewritten_and_rechained_by_someone_without_the_key_is_caught(filed: Env) -> None:
    """Edit an entry, recompute every hash after it and re-sign the checkpoints with another key."""
    rows = entries(filed)
    mallory = Ed25519PrivateKey.generate()
    db = store_path(filed)
    updates = []
    prev = GENESIS
    for e in rows:
        body = e.body() | {"prev_hash": prev}
        if e.event == "quarantined":
            body["details"] = {**e.details, "reasons": ["released-by-policy"]}
        h = entry_hash(body)
        updates.append((json.dumps(body["details"], sort_keys=True, ensure_ascii=False), prev, h, e.seq))
        prev = h
    tamper_sql(db, "UPDATE audit SET details=?, prev_hash=?, hash=? WHERE seq=?", *updates)
    hashes = dict(tamper_sql(db, "SELECT seq, hash FROM audit"))
    resigned = []
    for seq, at in tamper_sql(db, "SELECT seq, at FROM audit_checkpoints"):
        sig = base64.b64encode(mallory.sign(checkpoint_payload(seq, hashes[seq], at))).decode()
        resigned.append((hashes[seq], sig, seq))
    tamper_sql(db, "UPDATE audit_checkpoints SET hash=?, signature=? WHERE seq=?", *resigned)
    rc, report = verify(filed)
    assert rc == 1
    assert {k for k, _ in breaks(report)} >= {"bad-checkpoint-signature", "jsonl-altered-line"}
    assert "altered-entry" not in {k for k, _ in breaks(report)}, "the chain itself was made consistent"


def test_auditor_public_key_detects_a_swapped_key_in_the_state_dir(
    filed: Env, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The auditor keeps the public key apart: replacing the state dir's copy does not help an intruder."""
    held = tmp_path_factory.mktemp("auditor") / "audit.pub.pem"
    assert filed.cli("audit", "public-key", "-o", str(held)).returncode == 0
    state_pub = filed.state_dir / "audit" / "audit-signing.pub.pem"
    mallory = Ed25519PrivateKey.generate()
    state_pub.write_bytes(public_key_pem(mallory))
    db = store_path(filed)
    resigned = [  # a careful intruder also names the new key in each checkpoint
        (base64.b64encode(mallory.sign(checkpoint_payload(seq, h, at))).decode(), key_id(mallory), seq)
        for seq, at, h in tamper_sql(db, "SELECT seq, at, hash FROM audit_checkpoints")
    ]
    tamper_sql(db, "UPDATE audit_checkpoints SET signature=?, key_id=? WHERE seq=?", *resigned)
    assert verify(filed)[0] == 0, "with the swapped key the forgery looks fine..."
    rc, report = verify(filed, "--public-key", str(held))
    assert rc == 1 and "bad-checkpoint-signature" in {k for k, _ in breaks(report)}


def test_ledger_row_with_a_changed_manifest_hash_is_named(filed: Env) -> None:
    rec = next(r for r in records(filed) if r.state == "stored")
    tamper_sql(store_path(filed), "UPDATE messages SET manifest_sha256=? WHERE id=?", ("0" * 64, rec.id))
    rc, report = verify(filed)
    assert rc == 1
    b = the_break(report, "manifest-differs-from-ledger")
    assert b["expected"] == "0" * 64 and b["found"] == rec.manifest_sha256
