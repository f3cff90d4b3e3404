"""The shipped systemd files, judged by systemd's own tools: the unit's hardening rating,
the system user and groups from sysusers.d, the directories and modes from tmpfiles.d."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import REPO

UNITS = REPO / "systemd"
MAX_EXPOSURE = 1.5


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian: apt-get install systemd)")
    return path


def exposure(unit: Path) -> float:
    proc = subprocess.run(
        [tool("systemd-analyze"), "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", proc.stdout)
    assert m is not None, proc.stdout + proc.stderr
    return float(m.group(1))


def test_the_service_unit_is_rated_at_most_1_5_by_systemd_analyze_security() -> None:
    assert exposure(UNITS / "poststelle.service") <= MAX_EXPOSURE


def test_the_service_unit_is_a_notify_service_with_a_watchdog_and_no_capabilities() -> None:
    settings = [ln.strip() for ln in (UNITS / "poststelle.service").read_text().splitlines()]
    for line in (
        "Type=notify",
        "NotifyAccess=main",
        "CapabilityBoundingSet=",
        "UMask=0027",
        "LimitNOFILE=65536",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    ):
        assert line in settings
    assert any(s.startswith("WatchdogSec=") for s in settings)
    rw = next(s for s in settings if s.startswith("ReadWritePaths="))
    assert rw.split("=", 1)[1].split() == ["/var/lib/poststelle", "-/srv/poststelle/cases", "-/run/poststelle"]


def installed_root(tmp_path: Path) -> Path:
    """A throwaway root with the two files where a package puts them, users and directories made."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for src, dest in (("poststelle.sysusers", "sysusers.d"), ("poststelle.tmpfiles", "tmpfiles.d")):
        target = root / "usr/lib" / dest / "poststelle.conf"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(UNITS / src, target)
    subprocess.run([tool("systemd-sysusers"), f"--root={root}"], check=True, capture_output=True, timeout=60)
    subprocess.run(
        [tool("systemd-tmpfiles"), f"--root={root}", "--create", "poststelle.conf"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return root


def ids(path: Path) -> dict[str, tuple[int, str]]:
    """name -> (id, fourth field) of a passwd or group file (the group's members, the user's gid)."""
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split(":")
        out[parts[0]] = (int(parts[2]), parts[3])
    return out


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers is not installed")
def test_sysusers_makes_a_system_user_without_login_and_the_clerks_group(tmp_path: Path) -> None:
    root = installed_root(tmp_path)
    users, groups = ids(root / "etc/passwd"), ids(root / "etc/group")
    assert set(groups) >= {"poststelle", "poststelle-read"}
    uid, gid = users["poststelle"]
    assert uid < 1000, "a system user"
    assert int(gid) == groups["poststelle"][0]
    entry = next(ln for ln in (root / "etc/passwd").read_text().splitlines() if ln.startswith("poststelle:"))
    assert entry.endswith(":/var/lib/poststelle:/usr/sbin/nologin")


@pytest.mark.skipif(shutil.which("systemd-tmpfiles") is None, reason="systemd-tmpfiles is not installed")
def test_tmpfiles_makes_the_directories_with_owners_and_modes_for_service_and_clerks(tmp_path: Path) -> None:
    root = installed_root(tmp_path)
    users, groups = ids(root / "etc/passwd"), ids(root / "etc/group")
    service, clerks, own = users["poststelle"][0], groups["poststelle-read"][0], groups["poststelle"][0]
    expected = {
        "etc/poststelle": (0o750, 0, own),
        "etc/credstore": (0o700, 0, 0),
        "var/lib/poststelle": (0o2750, service, clerks),
        "srv/poststelle/cases": (0o2750, service, clerks),
        "run/poststelle": (0o2750, service, groups["poststelle-send"][0]),  # the send socket's, for senders
    }
    for rel, (mode, uid, gid) in expected.items():
        st = (root / rel).stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, uid, gid), rel


@pytest.mark.skipif(shutil.which("systemd-tmpfiles") is None, reason="systemd-tmpfiles is not installed")
def test_tmpfiles_puts_back_owners_and_modes_of_directories_that_exist(tmp_path: Path) -> None:
    root = installed_root(tmp_path)
    state = root / "var/lib/poststelle"
    state.chmod(0o777)
    (state / "ledger.sqlite").write_text("kept")
    subprocess.run(
        [tool("systemd-tmpfiles"), f"--root={root}", "--create", "poststelle.conf"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert stat.S_IMODE(state.stat().st_mode) == 0o2750
    assert (state / "ledger.sqlite").read_text() == "kept"
