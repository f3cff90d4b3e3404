"""The throwaway Dovecot and the fault proxy do what the demo, tests and benchmarks rely on."""

from __future__ import annotations

import contextlib
import imaplib
import os
import shutil
import smtplib
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import imapclient
import pytest
from support.tcpproxy import TcpProxy

from gateway.demo.dovecot import Dovecot, DovecotError, dovecot_available

pytestmark = pytest.mark.skipif(not dovecot_available(), reason="dovecot not installed")

USERS = {"alice": "alice-pw", "bob": "bob-pw"}
# What a dropped IMAP connection looks like to imaplib/imapclient.
DROPPED = (imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError)


def message(subject: str, body: bytes = b"hello\r\n") -> bytes:
    return f"From: a@example.test\r\nSubject: {subject}\r\n\r\n".encode() + body


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    root = Path(tempfile.mkdtemp(prefix="dovecot-"))
    root.chmod(0o755)  # mail processes run as nobody when we are root
    try:
        with Dovecot(root, USERS) as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def proxy(dovecot: Dovecot) -> Iterator[TcpProxy]:
    with TcpProxy(dovecot.host, dovecot.imap_port) as p:
        yield p


def plain_client(host: str, port: int, user: str = "alice") -> imapclient.IMAPClient:
    conn = imapclient.IMAPClient(host, port=port, ssl=False, timeout=5)
    conn.login(user, USERS[user])
    return conn


# ---------------------------------------------------------------- Dovecot


def test_imaps_login_verifies_server_against_ca_file(dovecot: Dovecot) -> None:
    conn = dovecot.client("alice")
    try:
        assert isinstance(conn.socket(), ssl.SSLSocket)
        caps = set(conn.capabilities())
        assert {b"MOVE", b"UIDPLUS", b"IDLE"} <= caps
    finally:
        conn.logout()


def test_imaps_rejects_clients_that_do_not_trust_the_test_ca(dovecot: Dovecot) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        imapclient.IMAPClient(dovecot.host, port=dovecot.imaps_port, ssl_context=ssl.create_default_context())


def test_starttls_upgrades_the_plain_port(dovecot: Dovecot) -> None:
    conn = imapclient.IMAPClient(dovecot.host, port=dovecot.imap_port, ssl=False, timeout=5)
    assert b"STARTTLS" in conn.capabilities()
    conn.starttls(dovecot.ssl_context())
    conn.login("alice", USERS["alice"])
    try:
        assert isinstance(conn.socket(), ssl.SSLSocket)
    finally:
        conn.logout()


def test_append_creates_folder_and_folder_uids_lists_the_messages(dovecot: Dovecot) -> None:
    dovecot.append("alice", "Cases/C3", [message("one"), message("two")])
    assert dovecot.folder_uids("alice", "Cases/C3") == [1, 2]
    dovecot.append("alice", "Cases/C3", [message("three")])
    assert dovecot.folder_uids("alice", "Cases/C3") == [1, 2, 3]


def test_seeded_maildir_messages_are_visible_at_next_select(dovecot: Dovecot) -> None:
    conn = dovecot.client("bob")
    try:
        conn.select_folder("INBOX")
        dovecot.seed_maildir("bob", [message(f"s{i}") for i in range(50)])
        conn.noop()  # a live session sees them too
        assert len(conn.search("ALL")) == 50
    finally:
        conn.logout()
    dovecot.seed_maildir("bob", [message("archived")], folder="Archiv/2024")
    assert dovecot.folder_uids("bob", "Archiv/2024") == [1]
    assert len(dovecot.folder_uids("bob", "INBOX")) == 50


def test_reset_uidvalidity_changes_it_and_keeps_the_messages(dovecot: Dovecot) -> None:
    dovecot.append("alice", "Reset", [message("r1"), message("r2")])

    def bodies() -> tuple[int, list[bytes]]:
        with dovecot.client("alice", tls=False) as conn:
            info = conn.select_folder("Reset", readonly=True)
            fetched = conn.fetch(conn.search("ALL"), ["BODY.PEEK[]"])
            return int(info[b"UIDVALIDITY"]), sorted(d[b"BODY[]"] for d in fetched.values())

    before, kept = bodies()
    dovecot.reset_uidvalidity("alice", "Reset")
    after, now = bodies()
    assert after != before
    assert now == kept
    dovecot.reset_uidvalidity("alice", "Reset")  # again within the same second
    assert dovecot.uidvalidity("alice", "Reset") not in (before, after)


