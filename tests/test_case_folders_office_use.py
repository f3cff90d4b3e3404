"""Case folders survive normal office use: files Explorer or a clerk adds are named, not a break.

A changed or removed *listed* file is still an integrity failure (test_audit_tamper.py has
those cases; one is repeated here next to an added file, so the warning cannot mask it).
"""

from __future__ import annotations

from pathlib import Path

from conftest import Env
from support.audit import file_correspondence, the_break, verify


def test_thumbs_db_desktop_ini_and_a_note_are_warnings_with_their_paths(env: Env) -> None:
    file_correspondence(env)
    entry = next(e for e in env.entries() if (e / "attachments").is_dir())
    added = [entry / "Thumbs.db", entry / "desktop.ini", entry / "attachments" / "Notiz Frau Keller.txt"]
    added[0].write_bytes(b"\xd0\xcf\x11\xe0thumbnail cache")
    added[1].write_text("[.ShellClassInfo]\r\nIconResource=C:\\x.ico,0\r\n", encoding="utf-8")
    added[2].write_text("Rückruf erledigt, 3.12.\n", encoding="utf-8")

    rc, report = verify(env)
    assert rc == 0, report["breaks"]
    for path in added:
        assert any(w.startswith(f"{path}: unlisted file") for w in report["warnings"]), (path, report["warnings"])

    out = env.cli("audit", "verify")
    assert out.returncode == 0
    assert "audit verify: OK" in out.stdout and str(added[0]) in out.stdout


def test_an_added_file_does_not_hide_a_changed_listed_file(env: Env) -> None:
    file_correspondence(env)
    entry = env.entries()[0]
    (entry / "Thumbs.db").write_bytes(b"cache")
    (entry / "body.txt").write_bytes(b"changed\n")
    rc, report = verify(env)
    assert rc == 1
    assert the_break(report, "file-altered")["file"] == str(entry / "body.txt")
    assert any(str(entry / "Thumbs.db") in w for w in report["warnings"])


def test_a_removed_listed_file_stays_an_integrity_failure(env: Env) -> None:
    file_correspondence(env)
    entry = env.entries()[0]
    (entry / "body.txt").unlink()
    rc, report = verify(env)
    assert rc == 1
    assert the_break(report, "file-missing")["file"] == str(entry / "body.txt")


def test_a_listed_file_swapped_for_a_link_to_an_identical_copy_is_a_break(env: Env, tmp_path: Path) -> None:
    file_correspondence(env)
    entry = env.entries()[0]
    outside = tmp_path / "elsewhere.txt"
    outside.write_bytes((entry / "body.txt").read_bytes())
    (entry / "body.txt").unlink()
    (entry / "body.txt").symlink_to(outside)
    rc, report = verify(env)
    assert rc == 1
    found = the_break(report, "file-symlink")
    assert found["file"] == str(entry / "body.txt")


def test_an_added_link_is_a_break_and_its_target_is_never_read(env: Env, tmp_path: Path) -> None:
    file_correspondence(env)
    entry = env.entries()[0]
    secret = tmp_path / "unreadable"
    secret.write_bytes(b"x")
    secret.chmod(0)
    (entry / "notes").symlink_to(secret)
    (entry / "more").symlink_to(tmp_path, target_is_directory=True)
    rc, report = verify(env)
    assert rc == 1
    linked = {b["file"] for b in report["breaks"] if b["kind"] == "file-symlink"}
    assert linked == {str(entry / "notes"), str(entry / "more")}
    assert not any("unlisted" in w and str(tmp_path) in w for w in report["warnings"])
