"""``poststelle send``: a clerk's document for a case, composed, signed, encrypted and queued.

Wiring only: the letter is validated and composed by ``gateway.outbound`` (every problem
a ``ComposeError`` naming the field, address or file, and nothing queued), then handed to
``enqueue``. Queueing belongs to the outbox (``gateway.outbound.outbox``); ``ENQUEUE`` is
the one place that connects the two, so the command can be tested with any queue.

Exit status: 0 queued (or composed with ``--dry-run``), 1 refused, 2 configuration error
(also: no ``[smtp]`` relay, since nothing would ever send the document).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from cli.common import EXIT_CONFIG, ConfigOption, JsonOption, echo, fail, get_config, person_decision, print_json
from gateway.clock import utcnow
from gateway.config import Config
from gateway.errors import ConfigError
from gateway.outbound.compose import Attachment, ComposeError, Letter
from gateway.outbound.demail_options import DemailOptions
from gateway.outbound.document import ComposedDocument, send_summary
from gateway.outbound.sendwire import SendRequest

#: Where the daemon's send socket is unless ``[send_socket] path`` says otherwise (the unit's RuntimeDirectory).
DEFAULT_SEND_SOCKET = Path("/run/poststelle/send.sock")

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
    send_socket: Path | None = typer.Option(
        None,
        "--socket",
        envvar="POSTSTELLE_SEND_SOCKET",
        readable=False,  # a socket: connect() decides
        help="Hand the letter to the running daemon through its send socket (how clerks send: "
        "the daemon signs with keys they may not read).",
    ),
) -> None:
    """Sign (and where possible encrypt) documents for a case and queue them for sending."""
    through = _socket_to_use(send_socket, config)
    cfg = None
    if through is None:
        cfg = get_config(config)
        if cfg.send_socket is not None and not os.access(cfg.storage.state_dir, os.W_OK):
            # Queueing here would fail (the state directory is the gateway's): the daemon
            # composes the same letter with the keys this account may not read.
            through = cfg.send_socket.path
    if through is not None:
        if mail_from:
            fail("--from: a letter handed to the daemon always goes out from the authority's address")
        flags = (dispatch, receipt, retrieval, private, authoritative)
        if any(flags) and not demail:
            fail("the De-Mail options need --demail; nothing was queued")
        names = ("dispatch_confirmation", "receipt_confirmation", "retrieval_confirmation", "private", "authoritative")
        request = SendRequest(
            case=case,
            to=tuple(to),
            cc=tuple(cc),
            bcc=tuple(bcc),
            subject=subject,
            body=_body(body),
            attachments=_read_files(files or []),
            demail=dict(zip(names, flags, strict=True)) if demail else None,
            dry_run=dry_run,
        )
        _send_through(through, request, as_json)
        return
    assert cfg is not None
    if cfg.outbound is None:
        fail("sending is not configured: add an [outbound] section", EXIT_CONFIG)
    sender = _mail_from(cfg, mail_from)
    options = None
    if demail:
        if not cfg.demail.enabled:
            fail(
                "--demail: De-Mail is not configured: set [demail] enabled = true (the relay is the De-Mail gateway)",
                EXIT_CONFIG,
            )
        options = DemailOptions(dispatch, receipt, retrieval, private, authoritative)
    elif any((dispatch, receipt, retrieval, private, authoritative)):
        fail(
            "the De-Mail options (--dispatch-confirmation, --receipt-confirmation, --retrieval-confirmation, "
            "--private, --authoritative) need --demail; nothing was queued"
        )
    letter = Letter(
        case=case,
        to=tuple(to),
        cc=tuple(cc),
        subject=subject,
        body=_body(body),
        attachments=tuple(Attachment(f) for f in files or ()),
        demail=options,
        bcc=tuple(bcc),
    )
    enqueue = None if dry_run else ENQUEUE
    try:
        doc, outbound_id = send_letter(cfg, letter, sender, enqueue)
    except ComposeError as exc:
        fail(str(exc))
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    _print_summary(send_summary(doc, outbound_id, queued=not dry_run), as_json)


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    """The outbound id (or, composed only, what was composed); refused keys on stderr."""
    if as_json:
        print_json(summary)
        return
    refusals = [*summary["key_refusals"], *(t for c in summary["bcc_copies"] for t in c["key_refusals"])]
    for line in refusals:
        echo(line, err=True)  # why a letter goes out unencrypted
    if not summary["queued"]:
        echo(
            f"composed (not queued): <{summary['message_id']}> signed={summary['signed']} "
            f"encrypted={summary['encrypted']} {summary['bytes']} bytes"
        )
    else:
        echo(summary["outbound_id"])


def _socket_to_use(given: Path | None, config: Path | None) -> Path | None:
    """The daemon's send socket when the letter must go through it, else None (compose here).

    ``--socket`` says so; without it, a clerk who may not read the configuration (it holds
    the secrets' places and is the gateway's group's) hands the letter to the daemon at
    the default socket when one is there.
    """
    if given is not None:
        return given
    from gateway.config.load import resolve_config_path

    path = resolve_config_path(config)
    if path.exists() and not os.access(path, os.R_OK) and DEFAULT_SEND_SOCKET.exists():
        return DEFAULT_SEND_SOCKET
    return None


def _send_through(path: Path, request: SendRequest, as_json: bool) -> None:
    """Hand ``request`` to the daemon and print its answer as a local ``send`` would."""
    import socket

    from gateway.outbound.sendwire import WireError, encode_request, read_answer

    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            conn.connect(str(path))
        except FileNotFoundError:
            fail(f"--socket {path}: no such socket: is the gateway's daemon running? nothing was queued")
        except PermissionError:
            fail(
                f"--socket {path}: permission denied: the records office adds clerks to the socket's group; "
                "nothing was queued"
            )
        except OSError as exc:
            fail(f"--socket {path}: {exc.strerror or exc}: nothing was queued")
        try:
            conn.sendall(encode_request(request))
            conn.shutdown(socket.SHUT_WR)
            answer = read_answer(conn.recv)
        except (OSError, WireError) as exc:
            fail(
                f"--socket {path}: the daemon did not answer ({exc}); check `poststelle outbox list` before "
                "sending again"
            )
    finally:
        conn.close()
    if not answer["ok"]:
        status = answer.get("exit", 1)
        fail(str(answer.get("error", "refused")), status if status in (1, EXIT_CONFIG) else 1)
    _print_summary(answer["summary"], as_json)


def _read_files(files: list[Path]) -> tuple[tuple[str, bytes], ...]:
    """The attachments' names and bytes, read as the clerk (the daemon never opens a clerk's path)."""
    out = []
    for f in files:
        try:
            out.append((f.name, f.read_bytes()))
        except FileNotFoundError:
            fail(f"{f}: no such file; nothing was queued")
        except IsADirectoryError:
            fail(f"{f}: is a directory; nothing was queued")
        except OSError as exc:
            fail(f"{f}: {exc.strerror or type(exc).__name__}; nothing was queued")
    return tuple(out)
