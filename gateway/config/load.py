"""Configuration: one TOML file, validated completely before anything touches a mailbox.

Every problem is reported as ``ConfigError(file, key, problem)`` with a dotted key such as
``mailbox[1].security`` so that an operator can fix it without reading code. Unknown keys
are errors, not warnings: a typo in a security setting must not silently fall back to a
default. Warnings (for example an inline password) are collected in ``Config.warnings``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import string
import tomllib
from collections.abc import Callable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

from gateway.config import secrets
from gateway.config.model import (
    DEEMED_SERVED_SHIFTS,
    DEFAULT_CONFIG_PATH,
    ENCRYPT_MODES,
    LANGUAGES,
    REVOCATION_MODES,
    SIGN_MODES,
    AuditConfig,
    Config,
    DeliveriesConfig,
    DemailConfig,
    LimitsConfig,
    LoggingConfig,
    MailboxConfig,
    MetricsConfig,
    OpenPGPConfig,
    OutboundConfig,
    PinnedKey,
    PolicyConfig,
    ProcessingConfig,
    RouteConfig,
    RoutingConfig,
    Secret,
    SendSocketConfig,
    SmimeConfig,
    SmimeIdentityConfig,
    SmtpConfig,
    StorageConfig,
    StoreBackend,
    SubmissionConfig,
    UiConfig,
    default_analysis_workers,
)
from gateway.errors import ConfigError
from gateway.filemodes import DEFAULT_DIR_MODE, DEFAULT_FILE_MODE
from gateway.filemodes import problem as modes_problem
from gateway.mime.cut import MAX_PARTS
from gateway.statedir import default_cases_dir, default_gnupg_home

T = TypeVar("T")


def resolve_config_path(cli_path: Path | None) -> Path:
    """``--config`` wins, then ``$POSTSTELLE_CONFIG``, then the system default."""
    if cli_path is not None:
        return cli_path
    env = os.environ.get("POSTSTELLE_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_PATH


class _Reader:
    """Typed access to one TOML table that remembers which keys were consumed."""

    def __init__(self, file: str, prefix: str, table: Mapping[str, Any]) -> None:
        self.file = file
        self.prefix = prefix
        self.table = table
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.file, self.key(name), problem)

    def _get(self, name: str, kind: type[T], kind_name: str, default: T | None) -> T | None:
        self.seen.add(name)
        if name not in self.table:
            return default
        value = self.table[name]
        # bool is an int in Python; a TOML `port = true` must not pass as 1.
        if kind is int and isinstance(value, bool):
            raise self.fail(name, f"expected {kind_name}, got a boolean")
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind):
            raise self.fail(name, f"expected {kind_name}, got {type(value).__name__}")
        return value

    def str_(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self._get(name, str, "a string", default)
        if required and value is None:
            raise self.fail(name, "is required")
        if required and value is not None and not value.strip():
            raise self.fail(name, "must not be empty")
        return value

    def req_str(self, name: str) -> str:
        value = self.str_(name, required=True)
        assert value is not None
        return value

    def int_(self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
        value = self._get(name, int, "an integer", default)
        assert value is not None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise self.fail(name, f"must be {bound}, got {value}")
        return value

    def float_(self, name: str, default: float, *, minimum: float = 0.0, maximum: float | None = None) -> float:
        value = self._get(name, float, "a number", default)
        assert value is not None
        if value < minimum:
            raise self.fail(name, f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.fail(name, f"must be <= {maximum}, got {value}")
        return value

    def bool_(self, name: str, default: bool) -> bool:
        value = self._get(name, bool, "true or false", default)
        assert value is not None
        return value

    def path(self, name: str, *, required: bool = False) -> Path | None:
        value = self.str_(name, required=required)
        return Path(value) if value else None

    def existing_file(self, name: str) -> Path | None:
        p = self.path(name)
        if p is not None and not p.is_file():
            raise self.fail(name, f"file not found: {p}")
        return p

    def secret_path(self, name: str, *, must_exist: bool = True) -> Path | None:
        """A secret's file (a path or ``credential:NAME``), refused when others may open it."""
        value = self.str_(name)
        if not value:
            return None
        return _secret_file(self.file, self.key(name), value, must_exist=must_exist)

    def table_(self, name: str) -> Mapping[str, Any]:
        value = self._get(name, dict, "a table", {})
        assert value is not None
        return value

    def list_(self, name: str) -> list[Any]:
        value = self._get(name, list, "a list", [])
        assert value is not None
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.str_(name, default)
        assert value is not None
        if value not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def regex(self, name: str, *, required: bool = False) -> re.Pattern[str] | None:
        value = self.str_(name, required=required)
        if value is None:
            return None
        try:
            return re.compile(value)
        except re.error as exc:
            raise self.fail(name, f"invalid regular expression: {exc}") from None

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.seen)
        if unknown:
            raise self.fail(unknown[0], "unknown key")

    def sub(self, name: str, table: Mapping[str, Any]) -> _Reader:
        return _Reader(self.file, self.key(name), table)


