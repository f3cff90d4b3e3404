"""Shared fixtures: one real Dovecot per test session, and per-test gateway configs.

Each test gets its own IMAP user (fresh mailbox) and its own state directory, so tests
never see each other's mail and one Dovecot serves the whole run.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from gateway.config import Config, load_config
from gateway.demo.dovecot import Dovecot, dovecot_available
from gateway.errors import ConfigError
from gateway.statedir import init_storage

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
POSTSTELLE = [sys.executable, "-m", "cli"]
USERS = {f"user{i}": f"pw-{i}" for i in range(1000)}  # one per test that asks; the suite has outgrown 200
_user_seq = itertools.count()

# CI machines are shared and noisy: nothing about wall-clock time may fail a property test.
# Explicit ``@settings(...)`` in a test inherit these unless they name the same field.
LOAD_TOLERANT = (HealthCheck.too_slow,)
settings.register_profile("poststelle", deadline=None, suppress_health_check=LOAD_TOLERANT)
settings.load_profile("poststelle")


@pytest.fixture(autouse=True)
def _keep_the_umask() -> Iterator[None]:
    """A daemon or CLI run in the test process sets the umask from ``[storage]`` modes
    (``gateway.filemodes``); later tests must start from the caller's umask again."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield
    os.umask(saved)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    if not dovecot_available():
        pytest.fail("dovecot is not installed: run the README's test command (scripts/test), which installs it")
    root = Path(tempfile.mkdtemp(prefix="pst-dc-"))
    os.chmod(root, 0o755)  # noqa: S103 - Dovecot (user nobody) must reach its dirs
    try:
        with Dovecot(root, USERS) as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)  # every test's mail and state lives under it


