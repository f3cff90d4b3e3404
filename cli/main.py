"""The ``poststelle`` command: daemon, checks and the records office's everyday views."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cli.common import (
    EXIT_CONFIG,
    ConfigOption,
    JsonOption,
    add_tenant_option,
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
from gateway.records.actors import Actor
from gateway.records.store import Store

if TYPE_CHECKING:
    from gateway.service.daemon import Listener

# Command groups and commands kept in their own modules: name -> (module, attribute).
# A run of one command imports only its module (see ``build_app``); each module pulls in
# what its commands need (the crypto libraries, the mail parsers), and an auditor's
# ``audit verify`` should not pay for loading the S/MIME and OpenPGP stacks of ``inspect``.
GROUPS = {
    "audit": "cli.audit",
    "cases": "cli.cases",
    "deliveries": "cli.deliveries",
    "outbox": "cli.outbox",
    "quarantine": "cli.quarantine",
    "route": "cli.route",
    "submission-user": "cli.submission",
}
COMMANDS = {
    "inspect": ("cli.inspect", "inspect_cmd"),
    "send": ("cli.send", "send_cmd"),
    "status": ("cli.status", "status_cmd"),
    "migrate-store": ("cli.migrate", "migrate_store_cmd"),
}

_app = typer.Typer(
    name="poststelle",
    help="Poststelle: the secure digital mail room for legal correspondence.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
_registered: set[str] = set()


def build_app(argv: list[str] | None = None) -> typer.Typer:
    """The app with the command modules ``argv`` needs registered: only the one it names, else all.

    ``poststelle --help``, no arguments or an unknown name get every module, so the
    overview and the error list every command; ``poststelle audit verify ...`` imports
    ``cli.audit`` alone.
    """
    words = [a for a in (argv or []) if not a.startswith("-")]
    first = words[0] if words else None
    names = [first] if first in GROUPS or first in COMMANDS else [*GROUPS, *COMMANDS]
    for name in names:
        if name in _registered:
            continue
        _registered.add(name)
        if name in GROUPS:
            _app.add_typer(importlib.import_module(GROUPS[name]).app, name=name)
        else:
            module, attr = COMMANDS[name]
            _app.command(name)(getattr(importlib.import_module(module), attr))
    add_tenant_option(_app)
    # The overview lists these commands first, as it did when they were imported eagerly.
    _app.registered_commands.sort(key=lambda c: (c.name or "") not in COMMANDS)
    return _app


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"poststelle {version('poststelle')}")
        raise typer.Exit()


@_app.callback()
def _root(
    _version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the installed version and exit."
    ),
) -> None:
    """Poststelle: the secure digital mail room for legal correspondence."""


@_app.command()
def run(
    once: bool = typer.Option(False, "--once", help="Process what is waiting, then exit."),
    config: Path | None = ConfigOption,
) -> None:
    """Run the gateway daemon: fetch, verify, route and file every incoming message.

    Only one runs per state directory; a second one exits at once naming the pid of the first.
    """
    from gateway.logs import setup_logging  # structlog and rich: the daemon's, not every command's
    from gateway.service.daemon import Daemon
    from gateway.service.startup import describe

    cfg = get_config(config, all_tenants=True)
    setup_logging(cfg.logging.level, cfg.logging.format)
    try:
        if cfg.tenants:  # every tenant's daemon in this process (service.tenants)
            from gateway.service.tenants import TenantsDaemon

            report = TenantsDaemon(cfg, once=once, listeners_for=lambda t: _listeners(t, once)).run()
        else:
            # a submission port that cannot be bound is a ConfigError too
            report = Daemon(cfg, once=once, listeners=_listeners(cfg, once)).run()
    except ConfigError as exc:
        echo(locale().t("configuration error: {message}", message=exc), err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    except (PoststelleError, OSError) as exc:  # the lock, the disk, the ledger: one line, no traceback
        fail(locale().t("cannot start: {reason}", reason=describe(exc)))
    if not report.ok:
        for name, error in sorted(report.failures.items()):
            where = name if name == "outbox" or cfg.tenants else "mailbox " + name
            echo(f"{where}: {error}", err=True)
    if not once:
        _leave_now(0 if report.ok else 1)
    if not report.ok:
        raise typer.Exit(1)


def _leave_now(code: int) -> None:
    """End a stopped daemon without the interpreter's clean-up.

    Everything that matters is closed by now (ledger sealed and closed, workers gone,
    connections dropped); tearing down the modules of a process that held hundreds of
    mailboxes only delayed the exit past the second a stop may take, more so on a busy
    machine. Mailbox threads still dropping their connections are simply ended.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _listeners(cfg: Config, once: bool) -> list[Listener]:
    """The SMTP submission listener and the send socket, when configured (daemon mode only).

    Letters handed in are protected and queued like ``send``'s (``outbound/handin.py``), so
    the listener needs ``[outbound]`` (how to sign) and ``[smtp]`` (who delivers them): a
    listener that could only refuse every letter stops start-up instead.
    """
    if once:
        return []
    listeners: list[Listener] = []
    services = (("submission", "submission listener", cfg.submission), ("send_socket", "send socket", cfg.send_socket))
    for name, what, wanted in services:
        if wanted is None:
            continue
        for section, present in (("outbound", cfg.outbound), ("smtp", cfg.smtp)):
            if present is None:
                problem = f"the {what} queues letters for sending, which needs [{section}]"
                raise ConfigError(str(cfg.path), name, problem)
    if cfg.submission is not None:
        from gateway.outbound.handin import OutboxSpool
        from gateway.outbound.submission import SubmissionListener

        listeners.append(SubmissionListener(cfg, OutboxSpool(cfg)))
    if cfg.send_socket is not None:
        from gateway.outbound.sendsocket import SendSocketListener

        listeners.append(SendSocketListener(cfg))
    return listeners


