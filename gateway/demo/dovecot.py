"""A throwaway Dovecot IMAP server in a temp dir, for the demo, the tests and the benchmarks.

Why one module over 500 lines: almost all of it is the ``Dovecot`` class, one server's
lifecycle (config, TLS, users, start/stop, mailbox fixtures) whose methods share its private
directories and process group; splitting it would only scatter that state.

Why a real Dovecot and not a fake: the gateway's correctness hangs on server behaviour that
fakes get wrong (UIDVALIDITY, MOVE/UIDPLUS answers, IDLE timing, TLS). Dovecot starts from a
private config in a fraction of a second, so every test run can afford its own.

Facts this module relies on (Dovecot 2.3.19, Debian 12):

- ``dovecot -F -c CONF`` runs in the foreground as our child; SIGTERM makes it wind down for
  about a second, SIGKILL is immediate. We start it in its own process group and SIGKILL the
  whole group, so login and imap children (which inherit the listening sockets) die with it
  and a restart can rebind the ports.
- A unique ``instance_name`` plus private ``base_dir``/``state_dir`` lets instances run side by
  side and beside a system Dovecot.
- As root, mail processes run as ``nobody:nogroup`` (the static userdb), so every directory
  from ``/`` down to ``root`` must be traversable by others (``mkdtemp`` gives 0700; pytest's
  ``tmp_path`` too). ``start`` checks this and says so instead of failing inside Dovecot.
- UIDVALIDITY lives only in ``dovecot-uidlist`` and the index files; deleting them while
  Dovecot is down makes it assign a new, strictly larger UIDVALIDITY (it keeps a counter in
  ``dovecot-uidvalidity*`` in the Maildir root) and renumber the kept messages from UID 1.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import grp
import ipaddress
import itertools
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import imapclient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.demo.certs import ca_certificate

__all__ = ["Dovecot", "DovecotError", "dovecot_available"]

_USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0


class DovecotError(RuntimeError):
    """The throwaway server could not be set up, started or driven; carries its log tail."""


def dovecot_available() -> bool:
    """Whether the ``dovecot`` and ``doveadm`` binaries exist, so callers can skip cleanly."""
    return _binary("dovecot") is not None and _binary("doveadm") is not None


def _binary(name: str) -> str | None:
    """Find a Dovecot binary also when /usr/sbin is not on PATH (common for non-root shells)."""
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/local/sbin", "/usr/bin"):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _free_port(host: str) -> int:
    """Ask the kernel for a free port; tiny race until Dovecot binds it, acceptable in tests."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class Dovecot:
    """A throwaway Dovecot IMAP server in a temp dir, for demo, tests and benchmarks.

    ``root`` is a directory this object may fill (config, certs, logs, mail homes); it is not
    deleted on stop so a failing test leaves the log behind. ``users`` maps login names to
    passwords; ``extra_config`` is appended to the generated configuration (a benchmark raising
    process limits). Use as a context manager or call ``start``/``stop``.
    """

    host: str = "127.0.0.1"

    def __init__(self, root: Path, users: dict[str, str], *, extra_config: str = "") -> None:
        for name, password in users.items():
            if not _USER_RE.match(name):
                raise ValueError(f"user name {name!r} must match {_USER_RE.pattern}")
            if any(ch in password for ch in ":\r\n\0"):
                raise ValueError(f"password of {name!r} must not contain ':' or line breaks")
        self.root = Path(root).resolve()
        self._users = dict(users)
        self._extra_config = extra_config  # appended to dovecot.conf (benchmarks raise limits)
        self._instance = f"poststelle-test-{secrets.token_hex(4)}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._seq = itertools.count()
        self.imap_port = 0  # plain IMAP, STARTTLS offered
        self.imaps_port = 0  # implicit TLS
        self.lmtp_port = 0  # LMTP delivery (``bob@any.domain`` reaches user ``bob``)
        self.conf_file = self.root / "dovecot.conf"
        self.log_file = self.root / "dovecot.log"
        self.ca_file = self.root / "tls" / "ca.pem"
        self._stderr_file = self.root / "dovecot.stderr"
        self._as_root = os.geteuid() == 0
        if self._as_root:
            # A static userdb needs a real uid; nobody/nogroup is what measured.md tested and
            # keeps mail files away from both root and the dovecot service user.
            self._mail_uid = pwd.getpwnam("nobody").pw_uid
            self._mail_gid = grp.getgrnam("nogroup").gr_gid
            self._service_user = "dovecot"
        else:
            # Unprivileged Dovecot cannot switch users: everything runs as ourselves.
            self._mail_uid = os.getuid()
            self._mail_gid = os.getgid()
            self._service_user = pwd.getpwuid(os.getuid()).pw_name

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the master process is alive (it may still be starting)."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Write config and TLS material (first time only), start Dovecot, wait for greetings.

        Ports are chosen on the first start and kept, so a restart (``reset_uidvalidity``)
        leaves clients' addresses valid.
        """
        if self.running:
            return
        binary = _binary("dovecot")
        if binary is None:
            raise DovecotError("dovecot binary not found (apt-get install dovecot-imapd)")
        self._prepare_root()
        if not self.imap_port:
            self.imap_port = _free_port(self.host)
            self.imaps_port = _free_port(self.host)
            self.lmtp_port = _free_port(self.host)
        self._write_tls()
        self._write_passwd()
        self._write_config()
        with self._stderr_file.open("ab") as err:
            # Own process group: stop() kills master and children in one signal.
            self._proc = subprocess.Popen(
                [binary, "-F", "-c", str(self.conf_file)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,
            )
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Kill Dovecot fast (SIGKILL to its process group) and wait until all of it is gone.

        Waiting for the children matters: login processes hold the listening sockets, and a
        restart on the same ports would fail while one lingers.
        """
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        atexit.unregister(self.stop)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=_STOP_TIMEOUT)
        deadline = time.monotonic() + _STOP_TIMEOUT
        while _live_group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.005)

    def restart(self) -> None:
        """Stop and start on the same ports; every client connection is dropped."""
        self.stop()
        self.start()

    # ----------------------------------------------------------------- clients

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts only this server's test CA (hostname checked)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def client(
        self, user: str, *, tls: bool = True, starttls: bool = False, timeout: float = 10.0
    ) -> imapclient.IMAPClient:
        """A logged-in IMAPClient for ``user``.

        ``tls=True`` (default) uses implicit TLS on ``imaps_port``; ``starttls=True`` uses
        ``imap_port`` and upgrades with STARTTLS; ``tls=False`` logs in in plain text on
        ``imap_port`` (loopback only; the helpers below use it because it is cheapest).
        TLS is always verified against ``ca_file``.
        """
        if starttls and not tls:
            raise ValueError("starttls=True needs tls=True")
        password = self._password(user)
        conn: Any
        if tls and not starttls:
            conn = imapclient.IMAPClient(
                self.host,
                port=self.imaps_port,
                ssl=True,
                ssl_context=self.ssl_context(),
                timeout=timeout,
            )
        else:
            conn = imapclient.IMAPClient(self.host, port=self.imap_port, ssl=False, timeout=timeout)
            if starttls:
                conn.starttls(self.ssl_context())
        try:
            conn.login(user, password)
        except BaseException:
            with contextlib.suppress(Exception):
                conn.shutdown()
            raise
        return conn

    @contextlib.contextmanager
    def _session(self, user: str) -> Iterator[Any]:
        """A short plain-text session for the helpers; logs out even when the body fails."""
        conn = self.client(user, tls=False)
        try:
            yield conn
        finally:
            try:
                conn.logout()
            except Exception:  # noqa: BLE001 - the server may have dropped us (kick, restart)
                with contextlib.suppress(Exception):
                    conn.shutdown()

    # ----------------------------------------------------------------- mailbox helpers

    def append(self, user: str, folder: str, messages: Iterable[bytes], *, msg_time: dt.datetime | None = None) -> None:
        """APPEND each message to ``folder`` (created if missing), like a real sender would.

        ``msg_time`` (aware) becomes the messages' INTERNALDATE, as if they had been
        delivered then; by default the server takes the moment of the APPEND.
        """
        with self._session(user) as conn:
            if not conn.folder_exists(folder):
                conn.create_folder(folder)
            for message in messages:
                conn.append(folder, message, msg_time=msg_time)

    def create_folder(self, user: str, folder: str) -> None:
        """Create ``folder`` over IMAP unless it exists."""
        with self._session(user) as conn:
            if not conn.folder_exists(folder):
                conn.create_folder(folder)

    def folder_uids(self, user: str, folder: str) -> list[int]:
        """UIDs currently in ``folder``, ascending (read-only SELECT: flags stay untouched)."""
        with self._session(user) as conn:
            conn.select_folder(folder, readonly=True)
            return sorted(int(uid) for uid in conn.search("ALL"))

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        """The folder's current UIDVALIDITY (STATUS, no SELECT)."""
        with self._session(user) as conn:
            status = conn.folder_status(folder, ["UIDVALIDITY"])
            return int(status[b"UIDVALIDITY"])

    def seed_maildir(self, user: str, messages: Iterable[bytes], folder: str = "INBOX") -> None:
        """Drop messages straight into the folder's Maildir ``new/`` (for big fixtures).

        ~10x faster than APPEND. Follows the Maildir protocol (write in ``tmp/``, rename into
        ``new/``), so a running Dovecot picks the files up at the next SELECT/NOOP.
        """
        if folder.upper() == "INBOX":
            maildir = self._home(user) / "Maildir"
            self._make_maildir(user, maildir)
        else:
            self.create_folder(user, folder)
            maildir = self.mailbox_path(user, folder)
        tmp_dir, new_dir = maildir / "tmp", maildir / "new"
        pid = os.getpid()
        for message in messages:
            now = time.time()
            # ,S= and ,W= (size, and size with CRLF line ends) as Dovecot's own deliveries
            # name their files: without them every RFC822.SIZE reads the whole file.
            vsize = len(message) + message.count(b"\n") - message.count(b"\r\n")
            name = f"{int(now)}.M{int(now % 1 * 1e6)}P{pid}Q{next(self._seq)}.poststelle,S={len(message)},W={vsize}"
            tmp_path = tmp_dir / name
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(message)
                while view:
                    view = view[os.write(fd, view) :]
                if self._as_root:
                    os.fchown(fd, self._mail_uid, self._mail_gid)
            finally:
                os.close(fd)
            tmp_path.rename(new_dir / name)

    def mailbox_path(self, user: str, folder: str) -> Path:
        """The on-disk Maildir of ``folder``, as Dovecot computes it (names get mUTF-7 etc.)."""
        out = self._doveadm("mailbox", "path", "-u", user, folder)
        return Path(out.strip())

    def reset_uidvalidity(self, user: str, folder: str = "INBOX") -> None:
        """Make Dovecot give ``folder`` a new, larger UIDVALIDITY; its messages stay.

        Works by stopping Dovecot, deleting the folder's ``dovecot-uidlist`` and index files
        and the mailbox-list index (which caches STATUS values), then starting again. Every
        live connection of every user is dropped, as after a real server-side rebuild.
        """
        if folder.upper() == "INBOX":
            maildir = self._home(user) / "Maildir"
            self._make_maildir(user, maildir)
        else:
            maildir = self.mailbox_path(user, folder)
            if not maildir.is_dir():
                raise DovecotError(f"folder {folder!r} of {user!r} does not exist")
        root_maildir = self._home(user) / "Maildir"
        self.stop()
        doomed = [maildir / "dovecot-uidlist"]
        doomed += maildir.glob("dovecot.index*")
        doomed += root_maildir.glob("dovecot.list.index*")
        for path in doomed:
            path.unlink(missing_ok=True)
        self.start()

    def kick(self, user: str) -> None:
        """Drop all of ``user``'s IMAP connections now (``doveadm kick``), as a server would.

        Returns once the user's processes are gone, so a client's next command fails
        deterministically instead of racing the kill.
        """
        self._doveadm("kick", user)
        deadline = time.monotonic() + _STOP_TIMEOUT
        while self._user_processes(user) and time.monotonic() < deadline:
            time.sleep(0.005)

    # ----------------------------------------------------------------- internals

    def _password(self, user: str) -> str:
        try:
            return self._users[user]
        except KeyError:
            raise KeyError(f"unknown test user {user!r}") from None

    def _home(self, user: str) -> Path:
        self._password(user)
        return self.root / "home" / user

    def _chown(self, path: Path) -> None:
        if self._as_root:
            os.chown(path, self._mail_uid, self._mail_gid)

    def _make_maildir(self, user: str, maildir: Path) -> None:
        """Create a Maildir owned by the mail uid, so Dovecot (not root) can write in it."""
        home = self._home(user)
        for path in (home, maildir, maildir / "cur", maildir / "new", maildir / "tmp"):
            if not path.is_dir():
                path.mkdir(mode=0o700)
                self._chown(path)

    def _prepare_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for sub in ("home", "state", "tls"):
            (self.root / sub).mkdir(exist_ok=True)
        # Mail processes run as another uid and must traverse these (no secrets in them).
        self.root.chmod(0o755)
        (self.root / "home").chmod(0o755)
        if self._as_root:
            # nobody must reach root/home/<user>; name the directory that blocks it.
            for parent in [self.root, *self.root.parents]:
                if not parent.stat().st_mode & 0o001:
                    raise DovecotError(
                        f"{parent} is not searchable by others (mode "
                        f"{parent.stat().st_mode & 0o777:o}); Dovecot's mail processes run as "
                        "nobody and need o+x on every directory above the mail homes. Use "
                        "tempfile.mkdtemp() + chmod 0755 rather than pytest's tmp_path."
                    )
        for user in self._users:
            self._make_maildir(user, self._home(user) / "Maildir")

    def _write_tls(self) -> None:
        """A fresh CA and server cert (P-256, SAN 127.0.0.1 + localhost), once per root."""
        tls = self.root / "tls"
        cert_file, key_file = tls / "server.pem", tls / "server.key"
        if self.ca_file.exists() and cert_file.exists() and key_file.exists():
            return
        now = dt.datetime.now(dt.UTC)
        not_before, not_after = now - dt.timedelta(hours=1), now + dt.timedelta(days=30)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Poststelle test CA")])
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
        ca_cert = ca_certificate(ca_key, ca_name, not_before, not_after)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(key_file, key_pem)
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    def _write_passwd(self) -> None:
        """passwd-file with {PLAIN} passwords; readable by the auth process, nobody else."""
        lines = "".join(f"{name}:{{PLAIN}}{pw}::::::\n" for name, pw in self._users.items())
        path = self.root / "passwd"
        _write_private(path, lines.encode())
        if self._as_root:
            # Dovecot's auth process runs as the internal user (dovecot), not root.
            os.chown(path, 0, grp.getgrnam(self._service_group()).gr_gid)
            path.chmod(0o640)

    def _service_group(self) -> str:
        return grp.getgrgid(pwd.getpwnam(self._service_user).pw_gid).gr_name

    def _write_config(self) -> None:
        r = self.root
        conf = f"""\
# Generated by gateway.demo.dovecot for a throwaway test instance.
instance_name = {self._instance}
base_dir = {r}/run
state_dir = {r}/state
log_path = {self.log_file}
info_log_path = {self.log_file}
protocols = imap lmtp
listen = {self.host}
default_internal_user = {self._service_user}
default_internal_group = {self._service_group()}
default_login_user = {self._service_user}
first_valid_uid = 1
first_valid_gid = 1

ssl = yes
ssl_cert = <{r}/tls/server.pem
ssl_key = <{r}/tls/server.key
ssl_min_protocol = TLSv1.2

disable_plaintext_auth = no
auth_mechanisms = plain login
# Failed-login tests should not wait Dovecot's default 2 s.
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {r}/passwd
}}
userdb {{
  driver = static
  args = uid={self._mail_uid} gid={self._mail_gid} home={r}/home/%n
}}

mail_location = maildir:~/Maildir
# Throwaway data: durability is not what benchmarks measure here.
mail_fsync = never
# Benchmarks open many connections from one user and IP (default limit 10).
mail_max_userip_connections = 1000
verbose_proctitle = yes

namespace inbox {{
  inbox = yes
  separator = /
}}

service imap-login {{
  chroot =
  inet_listener imap {{
    address = {self.host}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {self.host}
    port = {self.lmtp_port}
  }}
}}
service anvil {{
  chroot =
}}
{self._extra_config}
"""
        self.conf_file.write_text(conf)

    def _wait_ready(self) -> None:
        """Block until both IMAP ports greet (the imaps one over verified TLS)."""
        deadline = time.monotonic() + _START_TIMEOUT
        ctx = self.ssl_context()
        pending = [(self.imap_port, False), (self.imaps_port, True)]
        last_error: Exception | None = None
        while pending:
            if self._proc is None or self._proc.poll() is not None:
                raise DovecotError(f"dovecot exited during start-up\n{self._diagnostics()}")
            if time.monotonic() > deadline:
                raise DovecotError(f"no greeting: {last_error!r}\n{self._diagnostics()}")
            port, use_tls = pending[0]
            try:
                greeting = _read_greeting(self.host, port, ctx if use_tls else None)
            except (OSError, ssl.SSLError) as exc:
                last_error = exc
                time.sleep(0.01)
                continue
            if not greeting.startswith(b"* OK"):
                raise DovecotError(f"unexpected greeting {greeting!r}\n{self._diagnostics()}")
            pending.pop(0)

    def _diagnostics(self) -> str:
        parts = []
        for path in (self._stderr_file, self.log_file):
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-20:]
                parts.append(f"--- {path}\n" + "\n".join(tail))
        return "\n".join(parts)

    def _doveadm(self, *args: str) -> str:
        binary = _binary("doveadm")
        if binary is None:
            raise DovecotError("doveadm binary not found")
        proc = subprocess.run(
            [binary, "-c", str(self.conf_file), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if proc.returncode != 0:
            raise DovecotError(f"doveadm {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by this Dovecot: its processes, alive or reaped.

        Benchmarks take the difference around a run to tell the server's share of the
        machine from the gateway's. A child's time reaches its parent's counters only when
        the parent reaps it, so the live members are added.
        """
        if self._proc is None:
            return 0.0
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in _live_group_members(self._proc.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
            if pid == self._proc.pid:
                total += int(fields[13]) + int(fields[14])  # cutime, cstime: reaped children
        return total / tick

    def _user_processes(self, user: str) -> list[int]:
        """PIDs of this instance's imap processes serving ``user`` (from their proctitle)."""
        if self._proc is None:
            return []
        found = []
        for pid in _live_group_members(self._proc.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            # verbose_proctitle with instance_name: "dovecot-<instance>/imap [alice 127.0.0.1]"
            if b"/imap [" + user.encode() + b" " in cmdline:
                found.append(pid)
        return found


def _read_greeting(host: str, port: int, ctx: ssl.SSLContext | None) -> bytes:
    with socket.create_connection((host, port), timeout=2.0) as raw:
        if ctx is None:
            return raw.recv(1024)
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            return tls.recv(1024)


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret with mode 0600 from the first byte (no window where it is 0644)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    path.chmod(0o600)


def _live_group_members(pgid: int) -> list[int]:
    """PIDs in process group ``pgid`` that are not zombies (Linux /proc; else empty)."""
    members = []
    try:
        entries = [entry.name for entry in Path("/proc").iterdir()]
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # Fields after the ")" that ends comm: state ppid pgrp ...
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) >= 3 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members
