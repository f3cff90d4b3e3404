"""``poststelle cases``: what is filed where."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from cli.common import (
    ConfigOption,
    JsonOption,
    echo,
    fail,
    get_config,
    locale,
    person_decision,
    print_json,
    print_table,
    signature_json,
    signature_words,
)
from gateway.filing.refile import refile
from gateway.records.open import open_store, store_exists
from gateway.routing.casenames import InvalidCaseReference, case_folder_name

app = typer.Typer(help="Case folders and the messages filed in them.", no_args_is_help=True)


@app.command("list")
def list_cases(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """List case folders with their message counts."""
    cfg = get_config(config)
    if not store_exists(cfg):
        rows: list[dict[str, object]] = []
    else:
        store = open_store(cfg, readonly=True)
        rows = [c.to_json() for c in store.cases()]
        store.close()
    if as_json:
        print_json(rows)
    else:
        print_table(rows, ["case_ref", "case_folder", "messages", "last"])


@app.command("show")
def show_case(
    case: str = typer.Argument(..., help="Case reference as written (e.g. '1 K 1234/25') or its folder name."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Show the messages filed under one case, with their verdicts."""
    cfg = get_config(config)
    store = open_store(cfg, readonly=True)
    folder = case
    try:
        candidate = case_folder_name(case, slash=cfg.routing.folder_slash)
        if store.messages_of_case(candidate):
            folder = candidate
    except InvalidCaseReference:
        pass
    msgs = store.messages_of_case(folder)
    store.close()
    if not msgs:
        fail(f"no messages filed under case {case!r}")
    rows: list[dict[str, Any]] = []
    for m in msgs:
        manifest = {}
        if m.path and (Path(m.path) / "manifest.json").exists():
            manifest = json.loads((Path(m.path) / "manifest.json").read_text())
        rows.append(
            {
                "id": m.id,
                "received": m.internaldate,  # the arrival, with the server's offset
                "fetched": m.fetched_at or None,
                "from": m.from_addr,
                "subject": m.subject,
                "verdict": (m.verdict or {}).get("verdict"),
                "signature": signature_json(m.verdict),
                "warnings": list((m.verdict or {}).get("warnings") or []),
                "state": m.state,
                "path": m.path,
                "files": sorted(manifest.get("files", {})),
            }
        )
    if as_json:
        print_json({"case_reference": msgs[0].case_ref, "case_folder": folder, "messages": rows})
        return
    echo(f"Case {msgs[0].case_ref}  (folder {folder})")
    print_table(
        [
            {
                **r,
                "received": _arrival_cell(r),
                "signature": signature_words(r["signature"]),
                "warnings": ", ".join(r["warnings"]) or None,
            }
            for r in rows
        ],
        ["id", "received", "from", "verdict", "signature", "warnings", "subject"],
    )
    for r in rows:
        echo(f"  {r['id']}: {r['path']}")


def _arrival_cell(row: dict[str, Any]) -> str | None:
    """The arrival for the table; without one (the server gave no INTERNALDATE) the fetch, marked as such."""
    if row["received"] or not row["fetched"]:
        return row["received"]  # type: ignore[no-any-return]
    return locale().t("{time} (fetched)", time=locale().time(row["fetched"]))


@app.command("move")
def move_entry(
    msg_id: str = typer.Argument(..., metavar="ENTRY", help="The message id (as `cases show` lists it)."),
    case: str = typer.Option(..., "--case", help="The case reference to file it under, e.g. '1 K 1234/25'."),
    note: str = typer.Option(..., "--note", help="Why it is moved (kept in the manifest and the audit trail)."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Move a filed message (also one in the unassigned folder) to another case; who moved it is recorded.

    If it was interrupted, run the same command again: it completes the move.
    """
    cfg = get_config(config)
    rec = person_decision(cfg, lambda store, actor: refile(cfg, store, msg_id, actor=actor, case=case, note=note))
    if as_json:
        print_json(rec.to_json())
    else:
        echo(f"moved {rec.id} to case {rec.case_ref} ({rec.path})")
