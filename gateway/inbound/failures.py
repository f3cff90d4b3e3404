"""What a failed IMAP connection or login means for the administrator, in one sentence.

The exceptions the socket, TLS and IMAP layers raise are written for programmers
(``[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)``, ``[Errno 111]``,
``b'[AUTHENTICATIONFAILED] …'``). The person who reads ``status``, ``check`` or the log
needs three things instead: which mailbox, which setting to look at, and the likely fix.
``explain`` is the one place that turns one into the other, so the daemon, ``check`` and
``run --once`` say the same thing about the same failure.

A failure is classified by what the exception carries (errno, TLS reason, certificate
verification code, the server's response code), never by matching the Python text alone,
because that text changes between Python and OpenSSL versions.
"""

from __future__ import annotations

import errno
import imaplib
import re
import socket
import ssl
from dataclasses import dataclass
from typing import Literal

from gateway.config import MailboxConfig

Kind = Literal[
    "tls-on-plain-port",
    "untrusted-certificate",
    "host-name-mismatch",
    "expired-certificate",
    "certificate-rejected",
    "tls-failed",
    "refused",
    "timeout",
    "dns",
    "unreachable",
    "closed",
    "login-rejected",
    "login-unavailable",
    "server-refused",
    "other",
]

#: OpenSSL verification codes for "the issuer is not among the trusted certificates".
_UNTRUSTED_CODES = frozenset({2, 18, 19, 20, 21})
_EXPIRED_CODES = frozenset({9, 10})
_HOST_MISMATCH_CODES = frozenset({62, 64})
_DNS_ERRORS = {
    socket.EAI_NONAME: "the name is not known",
    socket.EAI_AGAIN: "the name server did not answer",
}
#: RFC 5530 response codes after which the same credentials will fail again.
_LOGIN_REFUSED_CODES = ("AUTHENTICATIONFAILED", "AUTHORIZATIONFAILED", "EXPIRED", "PRIVACYREQUIRED")


@dataclass(frozen=True)
class Failure:
    """A classified failure: ``kind`` for code and tests, ``text`` for people."""

    kind: Kind
    text: str

    @property
    def permanent(self) -> bool:
        """Retrying with the same configuration will fail the same way (a wrong password)."""
        return self.kind == "login-rejected"