@_app.command()
def init(config: Path | None = ConfigOption) -> None:
    """Create state_dir, cases_dir and the state layout (modes from [storage]), the ledger and the audit key.

    The daemon never creates the two directories itself: a share that is not mounted must
    stop it, not receive the letters on the root disk. Run once, as the gateway's user;
    running it again creates only what is missing.
    """
    whole = get_config(config, all_tenants=True)
    made = [p for cfg in whole.tenants or (whole,) for p in _init_state(cfg)]  # with tenants: each its own
    for p in made:
        echo(locale().t("created {path}", path=p))
    if not made:
        echo(locale().t("nothing to create: {path} is set up", path=whole.storage.state_dir))


def _init_state(cfg: Config) -> list[Path]:
    """One configuration's (one tenant's) directories, ledger and key; recorded in its trail."""
    from gateway.records.chain import AuditEvent
    from gateway.statedir import init_storage, require_roots

    try:
        made = init_storage(cfg)
        require_roots(cfg)
    except OSError as exc:
        from gateway.service.startup import describe

        fail(locale().t("cannot create: {reason}", reason=describe(exc)))

    def record(store: Store, actor: Actor) -> None:
        details = {
            "created": [str(p) for p in made],
            "file_mode": f"{cfg.storage.file_mode:04o}",
            "dir_mode": f"{cfg.storage.dir_mode:04o}",
            **actor.fields(),
        }
        store.record_events([AuditEvent("state-initialised", details=details, actor=actor.name)])

    person_decision(cfg, record)
    return made


@_app.command()
def check(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """Validate the config, key material, state directory, credentials and connectivity."""
    from gateway.service.health import run_checks

    cfg = get_config(config, all_tenants=True)
    results, rows = [], []
    for one in cfg.tenants or (cfg,):
        found = run_checks(one)
        results += found
        rows += [{**r.to_json(), **({"tenant": one.tenant} if one.tenant else {})} for r in found]
    if as_json:
        print_json(rows)
    else:
        print_table(rows, [*(["tenant"] if cfg.tenants else []), "check", "target", "result", "detail"])
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@_app.command()
def demo(
    workdir: Path | None = typer.Option(None, "--dir", help="Keep the demo's files here (default: a temp dir)."),
) -> None:
    """Start a throwaway Dovecot, fill it with sample correspondence, run the gateway once, show the result."""
    from gateway.demo.run import run_demo

    raise typer.Exit(run_demo(workdir))


def __getattr__(name: str) -> typer.Typer:
    """``from cli.main import app``: the whole app, every command registered (tests, completion)."""
    if name == "app":
        return build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    build_app(sys.argv[1:])()


if __name__ == "__main__":
    main()