def _tables(r: _Reader, name: str) -> list[_Reader]:
    """An array of tables such as ``[[mailbox]]``, each with its indexed key prefix."""
    items = r.list_(name)
    readers = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(r.file, f"{r.key(name)}[{i}]", "expected a table")
        readers.append(_Reader(r.file, f"{r.key(name)}[{i}]", item))
    return readers


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _mode(r: _Reader, name: str, default: int) -> int:
    """An octal mode written as a string (``"0640"``): TOML has no octal literal a person reads as one."""
    text = r.str_(name)
    if text is None:
        return default
    if not re.fullmatch(r"0?[0-7]{3}", text):
        raise r.fail(name, f'{text!r} is not an octal mode such as "{default:04o}"')
    return int(text, 8)


def _secret_file(file: str, key: str, value: str, *, must_exist: bool) -> Path:
    """Resolve a secret's setting (``config/secrets.py``) and refuse a file others may open.

    ``must_exist = False`` is for files the gateway makes itself (the audit key, the users
    file); a credential must always exist, since only systemd can put it there.
    """
    try:
        path = secrets.resolve(value)
    except secrets.SecretError as exc:
        raise ConfigError(file, key, str(exc)) from None
    if (must_exist or secrets.is_credential(value)) and not path.is_file():
        raise ConfigError(file, key, f"file not found: {path}")
    problem = secrets.exposure_problem(path)
    if problem is not None:
        raise ConfigError(file, key, problem)
    return path


def _secret_list(r: _Reader, name: str) -> tuple[Path, ...]:
    """A list of secrets' files, each a path or ``credential:NAME``."""
    out = []
    for i, item in enumerate(r.list_(name)):
        key = f"{r.key(name)}[{i}]"
        if not isinstance(item, str):
            raise ConfigError(r.file, key, "expected a path string")
        out.append(_secret_file(r.file, key, item, must_exist=True))
    return tuple(out)


def _read_secret_file(r: _Reader, name: str) -> Secret | None:
    p = r.secret_path(name)
    if p is None:
        return None
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise r.fail(name, f"cannot read {p}: {exc.strerror}") from None
    secret = text.rstrip("\r\n")
    if not secret:
        raise r.fail(name, f"{p} is empty")
    return Secret(secret)


def _spool_dir(r: _Reader, cases: Path) -> Path | None:
    """``spool_dir``: absolute, and not on the case-folder share (clerks read there, the spool is the gateway's)."""
    path = r.path("spool_dir")
    if path is None:
        return None
    if not path.is_absolute():
        raise r.fail("spool_dir", f"must be an absolute path, got {str(path)!r}")
    if path.is_relative_to(cases) or cases.is_relative_to(path):
        raise r.fail("spool_dir", f"must not be inside cases_dir ({cases}) or contain it")
    return path


def _quarantine_dir(r: _Reader, cases: Path, spool: Path | None) -> Path | None:
    """``quarantine_dir``: absolute, apart from the case folders (clerks must not reach unproven mail) and the spool."""
    path = r.path("quarantine_dir")
    if path is None:
        return None
    if not path.is_absolute():
        raise r.fail("quarantine_dir", f"must be an absolute path, got {str(path)!r}")
    for name, other in (("cases_dir", cases), ("spool_dir", spool)):
        if other is not None and (path.is_relative_to(other) or other.is_relative_to(path)):
            raise r.fail("quarantine_dir", f"must not be inside {name} ({other}) or contain it")
    return path


#: No ":" (an outbox claim is ``node:pid:start``) and nothing a log line or a metrics label must quote.
_NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")  # a host name (FQDN) fits


def _node_name(r: _Reader) -> str:
    """``node``: the name the audit trail and the mailbox leases know this gateway by (default: the host name)."""
    given = r.str_("node")
    name = given if given is not None else socket.gethostname() or "localhost"
    if not _NODE.fullmatch(name):
        raise r.fail("node", f"expected letters, digits and . _ - (up to 253, a letter or digit first), got {name!r}")
    return name


