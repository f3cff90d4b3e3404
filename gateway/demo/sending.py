"""The outbound half of ``poststelle demo``: a document sent for a case, and the receipts that come back.

After the intake has filed the court's verified S/MIME letter, the town hall answers it:
``poststelle send`` signs the document with the town hall's identity and encrypts it to
the court's certificate, which the certificate store learnt from that verified letter
(``encrypt = "auto"``). The outbox is drained into a throwaway Postfix, which delivers by
LMTP into the demo's Dovecot, where the court has a mailbox of its own. The demo shows the
outbox row, the sent copy in the case folder, the letter as it arrived at the court and
what the court's Poststelle makes of it.

Then the receipts: Postfix's delivery status notification comes back to the town hall's
INBOX (the envelope sender), and the court's clerk opens the letter and lets the mail
program send a return receipt (an MDN, ``demo/receipts.py``) through the same Postfix.
One ``run --once`` takes both in: they are matched to the sent document, filed under the
case's ``receipts/`` and move its delivery record (submitted, relayed, displayed), which
the demo prints with ``poststelle deliveries show``.

The drain is the daemon's outbox pass alone (``service.outbox_worker``), so that the DSN
is still in the INBOX when the receipts' run starts, whichever is quicker, Postfix or the
intake: the demo's output is the same on every machine.

Postfix's master must start as root. Elsewhere the sending part is skipped with one line
saying why, and the configuration gets no ``[smtp]``/``[outbound]`` at all, so the inbound
part runs unchanged.
"""

from __future__ import annotations

import contextlib
import json
import re
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any, TypeVar

import typer
from cryptography.hazmat.primitives import serialization

from gateway.clock import utcnow
from gateway.config import Config, load_config
from gateway.demo.dovecot import Dovecot
from gateway.demo.pki import RECIPIENT, SENDER, DemoPKI
from gateway.demo.postfix import Postfix, postfix_unavailable
from gateway.demo.receipts import thunderbird_mdn
from gateway.demo.samples import fake_pdf
from gateway.records.open import open_store
from gateway.service.daemon import Daemon
from gateway.service.outbox_worker import run_outbox
from gateway.statedir import cases_dir
from gateway.ui.reasons import signature_state

#: The town hall's address: the ``[smtp] from``, named by its demo certificate (pki.RECIPIENT).
AUTHORITY = RECIPIENT
#: The town hall's Dovecot login (Dovecot's LMTP delivers ``local@any.domain`` to user ``local``).
AUTHORITY_USER = AUTHORITY.partition("@")[0]
#: The correspondent: the court whose verified letter put its certificate into the store.
CORRESPONDENT = SENDER
#: The court's Dovecot login.
CORRESPONDENT_USER = CORRESPONDENT.partition("@")[0]
CORRESPONDENT_PASSWORD = "demo-only-court-password"  # noqa: S105 - a throwaway server's throwaway account
#: The court's case the town hall answers in (the case folder the intake made for its letters).
CASE = "VG 1 K 1234/25"
SUBJECT = "Stellungnahme der Stadt"
#: How long Postfix may take to hand the letter and its DSN to Dovecot; bounds a failure only.
DELIVERY_TIMEOUT = 30.0
T = TypeVar("T")
_DSN_FIELDS = re.compile(rb"^(Final-Recipient|Action|Status|Remote-MTA|Diagnostic-Code):[^\r\n]*", re.M)
_MDN_FIELDS = re.compile(rb"^(Final-Recipient|Original-Message-ID|Disposition):[^\r\n]*", re.M)
#: The delivery states the demo's document must have passed through, in order.
EXPECTED_STEPS = ("queued", "submitted", "relayed", "displayed")


def sending_unavailable() -> str | None:
    """Why the demo cannot send here (Postfix needs root), or None."""
    return postfix_unavailable()


@contextlib.contextmanager
def demo_relay(work: Path, server: Dovecot) -> Iterator[Postfix | None]:
    """A throwaway Postfix delivering both demo domains into ``server``; None (said why) where it cannot run."""
    reason = sending_unavailable()
    if reason is not None:
        typer.echo(f"== sending a document: skipped ({reason})")
        yield None
        return
    domains = f"{AUTHORITY.partition('@')[2]} {CORRESPONDENT.partition('@')[2]}"
    with Postfix(work / "postfix", lmtp_port=server.lmtp_port, mailbox_domain=domains) as relay:
        yield relay


