"""Failures that tell the administrator what to do next.

A connection or login that fails names the mailbox, the setting to check and the likely
fix, in the same words in ``status``, ``check`` and ``run --once``, without Python's
internals. A rejected login is permanent: it is not retried every few minutes. ``status``
shows each mailbox's state since when, and a later success clears the error while the
audit trail keeps its history. Every server case runs against the real Dovecot.
"""

from __future__ import annotations

import errno
import imaplib
import json
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import imapclient.exceptions
import pytest
from conftest import POSTSTELLE, REPO, Env, mailbox_entry, write_config

from gateway.config import MailboxConfig, load_config
from gateway.config.model import Secret
from gateway.demo.dovecot import Dovecot
from gateway.demo.samples import letter
from gateway.errors import ConfigError, LoginRejected, TransientError
from gateway.inbound.failures import explain
from gateway.inbound.imap import MailboxSession
from gateway.records.open import open_store
from gateway.records.store import StoreError
from gateway.service.daemon import error_text
from gateway.statedir import ledger_path

INTERNALS = ("b'", 'b"', "_ssl.c", "[Errno", "Error:", "Traceback")


def mailbox(**over: Any) -> MailboxConfig:
    fields: dict[str, Any] = {
        "name": "rathaus",
        "host": "imap.example.org",
        "port": 993,
        "security": "tls",
        "username": "poststelle",
        "password": Secret("s3cret-pw"),
        "timeout": 30.0,
    }
    fields.update(over)
    return MailboxConfig(**fields)


def assert_for_people(text: str, *settings: str, mailbox_name: str = "rathaus") -> None:
    """Names the mailbox and the settings, shows no Python internals and no password."""
    assert f'[[mailbox]] name = "{mailbox_name}"' in text, text
    for setting in settings:
        assert setting in text, (setting, text)
    for internal in INTERNALS:
        assert internal not in text, (internal, text)
    assert "s3cret-pw" not in text


def cert_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(
        1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message} (_ssl.c:1006)"
    )
    exc.verify_code = code
    exc.verify_message = message
    return exc


# -- the translation, one class at a time ------------------------------------------------------------
def test_tls_spoken_to_a_plain_port_points_at_security_and_port() -> None:
    exc = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)")
    failure = explain(exc, mailbox(port=143))
    assert failure.kind == "tls-on-plain-port"
    assert_for_people(failure.text, "security/port", 'security = "starttls"', "993")
    assert "imap.example.org:143" in failure.text


def test_untrusted_certificate_without_ca_file_says_to_set_ca_file() -> None:
    failure = explain(cert_error(20, "unable to get local issuer certificate"), mailbox())
    assert failure.kind == "untrusted-certificate"
    assert_for_people(failure.text, "ca_file", "set it to the PEM file of the CA")


def test_untrusted_certificate_with_a_ca_file_names_that_file() -> None:
    failure = explain(
        cert_error(19, "self-signed certificate in certificate chain"), mailbox(ca_file=Path("/etc/x.pem"))
    )
    assert failure.kind == "untrusted-certificate"
    assert_for_people(failure.text, "ca_file", "'/etc/x.pem' does not hold the CA")


def test_host_name_mismatch_points_at_host() -> None:
    exc = cert_error(62, "Hostname mismatch, certificate is not valid for 'imap.example.org'.")
    failure = explain(exc, mailbox())
    assert failure.kind == "host-name-mismatch"
    assert_for_people(failure.text, "host", "'imap.example.org'", "subject alternative names")


def test_expired_certificate_asks_for_renewal_and_the_clock() -> None:
    failure = explain(cert_error(10, "certificate has expired"), mailbox())
    assert failure.kind == "expired-certificate"
    assert_for_people(failure.text, "renew", "clock")


def test_refused_connection_points_at_host_port_and_the_server() -> None:
    failure = explain(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), mailbox())
    assert failure.kind == "refused"
    assert_for_people(failure.text, "host/port", "connection refused", "running")


