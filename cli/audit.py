"""``poststelle audit``: read, prove and hand over the audit trail. Every command only reads.

They work with read-only access to the state directory, so an auditor's account needs no
write permission (``open_store(..., readonly=True)`` says when that limits what is seen).
"""

from __future__ import annotations

import contextlib
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cli.common import ConfigOption, JsonOption, echo, fail, get_config, locale, print_json, print_table
from gateway.statedir import audit_key_path, audit_public_key_path

if TYPE_CHECKING:
    from gateway.audit.outbound_view import DocumentView
    from gateway.audit.report import AuditQuery
    from gateway.config import Config
    from gateway.receipts.deliveries import ServiceRule
    from gateway.records.store import Store

# Each command imports what it runs: ``audit verify --since`` is an auditor's daily check,
# and the report, export and outbound modules (and their crypto) are not its business.

app = typer.Typer(help="The audit trail: log, verify, export, public key.", no_args_is_help=True)

CaseOpt = typer.Option(None, "--case", help="Case reference as written (e.g. '1 K 1234/25') or its folder name.")
MessageOpt = typer.Option(None, "--message", help="Message id (as in case folder names and `cases show`).")
DocumentOpt = typer.Option(None, "--document", help="Outgoing document id.")
CorrespondentOpt = typer.Option(None, "--correspondent", help="Sender or recipient address (part of it is enough).")
SinceOpt = typer.Option(
    None,
    "--since",
    help="From this date or date-time on (2026-11-25, 2026-11-25T14:30); [ui] time zone unless an offset is given.",
)
UntilOpt = typer.Option(
    None, "--until", help="Up to this date (the whole day) or date-time; [ui] time zone unless an offset is given."
)
EventOpt = typer.Option(None, "--event", help="Only this event type (repeatable), e.g. quarantined.")


def _query(
    case: str | None,
    message: str | None,
    document: str | None,
    correspondent: str | None,
    since: str | None,
    until: str | None,
    event: list[str] | None,
    zone: str,
) -> AuditQuery:
    from gateway.audit.report import AuditQuery, parse_time

    try:
        return AuditQuery(
            case=case,
            message=message,
            document=document,
            correspondent=correspondent,
            since=parse_time(since, zone=zone) if since else None,
            until=parse_time(until, end=True, zone=zone) if until else None,
            events=tuple(event or ()),
        )
    except ValueError as exc:
        fail(str(exc))


def _open(cfg: Config) -> Store | None:
    from gateway.records.open import open_store, store_exists
    from gateway.records.store import StoreError

    if not store_exists(cfg):
        return None
    try:
        store = open_store(cfg, readonly=True)
    except StoreError as exc:
        fail(str(exc))  # names the ledger and the reason
    if store.readonly_note:
        echo(locale().t("note: {message}", message=store.readonly_note), err=True)
    return store


