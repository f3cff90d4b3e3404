"""The ``poststelle`` command: daemon, checks and the records office's everyday views."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cli import audit, cases, deliveries, inspect, outbox, quarantine, route, send, submission
from cli.common import (
    EXIT_CONFIG,
    ConfigOption,
    JsonOption,
    echo,
    fail,
    get_config,
    locale,
    person_decision,
    print_json,
    print_table,
)
from gateway.config import Config
from gateway.errors import ConfigError, PoststelleError
from gateway.logs import setup_logging
from gateway.records.actors import Actor
from gateway.records.store import Store

if TYPE_CHECKING:
    from gateway.service.daemon import Listener

app = typer.Typer(
    name="poststelle",
    help="Poststelle: the secure digital mail room for legal correspondence.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(audit.app, name="audit")
app.add_typer(cases.app, name="cases")
app.add_typer(deliveries.app, name="deliveries")
app.add_typer(outbox.app, name="outbox")
app.add_typer(quarantine.app, name="quarantine")
app.add_typer(route.app, name="route")
app.add_typer(submission.app, name="submission-user")
app.command("inspect")(inspect.inspect_cmd)
app.command("send")(send.send_cmd)


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"poststelle {version('poststelle')}")
        raise typer.Exit()


@app.callback()
def _root(
    _version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the installed version and exit."
    ),
) -> None:
    """Poststelle: the secure digital mail room for legal correspondence."""


@app.command()
def run(
    once: bool = typer.Option(False, "--once", help="Process what is waiting, then exit."),
    config: Path | None = ConfigOption,
) -> None:
    """Run the gateway daemon: fetch, verify, route and file every incoming message.

    Only one runs per state directory; a second one exits at once naming the pid of the first.
    """
    from gateway.service.daemon import Daemon
    from gateway.service.startup import describe

    cfg = get_config(config)
    setup_logging(cfg.logging.level, cfg.logging.format)
    try:
        daemon = Daemon(cfg, once=once, listeners=_listeners(cfg, once))
        report = daemon.run()  # a submission port that cannot be bound is a ConfigError too
    except ConfigError as exc:
        echo(locale().t("configuration error: {message}", message=exc), err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    except (PoststelleError, OSError) as exc:  # the lock, the disk, the ledger: one line, no traceback
        fail(locale().t("cannot start: {reason}", reason=describe(exc)))
    if not report.ok:
        for name, error in sorted(report.failures.items()):
            echo(f"{name if name == 'outbox' else 'mailbox ' + name}: {error}", err=True)
        raise typer.Exit(1)


def _listeners(cfg: Config, once: bool) -> list[Listener]:
    """The SMTP submission listener when ``[submission]`` is configured (daemon mode only).

    Letters handed in are protected and queued like ``send``'s (``outbound/handin.py``), so
    the listener needs ``[outbound]`` (how to sign) and ``[smtp]`` (who delivers them): a
    listener that could only refuse every letter stops start-up instead.
    """
    if cfg.submission is None or once:
        return []
    for section, present in (("outbound", cfg.outbound), ("smtp", cfg.smtp)):
        if present is None:
            problem = f"the submission listener queues letters for sending, which needs [{section}]"
            raise ConfigError(str(cfg.path), "submission", problem)
    from gateway.outbound.handin import OutboxSpool
    from gateway.outbound.submission import SubmissionListener

    return [SubmissionListener(cfg, OutboxSpool(cfg))]


@app.command()
def init(config: Path | None = ConfigOption) -> None:
    """Create state_dir, cases_dir and the state layout (modes from [storage]), the ledger and the audit key.

    The daemon never creates the two directories itself: a share that is not mounted must
    stop it, not receive the letters on the root disk. Run once, as the gateway's user;
    running it again creates only what is missing.
    """
    from gateway.records.chain import AuditEvent
    from gateway.statedir import init_storage, require_roots

    cfg = get_config(config)
    try:
        made = init_storage(cfg)
        require_roots(cfg)
    except OSError as exc:
        from gateway.service.startup import describe

        fail(locale().t("cannot create: {reason}", reason=describe(exc)))

    def record(store: Store, actor: Actor) -> None:
        details = {"created": [str(p) for p in made], "file_mode": f"{cfg.storage.file_mode:04o}",
                   "dir_mode": f"{cfg.storage.dir_mode:04o}", **actor.fields()}
        store.record_events([AuditEvent("state-initialised", details=details, actor=actor.name)])

    person_decision(cfg, record)
    for p in made:
        echo(locale().t("created {path}", path=p))
    if not made:
        echo(locale().t("nothing to create: {path} is set up", path=cfg.storage.state_dir))


@app.command()
def check(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """Validate the config, key material, state directory, credentials and connectivity."""
    from gateway.service.health import run_checks

    results = run_checks(get_config(config))
    rows = [r.to_json() for r in results]
    if as_json:
        print_json(rows)
    else:
        print_table(rows, ["check", "target", "result", "detail"])
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@app.command()
def status(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """Per mailbox: state (ok, error, auth-failed) since when, last poll, backlog, last error; counts by state.

    The counts are the ledger's (messages) and the outbox's (documents).
    """
    from gateway.records.open import open_store, store_exists
    from gateway.records.store import StoreError

    cfg = get_config(config)
    statuses: list[dict[str, object]] = []
    counts: dict[str, int] = {}
    outgoing: dict[str, int] = {}
    if store_exists(cfg):
        store = open_store(cfg, readonly=True)
        statuses = [s.to_json() for s in store.statuses()]
        counts = store.counts_by_state()
        with contextlib.suppress(StoreError):  # a ledger from before the outbox, opened read-only
            outgoing = store.outbox_counts()
        store.close()
    known = {str(s["mailbox"]) for s in statuses}
    statuses += [{"mailbox": mb.name} for mb in cfg.mailboxes if mb.name not in known]
    if as_json:
        print_json({"mailboxes": statuses, "messages": counts, "outbox": outgoing})
        return
    print_table(
        statuses,
        ["mailbox", "state", "state_since", "last_poll", "last_success", "backlog", "last_error_at", "last_error"],
    )
    typer.echo("")
    typer.echo("messages: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none yet"))
    if outgoing or cfg.smtp is not None:
        typer.echo("outbox: " + (", ".join(f"{k} {v}" for k, v in sorted(outgoing.items())) or "empty"))


@app.command()
def demo(
    workdir: Path | None = typer.Option(None, "--dir", help="Keep the demo's files here (default: a temp dir)."),
) -> None:
    """Start a throwaway Dovecot, fill it with sample correspondence, run the gateway once, show the result."""
    from gateway.demo.run import run_demo

    raise typer.Exit(run_demo(workdir))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