@dataclass
class Env:
    """A gateway set-up against the shared Dovecot: one user, one state dir, one config file."""

    dovecot: Dovecot
    user: str
    root: Path
    config_path: Path

    @property
    def config(self) -> Config:
        return load_config(self.config_path)

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def cases_dir(self) -> Path:
        return self.root / "state" / "cases"

    def append(self, *messages: bytes, folder: str = "INBOX") -> None:
        self.dovecot.append(self.user, folder, messages)

    def uids(self, folder: str = "INBOX") -> list[int]:
        return self.dovecot.folder_uids(self.user, folder)

    def cli(self, *args: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "POSTSTELLE_CONFIG": str(self.config_path)}
        proc = subprocess.run(
            [*POSTSTELLE, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"poststelle {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def entries(self) -> list[Path]:
        """Every published case entry (excluding staging)."""
        return sorted(p for p in self.cases_dir.glob("*/*") if p.is_dir() and not p.parent.name.startswith("."))

    def quarantined(self) -> list[Path]:
        q = self.state_dir / "quarantine"
        return sorted(p for p in q.glob("*") if p.is_dir() and not p.name.startswith("."))


ROUTES = """
[[route]]
name = "reply with our reference"
subject = '(?i)\\bIhr(?:e)?\\s+(?:Zeichen|Az\\.?|Aktenzeichen)\\s*:?\\s*(?P<case>\\d{2}-[A-Z]{2}-\\d{4}-\\d{3,5})'
case = "{case}"

[[route]]
name = "building permits"
subject = '(?i)\\b(?:Az|Aktenzeichen|Gz)\\.?\\s*:?\\s*(?P<case>\\d{2}-BV-\\d{4}-\\d{3,5})'
case = "{case}"

[[route]]
name = "court"
subject = '(?i)\\b(?:Az|Aktenzeichen)\\.?\\s*:?\\s*(?P<case>\\d{1,2}\\s+[KL]\\s+\\d{1,5}/\\d{2})'
case = "VG {case}"

[[route]]
name = "anything after Az"
subject = '(?i)\\bAz\\.?\\s*:?\\s*(?P<case>\\S.{0,200})$'
case = "{case}"
"""


def write_config(root: Path, mailboxes: list[dict[str, Any]], *, extra: str = "", routes: str = ROUTES) -> Path:
    lines = ["[storage]", f'state_dir = "{root}/state"', f'cases_dir = "{root}/state/cases"', ""]
    for mb in mailboxes:
        lines.append("[[mailbox]]")
        for k, v in mb.items():
            if isinstance(v, bool):
                lines.append(f"{k} = {'true' if v else 'false'}")
            elif isinstance(v, int | float):
                lines.append(f"{k} = {v}")
            else:
                lines.append(f'{k} = "{v}"')
        lines.append("")
    lines.append(routes)
    lines.append('[logging]\nformat = "json"\n')
    lines.append(extra)
    path = root / "poststelle.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    init_dirs(path)
    return path


def init_dirs(config_path: Path) -> None:
    """Create the config's state and cases directories as ``poststelle init`` does (start-up never does).

    A config that does not load (a test of the loader) has nothing to create.
    """
    try:
        config = load_config(config_path)
    except ConfigError:
        return
    init_storage(config)


def mailbox_entry(dovecot: Dovecot, user: str, root: Path, *, name: str = "rathaus", **over: Any) -> dict[str, Any]:
    pw = root / f"{name}.secret"
    pw.write_text(dovecot_password(user))
    pw.chmod(0o600)
    entry: dict[str, Any] = {
        "name": name,
        "host": "127.0.0.1",
        "port": dovecot.imaps_port,
        "security": "tls",
        "username": user,
        "password_file": str(pw),
        "ca_file": str(dovecot.ca_file),
        "poll_interval": 1,
        "timeout": 10,
    }
    entry.update(over)
    return entry


def dovecot_password(user: str) -> str:
    return USERS[user]


@pytest.fixture(scope="session")
def pki() -> Any:
    """The throwaway S/MIME PKI (tests/smime_pki.py), built once per run."""
    from support.smime_pki import build_pki

    return build_pki()


@pytest.fixture
def new_user() -> Callable[[], str]:
    def make() -> str:
        return f"user{next(_user_seq)}"

    return make


@pytest.fixture
def env(dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]) -> Env:
    user = new_user()
    path = write_config(tmp_path, [mailbox_entry(dovecot, user, tmp_path)])
    return Env(dovecot, user, tmp_path, path)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A throwaway PostgreSQL (gateway/demo/postgres.py) for the whole run, fsync on.

    Skipped, saying why, where PostgreSQL or psycopg is not installed (scripts/setup
    installs both); the SQLite half of every backend test still runs there.
    """
    from gateway.demo.postgres import Postgres, postgres_unavailable

    reason = postgres_unavailable()
    if reason is not None:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="pst-pg-"))
    os.chmod(root, 0o755)  # noqa: S103 - the server (user postgres when we are root) must reach its dirs
    try:
        with Postgres(root) as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_template(postgres: Any) -> tuple[Any, str]:
    """The session's server and a template database with the store's schema: a test's fresh
    database is a copy of it (``CREATE DATABASE … TEMPLATE``), far cheaper than migrating."""
    from gateway.records.postgres.store import PostgresStore

    name = "poststelle_template"
    PostgresStore(postgres.create_database(name)).close()
    return postgres, name


@pytest.fixture(scope="session")
def postfix(dovecot: Dovecot) -> Iterator[Any]:
    """A throwaway Postfix relaying ``mailbox.test`` into the session's Dovecot by LMTP.

    ``refused@mailbox.test`` is refused at RCPT time with a 550 (a real Postfix answer).
    Postfix must start as root: the tests that need it are skipped elsewhere, saying so.
    """
    from gateway.demo.postfix import Postfix, postfix_unavailable

    reason = postfix_unavailable()
    if reason is not None:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="pst-pf-"))
    try:
        with Postfix(
            root, lmtp_port=dovecot.lmtp_port, refuse={"refused@mailbox.test": "550 5.1.1 no such mailbox here"}
        ) as relay:
            yield relay
    finally:
        shutil.rmtree(root, ignore_errors=True)