@pytest.mark.parametrize(
    "exc", [TimeoutError("timed out"), TimeoutError("_ssl.c:989: The handshake operation timed out")]
)
def test_timeout_names_the_configured_seconds_and_the_tls_port_trap(exc: BaseException) -> None:
    failure = explain(exc, mailbox(timeout=7.0), step="connecting")
    assert failure.kind == "timeout"
    assert_for_people(failure.text, "host/port/security", "within 7 s", "timeout")


def test_unknown_host_name_points_at_host_and_dns() -> None:
    failure = explain(socket.gaierror(socket.EAI_NONAME, "Name or service not known"), mailbox())
    assert failure.kind == "dns"
    assert_for_people(failure.text, "host", "'imap.example.org'", "the name is not known", "DNS")


def test_unreachable_network_points_at_host_and_network() -> None:
    failure = explain(OSError(errno.ENETUNREACH, "Network is unreachable"), mailbox())
    assert failure.kind == "unreachable"
    assert_for_people(failure.text, "host", "network")


def test_connection_closed_early_points_at_security_and_port() -> None:
    failure = explain(imaplib.IMAP4.abort("socket error: EOF"), mailbox(), step="connecting")
    assert failure.kind == "closed"
    assert_for_people(failure.text, "security/port")


def test_rejected_login_is_permanent_and_shows_the_servers_words_without_bytes_repr() -> None:
    exc = imapclient.exceptions.LoginError("b'[AUTHENTICATIONFAILED] Authentication failed.'")
    failure = explain(exc, mailbox(), step="logging in")
    assert failure.kind == "login-rejected" and failure.permanent
    assert_for_people(failure.text, "username/password_file", "[AUTHENTICATIONFAILED] Authentication failed.")
    assert failure.text.startswith("login failed for user 'poststelle'")


def test_login_the_server_cannot_check_now_is_not_permanent() -> None:
    exc = imapclient.exceptions.LoginError("b'[UNAVAILABLE] Temporary authentication failure.'")
    failure = explain(exc, mailbox(), step="logging in")
    assert failure.kind == "login-unavailable" and not failure.permanent
    assert_for_people(failure.text)


def test_other_failures_are_not_permanent_and_keep_the_mailbox_name() -> None:
    failure = explain(
        imaplib.IMAP4.error("b'[NONEXISTENT] Mailbox doesn''t exist: Akten'"), mailbox(), step="selecting"
    )
    assert failure.kind == "server-refused" and not failure.permanent
    assert_for_people(failure.text, "[NONEXISTENT]")


def test_daemon_error_text_explains_network_errors_and_drops_errno_numbers() -> None:
    mb = mailbox()
    assert (
        error_text(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), mb)
        == explain(
            ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), mb, step="reading the mailbox"
        ).text
    )
    text = error_text(PermissionError(errno.EACCES, "Permission denied", "/srv/akten"), mb)
    assert text == "PermissionError: Permission denied: /srv/akten"


# -- against the real Dovecot --------------------------------------------------------------------------
def session_config(dovecot: Dovecot, user: str, root: Path, **over: Any) -> MailboxConfig:
    entry = mailbox_entry(dovecot, user, root, **over)
    for key in [k for k, v in entry.items() if v is None]:
        del entry[key]
    return load_config(write_config(root, [entry])).mailboxes[0]


def connect_failure(cfg: MailboxConfig) -> str:
    with pytest.raises(TransientError) as caught:
        MailboxSession(cfg).connect()
    return str(caught.value)


