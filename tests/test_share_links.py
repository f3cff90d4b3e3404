"""Links planted in the clerks' share never make the gateway write, read or delete outside its folders.

The share (``cases_dir``) belongs to an unprivileged user who plants the links
(``support.intruder``); the gateway runs as root, as it may in production, so a followed
link would reach anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import POSTSTELLE, REPO, Env
from support.audit import MALFORMED, file_correspondence, verify
from support.intruder import Intruder, get_intruder

from gateway.demo.samples import letter
from gateway.filing.areas import Area
from gateway.filing.dirs import UnsafeDirectory
from gateway.filing.entries import (
    EntryFile,
    case_folder_problem,
    publish_entries,
    seal_staging,
    stage_files,
    sweep_staging,
)
from gateway.inbound.imap import MailboxSession
from gateway.inbound.intake import Intake
from gateway.records.open import open_store
from gateway.unwrap import UnwrapContext

CASE = "63-BV-2026-0147"


@pytest.fixture
def intruder() -> Intruder:
    return get_intruder()


@pytest.fixture
def share(env: Env, intruder: Intruder) -> Path:
    """The cases directory, owned by the intruder before the gateway's first start."""
    intruder.own(env.cases_dir)
    return env.cases_dir


def reasons(entry: Path) -> list[str]:
    found: list[str] = json.loads((entry / "reason.json").read_text())["reasons"]
    return found


def break_kinds(report: dict[str, object]) -> list[str]:
    return [b["kind"] for b in report["breaks"]]  # type: ignore[attr-defined]


@pytest.mark.parametrize("target", ["other directory", "quarantine"])
def test_start_up_clean_up_does_not_follow_a_linked_staging_bucket(
    env: Env, share: Path, intruder: Intruder, tmp_path: Path, target: str
) -> None:
    """The issue's attack: ``.incoming/<mailbox>`` linked elsewhere was emptied at start-up."""
    if target == "quarantine":
        file_correspondence(env, [MALFORMED])
        (victim,) = env.quarantined()
    else:
        victim = tmp_path / "precious"
        victim.mkdir()
        (victim / "20260101T000000Z_0123456789ab").mkdir()  # even shaped like a staged entry
        (victim / "Bescheid.pdf").write_bytes(b"%PDF keep me")
    before = sorted(p.relative_to(victim) for p in victim.rglob("*"))
    intruder.run(share, "mkdir", ".incoming")
    intruder.link(share, ".incoming/rathaus", victim)

    env.append(letter(subject=f"Az. {CASE} Nachtrag"))
    proc = env.cli("run", "--once", check=True)

    assert sorted(p.relative_to(victim) for p in victim.rglob("*")) == before
    assert "left alone in staging" in proc.stdout + proc.stderr
    assert [e.parent.name for e in env.entries()] == [CASE]
    rc, report = verify(env)
    assert rc == 0, report["breaks"]