def _store_backend(r: _Reader) -> tuple[StoreBackend, Secret | None, Path | None]:
    """``backend`` and, for PostgreSQL, the DSN from ``dsn_file``.

    The DSN holds the database password, so its file must be readable by no one but the
    gateway's user and group (0600 or 0640): a world-readable one is refused, not warned
    about, because by then the password is out. It is checked here, at start-up, and its
    syntax too, so a typo is a config error and not a failure of the first batch.
    """
    chosen = r.choice("backend", ("sqlite", "postgresql"), "sqlite")
    backend: StoreBackend = "postgresql" if chosen == "postgresql" else "sqlite"
    path = r.path("dsn_file")
    if backend == "sqlite":
        if path is not None:
            raise r.fail("dsn_file", 'is only read with backend = "postgresql"')
        return backend, None, None
    if path is None:
        raise r.fail("dsn_file", 'is required with backend = "postgresql" (a file holding the connection string)')
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise r.fail("dsn_file", f"file not found: {path}") from None
    except OSError as exc:
        raise r.fail("dsn_file", f"cannot read {path}: {exc.strerror}") from None
    if mode & 0o007 or mode & 0o020:
        raise r.fail("dsn_file", f"{path} has mode {mode & 0o777:04o}: it holds a password, use 0600 or 0640")
    dsn = text.strip()
    if not dsn:
        raise r.fail("dsn_file", f"{path} is empty")
    try:
        from gateway.records.postgres.connect import dsn_problem
    except ImportError:
        raise r.fail("backend", "postgresql needs psycopg, not installed here (scripts/setup installs it)") from None
    problem = dsn_problem(dsn)
    if problem is not None:
        raise r.fail("dsn_file", f"{path}: {problem}")
    return backend, Secret(dsn), path


def _mailbox(r: _Reader, warnings: list[str]) -> MailboxConfig:
    name = r.req_str("name")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise r.fail("name", "use letters, digits, '.', '_' and '-' (max 64), starting with a letter or digit")
    host = r.req_str("host")
    security = r.choice("security", ("tls", "starttls", "plain"), "tls")
    port = r.int_("port", 993 if security == "tls" else 143, minimum=1, maximum=65535)
    if security == "plain" and not _is_loopback(host):
        raise r.fail("security", f"plain IMAP is only allowed to a loopback address, not {host!r}")
    inline = r.str_("password")
    from_file = _read_secret_file(r, "password_file")
    if inline is not None and from_file is not None:
        raise r.fail("password", "set either password or password_file, not both")
    if inline is None and from_file is None:
        raise r.fail("password_file", "is required (or password)")
    if inline is not None:
        warnings.append(
            f"{r.file}: {r.key('password')}: password stored in the config file; prefer password_file with mode 0600"
        )
    password = from_file if from_file is not None else Secret(inline or "")
    folders = {k: r.req_str(k) if k in r.table else None for k in ("folder", "processed_folder", "quarantine_folder")}
    mb = MailboxConfig(
        name=name,
        host=host,
        port=port,
        security=security,  # type: ignore[arg-type]
        username=r.req_str("username"),
        password=password,
        ca_file=r.existing_file("ca_file"),
        folder=folders["folder"] or "INBOX",
        processed_folder=folders["processed_folder"] or "Poststelle/Processed",
        quarantine_folder=folders["quarantine_folder"] or "Poststelle/Quarantine",
        idle=r.bool_("idle", True),
        poll_interval=r.float_("poll_interval", 60.0, minimum=1.0),
        idle_renewal=r.float_("idle_renewal", 300.0, minimum=1.0, maximum=1740.0),
        batch_size=r.int_("batch_size", 50, minimum=1, maximum=1000),
        timeout=r.float_("timeout", 60.0, minimum=1.0),
        auth_retry_interval=r.float_("auth_retry_interval", 3600.0, minimum=60.0),
    )
    if len({mb.folder, mb.processed_folder, mb.quarantine_folder}) != 3:
        raise r.fail("processed_folder", "folder, processed_folder and quarantine_folder must differ")
    r.finish()
    return mb


def _policy(r: _Reader) -> PolicyConfig:
    p = PolicyConfig(
        require_signature=r.bool_("require_signature", False),
        require_encryption=r.bool_("require_encryption", False),
    )
    r.finish()
    return p


def _route(r: _Reader) -> RouteConfig:
    name = r.req_str("name")
    subject = r.regex("subject", required=True)
    assert subject is not None
    from_ = r.regex("from")
    case = r.req_str("case")
    groups = set(subject.groupindex)
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(case) if f is not None]
    except ValueError as exc:
        raise r.fail("case", f"invalid template: {exc}") from None
    for f in fields:
        if f not in groups:
            raise r.fail("case", f"template field {{{f}}} is not a named group of subject")
    policy = _policy(r.sub("policy", r.table_("policy"))) if "policy" in r.table else None
    require_clean_identity = r.bool_("require_clean_identity", False)
    require_demail_authoritative = r.bool_("require_demail_authoritative", False)
    acknowledge = r.bool_("acknowledge", False)
    r.finish()
    return RouteConfig(
        name=name,
        subject=subject,
        case=case,
        from_=from_,
        policy=policy,
        require_clean_identity=require_clean_identity,
        acknowledge=acknowledge,
        require_demail_authoritative=require_demail_authoritative,
    )


