"""The README's "Running it for real", step by step, in a throwaway root: sysusers.d makes the
user, tmpfiles.d the directories, the secret is 0640 root:poststelle or a systemd credential,
and `poststelle init`, `check` and `run --once` work as the service user with those files.

What cannot be done without systemd as PID 1 (``systemctl enable --now``, ``LoadCredential=``
itself) is stood in for: the credentials directory is laid out as systemd lays it out. The
host's user database is left alone: the users exist only in a private mount namespace,
where copies of ``/etc/passwd`` and friends with the new entries are mounted over the real
ones.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, dovecot_password

from gateway.demo.dovecot import Dovecot
from gateway.demo.samples import letter

USER_FILES = ("passwd", "group", "shadow", "gshadow")
TOOLS = ("systemd-sysusers", "systemd-tmpfiles", "unshare", "runuser", "mount")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="installing needs root (as the README's steps do)"),
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in TOOLS), reason=f"needs {', '.join(TOOLS)} (Debian: systemd, util-linux)"
    ),
]


@dataclass
class Installed:
    """A throwaway root the README's steps were followed in, with the users of its own."""

    root: Path
    python: list[str]
    pythonpath: str

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def as_user(
        self, user: str, args: Sequence[str], env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``runuser -u USER -- ARGS`` in a mount namespace that sees this root's users."""
        binds = "; ".join(f"mount --bind {self.root}/etc/{f} /etc/{f}" for f in USER_FILES)
        variables = [f"{k}={v}" for k, v in (env or {}).items()]
        command = ["runuser", "-u", user, "--", "env", f"PYTHONPATH={self.pythonpath}", *variables, *args]
        return subprocess.run(
            ["unshare", "--mount", "sh", "-c", f'{binds} && exec "$@"', "sh", *command],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
            cwd="/",
        )

    def poststelle(self, user: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        config = str(self.path("/etc/poststelle/poststelle.toml"))
        return self.as_user(user, [*self.python, "-m", "cli", *args], {"POSTSTELLE_CONFIG": config, **(env or {})})

    def ids(self, name: str) -> tuple[int, int]:
        """(uid, gid) of a user of this root; a group's gid twice."""
        for file in ("passwd", "group"):
            for line in (self.root / "etc" / file).read_text().splitlines():
                fields = line.split(":")
                if fields[0] == name:
                    return (int(fields[2]), int(fields[3])) if file == "passwd" else (int(fields[2]), int(fields[2]))
        raise KeyError(name)


def run(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True, timeout=120)


def interpreter(installed: Installed) -> tuple[list[str], str]:
    """The venv's Python if the service user may run it; else the system's of the same version
    with the venv's packages (a venv under a 0700 home, as on a developer's machine)."""
    here = str(REPO)
    probe = installed.as_user("poststelle", [sys.executable, "-c", "import cryptography"])
    if probe.returncode == 0:
        return [sys.executable], here
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not system.exists():
        pytest.skip(f"the service user cannot run {sys.executable}, and there is no {system}")
    return [str(system)], f"{here}:{sysconfig.get_paths()['purelib']}"


@pytest.fixture
def installed(dovecot: Dovecot) -> Iterator[Installed]:
    root = Path(tempfile.mkdtemp(prefix="pst-install-"))
    root.chmod(0o755)  # the service user must reach what is installed in it
    try:
        (root / "etc").mkdir()
        for f in USER_FILES:
            shutil.copy2(Path("/etc") / f, root / "etc" / f)
        # README: install the sysusers.d and tmpfiles.d files, then run the two tools.
        for src, dest in (("poststelle.sysusers", "sysusers.d"), ("poststelle.tmpfiles", "tmpfiles.d")):
            target = root / "usr/lib" / dest / "poststelle.conf"
            target.parent.mkdir(parents=True)
            shutil.copyfile(REPO / "systemd" / src, target)
        run("systemd-sysusers", f"--root={root}", "poststelle.conf")
        run("systemd-tmpfiles", f"--root={root}", "--create", "poststelle.conf")
        inst = Installed(root, [sys.executable], str(REPO))
        inst.python, inst.pythonpath = interpreter(inst)
        # README: the example configuration, edited for this site (here: the test's Dovecot).
        _, own = inst.ids("poststelle")
        ca = inst.path("/etc/poststelle/imap-ca.pem")
        shutil.copyfile(dovecot.ca_file, ca)
        text = (REPO / "config" / "poststelle.example.toml").read_text()
        for old, new in (
            ('host = "imap.example.org"', 'host = "127.0.0.1"'),
            ("port = 993", f"port = {dovecot.imaps_port}"),
            ('# ca_file = "/etc/poststelle/imap-ca.pem"', 'ca_file = "/etc/poststelle/imap-ca.pem"'),
            ("/etc/poststelle/", f"{inst.path('/etc/poststelle')}/"),
            ('"/var/lib/poststelle', f'"{inst.path("/var/lib/poststelle")}'),
            ('"/srv/poststelle', f'"{inst.path("/srv/poststelle")}'),
        ):
            assert old in text, old
            text = text.replace(old, new)
        config = inst.path("/etc/poststelle/poststelle.toml")
        config.write_text(text)
        os.chown(config, 0, own)
        config.chmod(0o640)
        yield inst
    finally:
        shutil.rmtree(root, ignore_errors=True)


def use_imap_user(inst: Installed, user: str, password_file: str) -> None:
    config = inst.path("/etc/poststelle/poststelle.toml")
    text = config.read_text().replace('username = "rathaus"', f'username = "{user}"', 1)
    secret = f'password_file = "{inst.path("/etc/poststelle/rathaus.secret")}"'
    assert secret in text
    config.write_text(text.replace(secret, f'password_file = "{password_file}"'))


def mode_owner(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def test_the_readme_steps_give_a_gateway_the_service_user_runs_and_clerks_read(
    installed: Installed, dovecot: Dovecot, new_user: object
) -> None:
    inst = installed
    user = new_user()  # type: ignore[operator]
    uid, own = inst.ids("poststelle")
    _, clerks = inst.ids("poststelle-read")
    # README: the password in a file root owns and the gateway's group reads.
    secret = inst.path("/etc/poststelle/rathaus.secret")
    secret.write_text(dovecot_password(user))
    os.chown(secret, 0, own)
    secret.chmod(0o640)
    use_imap_user(inst, user, str(secret))
    dovecot.append(user, "INBOX", [letter(subject="Az. 63-BV-2026-0300 Bauantrag")])

    init = inst.poststelle("poststelle", "init")
    assert init.returncode == 0, init.stderr
    check = inst.poststelle("poststelle", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    once = inst.poststelle("poststelle", "run", "--once")
    assert once.returncode == 0, once.stderr

    cases = inst.path("/srv/poststelle/cases")
    entries = [e for e in cases.glob("*/*") if e.is_dir() and not e.parent.name.startswith(".")]
    assert len(entries) == 1
    assert mode_owner(entries[0]) == (0o2750, uid, clerks), "clerks read through the setgid group"
    assert mode_owner(inst.path("/var/lib/poststelle"))[2] == clerks
    ledger = next(inst.path("/var/lib/poststelle").glob("ledger*"))
    assert mode_owner(ledger)[1:] == (uid, clerks) and mode_owner(ledger)[0] & 0o007 == 0
    # Nobody else reads the configuration or the secret.
    for private in (secret, inst.path("/etc/poststelle/poststelle.toml")):
        denied = inst.as_user("nobody", ["cat", str(private)])
        assert denied.returncode != 0 and "Permission denied" in denied.stderr


def test_with_a_credential_the_service_user_reads_the_password_only_from_systemds_copy(
    installed: Installed, dovecot: Dovecot, new_user: object
) -> None:
    inst = installed
    user = new_user()  # type: ignore[operator]
    uid, own = inst.ids("poststelle")
    use_imap_user(inst, user, "credential:imap-rathaus")
    # What LoadCredential=imap-rathaus makes of /etc/credstore/imap-rathaus: a private copy.
    store = inst.path("/etc/credstore/imap-rathaus")
    store.write_text(dovecot_password(user))
    store.chmod(0o600)
    copies = inst.path("/run/credentials/poststelle.service")
    copies.mkdir(parents=True)
    shutil.copyfile(store, copies / "imap-rathaus")
    for p, mode in ((copies / "imap-rathaus", 0o400), (copies, 0o500)):
        os.chown(p, uid, own)
        p.chmod(mode)

    # systemd-run -p User=poststelle -p LoadCredential=imap-rathaus --pipe --wait poststelle init|check
    service = {"CREDENTIALS_DIRECTORY": str(copies)}
    assert inst.poststelle("poststelle", "init", env=service).returncode == 0
    check = inst.poststelle("poststelle", "check", env=service)
    assert check.returncode == 0, check.stdout + check.stderr
    # Without the service manager's copy the service user has no way to the secret.
    without = inst.poststelle("poststelle", "check")
    assert without.returncode == 2
    assert "mailbox[0].password_file" in without.stderr and "CREDENTIALS_DIRECTORY" in without.stderr


def test_a_secret_left_readable_by_others_stops_start_up_as_the_service_user(
    installed: Installed, dovecot: Dovecot, new_user: object
) -> None:
    inst = installed
    user = new_user()  # type: ignore[operator]
    secret = inst.path("/etc/poststelle/rathaus.secret")
    secret.write_text(dovecot_password(user))
    secret.chmod(0o644)
    use_imap_user(inst, user, str(secret))
    proc = inst.poststelle("poststelle", "run", "--once")
    assert proc.returncode == 2
    assert "mailbox[0].password_file" in proc.stderr and "open to others (mode 0644)" in proc.stderr
