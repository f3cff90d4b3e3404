"""The configuration as frozen values: what every other module reads, never the TOML itself."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

DEFAULT_CONFIG_PATH = Path("/etc/poststelle/poststelle.toml")
Security = Literal["tls", "starttls", "plain"]
StoreBackend = Literal["sqlite", "postgresql"]


#: Below this length a secret is masked only as a word of its own (``Secret.mask``).
SHORT_SECRET = 8


class Secret:
    """A password that never shows up in reprs, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def mask(self, text: str) -> str:
        """``text`` with the secret replaced by ``***``, for error texts that may echo it.

        A long secret is masked wherever it appears. A short one only where it stands as a
        word of its own: masking a one-character password everywhere would garble the text
        while hiding nothing an attacker could not guess.
        """
        value = self._value
        if not value:
            return text
        if len(value) >= SHORT_SECRET:
            return text.replace(value, "***")
        return re.sub(r"(?<!\w)" + re.escape(value) + r"(?!\w)", "***", text)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class StorageConfig:
    state_dir: Path
    cases_dir: Path
    #: Modes of what the gateway writes, whatever the umask (``gateway.filemodes``); a group
    #: on ``cases_dir`` gives the clerks read access (docs/case-folders.md, "Who may read").
    file_mode: int = 0o640
    dir_mode: int = 0o750
    #: Where messages, the outbox and the trail are kept: ``sqlite`` (one file under
    #: ``state_dir``, the embedded default) or ``postgresql`` (the database ``dsn`` names).
    backend: StoreBackend = "sqlite"
    #: The PostgreSQL connection string, password included, read from ``dsn_file``.
    dsn: Secret | None = None
    dsn_file: Path | None = None
    #: A tenant's own PostgreSQL schema (``tenant_<name>``) in the shared database: every
    #: table, the audit chain's head included, is the tenant's alone. None: the default schema.
    schema: str | None = None
    #: This gateway's name among the nodes sharing one database: the holder of its mailbox
    #: leases. Stable across restarts (default: the host name), so a node that comes back
    #: is recognised as the one that held them.
    node: str = ""
    #: How long a mailbox lease lasts without renewal (seconds): the longest another node
    #: waits before taking over the mailboxes of a node that died.
    lease_ttl: float = 30.0
    #: The outbox's spool files; ``None``: ``<state_dir>/outbox``. Several nodes share one.
    spool_dir: Path | None = None
    #: Quarantined entries; ``None``: ``<state_dir>/quarantine``. Several nodes share one, so
    #: that any node can release what another quarantined.
    quarantine_dir: Path | None = None


@dataclass(frozen=True)
class LimitsConfig:
    """Bounds for hostile input: anything beyond them is quarantined with the bytes kept."""

    max_message_bytes: int = 50 * 1024 * 1024
    max_mime_depth: int = 20
    max_mime_parts: int = 500


def default_analysis_workers() -> int:
    """One analysis process per core (at most 4) on multi-core machines; in-process on one core.

    Analysis (MIME, CMS, RSA) is CPU-bound Python, so a second core pays off for signed
    and encrypted mail, while plain mail gains little; the workers also write the entries'
    files. Each worker costs memory of its own (an interpreter and its unwrap context),
    hence the cap. benchmarks/smime_ingest.py and benchmarks/ingest.py measure both.
    """
    cores = os.cpu_count() or 1
    return min(cores, 4) if cores > 1 else 0


@dataclass(frozen=True)
class ProcessingConfig:
    """How much of the machine the analysis may use (0 = in the mailbox thread)."""

    analysis_workers: int = 0


@dataclass(frozen=True)
class MailboxConfig:
    name: str
    host: str
    port: int
    security: Security
    username: str
    password: Secret = field(repr=False)
    ca_file: Path | None = None
    folder: str = "INBOX"
    processed_folder: str = "Poststelle/Processed"
    quarantine_folder: str = "Poststelle/Quarantine"
    idle: bool = True
    poll_interval: float = 60.0
    #: Seconds an IDLE lasts before it is renewed (RFC 2177: under 29 minutes). News ends
    #: it at once; the renewal only keeps the connection alive and re-checks the folder.
    idle_renewal: float = 300.0
    batch_size: int = 50
    timeout: float = 60.0
    #: Seconds before a login the server rejected is tried again (a restart tries at once).
    auth_retry_interval: float = 3600.0


@dataclass(frozen=True)
class PolicyConfig:
    require_signature: bool = False
    require_encryption: bool = False


@dataclass(frozen=True)
class RouteConfig:
    name: str
    subject: re.Pattern[str]
    case: str
    from_: re.Pattern[str] | None = None
    policy: PolicyConfig | None = None
    #: A verified message with identity warnings (Sender or Reply-To not the signer) goes to
    #: quarantine instead of this route's case folder.
    require_clean_identity: bool = False
    #: Only De-Mails sent "absenderbestätigt" with a proven provider signature ([demail]).
    require_demail_authoritative: bool = False
    #: Send the verified signer of a document filed by this route a signed acknowledgement
    #: of receipt (an MDN, ``gateway.receipts.acknowledge``); needs ``[smtp]`` and a signing key.
    acknowledge: bool = False