def _check_acknowledgements(
    file: str,
    routes: tuple[RouteConfig, ...],
    smtp: SmtpConfig | None,
    outbound: OutboundConfig | None,
    smime: SmimeConfig | None,
    openpgp: OpenPGPConfig | None,
    *,
    prefix: str = "",
) -> None:
    """A route that acknowledges needs a relay, the authority's address and a key to sign with.

    An acknowledgement is only worth anything signed: unsigned, anyone could have sent it.
    Checked at start-up so that a route never silently acknowledges nothing.
    """
    for i, route in enumerate(routes):
        if not route.acknowledge:
            continue
        key = f"{prefix}route[{i}].acknowledge"
        if smtp is None:
            raise ConfigError(file, key, "acknowledge = true needs [smtp] (the relay and the authority's address)")
        sign = (outbound or OutboundConfig()).sign
        if sign == "none":
            raise ConfigError(file, key, 'acknowledge = true needs a signature: [outbound] sign = "smime" or "openpgp"')
        if sign == "smime" and (smime is None or not smime.identities):
            raise ConfigError(file, key, "acknowledge = true needs [smime] identities to sign with")
        if sign == "openpgp" and (openpgp is None or not openpgp.secret_keys):
            raise ConfigError(file, key, "acknowledge = true needs [openpgp] secret_keys to sign with")


def _smime(r: _Reader) -> SmimeConfig:
    identities = []
    for ir in _tables(r, "identities"):
        ident = SmimeIdentityConfig(
            key_file=ir.secret_path("key_file"),
            cert_file=ir.existing_file("cert_file"),
            pkcs12_file=ir.secret_path("pkcs12_file"),
            password_file=ir.secret_path("password_file"),
        )
        if ident.pkcs12_file is None and (ident.key_file is None or ident.cert_file is None):
            raise ir.fail("key_file", "give key_file and cert_file, or pkcs12_file")
        if ident.pkcs12_file is not None and ident.key_file is not None:
            raise ir.fail("pkcs12_file", "give key_file and cert_file, or pkcs12_file, not both")
        ir.finish()
        identities.append(ident)
    anchors = _path_list(r, "trust_anchors")
    crls = _path_list(r, "crl_files")
    revocation = r.choice("revocation", REVOCATION_MODES, "if-configured")
    timeout = r.float_("crl_fetch_timeout", 10.0, minimum=1.0)
    cfg = SmimeConfig(
        identities=tuple(identities),
        trust_anchors=anchors,
        crl_files=crls,
        min_rsa_bits=r.int_("min_rsa_bits", 2048, minimum=1024, maximum=16384),
        allow_sha1=r.bool_("allow_sha1", False),
        revocation=next(m for m in REVOCATION_MODES if m == revocation),
        fetch_crls=r.bool_("fetch_crls", False),
        crl_grace=r.float_("crl_grace", 0.0),
        crl_fetch_timeout=timeout,
        crl_max_bytes=r.int_("crl_max_bytes", 20 * 1024 * 1024, minimum=1024),
    )
    r.finish()
    return cfg


def _path_list(r: _Reader, name: str) -> tuple[Path, ...]:
    out = []
    for i, item in enumerate(r.list_(name)):
        if not isinstance(item, str):
            raise ConfigError(r.file, f"{r.key(name)}[{i}]", "expected a path string")
        p = Path(item)
        if not p.exists():
            raise ConfigError(r.file, f"{r.key(name)}[{i}]", f"not found: {p}")
        out.append(p)
    return tuple(out)


def _openpgp(r: _Reader, state_dir: Path) -> OpenPGPConfig:
    home = r.path("gnupg_home") or default_gnupg_home(state_dir)
    pinned = []
    for pr in _tables(r, "pinned"):
        fpr = re.sub(r"\s+", "", pr.req_str("fingerprint")).upper()
        if not re.fullmatch(r"[0-9A-F]{40}|[0-9A-F]{64}", fpr):
            raise pr.fail("fingerprint", "expected a full 40- or 64-hex-digit fingerprint")
        pinned.append(PinnedKey(email=pr.req_str("email").lower(), fingerprint=fpr))
        pr.finish()
    correspondents = r.path("correspondents")
    if correspondents is not None and not correspondents.is_dir():
        raise r.fail("correspondents", f"directory not found: {correspondents}")
    cfg = OpenPGPConfig(
        gnupg_home=home,
        secret_keys=_secret_list(r, "secret_keys"),
        passphrase_file=r.secret_path("passphrase_file"),
        correspondents=correspondents,
        correspondents_trusted=r.bool_("correspondents_trusted", False),
        pinned=tuple(pinned),
    )
    r.finish()
    return cfg


