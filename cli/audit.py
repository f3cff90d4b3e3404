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
    from gateway.audit.findings import VerifyReport
    from gateway.audit.outbound_view import DocumentView
    from gateway.audit.report import AuditQuery
    from gateway.config import Config
    from gateway.receipts.deliveries import ServiceRule
    from gateway.records.chain import ChainBreak
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
    from gateway.records.store import StoreError

    cfg = get_config(config)
    if public_key is not None and not public_key.is_file():
        fail(f"public key file not found: {public_key}")
    if since is not None and jsonl is not None:
        fail("--jsonl compares the whole copy: use it without --since")
    try:
        if since is not None:
            from gateway.audit.since import verify_since

            report = verify_since(cfg, since, public_key_file=public_key)
        else:
            from gateway.audit.verify import verify_state

            report = verify_state(cfg, public_key_file=public_key, jsonl_file=jsonl)
    except ValueError as exc:
        fail(str(exc))
    except (StoreError, OSError) as exc:
        fail(f"cannot read the state directory: {exc}")
    if as_json:
        print_json(report.to_json())
    else:
        _print_report(report, public_key or audit_public_key_path(cfg))
    if not report.ok:
        raise typer.Exit(1)


def _print_report(r: VerifyReport, key_file: Path) -> None:
    lc = locale()
    n = len(r.breaks)
    status = "OK" if r.ok else lc.t("FAILED: {n} break" if n == 1 else "FAILED: {n} breaks", n=n)
    typer.echo(lc.t("audit verify: {status}  ({seconds} s)", status=status, seconds=f"{r.seconds:.1f}"))
    key = lc.t("key {id} from {file}", id=r.public_key_id, file=key_file) if r.public_key_id else lc.t("no public key")
    since = r.since_hash is not None
    if not since:
        entries = str(r.entries)
    elif r.since_seq is None:
        entries = lc.t("none checked: the head given is not an entry of this trail")
    else:
        entries = lc.t("{n} after entry {seq} (the head given)", n=r.entries, seq=r.since_seq)
    found = not since or r.since_seq is not None
    lines = [
        ("entries", entries),
        ("head", lc.t("{hash} (keep it for `audit verify --since`)", hash=r.head_hash) if found else "-"),
        (
            "checkpoints",
            lc.t("{n} signed, checked with {key}; sealed up to entry {seq}", n=r.checkpoints, key=key,
                 seq=r.sealed_up_to),
        ),
        (
            "case folders",
            lc.t("{entries} entries placed since checked against their manifests", entries=r.case_entries)
            if since
            else lc.t("{n} folders, {entries} entries checked against their manifests", n=r.case_folders,
                      entries=r.case_entries),
        ),
        ("quarantine", lc.t("{n} entries checked against their manifests", n=r.quarantine_entries)),
        ("ledger", lc.t("{n} messages compared with the entries and the trail", n=r.ledger_messages)),
        ("json-lines", lc.t("not compared (--since)") if since else _jsonl_line(r)),
    ]
    for label, text in lines:
        echo(f"  {lc.t(label):13} {text}")
    if r.breaks:
        typer.echo("\n" + lc.t("breaks:"))
        for b in r.breaks:
            _print_break(b)
    if r.warnings:
        typer.echo("\n" + lc.t("warnings:"))
        for w in r.warnings:
            echo(f"  - {w}")


def _jsonl_line(r: VerifyReport) -> str:
    lc = locale()
    if r.jsonl_file is None:
        return lc.t("not checked")
    state = lc.t("lagging {n} entries", n=r.jsonl_lagging) if r.jsonl_lagging else lc.t("in step")
    return lc.t("{n} lines, {state} ({file})", n=r.jsonl_lines, state=state, file=r.jsonl_file)


def _print_break(b: ChainBreak) -> None:
    lc = locale()
    where = lc.t("entry {seq}", seq=b.seq) if b.seq is not None else "-"
    echo(f"  {where:12} {b.kind}: {b.detail}")
    if b.file:
        echo(f"  {'':12} {lc.t('file:'):9} {b.file}")
    if b.expected is not None or b.found is not None:
        echo(f"  {'':12} {lc.t('expected:'):9} {b.expected if b.expected is not None else '-'}")
        echo(f"  {'':12} {lc.t('found:'):9} {b.found if b.found is not None else '-'}")


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
                entries, q, generated_at=generated,
                outbox=None if store is None else lambda cases: [
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
                chosen, records=records, query=q, generated_at=generated, verification=verification, locale=locale(),
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
    echo(f"audit key {done.old_key_id} -> {done.new_key_id} (handover entry {done.seq}); "
         f"the old key file is kept as {audit_key_path(cfg).name}.retired-{done.old_key_id}: archive it offline or "
         "destroy it")