@dataclass(frozen=True)
class RoutingConfig:
    unassigned: str = "_unassigned"
    #: How ``/`` in a case reference appears in its folder name: ``percent`` (``%2F``) or
    #: ``readable`` (U+2215 ``∕``). Choose before the first message is filed: changing it
    #: later gives new mail for an existing case a second folder (docs/case-folders.md).
    folder_slash: Literal["percent", "readable"] = "percent"


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    format: Literal["auto", "json", "console"] = "auto"


@dataclass(frozen=True)
class AuditConfig:
    """Where the audit trail's signing key and shipping file live (defaults under state_dir)."""

    key_file: Path | None = None
    jsonl_file: Path | None = None
    checkpoint_every: int = 1000


Language = Literal["en", "de"]
LANGUAGES: tuple[Language, ...] = ("en", "de")


@dataclass(frozen=True)
class UiConfig:
    """``[ui]``: how people read times and words; the record itself stays UTC and language-free.

    ``timezone`` is an IANA zone name (checked with ``zoneinfo`` at load time): legal
    deadlines run in local calendar days, so reports and tables show local times.
    """

    timezone: str = "Europe/Berlin"
    language: Language = "en"


@dataclass(frozen=True)
class SmimeIdentityConfig:
    key_file: Path | None = None
    cert_file: Path | None = None
    pkcs12_file: Path | None = None
    password_file: Path | None = None


RevocationMode = Literal["require", "if-configured", "off"]
REVOCATION_MODES: tuple[RevocationMode, ...] = ("require", "if-configured", "off")


@dataclass(frozen=True)
class SmimeConfig:
    """``[smime]``; revocation: which certificates need a usable CRL (docs/verdict.md).

    ``crl_grace`` (seconds) is how long past its nextUpdate a CRL still counts;
    ``fetch_crls`` fetches CRLs from the certificates' http distribution points into
    the state directory, each response bounded by ``crl_fetch_timeout`` (seconds) and
    ``crl_max_bytes``.
    """

    identities: tuple[SmimeIdentityConfig, ...] = ()
    trust_anchors: tuple[Path, ...] = ()
    crl_files: tuple[Path, ...] = ()
    min_rsa_bits: int = 2048
    allow_sha1: bool = False
    revocation: RevocationMode = "if-configured"
    fetch_crls: bool = False
    crl_grace: float = 0.0
    crl_fetch_timeout: float = 10.0
    crl_max_bytes: int = 20 * 1024 * 1024


@dataclass(frozen=True)
class PinnedKey:
    email: str
    fingerprint: str


@dataclass(frozen=True)
class OpenPGPConfig:
    gnupg_home: Path
    secret_keys: tuple[Path, ...] = ()
    passphrase_file: Path | None = None
    correspondents: Path | None = None
    correspondents_trusted: bool = False
    pinned: tuple[PinnedKey, ...] = ()


SignMode = Literal["smime", "openpgp", "none"]
SIGN_MODES: tuple[SignMode, ...] = ("smime", "openpgp", "none")
EncryptMode = Literal["auto", "always", "never"]
ENCRYPT_MODES: tuple[EncryptMode, ...] = ("auto", "always", "never")


@dataclass(frozen=True)
class OutboundConfig:
    """``[outbound]``: how documents a clerk sends are protected (docs/outbound.md).

    ``sign`` names the scheme of the authority's signature; encryption uses the same
    scheme (with ``sign = "none"``: S/MIME when ``[smime]`` is configured, else OpenPGP).
    ``encrypt = "auto"`` encrypts when every recipient's certificate or key is known,
    ``"always"`` refuses to compose otherwise. ``correspondents_dir`` holds recipients'
    S/MIME certificates given by people (PEM or DER files), beside the certificate store
    filled from verified incoming mail.
    """

    sign: SignMode = "smime"
    encrypt: EncryptMode = "auto"
    copy_to_sent_folder: bool = True
    correspondents_dir: Path | None = None
    #: Seconds an outbox claim holds unless renewed; another node takes the document over after it.
    claim_ttl: float = 120.0


@dataclass(frozen=True)
class SubmissionConfig:
    """``[submission]``: the local SMTP listener where clerks' mail programs hand in letters.

    ``sender`` is the authority's address: the only envelope sender and header From the
    listener accepts, because the letter goes out signed with the authority's identity and
    a different From would contradict the signature. ``tls_cert``/``tls_key`` turn on
    STARTTLS; without them the listener must be on a loopback address (AUTH is never
    offered in the clear across a network).
    """

    host: str
    port: int
    users_file: Path
    sender: str
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


