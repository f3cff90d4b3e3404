"""``poststelle outbox``: what waits to go out, and a person's hold, release, retry and cancel."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

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
)
from gateway.outbound import outbox
from gateway.outbound.doorbell import ring
from gateway.records.actors import Actor
from gateway.records.open import open_store, store_exists
from gateway.records.outbox import OUTBOX_STATES, OutboxRecord
from gateway.records.store import Store
from gateway.statedir import outbox_doorbell

app = typer.Typer(help="The outbox: list, show, hold, release, retry, cancel.", no_args_is_help=True)


def _row(rec: OutboxRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        "state": rec.state,
        "case": rec.case_ref,
        "recipients": ", ".join(f"{r.address} ({r.state})" for r in rec.recipients),
        "attempts": rec.attempts,
        "next_attempt_at": rec.next_attempt_at,
        "last_reply": rec.last_reply,
        "created_at": rec.created_at,
    }


@app.command("list")
def list_cmd(
    state: list[str] = typer.Option([], "--state", help=f"Only these states ({', '.join(OUTBOX_STATES)})."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Every outbox document with its state, recipients and the relay's last answer."""
    cfg = get_config(config)
    unknown = [s for s in state if s not in OUTBOX_STATES]
    if unknown:
        fail(f"unknown state {unknown[0]!r}; use {', '.join(OUTBOX_STATES)}")
    records: list[OutboxRecord] = []
    if store_exists(cfg):
        store = open_store(cfg, readonly=True)
        try:
            records = store.outbox_list([s for s in OUTBOX_STATES if s in state])
        finally:
            store.close()
    if as_json:
        print_json([r.to_json() for r in records])
    else:
        print_table(
            [_row(r) for r in records],
            ["id", "state", "case", "recipients", "attempts", "next_attempt_at", "last_reply"],
        )


@app.command("show")
def show_cmd(outbox_id: str, config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """One document: envelope, per-recipient answers and queue ids, where its sent copy is filed."""
    cfg = get_config(config)
    if not store_exists(cfg):
        fail(f"no outbox document with id {outbox_id!r}")
    store = open_store(cfg, readonly=True)
    try:
        rec = store.outbox_get(outbox_id)
    finally:
        store.close()
    if rec is None:
        fail(f"no outbox document with id {outbox_id!r}")
    if as_json:
        print_json(rec.to_json())
        return
    for key in (
        "id",
        "state",
        "message_id",
        "case_ref",
        "mail_from",
        "signed",
        "encrypted",
        "attempts",
        "next_attempt_at",
        "created_at",
        "updated_at",
        "resent",
        "sent_path",
        "last_reply",
        "bcc",
        "bcc_copy_of",
        "key_refusals",
    ):
        value = getattr(rec, key)
        if isinstance(value, list):  # bcc, key_refusals: one line each
            for i, item in enumerate(value or ["-"]):
                echo(f"{header(key).lower() if i == 0 else '':16} {item}")
            continue
        shown = locale().time(value) if key.endswith("_at") and isinstance(value, str) else value
        echo(f"{header(key).lower():16} {'-' if shown is None else shown}")
    print_table([r.to_json() for r in rec.recipients], ["address", "state", "reply", "queue_id", "updated_at"])


def _decide(config: Path | None, as_json: bool, act: Callable[[Store, Actor], OutboxRecord], done: str) -> None:
    cfg = get_config(config)
    rec = person_decision(cfg, act)
    if rec.state == "queued":
        ring(outbox_doorbell(cfg))  # released or retried: the daemon need not wait for its poll
    if as_json:
        print_json(rec.to_json())
    else:
        echo(locale().t(done, id=rec.id, state=rec.state))


NoteOption = typer.Option(None, "--note", help="Why (kept in the audit trail).")


@app.command("hold")
def hold_cmd(
    outbox_id: str, note: str | None = NoteOption, config: Path | None = ConfigOption, as_json: bool = JsonOption
) -> None:
    """Stop a waiting document until it is released or cancelled."""
    _decide(config, as_json, lambda s, a: outbox.hold(s, outbox_id, actor=a.name, note=note), "outbox {id}: {state}")


@app.command("release")
def release_cmd(
    outbox_id: str, note: str | None = NoteOption, config: Path | None = ConfigOption, as_json: bool = JsonOption
) -> None:
    """Let a held document go (due at once)."""
    _decide(config, as_json, lambda s, a: outbox.release(s, outbox_id, actor=a.name, note=note), "outbox {id}: {state}")


@app.command("retry")
def retry_cmd(
    outbox_id: str, note: str | None = NoteOption, config: Path | None = ConfigOption, as_json: bool = JsonOption
) -> None:
    """Try a deferred document at the next pass instead of at its scheduled time."""
    _decide(config, as_json, lambda s, a: outbox.retry(s, outbox_id, actor=a.name, note=note), "outbox {id}: {state}")


@app.command("cancel")
def cancel_cmd(
    outbox_id: str, note: str | None = NoteOption, config: Path | None = ConfigOption, as_json: bool = JsonOption
) -> None:
    """Withdraw a document not yet sent."""
    _decide(config, as_json, lambda s, a: outbox.cancel(s, outbox_id, actor=a.name, note=note), "outbox {id}: {state}")