@app.command("log")
def log_cmd(
    case: str | None = CaseOpt,
    message: str | None = MessageOpt,
    document: str | None = DocumentOpt,
    correspondent: str | None = CorrespondentOpt,
    since: str | None = SinceOpt,
    until: str | None = UntilOpt,
    event: list[str] | None = EventOpt,
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Show what happened, oldest first: every entry matching the filters.

    Times are shown in the ``[ui]`` time zone and sentences in its language; ``--json``
    gives the entries as recorded (UTC).
    """
    from gateway.audit.report import row_of, select_entries

    cfg = get_config(config)
    q = _query(case, message, document, correspondent, since, until, event, cfg.ui.timezone)
    store = _open(cfg)
    entries = [] if store is None else list(select_entries(store, q))
    if store is not None:
        store.close()
    if as_json:
        print_json([e.to_json() for e in entries])
        return
    rows = [row_of(e, locale()) for e in entries]
    print_table(rows, ["seq", "at", "event", "actor", "message", "case", "summary"])


@app.command("verify")
def verify_cmd(
    public_key: Path | None = typer.Option(
        None, "--public-key", help="Audit public key (PEM) held by the auditor; default: the one in the state dir."
    ),
    jsonl: Path | None = typer.Option(
        None, "--jsonl", help="A JSON-lines copy to compare (e.g. from log storage); default: the gateway's file."
    ),
    since: str | None = typer.Option(
        None,
        "--since",
        metavar="HEAD_HASH",
        help="Only what was added after this head (printed by an earlier verify): the entries after it, "
        "the checkpoints signed since and the entries they filed. The earlier run covers the rest.",
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Prove the record: chain, checkpoint signatures, JSON-lines copy, every case folder.

    Prints the head hash: keep it, and ``--since HEAD_HASH`` later checks only what was
    added after it. Exit status 1 names at least one break (an unknown HEAD_HASH is one);
    0 means everything checked holds together.
    """
    from cli.verify_run import run_verify

    code = run_verify(get_config(config), locale(), public_key=public_key, jsonl=jsonl, since=since, as_json=as_json)
    if code:
        raise typer.Exit(code)


@app.command("export")
def export_cmd(
    fmt: str = typer.Option(..., "--format", "-f", help="csv, json or html."),
    output: Path = typer.Option(..., "--output", "-o", help="File to write ('-' for standard output)."),
    case: str | None = CaseOpt,
    message: str | None = MessageOpt,
    document: str | None = DocumentOpt,
    correspondent: str | None = CorrespondentOpt,
    since: str | None = SinceOpt,
    until: str | None = UntilOpt,
    event: list[str] | None = EventOpt,
    no_verify: bool = typer.Option(False, "--no-verify", help="HTML: skip the integrity check in the report."),
    config: Path | None = ConfigOption,
) -> None:
    """Export the entries matching the filters; html is a report for reviewers without a terminal."""
    from gateway.audit.report import entry_cases, export_csv, export_json, select_entries
    from gateway.audit.verify import verify_state
    from gateway.receipts.deliveries import service_rule

    if fmt not in ("csv", "json", "html"):
        fail(f"unknown format {fmt!r}: use csv, json or html")
    cfg = get_config(config)
    q = _query(case, message, document, correspondent, since, until, event, cfg.ui.timezone)
    generated = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    store = _open(cfg)
    try:
        entries = iter(()) if store is None else select_entries(store, q)
        if fmt == "csv":
            text = export_csv(entries)
        elif fmt == "json":
            text = export_json(
                entries,
                q,
                generated_at=generated,
                outbox=None
                if store is None
                else lambda cases: [
                    d.to_json() for v in _documents(store, cases, service_rule(cfg)).values() for d in v
                ],
            )
        else:
            from gateway.audit.html import render_html

            chosen = list(entries)
            records = {} if store is None else {r.id: r for r in store.all_messages()}
            outbound = {} if store is None else _documents(store, entry_cases(chosen), service_rule(cfg))
            verification = None if no_verify else verify_state(cfg)
            text = render_html(
                chosen,
                records=records,
                query=q,
                generated_at=generated,
                verification=verification,
                locale=locale(),
                outbound=outbound,
            )
    finally:
        if store is not None:
            store.close()
    _write(output, text)


def _documents(store: Store, cases: list[str], rule: ServiceRule | None = None) -> dict[str, list[DocumentView]]:
    """Each case's outgoing documents as they stand now: to whom, the relay's answers, what receipts say."""
    from gateway.audit.outbound_view import case_deliveries, case_documents

    return {
        case: found
        for case in cases
        if (found := case_documents(store, case, deliveries=case_deliveries(store, case, rule)))
    }


def _write(output: Path, text: str) -> None:
    """Reports hold personal data: created with the gateway's file mode (0640), never world-readable."""
    from gateway.filemodes import file_mode

    if str(output) == "-":
        sys.stdout.write(text)
        return
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, file_mode())
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}")
    echo(locale().t("wrote {path}", path=output), err=True)


@app.command("public-key")
def public_key_cmd(
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the PEM here (default: print it)."),
    config: Path | None = ConfigOption,
) -> None:
    """Export the audit public key (PEM) that auditors use to check checkpoint signatures."""
    from gateway.records.signing import key_id, load_public_key, load_public_keys, public_key_pem

    cfg = get_config(config)
    keys = []
    try:
        keys = load_public_keys(audit_public_key_path(cfg))  # every key the gateway used, oldest first
    except (OSError, ValueError):
        with contextlib.suppress(OSError, ValueError):
            keys = [load_public_key(audit_key_path(cfg))]
    if not keys:
        fail(f"no readable audit key at {audit_public_key_path(cfg)} (the gateway creates it at first start)")
    pem = "".join(public_key_pem(k).decode("ascii") for k in keys)
    if output is None:
        sys.stdout.write(pem)
    else:
        _write(output, pem)
    typer.echo(f"audit key id {', '.join(key_id(k) for k in keys)}", err=True)


@app.command("rotate-key")
def rotate_key_cmd(config: Path | None = ConfigOption) -> None:
    """Hand the audit signing over to a new key; the old key signs the handover (stop the daemon first).

    Auditors keep the public key they were first given: ``audit verify`` learns each later
    key from the handover the previous key signed. Run it again after a crash to finish.
    """
    from gateway.audit.rotate import rotate_audit_key
    from gateway.errors import PoststelleError
    from gateway.records.actors import cli_actor
    from gateway.service.startup import describe

    cfg = get_config(config)
    try:
        done = rotate_audit_key(cfg, cli_actor().name)
    except (PoststelleError, OSError, ValueError) as exc:
        fail(f"audit key not rotated: {exc if isinstance(exc, ValueError) else describe(exc)}")
    echo(
        f"audit key {done.old_key_id} -> {done.new_key_id} (handover entry {done.seq}); "
        f"the old key file is kept as {audit_key_path(cfg).name}.retired-{done.old_key_id}: archive it offline or "
        "destroy it"
    )
