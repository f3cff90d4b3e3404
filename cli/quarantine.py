"""``poststelle quarantine``: what could not be proven or parsed, and releasing it."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cli.common import (
    ConfigOption,
    JsonOption,
    echo,
    fail,
    get_config,
    header,
    locale,
    person_decision,
    print_json,
    print_table,
    signature_json,
    signature_words,
)
from gateway.filing.quarantine import ReleaseError, get_entry, list_entries, release
from gateway.records.open import open_store, store_exists
from gateway.ui.reasons import reason_words

app = typer.Typer(help="Quarantined messages: list, show, release.", no_args_is_help=True)


@app.command("list")
def list_cmd(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """List quarantined messages with their reasons."""
    cfg = get_config(config)
    if not store_exists(cfg):
        entries = []
    else:
        store = open_store(cfg, readonly=True)
        entries = list_entries(store)
        store.close()
    rows = [e.to_json() for e in entries]
    if as_json:
        print_json(rows)
    else:
        for r in rows:
            r["reasons"] = ", ".join(r["reasons"])
        print_table(rows, ["id", "received", "from", "reasons", "subject"])


@app.command("show")
def show_cmd(msg_id: str, config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """Show one quarantined message: reasons, verdict and files."""
    cfg = get_config(config)
    store = open_store(cfg, readonly=True)
    try:
        entry = get_entry(store, msg_id)
    except ReleaseError as exc:
        fail(str(exc))
    finally:
        store.close()
    info = entry.to_json()
    manifest_path = entry.path / "manifest.json"
    info["files"] = sorted(json.loads(manifest_path.read_text())["files"]) if manifest_path.exists() else []
    info["verdict"] = entry.record.verdict
    info["signature"] = signature_json(entry.record.verdict)
    if as_json:
        print_json(info)
        return
    info["reasons"] = [f"{r} ({reason_words(r, locale())})" for r in info["reasons"]]
    info["signature"] = signature_words(info["signature"])
    for key in (
        "id",
        "received",
        "mailbox",
        "from",
        "subject",
        "signature",
        "reasons",
        "case_reference",
        "path",
        "files",
    ):
        value = info[key]
        shown = ", ".join(str(v) for v in value) if isinstance(value, list) else value
        if key == "received" and isinstance(shown, str):
            shown = locale().time(shown)
        echo(f"{header(key).lower():15} {shown}")


@app.command("release")
def release_cmd(
    msg_id: str,
    case: str | None = typer.Option(
        None, "--case", help="File under this case reference (default: the route found at intake)."
    ),
    note: str | None = typer.Option(None, "--note", help="Why it is released (kept in the audit trail)."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Release a quarantined message into a case folder; who released it is recorded."""
    cfg = get_config(config)
    rec = person_decision(cfg, lambda store, actor: release(cfg, store, msg_id, actor=actor, case=case, note=note))
    if as_json:
        print_json(rec.to_json())
    else:
        echo(locale().t("released {id} into {path}", id=rec.id, path=rec.path))
