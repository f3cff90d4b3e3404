"""What every command shares: finding the config, printing data, failing clearly."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer

from gateway.config import Config, load_config, resolve_config_path
from gateway.errors import ConfigError

ConfigOption = typer.Option(
    None, "--config", "-c", help="Config file (else $POSTSTELLE_CONFIG, else /etc/poststelle/poststelle.toml)."
)
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON.")

EXIT_CONFIG = 2


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def get_config(path: Path | None) -> Config:
    """Load and validate the config; a problem names file, key and what is wrong, exit 2."""
    try:
        config = load_config(resolve_config_path(path))
    except ConfigError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    for warning in config.warnings:
        typer.echo(f"warning: {warning}", err=True)
    return config


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A plain aligned table: readable in a terminal and in a ticket."""
    if not rows:
        typer.echo("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, "") if r.get(c) is not None else "-")) for r in rows)) for c in columns}
    typer.echo("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        typer.echo("  ".join(str(r.get(c) if r.get(c) is not None else "-").ljust(widths[c]) for c in columns).rstrip())
