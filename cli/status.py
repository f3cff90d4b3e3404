"""``poststelle status``: whether a daemon runs, what it reports, and the ledger's counts.

Three sources, each saying what only it knows: the state directory's lock (is a daemon
running, which pid), the daemon's status file (connected, idling, why it stopped), and
the ledger (per mailbox state, backlog and errors; messages and documents by state;
on a shared PostgreSQL store, which node holds which mailbox's lease).
Reading never takes the lock and never writes.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import typer

from cli.common import ConfigOption, JsonOption, cell, get_config, locale, print_json, print_table
from gateway.config import Config


def daemon_state(cfg: Config) -> dict[str, Any]:
    """``running`` and ``pid`` from the lock; the rest from the status file the daemon keeps (if any)."""
    from gateway.service.snapshot import read_status
    from gateway.service.statelock import holder
    from gateway.statedir import daemon_status_path

    pid = holder(cfg)
    snapshot = read_status(daemon_status_path(cfg)) or {}
    out: dict[str, Any] = {key: value for key, value in snapshot.items() if key != "mailboxes"}
    out["running"] = pid is not None
    out["pid"] = pid
    if pid is not None and snapshot.get("pid") != pid:
        # The file is another run's (the daemon has not written its own yet): its figures are not this one's.
        out = {"running": True, "pid": pid}
        snapshot = {}
    if pid is None and snapshot.get("running"):
        out["stopped_because"] = "ended without stopping cleanly (killed or crashed)"
    out["config_changed"] = bool(snapshot.get("config_sha256")) and snapshot.get("config_sha256") != cfg.sha256
    out["mailboxes"] = snapshot.get("mailboxes") or {}
    return out


def status_cmd(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """Whether the daemon runs; per mailbox: state since when, connected, last poll and success, backlog, last error.

    The counts are the ledger's (messages) and the outbox's (documents); with tenants, each
    tenant's in turn (``--tenant`` names one).
    """
    whole = get_config(config, all_tenants=True)
    if whole.tenants:  # every tenant, one after the other (``--tenant`` shows one)
        if as_json:
            print_json({"tenants": {t.tenant: _status_json(t) for t in whole.tenants}})
            return
        for i, tenant in enumerate(whole.tenants):
            typer.echo(("\n" if i else "") + locale().t("tenant {name}", name=tenant.tenant))
            _show(tenant, _status_json(tenant))
        return
    data = _status_json(whole)
    if as_json:
        print_json(data)
        return
    _show(whole, data)


def _status_json(cfg: Config) -> dict[str, Any]:
    """What ``status --json`` prints for one configuration (one tenant)."""
    from gateway.records.open import open_store, store_exists
    from gateway.records.store import StoreError

    daemon = daemon_state(cfg)
    live: dict[str, dict[str, Any]] = daemon.pop("mailboxes")
    statuses: list[dict[str, object]] = []
    counts: dict[str, int] = {}
    outgoing: dict[str, int] = {}
    leases: list[dict[str, object]] = []
    if store_exists(cfg):
        store = open_store(cfg, readonly=True)
        statuses = [s.to_json() for s in store.statuses()]
        counts = store.counts_by_state()
        with contextlib.suppress(StoreError):  # a ledger from before the outbox, opened read-only
            outgoing = store.outbox_counts()
        with contextlib.suppress(StoreError):  # a ledger from before the leases, opened read-only
            leases = [lease.to_json() for lease in store.leases()]
        store.close()
    known = {str(s["mailbox"]) for s in statuses}
    statuses += [{"mailbox": mb.name} for mb in cfg.mailboxes if mb.name not in known]
    for row in statuses:
        view = live.get(str(row["mailbox"]), {})
        row["connected"] = view.get("connected", False) if daemon["running"] else False
        row["idle"] = view.get("idle", False) if daemon["running"] else False
    return {"daemon": daemon, "mailboxes": statuses, "messages": counts, "outbox": outgoing, "leases": leases}


def _show(cfg: Config, data: dict[str, Any]) -> None:
    daemon, statuses, counts, outgoing = data["daemon"], data["mailboxes"], data["messages"], data["outbox"]
    leases: list[dict[str, Any]] = data["leases"]
    typer.echo(_daemon_line(daemon))
    if daemon.get("config_changed") and daemon["running"]:
        typer.echo(locale().t("the configuration file has changed since; send SIGHUP to reload it"))
    t = locale().t
    print_table(
        [
            {**r, "connected": t("yes") if r["connected"] else t("no"), "idle": t("yes") if r["idle"] else t("no")}
            for r in statuses
        ],
        [
            "mailbox",
            "state",
            "state_since",
            "connected",
            "idle",
            "last_poll",
            "last_success",
            "backlog",
            "last_error_at",
            "last_error",
        ],
    )
    if leases:  # nodes sharing a PostgreSQL store: who works which mailbox
        typer.echo("")
        print_table(
            [{**lease, "expired": t("yes") if lease["expired"] else t("no")} for lease in leases],
            ["mailbox", "holder", "epoch", "expires_at", "expired"],
        )
    typer.echo("")
    typer.echo(t("messages: ") + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or t("none yet")))
    if outgoing or cfg.smtp is not None:
        typer.echo(t("outbox: ") + (", ".join(f"{k} {v}" for k, v in sorted(outgoing.items())) or t("empty")))
    thread = daemon.get("outbox")
    if daemon["running"] and isinstance(thread, dict):
        typer.echo(
            t(
                "outbox thread: {state}, since start sent {sent}, deferred {deferred}, bounced {bounced}",
                **{k: thread.get(k) for k in ("state", "sent", "deferred", "bounced")},
            )
        )


def _daemon_line(daemon: dict[str, Any]) -> str:
    t = locale().t
    if daemon["running"]:
        line = t("daemon: running, pid {pid}", pid=daemon["pid"])
        if daemon.get("started_at"):
            line += t(", since {at}", at=cell(daemon["started_at"]))
        if daemon.get("config_sha256"):
            line += t(", configuration {sha}", sha=str(daemon["config_sha256"])[:12])
        return line
    line = t("daemon: not running")
    if daemon.get("stopped_because"):
        line += t(" (stopped {at}: {why})", at=cell(daemon.get("stopped_at")), why=cell(daemon["stopped_because"]))
    return line
