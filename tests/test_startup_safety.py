"""Start-up safety: one daemon per state directory, no directory made on the fly, one clear
line for every way start-up fails, and the gateway's own file modes whatever the umask."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import POSTSTELLE, REPO, Env, mailbox_entry, write_config
from support.smime_pki import TestPKI

from gateway.config import parse_config
from gateway.demo.dovecot import Dovecot
from gateway.demo.samples import letter
from gateway.errors import ConfigError
from gateway.statedir import init_storage

NOBODY = 65534
BROKEN = (
    b"From: x@example.org\r\nSubject: Az. 63-BV-2026-0200\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed\r\n\r\n--nope\r\nbroken\r\n"
)

# Takes the state directory's lock through the daemon's own code, says so, and holds it
# until the test closes its stdin: the test waits for the line, never for a time.
HOLDER = """
import sys
from pathlib import Path
from gateway.config import load_config
from gateway.service.statelock import StateLock
lock = StateLock.acquire(load_config(Path(sys.argv[1])))
print("holding", flush=True)
sys.stdin.read()
lock.release()
"""


AS_USER = (
    "import os, sys; import cli.main, gateway.service.daemon, gateway.service.startup, gateway.display; "
    "import gateway.logs, gateway.demail.anchors; cli.main.build_app(); "  # the CLI imports these lazily
    "os.setgroups([]); os.setgid({uid}); os.setuid({uid}); "
    "sys.argv[0] = 'poststelle'; from cli.__main__ import main; main()"
)


def poststelle(
    config: Path, *args: str, umask: int | None = None, user: int | None = None, python: str = ""
) -> subprocess.CompletedProcess[str]:
    """``poststelle ARGS`` in a process of its own, stdout and stderr pipes, optionally as another user."""

    def before() -> None:
        if umask is not None:
            os.umask(umask)

    if user is not None:  # the interpreter lives under /root: start as root, import, then drop
        python = AS_USER.format(uid=user)
    command = [sys.executable, "-c", python, *args] if python else [*POSTSTELLE, *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "POSTSTELLE_CONFIG": str(config), "PYTHONPATH": str(REPO)},
        preexec_fn=before,
        timeout=180,
        check=False,
    )


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed start-up prints: non-zero exit, no traceback, nothing else on stderr."""
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture
def holder(env: Env) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(env.config_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    try:
        yield proc
    finally:
        proc.communicate(input="", timeout=30)


# -- one daemon per state directory -------------------------------------------------------------
def test_second_run_exits_at_once_naming_the_pid_that_holds_the_state(env: Env, holder: subprocess.Popen[str]) -> None:
    env.append(letter(subject="Az. 63-BV-2026-0300 erstes Schreiben"))
    line = one_line(env.cli("run", "--once"))
    assert f"pid {holder.pid}" in line and str(env.state_dir) in line
    assert env.uids("INBOX"), "the second instance touched nothing"
    assert env.entries() == []


def test_cli_reads_and_a_persons_decision_work_beside_the_running_daemon(env: Env) -> None:
    env.append(BROKEN)
    env.cli("run", "--once", check=True)  # quarantines it, and creates the ledger
    (entry,) = json.loads(env.cli("quarantine", "list", "--json", check=True).stdout)
    daemon = subprocess.Popen(
        [*POSTSTELLE, "run"],
        cwd=REPO,
        env={**os.environ, "POSTSTELLE_CONFIG": str(env.config_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert daemon.stderr is not None
        for raw in daemon.stderr:  # the daemon holds the lock before it connects
            if '"connected"' in raw:
                break
        else:
            pytest.fail("the daemon ended before connecting")
        line = one_line(env.cli("run", "--once"))
        assert f"pid {daemon.pid}" in line
        for reading in (["status"], ["cases", "list"], ["quarantine", "list"], ["audit", "log"], ["audit", "verify"]):
            env.cli(*reading, check=True)
        env.cli("quarantine", "release", entry["id"], "--case", "63-BV-2026-0200", "--note", "checked", check=True)
        assert len(env.entries()) == 1
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, stderr
    env.cli("audit", "verify", check=True)


def test_the_lock_is_free_again_when_its_holder_ends(env: Env) -> None:
    env.append(letter(subject="Az. 63-BV-2026-0301 Schreiben"))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(env.config_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    holder.kill()  # however it ends, the kernel drops the lock
    holder.communicate(timeout=30)
    env.cli("run", "--once", check=True)
    assert len(env.entries()) == 1


# -- the two roots are never created on start ----------------------------------------------------
@pytest.mark.parametrize("setting", ["storage.cases_dir", "storage.state_dir"])
def test_start_refuses_a_missing_root_naming_setting_and_path_and_creates_nothing(env: Env, setting: str) -> None:
    missing = env.cases_dir if setting == "storage.cases_dir" else env.state_dir
    shutil.rmtree(missing)
    line = one_line(env.cli("run", "--once"))
    assert setting in line and str(missing) in line and "poststelle init" in line
    assert not missing.exists()
    rows = json.loads(env.cli("check", "--json").stdout)
    (row,) = [r for r in rows if r["check"] == "storage" and r["target"] == str(missing)]
    assert row["result"] == "FAILED" and row["detail"].startswith("missing")


def test_init_creates_the_roots_and_layout_and_a_second_init_creates_nothing(env: Env) -> None:
    shutil.rmtree(env.state_dir)
    made = env.cli("init", check=True).stdout
    assert str(env.cases_dir) in made
    assert (env.state_dir / "ledger.sqlite3").is_file() and (env.state_dir / "quarantine").is_dir()
    assert "nothing to create" in env.cli("init", check=True).stdout
    log = json.loads(env.cli("audit", "log", "--json", check=True).stdout)
    assert [e["event"] for e in log].count("state-initialised") == 2
    env.cli("check", check=True)


def test_init_keeps_the_clerks_group_of_a_setgid_parent_down_to_the_filed_letters(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    user = new_user()
    share = tmp_path / "share"
    share.mkdir()
    os.chown(share, 0, NOBODY)
    share.chmod(0o2750)
    config = write_config(tmp_path, [mailbox_entry(dovecot, user, tmp_path)])
    shutil.rmtree(tmp_path / "state")
    text = config.read_text().replace(f'"{tmp_path}/state', f'"{share}/state')  # state_dir and cases_dir
    config.write_text(text)
    env = Env(dovecot, user, share, config)
    env.cli("init", check=True)
    env.append(letter(subject="Az. 63-BV-2026-0304 Schreiben"))
    env.cli("run", "--once", check=True)
    (entry,) = env.entries()
    made = [share / "state", *(share / "state").rglob("*")]
    assert entry in made and all(p.stat().st_gid == NOBODY for p in made)
    assert all(p.stat().st_mode & stat.S_ISGID for p in made if p.is_dir())


# -- every start-up failure is one line ---------------------------------------------------------
@pytest.fixture
def shared_root(dovecot: Dovecot, new_user: Callable[[], str]) -> Iterator[tuple[Path, str]]:
    """A directory an unprivileged user can reach (pytest's own tmp_path is root's alone)."""
    root = Path(tempfile.mkdtemp(prefix="pst-startup-"))
    root.chmod(0o755)
    try:
        yield root, new_user()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _give_to_nobody(*paths: Path) -> None:
    for p in paths:
        os.chown(p, NOBODY, NOBODY)
        for sub in p.rglob("*") if p.is_dir() else ():
            os.chown(sub, NOBODY, NOBODY)


def test_unreadable_ca_file_stops_start_up_with_one_line(dovecot: Dovecot, shared_root: tuple[Path, str]) -> None:
    root, user = shared_root
    ca = root / "ca.pem"
    shutil.copy(dovecot.ca_file, ca)
    ca.chmod(0o600)  # root's; the gateway's user cannot read it
    config = write_config(root, [mailbox_entry(dovecot, user, root, ca_file=str(ca))])
    _give_to_nobody(root / "state", root / "rathaus.secret")
    line = one_line(poststelle(config, "run", "--once", user=NOBODY))
    assert "mailbox[0].ca_file" in line and str(ca) in line and "Permission denied" in line


def test_unreadable_smime_key_stops_start_up_with_one_line(
    dovecot: Dovecot, shared_root: tuple[Path, str], pki: TestPKI
) -> None:
    root, user = shared_root
    files = pki.write(root / "pki")
    extra = f"""
[smime]
identities = [{{ key_file = "{files["recipient.key"]}", cert_file = "{files["recipient.pem"]}" }}]
trust_anchors = ["{files["root"]}"]
"""
    config = write_config(root, [mailbox_entry(dovecot, user, root)], extra=extra)
    _give_to_nobody(root / "state", root / "rathaus.secret", root / "pki")
    unreadable = files["recipient.key"]
    os.chown(unreadable, 0, 0)
    unreadable.chmod(0o600)
    line = one_line(poststelle(config, "run", "--once", user=NOBODY))
    assert "smime.identity[0].key_file" in line and str(unreadable) in line and "Permission denied" in line


def test_state_directory_not_writable_stops_start_up_with_one_line(
    dovecot: Dovecot, shared_root: tuple[Path, str]
) -> None:
    root, user = shared_root
    config = write_config(root, [mailbox_entry(dovecot, user, root)])
    _give_to_nobody(root / "rathaus.secret")
    for d in (root / "state", root / "state" / "cases"):
        d.chmod(0o755)  # root's: the gateway's user can look in, not write
    line = one_line(poststelle(config, "run", "--once", user=NOBODY))
    assert "storage.state_dir" in line and "not writable" in line
    assert not (root / "state" / "ledger.sqlite3").exists()


def test_locked_database_stops_start_up_with_one_line(env: Env) -> None:
    env.cli("init", check=True)
    holder = sqlite3.connect(env.state_dir / "ledger.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer that does not let go
    try:
        # The same start-up, with SQLite's wait for the other writer shortened to a second.
        shortened = (
            "import sys; import gateway.records.sqlite.connect as c; c.BUSY_TIMEOUT = 1; "
            "sys.argv[0] = 'poststelle'; from cli.__main__ import main; main()"
        )
        line = one_line(poststelle(env.config_path, "run", "--once", python=shortened))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "database is locked" in line and "ledger" in line
    env.cli("run", "--once", check=True)


def test_full_disk_stops_start_up_with_one_line(env: Env, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    mnt = tmp_path / "full"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        text = env.config_path.read_text().replace(f'"{env.state_dir}', f'"{mnt}/state')
        env.config_path.write_text(text)
        init_storage(parse_config(_toml(env.config_path), file=str(env.config_path)))
        with pytest.raises(OSError) as full, open(mnt / "filler", "wb") as f:  # fill until the disk refuses
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        assert full.value.errno == errno.ENOSPC
        line = one_line(env.cli("run", "--once"))
        assert "No space left on device" in line
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _toml(path: Path) -> dict[str, object]:
    import tomllib

    return tomllib.loads(path.read_text())


# -- file modes ----------------------------------------------------------------------------------
def _modes(state: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(state)): ("dir" if p.is_dir() else "file", stat.S_IMODE(p.lstat().st_mode))
        for p in [state, *state.rglob("*")]
    }


SECRET = {"audit/audit-signing.key": 0o600}


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_everything_the_gateway_writes_is_0640_and_0750_whatever_the_umask(env: Env, umask: int) -> None:
    shutil.rmtree(env.state_dir)
    poststelle(env.config_path, "init", umask=umask).check_returncode()
    env.append(letter(subject="Az. 63-BV-2026-0302 Schreiben"), BROKEN)
    assert poststelle(env.config_path, "run", "--once", umask=umask).returncode == 0
    (entry,) = json.loads(env.cli("quarantine", "list", "--json", check=True).stdout)
    poststelle(
        env.config_path, "quarantine", "release", entry["id"], "--case", "63-BV-2026-0200", "--note", "ok", umask=umask
    ).check_returncode()
    report = env.root / "report.html"
    poststelle(env.config_path, "audit", "export", "-f", "html", "-o", str(report), umask=umask).check_returncode()
    modes = _modes(env.state_dir)
    assert len(env.entries()) == 2 and "ledger.sqlite3" in modes and "audit/audit.jsonl" in modes
    wrong = {
        name: f"{mode:04o}"
        for name, (kind, mode) in modes.items()
        if mode != SECRET.get(name, 0o750 if kind == "dir" else 0o640)
    }
    assert wrong == {}
    assert stat.S_IMODE(report.stat().st_mode) == 0o640


def test_configured_modes_give_the_group_write_access_whatever_the_umask(env: Env) -> None:
    text = env.config_path.read_text().replace("[storage]\n", '[storage]\nfile_mode = "0660"\ndir_mode = "0770"\n', 1)
    env.config_path.write_text(text)
    shutil.rmtree(env.state_dir)
    poststelle(env.config_path, "init", umask=0o077).check_returncode()
    env.append(letter(subject="Az. 63-BV-2026-0303 Schreiben"))
    assert poststelle(env.config_path, "run", "--once", umask=0o077).returncode == 0
    wrong = {
        name: f"{mode:04o}"
        for name, (kind, mode) in _modes(env.state_dir).items()
        if mode != SECRET.get(name, 0o770 if kind == "dir" else 0o660)
    }
    assert wrong == {}


@pytest.mark.parametrize(
    ("file_mode", "dir_mode", "problem"),
    [
        ("0666", "0777", "others write"),
        ("0640", "0770", "without the execute bits"),
        ("0440", "0550", "owner rwx"),
        ("640x", "0750", "octal mode"),
    ],
)
def test_config_refuses_modes_that_are_unsafe_or_do_not_fit_together(
    file_mode: str, dir_mode: str, problem: str
) -> None:
    data = {"storage": {"state_dir": "/srv/pst", "file_mode": file_mode, "dir_mode": dir_mode}}
    with pytest.raises(ConfigError) as err:
        parse_config(data, file="poststelle.toml")
    assert problem in str(err.value) and "storage." in str(err.value)