def _outbound(r: _Reader, smime: SmimeConfig | None, openpgp: OpenPGPConfig | None) -> OutboundConfig:
    """``[outbound]``: the signing scheme must have its key configured, or nothing could be sent."""
    sign = r.choice("sign", SIGN_MODES, OutboundConfig.sign)
    encrypt = r.choice("encrypt", ENCRYPT_MODES, OutboundConfig.encrypt)
    if sign == "smime" and (smime is None or not smime.identities):
        raise r.fail("sign", 'sign = "smime" needs [smime] identities (the authority\'s key and certificate)')
    if sign == "openpgp" and (openpgp is None or not openpgp.secret_keys):
        raise r.fail("sign", 'sign = "openpgp" needs [openpgp] secret_keys (the authority\'s key)')
    if encrypt == "always" and smime is None and openpgp is None:
        raise r.fail("encrypt", 'encrypt = "always" needs [smime] or [openpgp] to encrypt with')
    corr = r.path("correspondents_dir")
    if corr is not None and not corr.is_dir():
        raise r.fail("correspondents_dir", f"directory not found: {corr}")
    cfg = OutboundConfig(
        sign=next(m for m in SIGN_MODES if m == sign),
        encrypt=next(m for m in ENCRYPT_MODES if m == encrypt),
        copy_to_sent_folder=r.bool_("copy_to_sent_folder", OutboundConfig.copy_to_sent_folder),
        correspondents_dir=corr,
        claim_ttl=_duration(r, "claim_ttl", OutboundConfig.claim_ttl),
    )
    r.finish()
    return cfg


def _ui(r: _Reader) -> UiConfig:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    zone = r.str_("timezone", UiConfig.timezone)
    assert zone is not None
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise r.fail("timezone", f"unknown time zone {zone!r}; use an IANA name such as Europe/Berlin") from None
    language = r.choice("language", LANGUAGES, UiConfig.language)
    r.finish()
    return UiConfig(timezone=zone, language=next(lang for lang in LANGUAGES if lang == language))