def test_a_case_folder_replaced_by_a_link_quarantines_that_message_and_files_the_others(
    env: Env, share: Path, intruder: Intruder, tmp_path: Path
) -> None:
    """One planted link must not stop intake: that letter goes to quarantine, bytes kept."""
    env.append(letter(subject=f"Az. {CASE} Antrag"))
    env.cli("run", "--once", check=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    intruder.swap_for_link(share, CASE, outside)

    redirected = letter(subject=f"Az. {CASE} Nachtrag", message_id="<redirected@share.test>")
    env.append(redirected, letter(subject="Az. 63-BV-2026-0200 Anzeige"))
    env.cli("run", "--once", check=True)

    assert list(outside.iterdir()) == []
    assert env.uids("INBOX") == []
    (q,) = env.quarantined()
    assert reasons(q) == ["unsafe-case-folder"]
    warnings = json.loads((q / "reason.json").read_text())["warnings"]
    assert any(CASE in w and "symbolic link" in w for w in warnings)
    manifest = json.loads((q / "manifest.json").read_text())
    assert manifest["message_id"] == "<redirected@share.test>"
    assert manifest["case_folder"] == CASE  # kept, for a release once the folder is fixed
    original = (q / "original.eml").read_bytes()
    assert original.replace(b"\r\n", b"\n") == redirected.replace(b"\r\n", b"\n")
    assert manifest["sha256"] == hashlib.sha256(original).hexdigest()
    assert "63-BV-2026-0200" in [e.parent.name for e in env.entries()]
    assert len(env.uids("Poststelle/Quarantine")) == 1


def test_a_case_folder_swapped_for_a_link_while_the_intake_runs_is_not_followed(
    env: Env, share: Path, intruder: Intruder, tmp_path: Path
) -> None:
    """The containment check is made at publishing, not remembered from an earlier message."""
    config = env.config
    (mb,) = config.mailboxes
    store = open_store(config)
    ctx = UnwrapContext.from_config(config)
    intake = Intake(config, mb, store, ctx)
    outside = tmp_path / "outside"
    outside.mkdir()
    env.append(letter(subject=f"Az. {CASE} Antrag"))
    try:
        with MailboxSession(mb) as session:
            assert intake.run(session).stored == 1
            intruder.swap_for_link(share, CASE, outside)
            env.append(letter(subject=f"Az. {CASE} Nachtrag"))
            session.noop()  # as the daemon's wait does: the session sees the new message
            second = intake.run(session)
    finally:
        intake.close()
        ctx.close()
        store.close()

    assert list(outside.iterdir()) == []
    assert (second.stored, second.quarantined) == (0, 1)
    (q,) = env.quarantined()
    assert reasons(q) == ["unsafe-case-folder"]


@pytest.mark.parametrize("level", ["case folder", "entry"])
def test_audit_verify_flags_a_case_folder_or_entry_that_is_a_link_outside_cases_dir(
    env: Env, share: Path, intruder: Intruder, tmp_path: Path, level: str
) -> None:
    """What the old gateway wrote through a link, and verify then accepted, is now a break."""
    file_correspondence(env)
    folder = share / CASE
    outside = tmp_path / "outside"
    outside.mkdir()
    if level == "case folder":
        shutil.move(folder, outside / CASE)  # as if written there through the link
        intruder.link(share, CASE, outside / CASE)
        linked = folder
    else:
        intruder.own(folder)
        entry = sorted(folder.iterdir())[0]
        shutil.move(entry, outside / entry.name)
        intruder.link(folder, entry.name, outside / entry.name)
        linked = entry

    rc, report = verify(env)

    assert rc == 1
    kinds = break_kinds(report)
    assert "entry-missing" not in kinds
    outside_breaks = [b for b in report["breaks"] if b["kind"] == "entry-outside-root"]
    assert any(b["file"] == str(linked) and b["found"] == str(outside / linked.name) for b in outside_breaks)
    assert any(b["seq"] is not None for b in outside_breaks), "the affected message is named with its entry"


# -- the share-staging layout (a cases_dir on a mount of its own), driven directly ----------
def _staged(area: Area, folder: str | None, name: str, bucket: str = "mb") -> None:
    staged = stage_files(area, folder, name, [EntryFile("original.eml", b"From: a@b\r\n\r\nx\r\n")], bucket=bucket)
    publish_entries({area.name: area}, [seal_staging(area, staged, {"id": name[-12:]})])


def test_share_staging_sweep_removes_only_real_entry_directories_and_never_follows_links(
    tmp_path: Path, intruder: Intruder
) -> None:
    """Staging inside the share: links at any depth are removed as links or left, never followed."""
    assert shutil.rmtree.avoids_symlink_attacks
    root = tmp_path / "cases"
    intruder.own(root)
    victim = tmp_path / "precious"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "keep.txt").write_text("keep")
    area = Area.at("cases", root)  # staging in <root>/.incoming, as on another mount
    try:
        stage_files(area, CASE, "20260101T000000Z_00000000000a", [EntryFile("original.eml", b"x")], bucket="mb")
        incoming = root / ".incoming"
        intruder.own(incoming, incoming / "mb", incoming / "mb" / "20260101T000000Z_00000000000a")
        intruder.link(incoming / "mb", "20260101T000000Z_00000000000a/evil", victim)
        intruder.link(incoming / "mb", "20260101T000000Z_00000000000b", victim)
        intruder.run(incoming / "mb", "mkdir", "notes")
        intruder.link(incoming, "other", victim)

        sweep = sweep_staging(area, "mb")
        linked_bucket = sweep_staging(area, "other")
    finally:
        area.close()

    assert (victim / "sub" / "keep.txt").read_text() == "keep"
    assert sweep.removed == ["20260101T000000Z_00000000000a"]
    assert sorted(p.name for p in (incoming / "mb").iterdir()) == ["20260101T000000Z_00000000000b", "notes"]
    assert len(sweep.left) == 2
    assert linked_bucket.removed == [] and "symbolic link" in linked_bucket.left[0]


