"""``poststelle audit verify`` without typer: the run, its printed report, and a quick path to it.

``audit verify --since HEAD_HASH`` is an auditor's daily check and should take about a
second, of which starting the program is a large part: typer and the pydantic adapters it
builds for every option cost more CPU than parsing these few options needs. So
``cli.__main__`` hands an ``audit verify`` command line to ``quick_verify`` first, which
understands exactly the options the typer command declares, written the plain ways; any
other form (``--help``, an unknown or repeated option, a missing value) returns ``None``
and the typer app parses the line as always, so its answers and errors stay the only ones.
The run itself (``run_verify``) is the same for both ways in.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.display import json_text, safe_text
from gateway.ui import Locale

if TYPE_CHECKING:
    from gateway.audit.findings import VerifyReport
    from gateway.config import Config
    from gateway.records.chain import ChainBreak

EXIT_CONFIG = 2  # as cli.common's: a configuration that cannot be used

#: The typer command's options (cli/audit.py ``verify_cmd`` and the ``--tenant`` every command has).
_VALUED = {
    "--public-key": "public_key",
    "--jsonl": "jsonl",
    "--since": "since",
    "--config": "config",
    "-c": "config",
    "--tenant": "tenant",
}
_FLAGS = {"--json": "as_json"}


def _say(text: str, *, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")


def parse_quick(args: list[str]) -> dict[str, str | bool] | None:
    """The options of ``audit verify``, or None for anything but their plain forms, each given once."""
    got: dict[str, str | bool] = {}
    i = 0
    while i < len(args):
        word = args[i]
        name, eq, value = word.partition("=")
        if name in _VALUED and (eq or i + 1 < len(args)):
            if not eq:
                value = args[i + 1]
                i += 1
            key = _VALUED[name]
            if key in got or not value or value.startswith("-"):
                return None
            got[key] = value
        elif word in _FLAGS and _FLAGS[word] not in got:
            got[_FLAGS[word]] = True
        else:
            return None
        i += 1
    return got


def quick_verify(args: list[str]) -> int | None:
    """Run ``audit verify ARGS`` without typer and return its exit status; None: let typer parse them."""
    opts = parse_quick(args)
    if opts is None:
        return None
    from gateway.config import load_config, resolve_config_path
    from gateway.config.tenants import select_tenant
    from gateway.errors import ConfigError
    from gateway.filemodes import apply as apply_modes

    lc = Locale()
    config = opts.get("config")
    tenant = opts.get("tenant")
    try:
        cfg = select_tenant(
            load_config(resolve_config_path(Path(config) if isinstance(config, str) else None)),
            tenant if isinstance(tenant, str) else None,
        )
    except ConfigError as exc:
        _say(lc.t("configuration error: {message}", message=safe_text(exc)), err=True)
        return EXIT_CONFIG
    apply_modes(cfg.storage.file_mode, cfg.storage.dir_mode)
    lc = Locale(language=cfg.ui.language, timezone=cfg.ui.timezone)
    for warning in cfg.warnings:
        _say(lc.t("warning: {message}", message=safe_text(warning)), err=True)
    key, jsonl, since = (opts.get(k) for k in ("public_key", "jsonl", "since"))
    return run_verify(
        cfg,
        lc,
        public_key=Path(key) if isinstance(key, str) else None,
        jsonl=Path(jsonl) if isinstance(jsonl, str) else None,
        since=since if isinstance(since, str) else None,
        as_json=opts.get("as_json") is True,
    )


def run_verify(
    cfg: Config, lc: Locale, *, public_key: Path | None, jsonl: Path | None, since: str | None, as_json: bool
) -> int:
    """Verify, print the report (or its JSON) and return the exit status: 1 names a break or a refusal."""
    from gateway.records.store import StoreError
    from gateway.statedir import audit_public_key_path

    def refuse(message: str) -> int:
        _say(lc.t("error: {message}", message=safe_text(message)), err=True)
        return 1

    if public_key is not None and not public_key.is_file():
        return refuse(f"public key file not found: {public_key}")
    if since is not None and jsonl is not None:
        return refuse("--jsonl compares the whole copy: use it without --since")
    try:
        if since is not None:
            from gateway.audit.since import verify_since

            report = verify_since(cfg, since, public_key_file=public_key)
        else:
            from gateway.audit.verify import verify_state

            report = verify_state(cfg, public_key_file=public_key, jsonl_file=jsonl)
    except ValueError as exc:
        return refuse(str(exc))
    except (StoreError, OSError) as exc:
        return refuse(f"cannot read the state directory: {exc}")
    if as_json:
        sys.stdout.write(json_text(report.to_json(), indent=2, default=str) + "\n")
    else:
        print_report(report, public_key or audit_public_key_path(cfg), lc)
    return 0 if report.ok else 1


def print_report(r: VerifyReport, key_file: Path, lc: Locale) -> None:
    n = len(r.breaks)
    status = "OK" if r.ok else lc.t("FAILED: {n} break" if n == 1 else "FAILED: {n} breaks", n=n)
    _say(lc.t("audit verify: {status}  ({seconds} s)", status=status, seconds=f"{r.seconds:.1f}"))
    key = lc.t("key {id} from {file}", id=r.public_key_id, file=key_file) if r.public_key_id else lc.t("no public key")
    since = r.since_hash is not None
    if not since:
        entries = str(r.entries)
    elif r.since_seq is None:
        entries = lc.t("none checked: the head given is not an entry of this trail")
    else:
        entries = lc.t("{n} after entry {seq} (the head given)", n=r.entries, seq=r.since_seq)
    found = not since or r.since_seq is not None
    lines = [
        ("entries", entries),
        ("head", lc.t("{hash} (keep it for `audit verify --since`)", hash=r.head_hash) if found else "-"),
        (
            "checkpoints",
            lc.t(
                "{n} signed, checked with {key}; sealed up to entry {seq}", n=r.checkpoints, key=key, seq=r.sealed_up_to
            ),
        ),
        (
            "case folders",
            lc.t("{entries} entries placed since checked against their manifests", entries=r.case_entries)
            if since
            else lc.t(
                "{n} folders, {entries} entries checked against their manifests",
                n=r.case_folders,
                entries=r.case_entries,
            ),
        ),
        ("quarantine", lc.t("{n} entries checked against their manifests", n=r.quarantine_entries)),
        ("ledger", lc.t("{n} messages compared with the entries and the trail", n=r.ledger_messages)),
        ("json-lines", lc.t("not compared (--since)") if since else _jsonl_line(r, lc)),
    ]
    for label, text in lines:
        _say(safe_text(f"  {lc.t(label):13} {text}"))
    if r.breaks:
        _say("\n" + lc.t("breaks:"))
        for b in r.breaks:
            _print_break(b, lc)
    if r.warnings:
        _say("\n" + lc.t("warnings:"))
        for w in r.warnings:
            _say(safe_text(f"  - {w}"))


def _jsonl_line(r: VerifyReport, lc: Locale) -> str:
    if r.jsonl_file is None:
        return lc.t("not checked")
    state = lc.t("lagging {n} entries", n=r.jsonl_lagging) if r.jsonl_lagging else lc.t("in step")
    return lc.t("{n} lines, {state} ({file})", n=r.jsonl_lines, state=state, file=r.jsonl_file)


def _print_break(b: ChainBreak, lc: Locale) -> None:
    where = lc.t("entry {seq}", seq=b.seq) if b.seq is not None else "-"
    _say(safe_text(f"  {where:12} {b.kind}: {b.detail}"))
    if b.file:
        _say(safe_text(f"  {'':12} {lc.t('file:'):9} {b.file}"))
    if b.expected is not None or b.found is not None:
        _say(safe_text(f"  {'':12} {lc.t('expected:'):9} {b.expected if b.expected is not None else '-'}"))
        _say(safe_text(f"  {'':12} {lc.t('found:'):9} {b.found if b.found is not None else '-'}"))
