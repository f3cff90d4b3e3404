"""Manifest checks give the same findings on threads and in worker processes.

Large states are checked in worker processes (``ManifestChecks``); the tamper tests run on
small ones, which use threads. Entries filed with the gateway's own filing code, then
tampered with, are checked both ways here.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.audit import manifests
from gateway.audit.files import ManifestChecks, check_manifests, list_disk_entries
from gateway.config import load_config
from gateway.filing.areas import Area
from gateway.filing.entries import EntryFile, write_entry
from gateway.statedir import cases_dir, init_storage, quarantine_dir


@pytest.fixture
def filed(tmp_path: Path) -> tuple[Path, Path]:
    """Six entries in two case folders; returns (cases root, quarantine root)."""
    secret = tmp_path / "password"
    secret.write_text("unused")
    secret.chmod(0o600)
    cfg = tmp_path / "poststelle.toml"
    cfg.write_text(
        f'[storage]\nstate_dir = "{tmp_path}/state"\n\n[[mailbox]]\nname = "m"\nhost = "127.0.0.1"\n'
        f'username = "m"\npassword_file = "{secret}"\n'
    )
    config = load_config(cfg)
    init_storage(config)
    area = Area.open(config, "cases")
    try:
        for i in range(6):
            files = [
                EntryFile("original.eml", f"Subject: {i}\r\n\r\nbody\r\n".encode()),
                EntryFile("attachments/Plan.pdf", b"%PDF-" + bytes([i]) * 100),
            ]
            write_entry(area, f"63-BV-2026-{i % 2:04d}", f"2026-01-0{i + 1}_{i:012x}", files, {"id": f"{i:012x}"})
    finally:
        area.close()
    return cases_dir(config), quarantine_dir(config)


def test_worker_processes_find_what_threads_find(filed: tuple[Path, Path], tmp_path: Path) -> None:
    cases, quarantine = filed
    entries = sorted(p for folder in cases.iterdir() if not folder.name.startswith(".") for p in folder.iterdir())
    (entries[0] / "attachments" / "Plan.pdf").write_bytes(b"%PDF- altered")
    (entries[1] / "original.eml").unlink()
    (entries[2] / "Thumbs.db").write_bytes(b"x")
    (tmp_path / "elsewhere.txt").write_bytes(b"outside")
    os.symlink(tmp_path / "elsewhere.txt", entries[3] / "note.txt")
    (entries[4] / "manifest.json").write_bytes(b"{not json")
    disk, _ = list_disk_entries(cases, quarantine)
    on_threads = check_manifests([d.path for d in disk])
    checks = ManifestChecks(disk, processes_from=1)
    in_processes = checks.result()
    assert in_processes == on_threads
    problems = {p.problem.split(":")[0] for found, _ in on_threads.values() for p in found}
    assert problems == {"altered", "missing", "unlisted file", "symlink", "unreadable manifest"}
    assert sum(1 for found, sha in on_threads.values() if not found and sha) == 1, "one entry is untouched"


def _tampered(cases: Path, tmp_path: Path) -> list[Path]:
    entries = sorted(p for folder in cases.iterdir() if not folder.name.startswith(".") for p in folder.iterdir())
    (entries[0] / "attachments" / "Plan.pdf").write_bytes(b"%PDF- altered")
    (entries[1] / "original.eml").unlink()
    (entries[2] / "Thumbs.db").write_bytes(b"x")
    (tmp_path / "elsewhere.txt").write_bytes(b"outside")
    os.symlink(tmp_path / "elsewhere.txt", entries[3] / "note.txt")
    (entries[4] / "manifest.json").write_bytes(b"{not json")
    return entries


def test_forked_workers_find_what_threads_find(filed: tuple[Path, Path], tmp_path: Path) -> None:
    """``audit verify --since`` feeds forked workers entry by entry; their answers are the threads' answers."""
    entries = _tampered(filed[0], tmp_path)
    on_threads = {str(p): found for p, found in check_manifests(entries).items()}
    checks = manifests.ForkedChecks(chunk=1)
    for e in [*entries, entries[0]]:  # an entry named twice is checked once
        checks.add(str(e))
    assert checks.result() == on_threads
    assert all(found for found, _ in list(on_threads.values())[:5])


def test_entries_of_a_killed_worker_are_checked_here_not_taken_as_checked(
    filed: tuple[Path, Path], tmp_path: Path
) -> None:
    entries = _tampered(filed[0], tmp_path)
    on_threads = {str(p): found for p, found in check_manifests(entries).items()}
    checks = manifests.ForkedChecks(chunk=1)
    for e in entries:
        checks.add(str(e))
    os.kill(checks.pids[0], signal.SIGKILL)  # it answers only once its pipe is closed: it never will
    assert checks.result() == on_threads
    assert checks.pids == [], "result() reaped both workers"


def test_workers_left_on_an_error_are_ended(filed: tuple[Path, Path]) -> None:
    checks = manifests.ForkedChecks()
    pids = checks.pids
    checks.close()
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped: no process and no zombie is left behind


@pytest.fixture(scope="module")
def odd_entry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An entry holding every kind of thing a manifest path can meet: files, a nested real
    directory, links to files and to directories (dangling too), a FIFO, a file where a
    directory belongs."""
    entry = tmp_path_factory.mktemp("odd") / "20260101T000000Z_00000000abcd"
    (entry / "attachments" / "deep").mkdir(parents=True)
    for rel in ("original.eml", "body.txt", "attachments/Plan.pdf", "attachments/deep/x.txt", "manifest.json"):
        (entry / rel).write_bytes(rel.encode() * 3)
    os.symlink("body.txt", entry / "linked.txt")
    os.symlink("attachments", entry / "linkdir")
    os.symlink("/nowhere", entry / "attachments" / "dangling")
    os.mkfifo(entry / "pipe")
    return entry


_COMPONENTS = [
    "original.eml",
    "body.txt",
    "attachments",
    "Plan.pdf",
    "deep",
    "x.txt",
    "linked.txt",
    "linkdir",
    "dangling",
    "pipe",
    "manifest.json",
    "nothing",
    ".",
    "..",
    "",
]


@given(parts=st.lists(st.sampled_from(_COMPONENTS), min_size=1, max_size=4), lead=st.sampled_from(["", "/"]))
def test_a_listed_path_is_judged_as_read_at_judges_it(odd_entry: Path, parts: list[str], lead: str) -> None:
    """The manifest check answers listed paths from its walk of the entry (no ``stat`` per
    file); for any path, odd ones included, the answer is the one ``read_at`` gives."""
    rel = lead + "/".join(parts)
    root = os.open(odd_entry, os.O_RDONLY | os.O_DIRECTORY)
    dirs = {"": root}
    try:
        found = manifests._walk(root, "", dirs)
        assert manifests._read_listed(rel, found, dirs) == manifests.read_at(root, rel)
    finally:
        for fd in dirs.values():
            os.close(fd)
