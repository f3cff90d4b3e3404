"""What ``poststelle check`` tests: config, key material, storage, credentials, connectivity.

Returns results as data and prints nothing, so the CLI (and a monitoring probe) decides how
to show them. Each check is independent: a failed mailbox does not hide the others.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gateway.clock import utcnow
from gateway.config import Config
from gateway.errors import ConfigError, LoginRejected, TransientError
from gateway.inbound.imap import MailboxSession
from gateway.records.open import database_check, store_name
from gateway.statedir import cases_dir
from gateway.unwrap import UnwrapContext


@dataclass(frozen=True)
class CheckResult:
    check: str  # "config" | "routes" | "keys" | "crl" | "outbound" | "storage" | "submission" | "mailbox" | "smtp"
    target: str
    ok: bool
    detail: str = ""
    warning: bool = False  # worth a look, but the gateway works (does not fail the check)

    def to_json(self) -> dict[str, str]:
        result = "FAILED" if not self.ok else "WARNING" if self.warning else "ok"
        return {"check": self.check, "target": self.target, "result": result, "detail": self.detail}


def run_checks(config: Config) -> list[CheckResult]:
    """Every check, in the order a person fixes them; connects to each mailbox once."""
    results = [CheckResult("config", str(config.path), True, config.sha256[:16])]
    results += route_checks(config)
    try:
        ctx = UnwrapContext.from_config(config, collect_certificates=False)
        results.append(CheckResult("keys", "smime/openpgp", True))
        results += crl_checks(ctx)
        ctx.close()
    except ConfigError as exc:
        results.append(CheckResult("keys", f"{exc.file}: {exc.key}", False, exc.problem))
    results += outbound_checks(config)
    for d in (config.storage.state_dir, cases_dir(config)):
        ok, detail = writable(d)
        results.append(CheckResult("storage", str(d), ok, detail))
    if config.storage.backend == "postgresql":
        ok, detail = database_check(config)
        results.append(CheckResult("storage", store_name(config), ok, detail))
    results += submission_checks(config)
    for mb in config.mailboxes:
        session = MailboxSession(mb)
        try:
            session.connect()
            backlog = len(session.list_uids())
            detail = f"{mb.security} {mb.host}:{mb.port}, {backlog} waiting in {mb.folder}"
            results.append(CheckResult("mailbox", mb.name, True, detail))
        except (TransientError, LoginRejected) as exc:  # worded by inbound/failures.py, as in `status`
            results.append(CheckResult("mailbox", mb.name, False, str(exc)))
        finally:
            session.close()
    if config.smtp is not None:
        results.append(smtp_check(config))
    return results


def outbound_checks(config: Config) -> list[CheckResult]:
    """``[outbound]``: the signing key loads, so ``send`` fails on letters, never on the setup."""
    if config.outbound is None:
        return []
    from gateway.outbound.protect import OutboundKeys

    out = config.outbound
    try:
        keys = OutboundKeys.from_config(config)
    except ConfigError as exc:
        return [CheckResult("outbound", f"{exc.file}: {exc.key}", False, exc.problem)]
    try:
        corr = len(keys.finder.correspondents)
        detail = f"sign={out.sign} encrypt={out.encrypt}, {corr} certificate(s) in correspondents_dir"
        return [CheckResult("outbound", "sign/encrypt", True, detail)]
    finally:
        keys.close()


def smtp_check(config: Config) -> CheckResult:
    """The relay: reachable, TLS as configured, the login accepted; and whether it offers DSN."""
    import smtplib

    from gateway.outbound.smtp import SmtpAgent

    assert config.smtp is not None
    target = f"{config.smtp.host}:{config.smtp.port}"
    try:
        detail = SmtpAgent(config.smtp).probe()
    except (OSError, smtplib.SMTPException) as exc:
        return CheckResult("smtp", target, False, f"{type(exc).__name__}: {exc}")
    if config.smtp.request_dsn and "dsn" not in detail:
        return CheckResult("smtp", target, True, detail + "; no DSN: delivery receipts cannot be asked for", True)
    return CheckResult("smtp", target, True, detail)


def route_checks(config: Config) -> list[CheckResult]:
    """A rule that matches none of the sample subjects is most likely mistyped."""
    from gateway.routing.dryrun import SAMPLE_SUBJECTS, rules_matching_no_sample

    return _slash_style_checks(config) + [
        CheckResult(
            "routes",
            name,
            True,
            f"matches none of the {len(SAMPLE_SUBJECTS)} sample subjects; try: poststelle route test SUBJECT",
            warning=True,
        )
        for name in rules_matching_no_sample(config.routes)
    ]


def _slash_style_checks(config: Config) -> list[CheckResult]:
    """Case folders named in the other ``folder_slash`` style: their cases get a second folder."""
    from gateway.routing.casenames import READABLE_SLASH

    other = "%2F" if config.routing.folder_slash == "readable" else READABLE_SLASH
    try:
        names = sorted(e.name for e in os.scandir(cases_dir(config)) if e.is_dir() and other in e.name)
    except OSError:
        return []
    if not names:
        return []
    detail = (
        f"{len(names)} case folder(s) use {other!r} for '/' (e.g. {names[0]!r}), but folder_slash is "
        f"{config.routing.folder_slash!r}: new mail for those cases opens a second folder"
    )
    return [CheckResult("routes", "folder_slash", True, detail, warning=True)]


def crl_checks(ctx: UnwrapContext) -> list[CheckResult]:
    """Each S/MIME trust anchor's CRL state (and each fetched distribution point's)."""
    from gateway.unwrap.smime.handler import SmimeHandler

    results: list[CheckResult] = []
    for handler in ctx.handlers:
        if isinstance(handler, SmimeHandler) and handler.material.configured:
            for line in handler.validator.crl_report(utcnow()):
                results.append(CheckResult("crl", line.target, line.ok, line.detail))
    return results


def writable(d: Path) -> tuple[bool, str]:
    """Can the gateway create files there? A missing directory fails: start-up never creates it."""
    if not d.exists():
        return False, "missing (create it with `poststelle init`, or mount the share)"
    if not d.is_dir():
        return False, "not a directory"
    try:
        with tempfile.NamedTemporaryFile(dir=d):
            pass
    except OSError as exc:
        return False, f"not writable: {exc.strerror}"
    return True, ""


def submission_checks(config: Config) -> list[CheckResult]:
    """The submission listener's users file: readable and well-formed; a warning when nobody is in it."""
    sub = config.submission
    if sub is None:
        return []
    from gateway.outbound.users import UsersFile

    target = str(sub.users_file)
    try:
        count = UsersFile(sub.users_file).check()
    except ConfigError as exc:
        return [CheckResult("submission", target, False, f"{exc.key}: {exc.problem}")]
    if count == 0:
        return [CheckResult("submission", target, True, "no users: nobody can submit", warning=True)]
    tls = "STARTTLS" if sub.tls else "no TLS (loopback)"
    return [CheckResult("submission", target, True, f"{count} user(s); {sub.host}:{sub.port}, {tls}")]
