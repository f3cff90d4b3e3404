"""What every command shares: finding the config, printing data, failing clearly.

Everything printed for a person goes through ``safe_text`` and every JSON document through
``json_text``: subjects, addresses and server messages are a stranger's text, and a
terminal must show them, not obey them (gateway/display.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import typer

from gateway.config import Config, load_config, resolve_config_path
from gateway.display import json_text, safe_text
from gateway.errors import ConfigError

ConfigOption = typer.Option(
    None, "--config", "-c", help="Config file (else $POSTSTELLE_CONFIG, else /etc/poststelle/poststelle.toml)."
)
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON.")

EXIT_CONFIG = 2


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {safe_text(message)}", err=True)
    raise typer.Exit(code)


def get_config(path: Path | None) -> Config:
    """Load and validate the config; a problem names file, key and what is wrong, exit 2."""
    try:
        config = load_config(resolve_config_path(path))
    except ConfigError as exc:
        typer.echo(f"configuration error: {safe_text(exc)}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    for warning in config.warnings:
        typer.echo(f"warning: {safe_text(warning)}", err=True)
    return config


def print_json(obj: Any) -> None:
    sys.stdout.write(json_text(obj, indent=2, default=str) + "\n")


def echo(text: object, *, err: bool = False) -> None:
    """One line for a person, with every control character shown as an escape."""
    typer.echo(safe_text(text), err=err)


def cell(value: object) -> str:
    """A table cell: ``-`` for nothing, else the value as safe text."""
    return "-" if value is None else safe_text(value)


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A plain aligned table: readable in a terminal and in a ticket."""
    if not rows:
        typer.echo("(none)")
        return
    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    typer.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
