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

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from cli.common import EXIT_CONFIG, ConfigOption, JsonOption, get_config, locale, print_table
from gateway.clock import utcnow
from gateway.display import json_text, safe_text
from gateway.errors import ConfigError
from gateway.logs import setup_logging
from gateway.unwrap.verdict import TimeSource

EXIT_USAGE = 2

FilesArgument = typer.Argument(
    ..., metavar="FILE", help=".eml files (raw RFC 5322 bytes, e.g. a case folder's original.eml)."
)
AtOption = typer.Option(
    None,
    "--at",
    help="Validate certificates as of this ISO-8601 moment. Default: the arrival recorded in the "
    "manifest.json next to the file (a case folder's original.eml), else now. "
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


def recorded_arrival(path: Path) -> tuple[datetime, TimeSource] | None:
    """The arrival the gateway recorded for the entry ``path`` belongs to, if it is one.

    An entry's ``manifest.json`` lists its files and says when the message arrived
    (``received``, the server's INTERNALDATE) and when it was fetched. Re-checking an
    archived letter as of its arrival answers "was it verified when it came in". Manifests
    written before the two were told apart carry no ``fetched``: their ``received`` is the
    fetch time, and is called that.
    """
    try:
        data = json.loads((path.parent / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict) or path.name not in data["files"]:
        return None
    candidates: list[tuple[object, TimeSource]] = [
        (data.get("received"), "arrival" if "fetched" in data else "fetch"),
        (data.get("fetched"), "fetch"),
    ]
    for value, source in candidates:
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            if moment.tzinfo is not None:
                return moment, source
    return None


def validation_moment(path: Path, given: datetime | None) -> tuple[datetime, TimeSource]:
    """``--at`` if given, else the recorded arrival of the entry, else now."""
    if given is not None:
        return given, "given"
    return recorded_arrival(path) or (utcnow(), "now")


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
        "validated": _validated(verdict),
    }


def _validated(verdict: dict[str, Any]) -> str | None:
    """When certificates were judged, in the reader's zone, and which moment that was."""
    at, source = verdict.get("validated_at"), verdict.get("validation_time_source")
    if not at:
        return None
    lc = locale()
    return lc.t("{time} ({source})", time=lc.time(str(at)), source=lc.t(str(source)))


def _explain_demail(name: str, demail: dict[str, Any]) -> None:
    """The De-Mail integrity check step by step, so an auditor can redo it by hand (docs/demail.md)."""
    lc = locale()
    typer.echo("")
    typer.echo(lc.t("De-Mail integrity of {file}: {status}", file=name, status=demail.get("integrity")))
    reasons = [*(demail.get("integrity_reasons") or []), *(demail.get("reasons") or [])]
    if reasons:
        typer.echo("  " + lc.t("reasons: {reasons}", reasons=", ".join(str(r) for r in reasons)))
    for step in demail.get("steps") or []:
        typer.echo(f"  {safe_text(str(step))}")


def inspect_cmd(
    files: list[Path] = FilesArgument,
    as_json: bool = JsonOption,
    at: str | None = AtOption,
    config: Path | None = ConfigOption,
) -> None:
    """Show the verdict for .eml files with the configured keys and trust anchors; changes nothing."""
    from gateway.inbound.decide import analyse
    from gateway.unwrap import UnwrapContext

    given = parse_at(at) if at is not None else None
    cfg = get_config(config)
    # Logs go to stderr so that stdout stays a clean table or JSON lines.
    setup_logging(cfg.logging.level, cfg.logging.format)
    try:
        ctx = UnwrapContext.from_config(cfg, collect_certificates=False, fetch_crls=False)
    except ConfigError as exc:
        typer.echo(locale().t("configuration error: {message}", message=exc), err=True)
        raise typer.Exit(EXIT_CONFIG) from None

    rows: list[dict[str, Any]] = []
    explained: list[tuple[str, dict[str, Any]]] = []
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
        moment, source = validation_moment(path, given)
        verdict = analyse(raw, cfg, ctx, at=moment, at_source=source).verdict.to_json()
        if as_json:
            typer.echo(json_text({"file": str(path), **verdict}))
        else:
            rows.append(_row(str(path), verdict))
            if verdict.get("demail"):
                explained.append((str(path), verdict["demail"]))
    if not as_json and rows:
        print_table(rows, ["file", "verdict", "signature", "signer", "encryption", "reasons", "warnings", "validated"])
    for name, demail in explained:
        _explain_demail(name, demail)
    if unreadable:
        raise typer.Exit(EXIT_USAGE)
