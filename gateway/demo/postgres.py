"""A throwaway PostgreSQL server in a temp dir, for the tests, the demo-style launchers and benchmarks.

Why a real server: what the PostgreSQL store promises (one chain under a row lock, a
commit that is durable when it returns, snapshots) is the server's behaviour, which no
fake reproduces. A private cluster starts in about a second.

Facts this module relies on (PostgreSQL 15, Debian 12):

- The server refuses to run as root. As root we run ``initdb`` and ``pg_ctl`` as the
  ``postgres`` system user the Debian package creates (or ``poststelle-pg``, created when
  neither exists); otherwise as ourselves. Every directory from ``/`` down to ``root``
  must then be traversable by that user, which ``start`` checks and says.
- ``initdb --pwfile`` sets the superuser's password, and scram-sha-256 on both the unix
  socket and TCP makes every client present it, as a provider's server would.
- ``fsync``, ``synchronous_commit`` and ``full_page_writes`` stay on: the tests check
  durability, so the server must not cut the corners a test database usually may.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

__all__ = ["Postgres", "PostgresError", "postgres_unavailable"]

SUPERUSER = "postgres"
_SERVICE_USERS = ("postgres", "poststelle-pg")
_START_TIMEOUT = 120  # seconds pg_ctl waits for the server; generous on a busy shared machine


class PostgresError(RuntimeError):
    """The throwaway server could not be set up or started; the message says why."""


def _bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: on PATH, else Debian's newest /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(candidates[-1]).parent if candidates else None


def postgres_unavailable() -> str | None:
    """Why no throwaway server can run here (None when one can)."""
    if _bindir() is None:
        return "PostgreSQL is not installed (apt-get install postgresql; scripts/setup does it)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[dev]'; scripts/setup does it)"
    return None


def _free_port(host: str) -> int:
    """Ask the kernel for a free port; tiny race until the server binds it, acceptable in tests."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _service_account() -> pwd.struct_passwd | None:
    """The unprivileged account the server runs as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in _SERVICE_USERS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _SERVICE_USERS[-1]],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(_SERVICE_USERS[-1])


class Postgres:
    """One private cluster under ``root``: data, unix socket and log; TCP on 127.0.0.1."""

    host = "127.0.0.1"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.socket_dir = root / "run"
        self.log_file = root / "server.log"
        self.port = 0
        self.password = secrets.token_urlsafe(18)
        self._account = _service_account()
        self._started = False

    def __enter__(self) -> Postgres:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- lifecycle ---------------------------------------------------------------------------------
    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        bindir = _bindir()
        if bindir is None:
            raise PostgresError("PostgreSQL is not installed (apt-get install postgresql)")
        account = self._account
        proc = subprocess.run(
            [str(bindir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.root,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"},
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            extra_groups=[] if account else None,
        )
        if proc.returncode != 0:
            log = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise PostgresError(f"{args[0]} failed ({proc.returncode}): {proc.stderr.strip()}\n{log}")
        return proc

    def _prepare_root(self) -> None:
        account = self._account
        if account is not None:
            for parent in [self.root, *self.root.parents]:
                if not os.stat(parent).st_mode & 0o001:
                    raise PostgresError(
                        f"{parent} is not traversable by others: the server runs as {account.pw_name} "
                        f"(chmod o+x {parent})"
                    )
        for d in (self.data, self.socket_dir):
            d.mkdir(mode=0o700, exist_ok=True)
        if account is not None:
            for path in (self.data, self.socket_dir):
                os.chown(path, account.pw_uid, account.pw_gid)
            self.log_file.touch(mode=0o600)
            os.chown(self.log_file, account.pw_uid, account.pw_gid)

    def _initdb(self) -> None:
        pwfile = self.data / "initdb.pw"  # inside the 0700 data dir; removed at once
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.password + "\n")
        if self._account is not None:
            os.chown(pwfile, self._account.pw_uid, self._account.pw_gid)
        try:
            # The cluster in a directory of its own: initdb refuses one that holds anything.
            self._run(
                "initdb",
                "-D",
                str(self.data / "cluster"),
                "-U",
                SUPERUSER,
                "--pwfile",
                str(pwfile),
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    @property
    def cluster(self) -> Path:
        return self.data / "cluster"

    def start(self) -> None:
        """Make the cluster (first time only) and start the server; the port is kept across restarts."""
        if self._started:
            return
        self._prepare_root()
        if not (self.cluster / "PG_VERSION").exists():
            self._initdb()
        if not self.port:
            self.port = _free_port(self.host)
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses={self.host} "
            "-c fsync=on -c synchronous_commit=on -c full_page_writes=on -c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.cluster), "-l", str(self.log_file), "-w", "-t", str(_START_TIMEOUT),
            "-o", options, "start",
        )  # fmt: skip
        self._started = True
        atexit.register(self.stop)

    def stop(self) -> None:
        """Stop the server (``fast``: open sessions are ended, committed work is on disk)."""
        if not self._started:
            return
        self._started = False
        atexit.unregister(self.stop)
        self._run("pg_ctl", "-D", str(self.cluster), "-m", "fast", "-w", "-t", str(_START_TIMEOUT), "stop")

    def crash(self) -> None:
        """Stop the server the way a power cut would (``immediate``: no shutdown checkpoint);
        ``start`` then recovers from the write-ahead log."""
        if not self._started:
            return
        self._started = False
        atexit.unregister(self.stop)
        self._run("pg_ctl", "-D", str(self.cluster), "-m", "immediate", "-w", "-t", str(_START_TIMEOUT), "stop")

    # -- clients -----------------------------------------------------------------------------------
    def dsn(self, dbname: str = "postgres") -> str:
        """A DSN with the superuser's password, over TCP (as a gateway node reaches its database)."""
        return f"postgresql://{SUPERUSER}:{quote(self.password, safe='')}@{self.host}:{self.port}/{quote(dbname)}"

    def socket_dsn(self, dbname: str = "postgres") -> str:
        """The same over the unix socket in ``socket_dir``."""
        return f"host={self.socket_dir} port={self.port} user={SUPERUSER} password={self.password} dbname={dbname}"

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """A new database (a copy of ``template`` when given); returns its DSN."""
        from gateway.records.postgres.connect import create_database

        create_database(self.dsn(), name, template=template)
        return self.dsn(name)