@dataclass(frozen=True)
class SmtpConfig:
    """``[smtp]``: the relay outgoing documents are handed to, and how politely to retry.

    ``plain`` (no TLS) is allowed only to a loopback relay, so the password and the
    documents never cross a network in clear. Durations are seconds (the file says
    ``"5m"``, ``"1h"``, ``"5d"``). DSN is asked for only when the relay offers it.
    """

    host: str
    port: int
    security: Security
    mail_from: str
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    ca_file: Path | None = None
    request_dsn: bool = True
    request_mdn: bool = False
    min_backoff: float = 300.0
    max_backoff: float = 3600.0
    max_lifetime: float = 5 * 86400.0
    timeout: float = 60.0
    connections: int = 4  # at most this many transactions with the relay at once (Postfix's concurrency limit)


DeemedServedShift = Literal["next-working-day", "none"]
DEEMED_SERVED_SHIFTS: tuple[DeemedServedShift, ...] = ("next-working-day", "none")


@dataclass(frozen=True)
class DeliveriesConfig:
    """``[deliveries]``: the service fiction of §5a VwZG and when a delivery counts as overdue.

    A De-Mail document counts as served on day ``service_fiction_days`` after its dispatch
    unless a retrieval confirmation arrives first; ``deemed_served_shift`` says whether a
    day N on a Saturday, Sunday or one of ``public_holidays`` moves to the next working day
    (docs/deliveries.md, "The calendar rule"). Holidays differ per Land, so they are listed
    here, not built in. ``overdue_after`` (seconds) flags a document still without delivery
    evidence that long after it was queued.
    """

    service_fiction_days: int = 4
    deemed_served_shift: DeemedServedShift = "next-working-day"
    public_holidays: tuple[date, ...] = ()
    overdue_after: float = 2 * 86400.0


@dataclass(frozen=True)
class DemailConfig:
    """``[demail]``: reading De-Mail metadata and proving the provider's integrity value.

    ``provider_trust_anchors`` are the CA certificates (PEM) the provider signing
    certificates must chain to; they are the only source of trust for
    ``X-de-mail-integrity`` (never DNS, never the S/MIME anchors).
    ``treat_authoritative_as_verified``: a De-Mail sent "absenderbestätigt" with a valid
    provider signature counts as verified for its sender address without S/MIME, because
    the provider vouches for the sender (docs/demail.md). The service fiction's number of
    days lives in ``[deliveries] service_fiction_days``.
    """

    enabled: bool = False
    provider_trust_anchors: tuple[Path, ...] = ()
    treat_authoritative_as_verified: bool = True


@dataclass(frozen=True)
class SendSocketConfig:
    """``[send_socket]``: where clerks' ``poststelle send`` hands letters to the running daemon.

    Clerks may not read the authority's signing key, the configuration or the outbox, so
    their ``send`` cannot compose and queue by itself (as Postfix's ``sendmail`` cannot
    write the queue and hands mail to ``postdrop``). The daemon listens on a Unix socket of
    mode 0660 in ``group`` (or in the group of its setgid directory, as tmpfiles.d makes
    ``/run/poststelle``): who may connect is decided by the file system, and who did is
    read from the kernel (``SO_PEERCRED``), never from what the client says.
    """

    path: Path
    group: str | None = None


@dataclass(frozen=True)
class MetricsConfig:
    """``[metrics]``: the Prometheus text endpoint (``/metrics``) the daemon serves.

    The figures name mailboxes and queue sizes, which an authority need not publish, and
    the endpoint has no authentication: it listens on a loopback address unless
    ``allow_remote`` says a person decided otherwise.
    """

    host: str
    port: int
    allow_remote: bool = False


@dataclass(frozen=True)
class Config:
    path: Path
    sha256: str
    storage: StorageConfig
    limits: LimitsConfig
    processing: ProcessingConfig
    mailboxes: tuple[MailboxConfig, ...]
    routes: tuple[RouteConfig, ...]
    routing: RoutingConfig
    policy: PolicyConfig
    logging: LoggingConfig
    audit: AuditConfig
    smime: SmimeConfig | None
    openpgp: OpenPGPConfig | None
    warnings: tuple[str, ...] = ()
    ui: UiConfig = field(default_factory=UiConfig)
    submission: SubmissionConfig | None = None
    outbound: OutboundConfig | None = None
    smtp: SmtpConfig | None = None
    deliveries: DeliveriesConfig = field(default_factory=DeliveriesConfig)
    demail: DemailConfig = field(default_factory=DemailConfig)
    metrics: MetricsConfig | None = None
    send_socket: SendSocketConfig | None = None
    #: ``[[tenant]] name`` when this is one tenant's configuration (docs/hosting.md, "Tenants").
    tenant: str | None = None
    #: One complete configuration per ``[[tenant]]`` block; empty for a file without tenants.
    tenants: tuple[Config, ...] = ()

    def tenant_config(self, name: str) -> Config:
        """The configuration of tenant ``name``; KeyError when the file has no such tenant."""
        for t in self.tenants:
            if t.tenant == name:
                return t
        raise KeyError(name)

    def mailbox(self, name: str) -> MailboxConfig:
        for mb in self.mailboxes:
            if mb.name == name:
                return mb
        raise KeyError(name)
