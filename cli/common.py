"""What every command shares: finding the config, printing data, failing clearly.

Everything printed for a person goes through ``safe_text`` and every JSON document through
``json_text``: subjects, addresses and server messages are a stranger's text, and a
terminal must show them, not obey them (gateway/display.py).

Words and times follow the config's ``[ui]`` once ``get_config`` has read it (before that,
and for commands without a config, English and Europe/Berlin): table headers and the
common messages are translated, and a cell holding one of the gateway's UTC timestamps is
shown in the configured zone. ``--json`` output is the record's own form (UTC, English keys).
"""

from __future__ import annotations

import functools
import inspect
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer

from gateway.config import Config, load_config, resolve_config_path
from gateway.config.tenants import select_tenant
from gateway.display import json_text, safe_text
from gateway.errors import ConfigError, PermanentError
from gateway.filemodes import apply as apply_modes
from gateway.records.actors import Actor, cli_actor
from gateway.records.open import open_store
from gateway.records.store import Store
from gateway.ui import DEFAULT, Locale, is_timestamp
from gateway.ui.reasons import SignatureState, signature_state

ConfigOption = typer.Option(
    None, "--config", "-c", help="Config file (else $POSTSTELLE_CONFIG, else /etc/poststelle/poststelle.toml)."
)
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON.")

EXIT_CONFIG = 2

_locale: Locale = DEFAULT
_tenant: str | None = None
#: Commands that have nothing of a tenant's to read or change.
NOT_PER_TENANT = frozenset({"demo"})


TenantOption = typer.Option(
    None,
    "--tenant",
    metavar="NAME",
    help="The tenant to work on (its name in the configuration); required when the configuration has tenants.",
)


def add_tenant_option(app: typer.Typer) -> None:
    """Give every command of ``app`` (and of its groups) a ``--tenant`` option, in one place.

    ``get_config`` reads what it names, so a command that loads its configuration there
    works on that tenant's configuration (its state, store and folders) without knowing
    about tenants. Each command's function is wrapped once: the wrapper takes the option,
    keeps it for ``get_config`` and calls the command without it.
    """
    for info in app.registered_commands:
        if info.callback is not None and info.name not in NOT_PER_TENANT:
            info.callback = _tenant_wrapped(info.callback)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            add_tenant_option(group.typer_instance)


def _tenant_wrapped(command: Callable[..., Any]) -> Callable[..., Any]:
    if getattr(command, "_takes_tenant", False):
        return command

    @functools.wraps(command)
    def run(*args: Any, tenant: str | None = None, **kwargs: Any) -> Any:
        global _tenant
        _tenant = tenant
        return command(*args, **kwargs)

    signature = inspect.signature(command, eval_str=True)
    extra = inspect.Parameter("tenant", inspect.Parameter.KEYWORD_ONLY, default=TenantOption, annotation=str | None)
    params = list(signature.parameters.values())
    run.__signature__ = signature.replace(parameters=[*params, extra])  # type: ignore[attr-defined]
    run.__annotations__ = {**typing.get_type_hints(command), "tenant": str | None}
    run._takes_tenant = True  # type: ignore[attr-defined]
    return run


def locale() -> Locale:
    """The language and zone of this command's output (from the loaded config's ``[ui]``)."""
    return _locale


def use_locale(value: Locale) -> None:
    """Set the output locale; ``get_config`` does this, tests and config-less commands may too."""
    global _locale
    _locale = value


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(_locale.t("error: {message}", message=safe_text(message)), err=True)
    raise typer.Exit(code)


def get_config(path: Path | None, *, all_tenants: bool = False) -> Config:
    """Load and validate the config; a problem names file, key and what is wrong, exit 2.

    With ``[[tenant]]`` blocks, the configuration of the tenant ``--tenant`` names; without
    ``--tenant`` that is an error, unless the command covers every tenant (``all_tenants``:
    it gets the whole configuration, its tenants in ``config.tenants``).
    """
    try:
        config = select_tenant(load_config(resolve_config_path(path)), _tenant, all_tenants=all_tenants)
    except ConfigError as exc:
        typer.echo(_locale.t("configuration error: {message}", message=safe_text(exc)), err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    # Whatever this command writes (a release, an export) gets the gateway's modes, not the caller's umask.
    apply_modes(config.storage.file_mode, config.storage.dir_mode)
    use_locale(Locale(language=config.ui.language, timezone=config.ui.timezone))
    for warning in config.warnings:
        typer.echo(_locale.t("warning: {message}", message=safe_text(warning)), err=True)
    return config


T = TypeVar("T")


def person_decision(cfg: Config, act: Callable[[Store, Actor], T]) -> T:
    """Run a person's decision (release, move) as the OS user at the command line.

    Every decision names its person through ``cli_actor`` (the real uid's account, and
    sudo's caller), never through what the environment claims.

    The trail is sealed and exported at once, not at the next daemon run, so the decision
    is signed when the person walks away; a request that cannot be done (a
    ``PermanentError``: wrong id, wrong state, bad reference) ends with its message.
    """
    actor = cli_actor()
    store = open_store(cfg, actor=actor.name)
    try:
        result = act(store, actor)
        store.seal()
        store.export_jsonl()
    except PermanentError as exc:
        fail(str(exc))
    finally:
        store.close()
    return result


def signature_json(verdict: dict[str, Any] | None) -> dict[str, Any] | None:
    """The signature's state for ``--json``: state, status, reason codes and their English words."""
    state = signature_state(verdict)
    return state.to_json() if state is not None else None


def signature_words(signature: dict[str, Any] | None) -> str | None:
    """``signature invalid: <why>`` for a person, in the configured language."""
    if not signature:
        return None
    state = SignatureState(signature["state"], signature["status"], tuple(signature["reasons"]))
    return state.text(_locale)


def print_json(obj: Any) -> None:
    sys.stdout.write(json_text(obj, indent=2, default=str) + "\n")


def echo(text: object, *, err: bool = False) -> None:
    """One line for a person, with every control character shown as an escape."""
    typer.echo(safe_text(text), err=err)


def cell(value: object) -> str:
    """A table cell: ``-`` for nothing, a recorded UTC instant in the configured zone, else safe text."""
    if value is None:
        return "-"
    return _locale.time(str(value)) if is_timestamp(value) else safe_text(value)


def header(column: str) -> str:
    """A column's heading: its name in capitals (the catalogue key), translated."""
    return _locale.t(column.upper())


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A plain aligned table: readable in a terminal and in a ticket."""
    if not rows:
        typer.echo(_locale.t("(none)"))
        return
    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    heads = [header(c) for c in columns]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(heads)]
    typer.echo("  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip())
    for row in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