def outbound_toml(relay: Postfix | None) -> str:
    """``[smtp]`` (plain to the loopback Postfix, DSN requested) and ``[outbound]``; empty without a relay."""
    if relay is None:
        return ""
    return f"""
[smtp]
host = "{relay.host}"
port = {relay.port}
security = "plain"                # loopback only
from = "{AUTHORITY}"
request_dsn = true
timeout = 10

[outbound]
sign = "smime"                    # the [smime] identity whose certificate names {AUTHORITY}
encrypt = "auto"                  # the court's certificate is known from its verified letter
copy_to_sent_folder = true
"""


@dataclass
class SendingResult:
    """What the sending part saw; ``ok`` only when every step did what the demo promises."""

    outbound_id: str = ""
    envid: str = ""
    state: str = ""
    message_id: str = ""
    arrived: bool = False
    verdict: str = ""
    dsn: bool = False
    mdn: bool = False
    steps: tuple[str, ...] = ()  # the delivery record's steps, oldest first
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        sent = self.state == "sent" and self.arrived and self.verdict == "verified"
        return not self.problems and sent and self.dsn and self.mdn and self.steps == EXPECTED_STEPS


def _write_court(work: Path, pki: DemoPKI) -> Path:
    """The court's own Poststelle configuration: its key, the demo root as trust anchor."""
    court = work / "court"
    court.mkdir(parents=True, exist_ok=True)
    key = court / "court.key"
    key.touch(mode=0o600)
    key.chmod(0o600)
    key.write_bytes(
        pki.sender.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert = court / "court.pem"
    cert.write_bytes(pki.sender.cert.public_bytes(serialization.Encoding.PEM))
    config = court / "poststelle.toml"
    config.write_text(
        f"""# The court's side of the demo: only what `poststelle inspect` needs.
[storage]
state_dir = "{court}/state"

[smime]
identities = [{{ key_file = "{key}", cert_file = "{cert}" }}]
trust_anchors = ["{pki.root_file}"]
""",
        encoding="utf-8",
    )
    return config


def _outgoing(work: Path) -> tuple[Path, Path]:
    out = work / "outgoing"
    out.mkdir(parents=True, exist_ok=True)
    pdf = out / "Stellungnahme.pdf"
    pdf.write_bytes(fake_pdf(25_000, seed=7))
    body = out / "anschreiben.txt"
    body.write_text(
        "Sehr geehrte Damen und Herren,\n\nanbei die Stellungnahme der Stadt zur Klage.\n\n"
        "Mit freundlichen Grüßen\nStadt Beispielstadt\n",
        encoding="utf-8",
    )
    return pdf, body


def _wait(found: Callable[[], T | None]) -> T | None:
    """Poll a mailbox until Postfix has delivered; the deadline only bounds a failure."""
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    while True:
        got = found()
        if got is not None or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def _fetch(server: Dovecot, user: str, folder: str, match: Callable[[bytes], bool]) -> bytes | None:
    with server.client(user, tls=False) as conn:
        if not conn.folder_exists(folder):
            return None
        conn.select_folder(folder, readonly=True)
        uids = conn.search("ALL")
        if not uids:
            return None
        for data in conn.fetch(uids, ["BODY.PEEK[]"]).values():
            raw: bytes = data[b"BODY[]"]
            if match(raw):
                return raw
    return None


def _send(config_path: Path, pdf: Path, body: Path, res: SendingResult) -> dict[str, Any] | None:
    """``poststelle send`` itself (the clerk's command), as a subprocess: its JSON summary."""
    args = ["send", "--case", CASE, "--to", CORRESPONDENT, "--subject", SUBJECT, "--body", str(body), str(pdf)]
    typer.echo(f"== poststelle send --case '{CASE}' --to {CORRESPONDENT} --subject '{SUBJECT}' \\")
    typer.echo(f"       --body {body} {pdf}")
    done = subprocess.run(
        [sys.executable, "-m", "cli", *args, "--json", "-c", str(config_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        res.problems.append(f"send failed: {done.stderr.strip() or done.stdout.strip()}")
        typer.echo(f"   FAILED: {done.stderr.strip() or done.stdout.strip()}")
        return None
    summary: dict[str, Any] = json.loads(done.stdout)
    res.outbound_id = summary["outbound_id"]
    res.message_id = summary["message_id"]
    keys = "; ".join(f"{k['recipient']}: {k['source']}" for k in summary["keys"]) or "-"
    protection = f"signed ({summary['signed']})" + (", encrypted" if summary["encrypted"] else ", not encrypted")
    typer.echo(f"   queued as {res.outbound_id}: {protection}")
    typer.echo(f"   certificates used: {keys}")
    return summary


def _drain(config: Config, res: SendingResult) -> None:
    typer.echo("== the outbox pass of poststelle run (the intake waits for the receipts)")

    def failed(error: str) -> None:
        res.problems.append(f"outbox: {error}")
        typer.echo(f"   outbox FAILED: {error}")

    run_outbox(config, threading.Event(), once=True, on_pass=lambda _: None, on_failure=failed)
    store = open_store(config, readonly=True)
    try:
        rec = store.outbox_get(res.outbound_id)
    finally:
        store.close()
    if rec is None:
        res.problems.append("the outbox row is missing")
        return
    res.state, res.envid = rec.state, rec.envid
    typer.echo(f"== outbox row {rec.id}: {rec.state} after {rec.attempts} attempt(s), ENVID {rec.envid}")
    for r in rec.recipients:
        typer.echo(f"   {r.address}: {r.state}, relay replied '{r.reply}', Postfix queue id {r.queue_id}")
    if rec.sent_path:
        sent = Path(rec.sent_path)
        typer.echo(f"== sent copy in the case folder: {sent.relative_to(cases_dir(config))}/")
        for f in sorted(p for p in sent.rglob("*") if p.is_file()):
            typer.echo(f"     {f.relative_to(sent)}  ({f.stat().st_size} bytes)")
    if rec.sent_folder:
        typer.echo(f"   and a copy in the town hall's IMAP folder '{rec.sent_folder}'")


def _arrival(work: Path, server: Dovecot, pki: DemoPKI, message_id: str, res: SendingResult) -> bytes | None:
    needle = f"Message-ID: <{message_id}>".lower().encode()
    raw = _wait(lambda: _fetch(server, CORRESPONDENT_USER, "INBOX", lambda m: needle in m.lower()))
    if raw is None:
        res.problems.append("the letter did not arrive in the court's mailbox")
        log = work / "postfix" / "postfix.log"
        typer.echo(f"== the letter did NOT arrive in the court's mailbox (Postfix's log: {log})")
        return None
    res.arrived = True
    received = work / "received-by-court.eml"
    received.write_bytes(raw)
    msg = message_from_bytes(raw, policy=default)
    typer.echo(f"== arrived in the court's mailbox ('{CORRESPONDENT_USER}', IMAP): {len(raw)} bytes")
    typer.echo(f"   saved as {received}")
    for name in ("Return-Path", "From", "To", "Subject", "Content-Type"):
        typer.echo(f"   {name}: {str(msg.get(name, '-'))[:90]}")
    from gateway.inbound.decide import analyse
    from gateway.unwrap import UnwrapContext

    court = load_config(_write_court(work, pki))
    ctx = UnwrapContext.from_config(court, collect_certificates=False, fetch_crls=False)
    try:
        verdict = analyse(raw, court, ctx, at=utcnow()).verdict.to_json()
    finally:
        ctx.close()
    res.verdict = str(verdict.get("verdict"))
    sig = verdict.get("signature") or {}
    enc = verdict.get("encryption") or {}
    state = signature_state(verdict)
    typer.echo("== the court's Poststelle on it (poststelle inspect with the court's key):")
    words = state.text() if state is not None else sig.get("status")
    typer.echo(f"   verdict {res.verdict}: {words}, signed by {sig.get('signer')}; encryption {enc.get('status')}")
    reasons = ", ".join(verdict.get("reasons") or [])
    if reasons:
        typer.echo(f"   reasons: {reasons}")
    return raw


def _dsn(server: Dovecot, res: SendingResult) -> None:
    envid = res.envid.encode()

    def is_dsn(m: bytes) -> bool:
        return b"report-type=delivery-status" in m and envid in m

    raw = _wait(lambda: _fetch(server, AUTHORITY_USER, "INBOX", is_dsn)) if envid else None
    if raw is None:
        res.problems.append("no delivery status notification came back")
        typer.echo("== NO delivery status notification came back")
        return
    res.dsn = True
    subject = message_from_bytes(raw, policy=default).get("Subject", "")
    typer.echo(f"== delivery status notification from Postfix in the town hall's INBOX: '{subject}'")
    for line in _DSN_FIELDS.finditer(raw):
        typer.echo(f"   {line.group(0).decode(errors='replace')}")
    if b"Action: relayed" in raw:
        typer.echo("   (relayed: Postfix handed it to the court's server, Dovecot by LMTP, which sends no notice)")


def _mdn(relay: Postfix, server: Dovecot, letter: bytes, res: SendingResult) -> None:
    """The court's clerk opens the letter; the mail program sends a return receipt through Postfix."""
    subject = str(message_from_bytes(letter, policy=default).get("Subject", SUBJECT))
    mdn = thunderbird_mdn(
        original=letter,
        original_message_id=res.message_id,
        reader=CORRESPONDENT,
        sender=AUTHORITY,
        subject=subject,
        at=utcnow(),
    )
    typer.echo("== the court opens the letter; its mail program sends a return receipt (MDN, RFC 8098)")
    try:
        with smtplib.SMTP(relay.host, relay.port, timeout=DELIVERY_TIMEOUT) as smtp:
            smtp.sendmail("", [AUTHORITY], mdn)  # MDNs go with an empty envelope sender (RFC 8098 2.1)
    except (OSError, smtplib.SMTPException) as exc:
        res.problems.append(f"the return receipt could not be sent: {exc}")
        typer.echo(f"   FAILED to send it through Postfix: {exc}")
        return
    needle = res.message_id.encode()

    def is_mdn(m: bytes) -> bool:
        return b"report-type=disposition-notification" in m and needle in m

    raw = _wait(lambda: _fetch(server, AUTHORITY_USER, "INBOX", is_mdn))
    if raw is None:
        res.problems.append("the return receipt did not arrive in the town hall's mailbox")
        typer.echo("   it did NOT arrive in the town hall's INBOX")
        return
    res.mdn = True
    typer.echo("   arrived in the town hall's INBOX, beside the delivery status notification:")
    for line in _MDN_FIELDS.finditer(raw):
        typer.echo(f"   {line.group(0).decode(errors='replace')}")


def _receipts(config: Config, res: SendingResult) -> None:
    """One ``run --once`` takes both receipts in; then the delivery record as a clerk asks for it."""
    typer.echo("== poststelle run --once (the intake takes the receipts in)")
    report = Daemon(config, once=True).run()
    for name, outcome in report.outcomes.items():
        typer.echo(f"   mailbox {name}: stored {outcome.stored}, quarantined {outcome.quarantined}")
    for name, error in report.failures.items():
        res.problems.append(f"{name}: {error}")
        typer.echo(f"   {name} FAILED: {error}")
    store = open_store(config, readonly=True)
    try:
        records = store.delivery_get(res.outbound_id)
    finally:
        store.close()
    res.steps = tuple(t.state for r in records for t in r.timeline)
    if res.steps != EXPECTED_STEPS:
        res.problems.append(f"the delivery record went {' -> '.join(res.steps) or 'nowhere'}")
    args = ["deliveries", "show", res.outbound_id, "-c", str(config.path)]
    typer.echo(f"== poststelle {' '.join(args[:3])}")
    done = subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, check=False)
    shown = done.stdout.rstrip() if done.returncode == 0 else f"FAILED: {done.stderr.strip()}"
    typer.echo("   " + shown.replace("\n", "\n   "))


def send_document(work: Path, server: Dovecot, relay: Postfix | None, config: Config, pki: DemoPKI) -> SendingResult:
    """The outbound half: send, drain, and show what arrived where (nothing without a relay)."""
    res = SendingResult()
    if relay is None:
        return res
    pdf, body = _outgoing(work)
    summary = _send(config.path, pdf, body, res)
    if summary is None:
        return res
    _drain(config, res)
    letter = _arrival(work, server, pki, res.message_id, res)
    _dsn(server, res)
    if letter is not None:
        _mdn(relay, server, letter, res)
    _receipts(config, res)
    return res


def explore_hints(work: Path, config_path: Path, relay: Postfix | None, document: str = "") -> list[str]:
    """Commands for a look around the sending part afterwards (none when it was skipped)."""
    if relay is None:
        return []
    shown = [f"poststelle deliveries show {document} --json -c {config_path}"] if document else []
    return [
        f"poststelle outbox list -c {config_path}",
        f"poststelle deliveries list -c {config_path}",
        *shown,
        f"poststelle inspect -c {work / 'court' / 'poststelle.toml'} {work / 'received-by-court.eml'}",
    ]
