"""``poststelle deliveries``: per sent document and recipient, whether and when it arrived, and the evidence."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import typer

from cli.common import ConfigOption, JsonOption, echo, fail, get_config, header, locale, print_json, print_table
from gateway.clock import utcnow
from gateway.config import Config
from gateway.receipts.deliveries import RECORD_STATES, ServiceRule, is_overdue, service_of, service_rule
from gateway.records.deliveries import DeliveryRecord
from gateway.records.open import open_store, store_exists
from gateway.routing.casenames import InvalidCaseReference, case_folder_name, case_reference_from_folder

app = typer.Typer(help="Delivery records: list, show.", no_args_is_help=True)


def _view(rec: DeliveryRecord, rule: ServiceRule, overdue_after: timedelta) -> dict[str, Any]:
    """The record as ``--json`` gives it: the recorded values, and what is derived from them now."""
    service = service_of(rec, rule)
    return {
        **rec.to_json(),
        "overdue": is_overdue(rec, utcnow(), overdue_after),
        "service": service.to_json() if service is not None else None,
    }


def _served(view: dict[str, Any]) -> str | None:
    service = view["service"]
    if service is None or service["served_on"] is None:
        return None
    words = "deemed served" if service["basis"] == "fiction" else "retrieved"
    return f"{service['served_on']} ({locale().t(words)})"


def _yes(flag: bool) -> str:
    return locale().t("yes") if flag else ""


def _case_refs(cfg: Config, case: str) -> list[str]:
    """The case as written and as the outbox records it (the folder name read back), once each."""
    refs = [case]
    try:
        recorded = case_reference_from_folder(case_folder_name(case, slash=cfg.routing.folder_slash))
    except InvalidCaseReference:
        return refs
    return refs if recorded == case else [*refs, recorded]


def _records(cfg: Config, case: str | None, state: str | None) -> list[DeliveryRecord]:
    if not store_exists(cfg):
        return []
    states = [s for s in RECORD_STATES if s == state]
    store = open_store(cfg, readonly=True)
    try:
        if case is None:
            return store.deliveries_list(states)
        found: list[DeliveryRecord] = []
        for ref in _case_refs(cfg, case):
            found += store.deliveries_list(states, case_ref=ref)
        return found
    finally:
        store.close()


@app.command("list")
def list_cmd(
    case: str | None = typer.Option(None, "--case", help="Only documents of this case (reference or folder name)."),
    state: str | None = typer.Option(None, "--state", help=f"Only this state ({', '.join(RECORD_STATES)})."),
    overdue: bool = typer.Option(False, "--overdue", help="Only those without delivery evidence after overdue_after."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Every (document, recipient) with its state, its served date (De-Mail) and the overdue flag."""
    cfg = get_config(config)
    if state is not None and state not in RECORD_STATES:
        fail(f"unknown state {state!r}; use {', '.join(RECORD_STATES)}")
    rule, after = service_rule(cfg), timedelta(seconds=cfg.deliveries.overdue_after)
    views = [_view(r, rule, after) for r in _records(cfg, case, state)]
    if overdue:
        views = [v for v in views if v["overdue"]]
    if as_json:
        print_json(views)
        return
    rows = [
        {
            "document_id": v["document_id"],
            "recipient": v["recipient"],
            "case": v["case_ref"],
            "state": v["state"],
            "updated_at": v["timeline"][-1]["at"] if v["timeline"] else v["updated_at"],
            "served_on": _served(v),
            "overdue": _yes(v["overdue"]),
        }
        for v in views
    ]
    print_table(rows, ["document_id", "recipient", "case", "state", "updated_at", "served_on", "overdue"])


@app.command("show")
def show_cmd(document_id: str, config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """One document: per recipient the state, the timeline with its evidence files, served date, overdue."""
    cfg = get_config(config)
    records: list[DeliveryRecord] = []
    if store_exists(cfg):
        store = open_store(cfg, readonly=True)
        try:
            records = store.delivery_get(document_id)
        finally:
            store.close()
    if not records:
        fail(f"no delivery records for document {document_id!r}")
    rule, after = service_rule(cfg), timedelta(seconds=cfg.deliveries.overdue_after)
    views = [_view(r, rule, after) for r in records]
    if as_json:
        print_json({"document_id": document_id, "deliveries": views})
        return
    for i, v in enumerate(views):
        if i:
            echo("")
        service = v["service"] or {}
        for key, value in (
            ("recipient", v["recipient"]),
            ("case_ref", v["case_ref"]),
            ("state", v["state"]),
            ("dispatched_at", service.get("dispatched_at")),
            ("retrieved_at", service.get("retrieved_at")),
            ("served_on", _served(v)),
            ("overdue", _yes(v["overdue"]) or None),
        ):
            shown = locale().time(value) if key.endswith("_at") and isinstance(value, str) else value
            echo(f"{header(key).lower():16} {'-' if shown is None else shown}")
        rows = [
            {
                "at": t["at"],
                "step": t["state"],
                "outcome": t["outcome"],
                "kind": t["evidence"]["kind"],
                "path": t["evidence"]["path"],
                "sha256": (t["evidence"]["sha256"] or "")[:16] or None,
                "detail": t["evidence"]["detail"],
            }
            for t in v["timeline"]
        ]
        print_table(rows, ["at", "step", "outcome", "kind", "path", "sha256", "detail"])