@pytest.mark.parametrize("planted", ["link", "file", "foreign directory"])
def test_publishing_refuses_a_case_folder_that_is_a_link_not_a_directory_or_not_ours(
    tmp_path: Path, intruder: Intruder, planted: str
) -> None:
    root = tmp_path / "cases"
    intruder.own(root)
    outside = tmp_path / "outside"
    outside.mkdir()
    if planted == "link":
        intruder.link(root, CASE, outside)
    elif planted == "file":
        intruder.run(root, "touch", CASE)
    else:
        (root / CASE).mkdir()
        os.chown(root / CASE, 12345, 12345)  # neither the gateway's user nor the share's owner
    area = Area.at("cases", root, staging_in=tmp_path / "staging")
    try:
        problem = case_folder_problem(area, CASE)
        with pytest.raises(UnsafeDirectory):
            _staged(area, CASE, "20260101T000000Z_00000000000c")
        _staged(area, "63-BV-2026-0200", "20260101T000000Z_00000000000d")  # another folder is fine
    finally:
        area.close()
    assert problem is not None
    assert list(outside.iterdir()) == []
    assert (root / "63-BV-2026-0200" / "20260101T000000Z_00000000000d" / "manifest.json").is_file()


def test_cases_dir_on_a_mount_of_its_own_is_staged_inside_it_and_everything_is_filed(env: Env, tmp_path: Path) -> None:
    """``rename(2)`` cannot cross mounts (a bind mount of one file system included): staging moves into the share."""
    unshare = shutil.which("unshare")
    real = tmp_path / "share-on-its-own-mount"
    real.mkdir()
    env.cases_dir.mkdir(parents=True, exist_ok=True)  # made by the fixture, as `poststelle init` does
    bind = f"mount --bind {real} {env.cases_dir}"
    if unshare is None or os.geteuid() != 0:
        pytest.skip("needs unshare(1) and root for a private bind mount")
    probe = subprocess.run([unshare, "--mount", "--propagation", "private", "sh", "-c", bind], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.decode(errors='replace').strip()}")
    env.append(letter(subject=f"Az. {CASE} Antrag"), MALFORMED)

    in_namespace = [unshare, "--mount", "--propagation", "private", "sh", "-c", f'{bind} && exec "$@"', "sh"]
    proc = subprocess.run(
        [*in_namespace, *POSTSTELLE, "run", "--once"],
        env={**os.environ, "POSTSTELLE_CONFIG": str(env.config_path)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert proc.returncode == 0, proc.stderr
    assert env.uids("INBOX") == []
    assert [p.parent.name for p in real.glob("*/*") if not p.parent.name.startswith(".")] == [CASE]
    assert [p.name for p in (real / ".incoming").iterdir()] == ["rathaus"]
    assert list((real / ".incoming" / "rathaus").iterdir()) == []
    assert list(env.cases_dir.iterdir()) == [], "the mount point itself was never written"
    assert len(env.quarantined()) == 1