def _listen(r: _Reader, name: str, default: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` with an IP address literal (or ``localhost``) as host.

    A name other than localhost would be resolved at bind time, and whether the listener is
    on loopback (which decides whether AUTH may go without TLS) must be certain at load time.
    """
    value = r.str_(name, default)
    assert value is not None
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([^:\[\]]+):([0-9]{1,5})", value.strip())
    if m is None:
        raise r.fail(name, f"expected host:port (an IPv6 address in brackets), got {value!r}")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise r.fail(name, f"the host must be an IP address or localhost, got {host!r}") from None
    if not 1 <= port <= 65535:
        raise r.fail(name, f"port must be between 1 and 65535, got {port}")
    return host, port


def _submission(r: _Reader) -> SubmissionConfig:
    import ssl

    from gateway.outbound.tlsserver import server_context

    host, port = _listen(r, "listen", "127.0.0.1:10587")
    r.str_("users_file", required=True)
    users_file = r.secret_path("users_file", must_exist=False)  # made by `poststelle submission-user add`
    assert users_file is not None
    if not users_file.is_absolute():
        raise r.fail("users_file", f"must be an absolute path, got {users_file}")
    if not users_file.parent.is_dir():
        raise r.fail("users_file", f"directory not found: {users_file.parent}")
    sender = r.req_str("sender").strip()
    if not re.fullmatch(r"[!-?A-~]+@[A-Za-z0-9.-]+", sender):
        raise r.fail("sender", f"expected one plain address such as rathaus@example.org, got {sender!r}")
    cert = r.existing_file("tls_cert")
    key = r.secret_path("tls_key")
    if (cert is None) != (key is None):
        raise r.fail("tls_key" if key is None else "tls_cert", "set tls_cert and tls_key together")
    if cert is not None and key is not None:
        try:
            server_context(cert, key)
        except (ssl.SSLError, OSError) as exc:
            raise r.fail("tls_cert", f"certificate and key do not load as a pair: {exc}") from None
    elif not _is_loopback(host):
        raise r.fail(
            "listen", f"{host} is not a loopback address: set tls_cert and tls_key (AUTH is only offered over TLS)"
        )
    r.finish()
    return SubmissionConfig(host=host, port=port, users_file=users_file, sender=sender, tls_cert=cert, tls_key=key)


def _metrics(r: _Reader) -> MetricsConfig:
    """``[metrics]``: loopback only, unless ``allow_remote`` is set as a deliberate choice."""
    host, port = _listen(r, "listen", "127.0.0.1:9465")
    allow_remote = r.bool_("allow_remote", False)
    if not allow_remote and not _is_loopback(host):
        raise r.fail(
            "listen",
            f"{host} is not a loopback address: the endpoint has no authentication "
            "(set allow_remote = true to serve it beyond this machine)",
        )
    r.finish()
    return MetricsConfig(host=host, port=port, allow_remote=allow_remote)


def _send_socket(r: _Reader) -> SendSocketConfig:
    """``[send_socket]``: an absolute socket path in an existing directory, and a known group."""
    import grp

    path = Path(r.str_("path", "/run/poststelle/send.sock") or "/run/poststelle/send.sock")
    if not path.is_absolute():
        raise r.fail("path", f"must be an absolute path, got {path}")
    if len(os.fsencode(path)) > 107:
        raise r.fail("path", f"a Unix socket path may have at most 107 bytes, got {len(os.fsencode(path))}")
    group = r.str_("group")
    if group is not None:
        try:
            grp.getgrnam(group)
        except KeyError:
            raise r.fail("group", f"no such group: {group!r}") from None
    r.finish()
    return SendSocketConfig(path=path, group=group)


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")
_UNIT = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(r: _Reader, name: str, default: float) -> float:
    """``"5m"``, ``"1h"``, ``"5d"``, ``"30s"`` or a number of seconds; must be positive."""
    r.seen.add(name)
    if name not in r.table:
        return default
    value = r.table[name]
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise r.fail(name, f'expected a duration such as "5m", got {type(value).__name__}')
    if isinstance(value, str):
        m = _DURATION.fullmatch(value)
        if m is None:
            raise r.fail(name, f'expected a duration such as "30s", "5m", "1h" or "5d", got {value!r}')
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    else:
        seconds = float(value)
    if seconds <= 0:
        raise r.fail(name, f"must be positive, got {value!r}")
    return seconds


_ADDRESS = re.compile(r"[^@\s<>\x00-\x1f\x7f]+@[^@\s<>\x00-\x1f\x7f]+")


def _smtp(r: _Reader, warnings: list[str]) -> SmtpConfig:
    host = r.req_str("host")
    security = r.choice("security", ("tls", "starttls", "plain"), "starttls")
    port = r.int_("port", 465 if security == "tls" else 587, minimum=1, maximum=65535)
    if security == "plain" and not _is_loopback(host):
        raise r.fail("security", f"plain SMTP is only allowed to a loopback address, not {host!r}")
    mail_from = r.req_str("from")
    if not _ADDRESS.fullmatch(mail_from):
        raise r.fail("from", f"expected one address such as rathaus@example.org, got {mail_from!r}")
    username = r.str_("username")
    password = _read_secret_file(r, "password_file")
    if (username is None) != (password is None):
        raise r.fail("password_file" if password is None else "username", "give username and password_file together")
    min_backoff = _duration(r, "min_backoff", 300.0)
    max_backoff = _duration(r, "max_backoff", 3600.0)
    if max_backoff < min_backoff:
        raise r.fail("max_backoff", "must not be shorter than min_backoff")
    cfg = SmtpConfig(
        host=host,
        port=port,
        security=security,  # type: ignore[arg-type]
        mail_from=mail_from,
        username=username,
        password=password,
        ca_file=r.existing_file("ca_file"),
        request_dsn=r.bool_("request_dsn", True),
        request_mdn=r.bool_("request_mdn", False),
        min_backoff=min_backoff,
        max_backoff=max_backoff,
        max_lifetime=_duration(r, "max_lifetime", 5 * 86400.0),
        timeout=r.float_("timeout", 60.0, minimum=1.0),
        connections=r.int_("connections", 4, minimum=1, maximum=50),
    )
    r.finish()
    return cfg


def _holidays(r: _Reader, name: str) -> tuple[date, ...]:
    """Dates as TOML dates (``2026-12-25``) or strings (``"2026-12-25"``), each once."""
    out: list[date] = []
    for i, item in enumerate(r.list_(name)):
        key = f"{r.key(name)}[{i}]"
        if isinstance(item, str):
            try:
                item = date.fromisoformat(item.strip())
            except ValueError:
                raise ConfigError(r.file, key, f"expected a date such as 2026-12-25, got {item!r}") from None
        if isinstance(item, datetime) or not isinstance(item, date):
            raise ConfigError(r.file, key, f"expected a date such as 2026-12-25, got {item!r}")
        if item in out:
            raise ConfigError(r.file, key, f"{item.isoformat()} is listed twice")
        out.append(item)
    return tuple(sorted(out))


def _deliveries(r: _Reader) -> DeliveriesConfig:
    shift = r.choice("deemed_served_shift", DEEMED_SERVED_SHIFTS, DeliveriesConfig.deemed_served_shift)
    cfg = DeliveriesConfig(
        service_fiction_days=r.int_(
            "service_fiction_days", DeliveriesConfig.service_fiction_days, minimum=1, maximum=30
        ),
        deemed_served_shift=next(s for s in DEEMED_SERVED_SHIFTS if s == shift),
        public_holidays=_holidays(r, "public_holidays"),
        overdue_after=_duration(r, "overdue_after", DeliveriesConfig.overdue_after),
    )
    r.finish()
    return cfg


def _demail(r: _Reader) -> DemailConfig:
    """``[demail]``: the anchors are read here, so a bad PEM file stops the start-up.

    Enabled without anchors would make every provider signature "untrusted"; that is a
    configuration mistake, said now rather than on every De-Mail.
    """
    anchors = _path_list(r, "provider_trust_anchors")
    if anchors:
        from gateway.demail.anchors import load_provider_anchors  # x509 only when there are anchors to read

        load_provider_anchors(anchors, r.file)
    cfg = DemailConfig(
        enabled=r.bool_("enabled", DemailConfig.enabled),
        provider_trust_anchors=anchors,
        treat_authoritative_as_verified=r.bool_(
            "treat_authoritative_as_verified", DemailConfig.treat_authoritative_as_verified
        ),
    )
    if cfg.enabled and not anchors:
        raise r.fail("provider_trust_anchors", "enabled = true needs at least one provider CA certificate")
    r.finish()
    return cfg


def _mime_parts(lr: _Reader) -> int:
    """``max_mime_parts``: at most what the MIME cutter honours (``mime.cut.MAX_PARTS``).

    The cutter stops at its own bound whatever the configured limit, so a larger value
    would silently have no effect; one limit, checked here.
    """
    value = lr.int_("max_mime_parts", LimitsConfig.max_mime_parts, minimum=1)
    if value > MAX_PARTS:
        raise lr.fail(
            "max_mime_parts",
            f"must be between 1 and {MAX_PARTS} (the MIME parser's own bound on parts), got {value}",
        )
    return value


def parse_config(data: Mapping[str, Any], *, file: str, sha256: str = "", prefix: str = "") -> Config:
    """Validate an already-parsed TOML document; raises ConfigError on the first problem.

    A document with ``[[tenant]]`` blocks is one configuration per tenant (``config.tenants``);
    ``prefix`` (``tenant[1]``) is where a tenant's block sits, for the keys errors name.
    """
    if "tenant" in data and not prefix:
        from gateway.config.tenants import parse_tenants

        return parse_tenants(data, file=file, sha256=sha256)
    warnings: list[str] = []
    top = _Reader(file, prefix, data)
    sr = top.sub("storage", top.table_("storage"))
    if "storage" not in data:
        raise top.fail("storage", "is required")
    state_dir = sr.path("state_dir", required=True)
    assert state_dir is not None
    cases_dir = sr.path("cases_dir") or default_cases_dir(state_dir)
    if not state_dir.is_absolute() or not cases_dir.is_absolute():
        raise sr.fail("state_dir", "state_dir and cases_dir must be absolute paths")
    if state_dir.is_relative_to(cases_dir) or any(
        cases_dir.is_relative_to(state_dir / own) for own in ("quarantine", "staging", "audit")
    ):
        # The case folders are a share others write to; the ledger, the quarantine, the
        # staging directory and the audit key must not be reachable through it.
        raise sr.fail("cases_dir", f"must not be {state_dir} itself, contain it, or lie in its own folders")
    file_mode = _mode(sr, "file_mode", DEFAULT_FILE_MODE)
    dir_mode = _mode(sr, "dir_mode", DEFAULT_DIR_MODE)
    reason = modes_problem(file_mode, dir_mode)
    if reason is not None:
        raise sr.fail("file_mode", reason)
    backend, dsn, dsn_file = _store_backend(sr)
    node = _node_name(sr)
    lease_ttl = _duration(sr, "lease_ttl", StorageConfig.lease_ttl)
    if lease_ttl < 1.0:
        raise sr.fail("lease_ttl", f"must be at least 1s (renewals come every third of it), got {lease_ttl:g}s")
    spool_dir = _spool_dir(sr, cases_dir)
    quarantine_dir = _quarantine_dir(sr, cases_dir, spool_dir)
    sr.finish()
    storage = StorageConfig(
        state_dir=state_dir,
        cases_dir=cases_dir,
        file_mode=file_mode,
        dir_mode=dir_mode,
        backend=backend,
        dsn=dsn,
        dsn_file=dsn_file,
        node=node,
        lease_ttl=lease_ttl,
        spool_dir=spool_dir,
        quarantine_dir=quarantine_dir,
    )

    lr = top.sub("limits", top.table_("limits"))
    limits = LimitsConfig(
        max_message_bytes=lr.int_("max_message_bytes", LimitsConfig.max_message_bytes, minimum=1024),
        max_mime_depth=lr.int_("max_mime_depth", LimitsConfig.max_mime_depth, minimum=1, maximum=100),
        max_mime_parts=_mime_parts(lr),
    )
    lr.finish()

    pr = top.sub("processing", top.table_("processing"))
    processing = ProcessingConfig(
        analysis_workers=pr.int_("analysis_workers", default_analysis_workers(), minimum=0, maximum=64)
    )
    pr.finish()

    mailboxes = tuple(_mailbox(r, warnings) for r in _tables(top, "mailbox"))
    names = [m.name for m in mailboxes]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise ConfigError(file, top.key(f"mailbox[{i}].name"), f"duplicate mailbox name {n!r}")

    routes = tuple(_route(r) for r in _tables(top, "route"))
    rr = top.sub("routing", top.table_("routing"))
    routing = RoutingConfig(
        unassigned=rr.str_("unassigned", "_unassigned") or "_unassigned",
        folder_slash=rr.choice("folder_slash", ("percent", "readable"), "percent"),  # type: ignore[arg-type]
    )
    if not re.fullmatch(r"_[A-Za-z0-9_-]{1,60}", routing.unassigned):
        raise rr.fail("unassigned", "must start with '_' (reserved for the gateway) and use [A-Za-z0-9_-]")
    rr.finish()

    policy = _policy(top.sub("policy", top.table_("policy")))

    lgr = top.sub("logging", top.table_("logging"))
    logging_cfg = LoggingConfig(
        level=lgr.choice("level", ("debug", "info", "warning", "error"), "info"),
        format=lgr.choice("format", ("auto", "json", "console"), "auto"),  # type: ignore[arg-type]
    )
    lgr.finish()

    ar = top.sub("audit", top.table_("audit"))
    audit = AuditConfig(
        key_file=ar.secret_path("key_file", must_exist=False),  # made 0600 on first start
        jsonl_file=ar.path("jsonl_file"),
        checkpoint_every=ar.int_("checkpoint_every", 1000, minimum=1),
    )
    ar.finish()

    ui = _ui(top.sub("ui", top.table_("ui")))

    smime = _smime(top.sub("smime", top.table_("smime"))) if "smime" in data else None
    openpgp = _openpgp(top.sub("openpgp", top.table_("openpgp")), state_dir) if "openpgp" in data else None
    submission = _submission(top.sub("submission", top.table_("submission"))) if "submission" in data else None
    outbound = _outbound(top.sub("outbound", top.table_("outbound")), smime, openpgp) if "outbound" in data else None
    smtp = _smtp(top.sub("smtp", top.table_("smtp")), warnings) if "smtp" in data else None
    deliveries = _deliveries(top.sub("deliveries", top.table_("deliveries")))
    demail = _demail(top.sub("demail", top.table_("demail")))
    metrics = _metrics(top.sub("metrics", top.table_("metrics"))) if "metrics" in data else None
    send_socket = _send_socket(top.sub("send_socket", top.table_("send_socket"))) if "send_socket" in data else None
    top.finish()
    _check_acknowledgements(file, routes, smtp, outbound, smime, openpgp, prefix=top.key(""))
    return Config(
        path=Path(file),
        sha256=sha256,
        storage=storage,
        limits=limits,
        processing=processing,
        mailboxes=mailboxes,
        routes=routes,
        routing=routing,
        policy=policy,
        logging=logging_cfg,
        audit=audit,
        smime=smime,
        openpgp=openpgp,
        warnings=tuple(warnings),
        ui=ui,
        submission=submission,
        outbound=outbound,
        smtp=smtp,
        deliveries=deliveries,
        demail=demail,
        metrics=metrics,
        send_socket=send_socket,
    )


def load_config(path: Path, *, parse: Callable[..., Config] = parse_config) -> Config:
    """Read and validate the config file; any problem raises ConfigError naming the file."""
    import hashlib

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(str(path), "-", "configuration file not found") from None
    except OSError as exc:
        raise ConfigError(str(path), "-", f"cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(path), "-", "not UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "-", f"invalid TOML: {exc}") from None
    return parse(data, file=str(path), sha256=hashlib.sha256(raw).hexdigest())
