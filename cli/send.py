"""``poststelle send``: a clerk's document for a case, composed, signed, encrypted and queued.

Wiring only: the letter is validated and composed by ``gateway.outbound`` (every problem
a ``ComposeError`` naming the field, address or file, and nothing queued), then handed to
``enqueue``. Queueing belongs to the outbox (``gateway.outbound.outbox``); ``ENQUEUE`` is
the one place that connects the two, so the command can be tested with any queue.

Exit status: 0 queued (or composed with ``--dry-run``), 1 refused, 2 configuration error
(also: no ``[smtp]`` relay, since nothing would ever send the document).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import typer

from cli.common import EXIT_CONFIG, ConfigOption, JsonOption, echo, fail, get_config, person_decision, print_json
from gateway.clock import utcnow
from gateway.config import Config
from gateway.errors import ConfigError
from gateway.outbound.compose import Attachment, ComposeError, Letter
from gateway.outbound.demail_options import DemailOptions
from gateway.outbound.document import ComposedDocument

Enqueue = Callable[[Config, ComposedDocument], str]


def outbox_enqueue(cfg: Config, doc: ComposedDocument) -> str:
    """Queue ``doc`` in the outbox as the person at the command line; the outbox id.

    Without ``[smtp]`` nothing would ever send the document, so nothing is queued.
    """
    if cfg.smtp is None:
        problem = "no [smtp] relay is configured: nothing would send it; nothing was queued"
        raise ConfigError(str(cfg.path), "smtp", problem)
    from gateway.outbound.outbox import enqueue

    return person_decision(cfg, lambda store, actor: enqueue(cfg, store, doc, actor=actor.name))


#: Queues a composed document durably and returns its outbound id (a seam for tests).
ENQUEUE: Enqueue = outbox_enqueue


def _mail_from(cfg: Config, given: str | None) -> str:
    """``--from``, else ``[smtp] from`` when the configuration has it."""
    if given:
        return given
    if cfg.smtp is not None:
        return cfg.smtp.mail_from
    fail("no sender: give --from or set [smtp] from", EXIT_CONFIG)


def _body(source: str | None) -> str:
    if source is None:
        return ""
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        fail(f"--body {source}: {exc.strerror or type(exc).__name__}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        fail(f"--body {source}: not UTF-8 text")


def send_letter(cfg: Config, letter: Letter, mail_from: str, enqueue: Enqueue | None) -> tuple[ComposedDocument, str]:
    """Compose ``letter`` with the configured keys and queue it (``enqueue=None``: compose only)."""
    from gateway.outbound.protect import OutboundKeys, compose_document

    keys = OutboundKeys.from_config(cfg)
    try:
        doc = compose_document(letter, mail_from=mail_from, config=cfg, keys=keys, at=utcnow())
    finally:
        keys.close()
    return doc, (enqueue(cfg, doc) if enqueue is not None else "")


def send_cmd(
    files: list[Path] = typer.Argument(None, metavar="FILE", help="Documents to attach."),
    case: str = typer.Option(..., "--case", help="The case reference (Aktenzeichen); a new case is fine."),
    to: list[str] = typer.Option(..., "--to", help="Recipient address (repeatable)."),
    cc: list[str] = typer.Option([], "--cc", help="Copy recipient address (repeatable)."),
    bcc: list[str] = typer.Option(
        [], "--bcc", help="Blind copy recipient (repeatable): in no header; its own message when encrypting."
    ),
    subject: str = typer.Option(..., "--subject", help="The subject; the case reference is added."),
    body: str | None = typer.Option(None, "--body", help="A UTF-8 text file with the letter's text, or - for stdin."),
    mail_from: str | None = typer.Option(None, "--from", help="Sender address (default: \\[smtp] from)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and compose, queue nothing."),
    demail: bool = typer.Option(False, "--demail", help="Send as a De-Mail (needs [demail] enabled)."),
    dispatch: bool = typer.Option(False, "--dispatch-confirmation", help="De-Mail: ask for a Versandbestätigung."),
    receipt: bool = typer.Option(False, "--receipt-confirmation", help="De-Mail: ask for an Eingangsbestätigung."),
    retrieval: bool = typer.Option(
        False, "--retrieval-confirmation", help="De-Mail: ask for an Abholbestätigung (needs --private)."
    ),
    private: bool = typer.Option(False, "--private", help="De-Mail: persönlich (only the recipient may open it)."),
    authoritative: bool = typer.Option(False, "--authoritative", help="De-Mail: absenderbestätigt."),
    as_json: bool = JsonOption,
    config: Path | None = ConfigOption,
) -> None:
    """Sign (and where possible encrypt) documents for a case and queue them for sending."""
    cfg = get_config(config)
    if cfg.outbound is None:
        fail("sending is not configured: add an [outbound] section", EXIT_CONFIG)
    sender = _mail_from(cfg, mail_from)
    options = None
    if demail:
        if not cfg.demail.enabled:
            fail("--demail: De-Mail is not configured: set [demail] enabled = true (the relay is the De-Mail "
                 "gateway)", EXIT_CONFIG)
        options = DemailOptions(dispatch, receipt, retrieval, private, authoritative)
    elif any((dispatch, receipt, retrieval, private, authoritative)):
        fail("the De-Mail options (--dispatch-confirmation, --receipt-confirmation, --retrieval-confirmation, "
             "--private, --authoritative) need --demail; nothing was queued")
    letter = Letter(case=case, to=tuple(to), cc=tuple(cc), subject=subject, body=_body(body),
                    attachments=tuple(Attachment(f) for f in files or ()), demail=options, bcc=tuple(bcc))
    enqueue = None if dry_run else ENQUEUE
    try:
        doc, outbound_id = send_letter(cfg, letter, sender, enqueue)
    except ComposeError as exc:
        fail(str(exc))
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    summary = {
        "outbound_id": outbound_id or None,
        "message_id": doc.message_id,
        "case": doc.case,
        "recipients": list(doc.recipients),
        "signed": doc.signed,
        "encrypted": doc.encrypted,
        "keys": [{"recipient": r, "source": s} for r, s in doc.key_sources],
        "key_refusals": list(doc.key_refusals),
        "bcc": list(doc.bcc),
        "bcc_copies": [
            {"message_id": c.message_id, "recipients": list(c.recipients), "encrypted": c.encrypted,
             "keys": [{"recipient": r, "source": s} for r, s in c.key_sources],
             "key_refusals": list(c.key_refusals)}
            for c in doc.bcc_copies
        ],
        "bytes": len(doc.raw),
        **({"demail": doc.demail, "private_id": doc.envid} if doc.demail is not None else {}),
        "queued": not dry_run,
    }
    if as_json:
        print_json(summary)
        return
    for line in (*doc.key_refusals, *(t for c in doc.bcc_copies for t in c.key_refusals)):
        echo(line, err=True)  # why a letter goes out unencrypted
    if dry_run:
        echo(f"composed (not queued): <{doc.message_id}> signed={doc.signed} encrypted={doc.encrypted} "
             f"{len(doc.raw)} bytes")
    else:
        echo(outbound_id)