def test_kick_drops_that_users_live_connection_only(dovecot: Dovecot) -> None:
    alice, bob = dovecot.client("alice"), dovecot.client("bob")
    try:
        alice.select_folder("INBOX")
        dovecot.kick("alice")
        with pytest.raises(DROPPED):
            alice.noop()
        bob.noop()
    finally:
        bob.logout()
        alice.shutdown()


def test_lmtp_delivers_to_the_local_part_of_the_address(dovecot: Dovecot) -> None:
    with smtplib.LMTP(dovecot.host, dovecot.lmtp_port) as lmtp:
        refused = lmtp.sendmail("a@example.test", ["alice@example.test"], message("lmtp"))
    assert refused == {}
    with dovecot.client("alice", tls=False) as conn:
        conn.select_folder("INBOX", readonly=True)
        assert conn.search(["SUBJECT", "lmtp"])


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs mail as another uid")
def test_start_names_a_root_that_nobody_cannot_traverse() -> None:
    hidden = Path(tempfile.mkdtemp())  # 0700
    try:
        with pytest.raises(DovecotError, match="not searchable"):
            Dovecot(hidden / "dovecot", USERS).start()
    finally:
        shutil.rmtree(hidden, ignore_errors=True)


# ---------------------------------------------------------------- proxy


def test_proxy_passes_imaps_traffic(dovecot: Dovecot) -> None:
    with TcpProxy(dovecot.host, dovecot.imaps_port) as p:
        conn = imapclient.IMAPClient(p.host, port=p.port, ssl=True, ssl_context=dovecot.ssl_context(), timeout=5)
        conn.login("alice", USERS["alice"])
        conn.select_folder("INBOX")
        conn.logout()
        assert p.accepted == 1


def test_proxy_drop_all_cuts_live_connections(proxy: TcpProxy) -> None:
    conn = plain_client(proxy.host, proxy.port)
    conn.select_folder("INBOX")
    proxy.drop_all()
    assert proxy.active == 0
    with pytest.raises(DROPPED):
        conn.noop()
    plain_client(proxy.host, proxy.port).logout()  # new connections still pass


def test_proxy_drop_after_delivers_exactly_the_budget(proxy: TcpProxy) -> None:
    proxy.drop_after(10)
    with socket.create_connection((proxy.host, proxy.port), timeout=5) as raw:
        received = b""
        while True:
            try:
                chunk = raw.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    assert received == b"* OK [CAPA"


def test_proxy_drop_after_cuts_mid_fetch_of_a_large_message(dovecot: Dovecot, proxy: TcpProxy) -> None:
    big = message("big", (b"y" * 998 + b"\r\n") * 1000)  # ~1 MB
    dovecot.append("alice", "Big", [big])
    conn = plain_client(proxy.host, proxy.port)
    conn.select_folder("Big", readonly=True)
    proxy.drop_after(200_000, live=True)
    with pytest.raises(DROPPED):
        conn.fetch([1], ["BODY.PEEK[]"])
    proxy.reset()
    conn = plain_client(proxy.host, proxy.port)
    conn.select_folder("Big", readonly=True)
    assert conn.fetch([1], ["BODY.PEEK[]"])[1][b"BODY[]"] == big
    conn.logout()


def test_proxy_refuse_turns_new_connections_away(proxy: TcpProxy) -> None:
    proxy.refuse(True)
    with pytest.raises(DROPPED):
        plain_client(proxy.host, proxy.port)
    assert proxy.refused == 1
    proxy.refuse(False)
    plain_client(proxy.host, proxy.port).logout()


def test_proxy_only_targets_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        TcpProxy("192.0.2.1", 143)


def test_proxy_stop_closes_its_port(dovecot: Dovecot) -> None:
    p = TcpProxy(dovecot.host, dovecot.imap_port)
    p.start()
    conn = plain_client(p.host, p.port)
    p.stop()
    with pytest.raises(DROPPED):
        conn.noop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((p.host, p.port), timeout=2).close()


