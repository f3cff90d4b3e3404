"""``poststelle inspect``: the verdict of .eml files, offline, changing nothing.

Auditors re-check an archived message ("was this verified when it arrived, and would it
still be?") and clerks look at a file someone forwarded, without a running gateway. The
command runs the same decision as the daemon (``inbound.decide.analyse`` with the configured
keys, trust anchors, limits and policy), so its verdict is the one the gateway would
store in ``verification.json`` for that moment. It opens no ledger, writes no certificate
store and touches no mailbox: the unwrap context is built with
``collect_certificates=False`` and ``analyse`` does no I/O. Fetched CRLs are read from the
gateway's cache, never fetched (``fetch_crls=False``): the verdict shows which CRLs
were used (``signature.revocation``).

Exit status: 0 whatever the verdicts are (an unverified message is a finding, not an
error); 2 for usage problems (bad ``--at``, unreadable file) and configuration errors.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from cli.common import EXIT_CONFIG, ConfigOption, JsonOption, get_config, locale, print_table
from gateway.clock import utcnow
from gateway.display import json_text
from gateway.errors import ConfigError
from gateway.logs import setup_logging

EXIT_USAGE = 2

FilesArgument = typer.Argument(
    ..., metavar="FILE", help=".eml files (raw RFC 5322 bytes, e.g. a case folder's original.eml)."
)
AtOption = typer.Option(
    None,
    "--at",
    help="Validate certificates as of this ISO-8601 moment (e.g. the arrival time); default now. "
    "Without a UTC offset the time is taken as UTC.",
)


def parse_at(value: str | None) -> datetime:
    """The validation moment; naive times are UTC, so the result never depends on the host's zone."""
    if value is None:
        return utcnow()
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        typer.echo(f"error: --at: not an ISO-8601 date/time: {value!r}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _read(path: Path) -> bytes | str:
    """The file's bytes, or a message saying why they cannot be read."""
    try:
        return path.read_bytes()
    except IsADirectoryError:
        return "is a directory"
    except FileNotFoundError:
        return "no such file"
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def _row(name: str, verdict: dict[str, Any]) -> dict[str, Any]:
    sig = verdict.get("signature") or {}
    enc = verdict.get("encryption") or {}
    return {
        "file": name,
        "verdict": verdict.get("verdict"),
        "signature": sig.get("status"),
        "signer": sig.get("signer"),
        "encryption": enc.get("status"),
        "reasons": ", ".join(verdict.get("reasons") or []) or None,
        "warnings": ", ".join(verdict.get("warnings") or []) or None,
    }


def inspect_cmd(
    files: list[Path] = FilesArgument,
    as_json: bool = JsonOption,
    at: str | None = AtOption,
    config: Path | None = ConfigOption,
) -> None:
    """Show the verdict for .eml files with the configured keys and trust anchors; changes nothing."""
    from gateway.inbound.decide import analyse
    from gateway.unwrap import UnwrapContext

    moment = parse_at(at)
    cfg = get_config(config)
    # Logs go to stderr so that stdout stays a clean table or JSON lines.
    setup_logging(cfg.logging.level, cfg.logging.format)
    try:
        ctx = UnwrapContext.from_config(cfg, collect_certificates=False, fetch_crls=False)
    except ConfigError as exc:
        typer.echo(locale().t("configuration error: {message}", message=exc), err=True)
        raise typer.Exit(EXIT_CONFIG) from None

    rows: list[dict[str, Any]] = []
    unreadable = 0
    for path in files:
        raw = _read(path)
        if isinstance(raw, str):
            # Reported, and the others are still analysed: one bad path in a list of
            # archived messages should not hide the verdicts of the rest.
            message = locale().t("cannot read {path}: {reason}", path=path, reason=locale().t(raw))
            typer.echo(locale().t("error: {message}", message=message), err=True)
            unreadable += 1
            continue
        verdict = analyse(raw, cfg, ctx, at=moment).verdict.to_json()
        if as_json:
            typer.echo(json_text({"file": str(path), **verdict}))
        else:
            rows.append(_row(str(path), verdict))
    if not as_json and rows:
        print_table(rows, ["file", "verdict", "signature", "signer", "encryption", "reasons", "warnings"])
    if unreadable:
        raise typer.Exit(EXIT_USAGE)