def explain(exc: BaseException, cfg: MailboxConfig, *, step: str = "connecting") -> Failure:
    """The failure ``exc`` raised while ``step`` (connecting, STARTTLS, login, …) for mailbox ``cfg``."""
    where = f"{cfg.host}:{cfg.port}"
    if isinstance(exc, ssl.SSLCertVerificationError) or _ssl_reason(exc) == "CERTIFICATE_VERIFY_FAILED":
        return _certificate(exc, cfg, where)
    if isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return _tls(exc, cfg, where)
    if isinstance(exc, socket.gaierror):
        why = _DNS_ERRORS.get(exc.errno or 0, exc.strerror or "no address")
        return Failure(
            "dns",
            f"the host name {cfg.host!r} cannot be resolved ({why}). "
            f"{_check(cfg, 'host')}: correct the name, or check this machine's DNS settings",
        )
    if isinstance(exc, TimeoutError | socket.timeout):
        return Failure(
            "timeout",
            f"no answer from {where} within {_seconds(cfg.timeout)} while {step}. "
            f"{_check(cfg, 'host', 'port', 'security')}: a plain or STARTTLS connection to an "
            "implicit-TLS port (993) waits like this, so does a firewall that drops packets; "
            "a slow server needs a larger timeout",
        )
    if isinstance(exc, ConnectionRefusedError):
        return Failure(
            "refused",
            f"nothing accepts connections on {where} (connection refused). "
            f"{_check(cfg, 'host', 'port')}: is the IMAP server running and listening on that port?",
        )
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return Failure(
            "unreachable",
            f"there is no network route to {where}. {_check(cfg, 'host')}, and this machine's network and firewall",
        )
    if isinstance(exc, ConnectionError | EOFError | imaplib.IMAP4.abort | ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return Failure(
            "closed",
            f"{where} closed the connection while {step}. {_check(cfg, 'security', 'port')}: "
            "the server may also limit connections per user or address; its log says why",
        )
    if isinstance(exc, imaplib.IMAP4.error) and step == "logging in":
        return _login(exc, cfg)
    if isinstance(exc, imaplib.IMAP4.error):
        keys: tuple[str, ...] = ("folder",) if step.startswith("selecting") else ()
        if step.startswith("preparing the folders"):
            keys = ("processed_folder", "quarantine_folder")
        return Failure(
            "server-refused",
            f"{where} refused while {step}: {server_text(exc)}. {_check(cfg, *keys)}: see the server's log",
        )
    if isinstance(exc, OSError) and exc.strerror:
        return Failure("other", f"cannot reach {where} while {step}: {exc.strerror}. {_check(cfg, 'host', 'port')}")
    return Failure("other", f"{where} failed while {step}: {server_text(exc) or type(exc).__name__}. {_check(cfg)}")


def _certificate(exc: BaseException, cfg: MailboxConfig, where: str) -> Failure:
    code = getattr(exc, "verify_code", None)
    message = str(getattr(exc, "verify_message", "") or "")
    if code in _HOST_MISMATCH_CODES or "mismatch" in message.lower():
        return Failure(
            "host-name-mismatch",
            f"the server certificate of {where} is not valid for the name {cfg.host!r}. "
            f"{_check(cfg, 'host')}: use the name the certificate was issued for (as in its "
            "subject alternative names), not an address or an alias",
        )
    if code in _EXPIRED_CODES:
        return Failure(
            "expired-certificate",
            f"the server certificate of {where} is expired or not yet valid. {_check(cfg)}: "
            "ask the mail server's administrator to renew it, and check this machine's clock",
        )
    if code in _UNTRUSTED_CODES:
        if cfg.ca_file is None:
            fix = "set it to the PEM file of the CA that issued the server's certificate"
        else:
            fix = f"{str(cfg.ca_file)!r} does not hold the CA that issued the server's certificate"
        return Failure(
            "untrusted-certificate",
            f"the server certificate of {where} is not issued by a CA this gateway trusts. "
            f"{_check(cfg, 'ca_file')}: {fix} (the mail server's administrator can name it)",
        )
    why = message or "not accepted"
    return Failure(
        "certificate-rejected",
        f"the server certificate of {where} was rejected ({why}). {_check(cfg, 'host', 'ca_file')}",
    )


def _tls(exc: ssl.SSLError, cfg: MailboxConfig, where: str) -> Failure:
    reason = _ssl_reason(exc)
    if reason in ("WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "HTTP_REQUEST", "RECORD_LAYER_FAILURE"):
        return Failure(
            "tls-on-plain-port",
            f"{where} does not answer in TLS; it looks like a plain IMAP port. "
            f"{_check(cfg, 'security', 'port')}: implicit TLS is usually port 993 with "
            'security = "tls"; port 143 needs security = "starttls"',
        )
    if reason in ("UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION", "NO_PROTOCOLS_AVAILABLE"):
        return Failure(
            "tls-failed",
            f"{where} offers no TLS version the gateway accepts (TLS 1.2 or newer). "
            f"{_check(cfg)}: ask the mail server's administrator to enable TLS 1.2 or 1.3",
        )
    words = (reason or "handshake failed").replace("_", " ").lower()
    return Failure("tls-failed", f"TLS with {where} failed ({words}). {_check(cfg, 'security', 'port', 'ca_file')}")


def _login(exc: imaplib.IMAP4.error, cfg: MailboxConfig) -> Failure:
    said = server_text(exc)
    code = re.match(r"\[([A-Z-]+)", said)
    if code and code.group(1) in ("UNAVAILABLE", "INUSE", "LIMIT"):
        return Failure(
            "login-unavailable",
            f"login failed for user {cfg.username!r}: the server cannot log it in right now ({said}). "
            f"{_check(cfg)}: the gateway tries again; if it persists, see the server's log",
        )
    if code and code.group(1) not in _LOGIN_REFUSED_CODES:
        said = f"{said}; response code {code.group(1)}"
    return Failure(
        "login-rejected",
        f"login failed for user {cfg.username!r}: the server rejected the user name or password ({said}). "
        f"{_check(cfg, 'username', 'password_file')}: correct them; the gateway does not try again with "
        "the same credentials until it is restarted or auth_retry_interval has passed",
    )


def _check(cfg: MailboxConfig, *keys: str) -> str:
    """The setting to look at, as it is written in the configuration file."""
    where = f'Check [[mailbox]] name = "{cfg.name}"'
    return f"{where} {'/'.join(keys)}" if keys else where


def _ssl_reason(exc: BaseException) -> str | None:
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str):
        return reason
    found = re.search(r"\[SSL: ([A-Z0-9_]+)\]", str(exc))
    return found.group(1) if found else None


def _seconds(value: float) -> str:
    return f"{value:g} s"


def server_text(exc: BaseException) -> str:
    """The server's own words from an IMAP error, without Python's ``b'…'`` wrapping."""
    text = " ".join(str(a) for a in exc.args) if exc.args else str(exc)
    text = re.sub(r"""\bb(['"])(.*?)\1""", r"\2", text)
    text = re.sub(r"\s*\(_ssl\.c:\d+\)", "", text)
    text = re.sub(r"\[Errno -?\d+\]\s*", "", text)
    return " ".join(text.split())[:300]