def test_seeded_maildir_files_report_their_exact_sizes(dovecot: Dovecot) -> None:
    """Seeded files carry ,S= and ,W= like Dovecot's own deliveries; the sizes must be right."""
    crlf = b"Subject: crlf\r\n\r\nline\r\n"
    lf = b"Subject: lf\n\nline one\nline two\n"
    dovecot.seed_maildir("alice", [crlf, lf], folder="Sizes")
    with dovecot.client("alice", tls=False) as conn:
        conn.select_folder("Sizes", readonly=True)
        fetched = conn.fetch(conn.search("ALL"), ["RFC822.SIZE", "BODY.PEEK[]"])
    as_crlf = [m.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") for m in (crlf, lf)]
    assert sorted((d[b"RFC822.SIZE"], d[b"BODY[]"]) for d in fetched.values()) == sorted((len(m), m) for m in as_crlf)


# ---------------------------------------------------------------- proxy triggers


class _Recorder:
    """A loopback server that records what it receives and echoes it back, one connection at a time."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            got = b""
            with conn:
                while True:
                    try:
                        chunk = conn.recv(4096)
                    except OSError:
                        break
                    if not chunk:
                        break
                    got += chunk
                    with contextlib.suppress(OSError):
                        conn.sendall(chunk)
            self.received.append(got)

    def wait_for(self, n: int) -> list[bytes]:
        """Until ``n`` connections have ended (each ends when the proxy closes it)."""
        while len(self.received) < n:
            self._thread.join(0.05)
        return self.received

    def close(self) -> None:
        self.sock.close()


def _read_all(sock: socket.socket) -> bytes:
    got = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            return got
        if not chunk:
            return got
        got += chunk


def test_proxy_cut_on_a_server_pattern_delivers_exactly_what_came_before_it(proxy: TcpProxy) -> None:
    trigger = proxy.cut_on(b"CAPABILITY IMAP4rev1", at="before")
    with socket.create_connection((proxy.host, proxy.port), timeout=5) as raw:
        assert _read_all(raw) == b"* OK ["
    assert trigger.fired == 1
    plain_client(proxy.host, proxy.port).logout()  # fired once, then disarmed: the next one passes


def test_proxy_finds_a_client_pattern_split_across_writes_and_cuts_before_it() -> None:
    server = _Recorder()
    try:
        with TcpProxy("127.0.0.1", server.port) as proxy:
            trigger = proxy.cut_on(b"UID MOVE", direction="c2s", at="before")
            with socket.create_connection((proxy.host, proxy.port), timeout=5) as raw:
                raw.sendall(b"a1 NOOP\r\n")
                assert raw.recv(100) == b"a1 NOOP\r\n"  # echoed: the first write went through whole
                raw.sendall(b"a2 UID MO")
                raw.sendall(b"VE 1 Processed\r\n")
                _read_all(raw)
            (got,) = server.wait_for(1)
        assert trigger.fired == 1
        # The command never reached the server whole; what arrived in an earlier read ("UID MO")
        # may have been forwarded before the rest showed it was the pattern.
        assert got.startswith(b"a1 NOOP\r\na2 ") and b"UID MOVE" not in got
    finally:
        server.close()


def test_proxy_cut_after_a_pattern_forwards_the_extra_bytes_then_resets(proxy: TcpProxy) -> None:
    proxy.cut_on(b"[CAPABILITY", extra=7)
    with socket.create_connection((proxy.host, proxy.port), timeout=5) as raw:
        assert _read_all(raw) == b"* OK [CAPABILITY IMAP4r"


def test_proxy_stall_forwards_nothing_more_and_leaves_the_client_to_its_timeout(proxy: TcpProxy) -> None:
    trigger = proxy.cut_on(b"Dovecot", at="before", action="stall")
    with socket.create_connection((proxy.host, proxy.port), timeout=1) as raw:
        got = b""
        with pytest.raises(TimeoutError):
            while True:
                got += raw.recv(4096)
        assert got.startswith(b"* OK [CAPABILITY") and b"Dovecot" not in got
    assert trigger.fired == 1
