"""A throwaway Postfix relay for the demo, the tests and the benchmarks (root only).

It plays the authority's mail server: accepts on 127.0.0.1, advertises DSN, delivers the
``mailbox_domain`` (one domain, or several separated by spaces) by LMTP into a (throwaway)
Dovecot, routes ``remote_routes`` domains to scripted SMTP peers by a transport map, and
refuses chosen recipients at RCPT time from an access map (a real 5xx from a real Postfix).
Own config, queue and data directories under ``root``; nothing of the system's Postfix is
used or started.

Start-up avoids Postfix's two slow paths: a ``main.cf`` written "just now" stalls every
postfix command for a while (its mtime is set into the past), and ``postfix check`` is
replaced by creating the queue directories here.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

_START_TIMEOUT = 15.0
_STOP_TIMEOUT = 10.0
#: Queue directories and their owner and mode (Postfix's postfix-files, for what we use).
_QUEUE_DIRS = {
    "active": ("postfix", 0o700),
    "bounce": ("postfix", 0o700),
    "corrupt": ("postfix", 0o700),
    "defer": ("postfix", 0o700),
    "deferred": ("postfix", 0o700),
    "flush": ("postfix", 0o700),
    "hold": ("postfix", 0o700),
    "incoming": ("postfix", 0o700),
    "private": ("postfix", 0o700),
    "saved": ("postfix", 0o700),
    "trace": ("postfix", 0o700),
    "maildrop": ("postfix:postdrop", 0o730),
    "public": ("postfix:postdrop", 0o710),
    "pid": ("root", 0o755),
}
_MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixError(RuntimeError):
    """The throwaway relay could not be set up or started; carries its log tail."""


def postfix_binary() -> str | None:
    found = shutil.which("postfix")
    if found:
        return found
    return "/usr/sbin/postfix" if os.access("/usr/sbin/postfix", os.X_OK) else None


def postfix_unavailable() -> str | None:
    """Why no throwaway Postfix can run here (a reason to skip), or None."""
    if postfix_binary() is None:
        return "postfix is not installed (scripts/setup installs it)"
    if os.geteuid() != 0:
        return "Postfix's master must start as root; run the Postfix tests as root (CI does)"
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError:
        return "the postfix user or postdrop group is missing (reinstall the postfix package)"
    return None


def _alive(pid: int | None) -> bool:
    """Whether ``pid`` runs and is not a zombie (Linux /proc)."""
    if pid is None:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class Postfix:
    """A throwaway relay: ``root`` holds its config, queue, data and log (kept after stop).

    Every directory above ``root`` must be searchable by the ``postfix`` user (a
    ``tempfile.mkdtemp()`` in /tmp is; pytest's 0700 ``tmp_path`` is not).
    """

    host = "127.0.0.1"

    def __init__(
        self,
        root: Path,
        *,
        lmtp_port: int,
        mailbox_domain: str = "mailbox.test",
        remote_routes: Mapping[str, int] | None = None,
        refuse: Mapping[str, str] | None = None,
        hostname: str = "relay.test",
    ) -> None:
        self.root = Path(root).resolve()
        self.lmtp_port = lmtp_port
        self.mailbox_domain = mailbox_domain
        self.remote_routes = dict(remote_routes or {})
        self.refuse = dict(refuse or {})  # recipient -> "550 5.1.1 …" answered at RCPT
        self.hostname = hostname
        self.port = 0
        self.conf_dir = self.root / "conf"
        self.queue_dir = self.root / "queue"
        self.data_dir = self.root / "data"
        self.log_file = self.root / "postfix.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Postfix:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- set-up -----------------------------------------------------------------------------------
    def _write_config(self) -> None:
        for d in (self.conf_dir, self.queue_dir, self.data_dir):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)  # noqa: S103 - the postfix user must reach its queue
        postfix = pwd.getpwnam("postfix")
        postdrop = grp.getgrnam("postdrop")
        os.chown(self.data_dir, postfix.pw_uid, postfix.pw_gid)
        os.chmod(self.data_dir, 0o700)
        os.chmod(self.queue_dir, 0o755)  # noqa: S103 - read by the postfix user
        for name, (owner, mode) in _QUEUE_DIRS.items():
            d = self.queue_dir / name
            d.mkdir(exist_ok=True)
            uid = 0 if owner == "root" else postfix.pw_uid
            gid = postdrop.gr_gid if owner.endswith(":postdrop") else (0 if owner == "root" else postfix.pw_gid)
            os.chown(d, uid, gid)
            os.chmod(d, mode)
        (self.queue_dir / "quick-start").touch()
        transport = "".join(f"{dom} smtp:[127.0.0.1]:{port}\n" for dom, port in self.remote_routes.items())
        (self.conf_dir / "transport").write_text(transport)
        access = "".join(f"{rcpt} {answer}\n" for rcpt, answer in self.refuse.items())
        (self.conf_dir / "recipient_access").write_text(access)
        remote = " ".join(self.remote_routes) or "remote.invalid"
        main = f"""\
compatibility_level = 3.6
config_directory = {self.conf_dir}
queue_directory = {self.queue_dir}
data_directory = {self.data_dir}
meta_directory = /etc/postfix
daemon_directory = /usr/lib/postfix/sbin
command_directory = /usr/sbin
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = {self.hostname}
mydomain = {self.hostname}
myorigin = {self.hostname}
mydestination =
inet_interfaces = {self.host}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access texthash:{self.conf_dir}/recipient_access
virtual_mailbox_domains = {self.mailbox_domain}
virtual_transport = lmtp:inet:127.0.0.1:{self.lmtp_port}
relay_domains = {remote}
transport_maps = texthash:{self.conf_dir}/transport
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtputf8_enable = no
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
smtp_connect_timeout = 5s
maillog_file = {self.log_file}
maillog_file_prefixes = {self.root}
"""
        (self.conf_dir / "main.cf").write_text(main)
        (self.conf_dir / "master.cf").write_text(_MASTER_CF.format(listen=f"{self.host}:{self.port}"))
        past = time.time() - 10  # a main.cf newer than "now - a few seconds" stalls every command
        for name in ("main.cf", "master.cf"):
            os.utime(self.conf_dir / name, (past, past))

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Write the config (ports kept across restarts) and wait for the SMTP greeting."""
        if self.running:
            return
        reason = postfix_unavailable()
        if reason is not None:
            raise PostfixError(reason)
        if not self.port:
            self.port = free_port(self.host)
        self._write_config()
        binary = postfix_binary()
        assert binary is not None
        with (self.root / "postfix.stderr").open("ab") as err:
            self._proc = subprocess.Popen(
                [binary, "-c", str(self.conf_dir), "start-fg"],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        last: Exception | None = None
        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise PostfixError(f"postfix exited during start-up\n{self.diagnostics()}")
            if time.monotonic() > deadline:
                raise PostfixError(f"no SMTP greeting on port {self.port}: {last!r}\n{self.diagnostics()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=2.0) as sock:
                    greeting = sock.recv(512)
                if greeting.startswith(b"220"):
                    return
                last = PostfixError(f"greeting {greeting!r}")
            except OSError as exc:
                last = exc
            time.sleep(0.02)

    def _master_pid(self) -> int | None:
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """SIGTERM to the master (it ends its children), then wait until the port is closed.

        The master makes a session of its own, so the launcher's process group does not
        reach it: its pid file does.
        """
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        pid = self._master_pid()
        for target in (pid, proc.pid):
            if target is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(target, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_TIMEOUT
        while time.monotonic() < deadline and (_alive(pid) or self._listening()):
            time.sleep(0.01)
        if _alive(pid):
            assert pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(pid), signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=_STOP_TIMEOUT)

    def _listening(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def diagnostics(self) -> str:
        parts = []
        for path in (self.root / "postfix.stderr", self.log_file):
            if path.exists():
                parts.append(f"--- {path}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-30:]))
        return "\n".join(parts)

    def queue_is_empty(self) -> bool:
        """Nothing waiting in Postfix's queues (the delivery attempts are over)."""
        return not any(
            p.is_file() for d in ("incoming", "active", "deferred", "maildrop") for p in (self.queue_dir / d).rglob("*")
        )