@pytest.fixture
def bound_port() -> Iterator[int]:
    """A port with a socket bound but not listening: connections to it are refused, no race."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listening socket that never accepts: the TCP handshake completes, no byte ever comes."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def test_dovecot_plain_port_with_tls_configured(dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]) -> None:
    text = connect_failure(session_config(dovecot, new_user(), tmp_path, port=dovecot.imap_port))
    assert_for_people(text, "does not answer in TLS", "security/port", 'security = "starttls"')


def test_dovecot_certificate_without_ca_file_is_untrusted(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    text = connect_failure(session_config(dovecot, new_user(), tmp_path, ca_file=None))
    assert_for_people(text, "not issued by a CA this gateway trusts", "ca_file", "set it to the PEM file")


def test_dovecot_certificate_for_another_name(dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]) -> None:
    # "127.1" reaches 127.0.0.1 but is a host name to TLS; the certificate names localhost and 127.0.0.1.
    text = connect_failure(session_config(dovecot, new_user(), tmp_path, host="127.1"))
    assert_for_people(text, "is not valid for the name '127.1'", "host")


def test_refused_connection(dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str], bound_port: int) -> None:
    text = connect_failure(session_config(dovecot, new_user(), tmp_path, port=bound_port))
    assert_for_people(text, f"127.0.0.1:{bound_port}", "connection refused", "host/port")


def test_server_that_never_answers_times_out_after_the_configured_timeout(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str], silent_port: int
) -> None:
    text = connect_failure(session_config(dovecot, new_user(), tmp_path, port=silent_port, timeout=1))
    assert_for_people(text, "no answer from", "within 1 s", "host/port/security", "timeout")


def test_unknown_host_name(dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]) -> None:
    text = connect_failure(session_config(dovecot, new_user(), tmp_path, host="no-such-host.invalid"))
    assert_for_people(text, "'no-such-host.invalid' cannot be resolved", "host", "DNS")


def test_dovecot_rejecting_the_password_raises_login_rejected(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    cfg = session_config(dovecot, new_user(), tmp_path)
    (tmp_path / "rathaus.secret").write_text("definitely-wrong")
    cfg = load_config(tmp_path / "poststelle.toml").mailboxes[0]
    with pytest.raises(LoginRejected) as caught:
        MailboxSession(cfg).connect()
    assert_for_people(str(caught.value), "username/password_file", "[AUTHENTICATIONFAILED]")
    assert "definitely-wrong" not in str(caught.value)


def test_dovecot_without_the_configured_folder_points_at_folder(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    text = connect_failure(session_config(dovecot, new_user(), tmp_path, folder="Akten/Eingang"))
    assert_for_people(text, "selecting the folder 'Akten/Eingang'", "folder")


# -- the same words in check, run --once and status ---------------------------------------------------
def env_with(dovecot: Dovecot, tmp_path: Path, user: str, **over: Any) -> Env:
    return Env(dovecot, user, tmp_path, write_config(tmp_path, [mailbox_entry(dovecot, user, tmp_path, **over)]))


def status_of(env: Env) -> dict[str, Any]:
    (row,) = json.loads(env.cli("status", "--json", check=True).stdout)["mailboxes"]
    return dict(row)


def trail(env: Env, event: str) -> list[dict[str, Any]]:
    return list(json.loads(env.cli("audit", "log", "--json", "--event", event, check=True).stdout))


def test_check_run_once_and_status_say_the_same_about_a_tls_port_mistake(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    env = env_with(dovecot, tmp_path, new_user(), port=dovecot.imap_port)
    checked = env.cli("check", "--json")
    assert checked.returncode == 1
    (row,) = [r for r in json.loads(checked.stdout) if r["check"] == "mailbox"]
    run = env.cli("run", "--once")
    assert run.returncode == 1
    status = status_of(env)
    assert row["detail"] == status["last_error"]
    assert f"mailbox rathaus: {status['last_error']}" in run.stderr
    assert_for_people(status["last_error"], "security/port")
    assert status["state"] == "error" and status["state_since"] and status["last_error_at"]
    (failing,) = trail(env, "mailbox-failing")
    assert failing["details"]["state"] == "error", "one entry for the change of state, not one per attempt"


def test_rejected_login_in_run_once_is_tried_once_logged_as_error_and_shown_as_auth_failed(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    env = env_with(dovecot, tmp_path, new_user())
    env.append(letter(subject="Az. 63-BV-2026-0500 Antrag"))
    (tmp_path / "rathaus.secret").write_text("definitely-wrong")

    run = env.cli("run", "--once")
    assert run.returncode == 1
    logged = [json.loads(ln) for ln in run.stderr.splitlines() if ln.startswith("{")]
    rejected = [ln for ln in logged if ln.get("event") == "mailbox login rejected"]
    assert len(rejected) == 1 and rejected[0]["level"] == "error", "said once, at error level"
    assert not [ln for ln in logged if ln.get("event") in ("mailbox error", "mailbox login still rejected")]
    assert "definitely-wrong" not in run.stderr

    status = status_of(env)
    assert status["state"] == "auth-failed" and status["state_since"] == status["last_error_at"]
    assert_for_people(status["last_error"], "username/password_file")
    table = env.cli("status", check=True).stdout
    assert "auth-failed" in table
    (failing,) = trail(env, "mailbox-failing")
    assert failing["details"]["state"] == "auth-failed"
    assert env.uids() != [], "nothing was read"


def test_correct_password_after_a_restart_clears_the_error_and_the_trail_keeps_it(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    env = env_with(dovecot, tmp_path, new_user())
    env.append(letter(subject="Az. 63-BV-2026-0501 Antrag"))
    secret = tmp_path / "rathaus.secret"
    good = secret.read_text()
    secret.write_text("definitely-wrong")
    assert env.cli("run", "--once").returncode == 1
    failed = status_of(env)

    secret.write_text(good)
    env.cli("run", "--once", check=True)
    status = status_of(env)
    assert status["state"] == "ok" and status["state_since"] >= failed["state_since"]
    assert status["last_error"] is None and status["last_error_at"] is None, "the error is cleared"
    assert [p.parent.name for p in env.entries()] == ["63-BV-2026-0501"]
    (recovered,) = trail(env, "mailbox-recovered")
    assert recovered["details"]["was"] == "auth-failed"
    assert recovered["details"]["since"] == failed["state_since"]
    assert recovered["details"]["last_error"] == failed["last_error"]
    assert "works again" in env.cli("audit", "log", check=True).stdout
    assert env.cli("audit", "verify").returncode == 0


def test_daemon_does_not_retry_a_rejected_login_until_its_long_interval(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    """The long-running worker schedules the next try after auth_retry_interval and stops at once on SIGTERM."""
    env = env_with(dovecot, tmp_path, new_user(), auth_retry_interval=7200)
    (tmp_path / "rathaus.secret").write_text("definitely-wrong")
    proc = subprocess.Popen(
        [*POSTSTELLE, "run"],
        cwd=REPO,
        env={**os.environ, "POSTSTELLE_CONFIG": str(env.config_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: _state(env) == "auth-failed", 60), "auth-failed not recorded"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1, "a daemon stopped while a mailbox fails says so"
    assert "mailbox rathaus: login failed for user" in stderr
    logged = [json.loads(ln) for ln in stderr.splitlines() if ln.startswith("{")]
    rejected = [ln for ln in logged if ln.get("event") == "mailbox login rejected"]
    assert [(r["level"], r["retry_in"]) for r in rejected] == [("error", 7200)]
    assert not [ln for ln in logged if ln.get("event") in ("mailbox error", "mailbox login still rejected")]


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _state(env: Env) -> str | None:
    if not ledger_path(env.config).exists():
        return None
    try:
        store = open_store(env.config, readonly=True)
        try:
            return next((s.state for s in store.statuses() if s.mailbox == "rathaus"), None)
        finally:
            store.close()
    except StoreError:  # the daemon is still creating the ledger
        return None


def test_auth_retry_interval_below_a_minute_is_refused_at_start(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    path = write_config(tmp_path, [mailbox_entry(dovecot, new_user(), tmp_path, auth_retry_interval=10)])
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key.endswith("auth_retry_interval")
