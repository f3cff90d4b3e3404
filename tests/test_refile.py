"""``poststelle cases move``: a clerk corrects where a message is filed, and the record stays whole.

Against real Dovecot: mail is fetched and filed by ``run --once``, moved through the CLI,
and ``audit verify`` must stay green. Crashes between the steps are simulated in-process
(the commit or the old entry's removal fails); running the move again completes it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import Env
from support.audit import MALFORMED, entries, file_correspondence, records, the_break, verify

from gateway.filing import refile as refile_module
from gateway.filing.refile import refile
from gateway.records.actors import Actor
from gateway.records.messages import MessageRecord
from gateway.records.open import open_store

NO_RULE_QUARANTINED = MALFORMED.replace(b"Az. 63-BV-2026-0147 Nachtrag", b"Nachtrag ohne Zeichen").replace(
    b"<malformed@audit.test>", b"<no-rule@audit.test>"
)


def the_record(env: Env, subject_part: str) -> MessageRecord:
    return next(r for r in records(env) if subject_part in (r.subject or ""))


def listed_hashes(entry: Path) -> dict[str, str]:
    files = json.loads((entry / "manifest.json").read_text())["files"]
    return {rel: meta["sha256"] for rel, meta in files.items()}


def entries_of(env: Env, msg_id: str) -> list[Path]:
    return [e for e in env.entries() if e.name.endswith("_" + msg_id)]


def test_moving_a_filed_entry_updates_files_manifest_ledger_and_trail_and_verify_stays_green(env: Env) -> None:
    file_correspondence(env)
    rec = the_record(env, "Ladung")
    old = Path(rec.path)
    before = listed_hashes(old)

    out = env.cli("cases", "move", rec.id, "--case", "VG 1 K 1234/26", "--note", "Tippfehler im Betreff", check=True)
    assert "VG 1 K 1234/26" in out.stdout

    new = env.cases_dir / "VG 1 K 1234%2F26" / old.name
    assert not old.exists() and entries_of(env, rec.id) == [new]
    assert listed_hashes(new) == before
    for rel, sha in before.items():
        assert hashlib.sha256((new / rel).read_bytes()).hexdigest() == sha
    manifest = json.loads((new / "manifest.json").read_text())
    assert (manifest["case_reference"], manifest["case_folder"]) == ("VG 1 K 1234/26", "VG 1 K 1234%2F26")
    (move,) = manifest["refiled"]
    assert move["from_case"] == "VG 1 K 1234/25" and move["to_case"] == "VG 1 K 1234/26"
    assert move["note"] == "Tippfehler im Betreff" and move["by"].startswith("cli:")

    row = the_record(env, "Ladung")
    assert (row.state, row.case_ref, row.case_folder) == ("stored", "VG 1 K 1234/26", new.parent.name)
    assert row.path == str(new)
    assert row.manifest_sha256 == hashlib.sha256((new / "manifest.json").read_bytes()).hexdigest()

    (event,) = [e for e in entries(env) if e.event == "refiled"]
    assert event.message == rec.id and event.actor.startswith("cli:")
    assert event.details["from"] == f"VG 1 K 1234%2F25/{old.name}"
    assert event.details["path"] == f"VG 1 K 1234%2F26/{old.name}"
    assert event.details["note"] == "Tippfehler im Betreff"
    assert event.details["manifest_sha256"] == row.manifest_sha256

    rc, report = verify(env)
    assert rc == 0, report["breaks"]
    assert not report["warnings"]
    log = env.cli("audit", "log", check=True).stdout
    assert "Moved by" in log and "Tippfehler im Betreff" in log
    shown = env.cli("cases", "show", "VG 1 K 1234/26", check=True).stdout
    assert rec.id in shown
    html = env.root / "report.html"
    env.cli("audit", "export", "--format", "html", "-o", str(html), check=True)
    assert "Tippfehler im Betreff" in html.read_text(encoding="utf-8")


def test_an_entry_released_into_unassigned_by_mistake_moves_to_its_case(env: Env) -> None:
    file_correspondence(env, [NO_RULE_QUARANTINED])
    (q,) = records(env)
    assert q.state == "quarantined"
    env.cli("quarantine", "release", q.id, "--note", "geprüft", check=True)
    released = the_record(env, "Nachtrag ohne Zeichen")
    assert released.case_folder == "_unassigned"

    env.cli("cases", "move", q.id, "--case", "63-BV-2026-0147", "--note", "gehört zum Bauantrag", check=True)
    row = the_record(env, "Nachtrag ohne Zeichen")
    assert (row.state, row.case_folder) == ("released", "63-BV-2026-0147")
    assert entries_of(env, q.id) == [Path(row.path)]
    manifest = json.loads((Path(row.path) / "manifest.json").read_text())
    assert manifest["released"]["note"] == "geprüft" and manifest["refiled"][0]["from_folder"] == "_unassigned"
    rc, report = verify(env)
    assert rc == 0, report["breaks"]


def test_move_refuses_an_entry_with_an_unlisted_file_and_changes_nothing(env: Env) -> None:
    file_correspondence(env)
    rec = the_record(env, "Ladung")
    note = Path(rec.path) / "Notiz.txt"
    note.write_text("bitte Rückruf\n", encoding="utf-8")
    out = env.cli("cases", "move", rec.id, "--case", "VG 2 K 1/26", "--note", "x")
    assert out.returncode == 1 and "Notiz.txt" in out.stderr
    assert note.exists() and the_record(env, "Ladung").path == rec.path
    assert not [e for e in entries(env) if e.event == "refiled"]


def test_move_refuses_an_altered_entry(env: Env) -> None:
    file_correspondence(env)
    rec = the_record(env, "Ladung")
    (Path(rec.path) / "body.txt").write_bytes(b"anders\n")
    out = env.cli("cases", "move", rec.id, "--case", "VG 2 K 1/26", "--note", "x")
    assert out.returncode == 1 and "differs from its manifest" in out.stderr
    assert the_record(env, "Ladung").path == rec.path


def test_move_refuses_unknown_ids_quarantined_messages_and_the_same_case(env: Env) -> None:
    file_correspondence(env)
    quarantined = next(r for r in records(env) if r.state == "quarantined")
    filed = the_record(env, "Ladung")
    assert "no message" in env.cli("cases", "move", "000000000000", "--case", "A 1", "--note", "x").stderr
    assert "not filed" in env.cli("cases", "move", quarantined.id, "--case", "A 1", "--note", "x").stderr
    same = env.cli("cases", "move", filed.id, "--case", "VG 1 K 1234/25", "--note", "x")
    assert same.returncode == 1 and "already filed" in same.stderr


def test_crash_before_the_commit_is_completed_by_running_the_move_again(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_correspondence(env)
    rec = the_record(env, "Ladung")
    store = open_store(env.config, actor="cli:test")

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(store, "decide", crash)
    with pytest.raises(RuntimeError):
        refile(env.config, store, rec.id, actor=Actor("test", 1000), case="VG 9 K 9/26", note="n")
    store.close()
    new = env.cases_dir / "VG 9 K 9%2F26" / Path(rec.path).name
    assert new.is_dir() and Path(rec.path).is_dir()
    rc, report = verify(env)
    assert rc == 1 and the_break(report, "entry-unknown-to-ledger")["file"] == str(new)

    env.cli("cases", "move", rec.id, "--case", "VG 9 K 9/26", "--note", "n", check=True)
    assert entries_of(env, rec.id) == [new]
    rc, report = verify(env)
    assert rc == 0, report["breaks"]


def test_crash_after_the_commit_leaves_a_named_leftover_that_the_rerun_removes(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_correspondence(env)
    rec = the_record(env, "Ladung")
    old = Path(rec.path)
    store = open_store(env.config, actor="cli:test")

    def crash(area: object, entry: object) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(refile_module, "remove_entry", crash)
    with pytest.raises(RuntimeError):
        refile(env.config, store, rec.id, actor=Actor("test", 1000), case="VG 9 K 9/26", note="n")
    store.seal()
    store.export_jsonl()
    store.close()
    monkeypatch.undo()
    new = env.cases_dir / "VG 9 K 9%2F26" / old.name
    assert old.is_dir() and new.is_dir() and the_record(env, "Ladung").path == str(new)
    rc, report = verify(env)
    assert rc == 0, report["breaks"]
    assert any(w.startswith(f"{old}: leftover copy of refiled message {rec.id}") for w in report["warnings"])

    env.cli("cases", "move", rec.id, "--case", "VG 9 K 9/26", "--note", "n", check=True)
    assert not old.exists() and entries_of(env, rec.id) == [new]
    rc, report = verify(env)
    assert rc == 0 and not report["warnings"], report


def test_move_refuses_an_entry_whose_subfolder_is_a_link_and_changes_nothing(env: Env, tmp_path: Path) -> None:
    file_correspondence(env)
    rec = the_record(env, "Bauantrag")
    old = Path(rec.path)
    planted = tmp_path / "planted"
    (old / "attachments").rename(planted)
    (old / "attachments").symlink_to(planted, target_is_directory=True)
    out = env.cli("cases", "move", rec.id, "--case", "VG 9 K 9/26", "--note", "n")
    assert out.returncode != 0 and "symbolic links (attachments)" in out.stderr
    assert the_record(env, "Bauantrag").path == str(old) and (old / "attachments").is_symlink()
