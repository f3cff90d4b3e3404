"""``poststelle demo``: the whole inbound path on a laptop, with nothing to configure.

Starts a throwaway Dovecot, delivers sample correspondence to the authority's mailbox
(several case references, an unroutable letter, a malformed message), runs the gateway
once and shows what a records office would look at afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import typer

from gateway.config import load_config
from gateway.demo.dovecot import Dovecot, dovecot_available
from gateway.demo.pki import build_demo_pki, smime_letters
from gateway.demo.samples import demo_corpus
from gateway.demo.sending import (
    CORRESPONDENT_PASSWORD,
    CORRESPONDENT_USER,
    demo_relay,
    explore_hints,
    outbound_toml,
    send_document,
)
from gateway.logs import setup_logging
from gateway.records.open import open_store
from gateway.service.daemon import Daemon
from gateway.statedir import audit_dir, cases_dir, init_storage
from gateway.ui import Locale
from gateway.ui.reasons import signature_state

USER = "rathaus"
PASSWORD = "demo-only-password"  # noqa: S105 - a throwaway server's throwaway account

ROUTES = r"""
[[route]]
name = "reply with our reference"
subject = '(?i)\bIhr(?:e)?\s+(?:Zeichen|Az\.?|Aktenzeichen|Gz\.?)\s*:?\s*(?P<case>\d{2}-[A-Z]{2}-\d{4}-\d{3,5})'
case = "{case}"

[[route]]
name = "building permits"
subject = '(?i)\b(?:Az|Aktenzeichen|Gz)\.?\s*:?\s*(?P<case>\d{2}-BV-\d{4}-\d{3,5})'
case = "{case}"

[[route]]
name = "administrative court"
subject = '(?i)\b(?:Az|Aktenzeichen)\.?\s*:?\s*(?P<case>\d{1,2}\s+[KL]\s+\d{1,5}/\d{2})\b'
case = "VG {case}"
"""


def write_demo_config(work: Path, server: Dovecot, smime: str = "") -> Path:
    secret = work / "rathaus.secret"
    secret.write_text(PASSWORD)
    secret.chmod(0o600)
    config = work / "poststelle.toml"
    config.write_text(
        f"""# Written by `poststelle demo`; a complete reference is config/poststelle.example.toml.
[storage]
state_dir = "{work}/state"
cases_dir = "{work}/state/cases"

[[mailbox]]
name = "rathaus"
host = "{server.host}"
port = {server.imaps_port}
security = "tls"
username = "{USER}"
password_file = "{secret}"
ca_file = "{server.ca_file}"
poll_interval = 5
{ROUTES}
[routing]
unassigned = "_unassigned"

[logging]
format = "console"
level = "warning"

{smime}""",
        encoding="utf-8",
    )
    return config


def _tree(root: Path, indent: str = "  ") -> None:
    for case in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        typer.echo(f"{indent}{case.name}/")
        for entry in sorted(p for p in case.iterdir() if p.is_dir()):
            typer.echo(f"{indent}  {entry.name}/")
            for f in sorted(entry.rglob("*")):
                if f.is_file():
                    typer.echo(f"{indent}    {f.relative_to(entry)}  ({f.stat().st_size} bytes)")


def run_demo(workdir: Path | None) -> int:
    if not dovecot_available():
        typer.echo("The demo needs Dovecot: run scripts/demo (it installs dovecot-imapd) as root.", err=True)
        return 1
    work = Path(workdir or tempfile.mkdtemp(prefix="poststelle-demo-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o755)  # noqa: S103 - Dovecot (user nobody) must reach its dirs
    for previous in ("state", "dovecot", "postfix", "court"):  # a rerun in the same --dir starts afresh
        if (work / previous).exists():
            shutil.rmtree(work / previous)
    typer.echo(f"== Poststelle demo in {work}")
    users = {USER: PASSWORD, CORRESPONDENT_USER: CORRESPONDENT_PASSWORD}
    with Dovecot(work / "dovecot", users) as server, demo_relay(work, server) as relay:
        pki = build_demo_pki(work / "pki")
        config_path = write_demo_config(work, server, pki.smime_toml() + outbound_toml(relay))
        corpus = demo_corpus() + smime_letters(pki)
        server.append(USER, "INBOX", [m for _, m in corpus])
        typer.echo(
            f"== {len(corpus)} messages delivered to the mailbox '{USER}' (IMAPS 127.0.0.1:{server.imaps_port}):"
        )
        for desc, _ in corpus:
            typer.echo(f"   - {desc}")
        config = load_config(config_path)
        init_storage(config)  # what `poststelle init` does on a real install
        setup_logging(config.logging.level, config.logging.format)
        typer.echo("== poststelle run --once")
        report = Daemon(config, once=True).run()
        for name, outcome in report.outcomes.items():
            typer.echo(
                f"   mailbox {name}: stored {outcome.stored}, quarantined {outcome.quarantined}, "
                f"duplicates {outcome.duplicates}, moved on the server {outcome.moved}"
            )
        for name, error in report.failures.items():
            typer.echo(f"   mailbox {name} FAILED: {error}")
        typer.echo("== IMAP folders afterwards")
        for folder in ("INBOX", "Poststelle/Processed", "Poststelle/Quarantine"):
            typer.echo(f"   {folder}: {len(server.folder_uids(USER, folder))} messages")
        sending = send_document(work, server, relay, config, pki)
    typer.echo(f"== case folders ({cases_dir(config)})")
    _tree(cases_dir(config))
    store = open_store(config, readonly=True)
    typer.echo("== quarantine")
    for rec in store.in_state("quarantined"):
        typer.echo(f"   {rec.id}: {', '.join(rec.reasons)}  ({rec.path})")
    typer.echo("== verdicts (arrival in the mailbox, as the server recorded it)")
    lc = Locale(language=config.ui.language, timezone=config.ui.timezone)
    for rec in store.all_messages():
        v = rec.verdict or {}
        state = signature_state(v)
        words = f"  [{state.text()}]" if state is not None else ""
        arrived = lc.time(rec.internaldate) if rec.internaldate else "-"
        reasons = ", ".join(v.get("reasons", []))
        typer.echo(f"   {rec.id} arrived {arrived}  {rec.state:11} {v.get('verdict', '-'):10} {reasons}{words}")
    n = store.count()
    store.close()
    typer.echo(f"== audit trail: {n} entries (in {audit_dir(config)})")
    cli = [sys.executable, "-m", "cli"]
    typer.echo("== poststelle audit verify")
    verify = subprocess.run(
        [*cli, "audit", "verify", "-c", str(config_path)], capture_output=True, text=True, check=False
    )
    typer.echo("   " + (verify.stdout.strip() or verify.stderr.strip()).replace("\n", "\n   "))
    html_report = work / "audit-report.html"
    html_report.unlink(missing_ok=True)
    subprocess.run(
        [*cli, "audit", "export", "--format", "html", "-o", str(html_report), "-c", str(config_path)],
        capture_output=True,
        check=False,
    )
    if html_report.exists():
        typer.echo(f"== audit report for reviewers: {html_report} (open it in a browser)")
    typer.echo("")
    typer.echo("Explore further (the demo's Dovecot has stopped; these read the state):")
    typer.echo(f"   .venv/bin/poststelle cases list -c {config_path}")
    typer.echo(f"   .venv/bin/poststelle quarantine list -c {config_path}")
    typer.echo(f"   .venv/bin/poststelle status -c {config_path}")
    typer.echo(f"   .venv/bin/poststelle audit log -c {config_path}")
    typer.echo(f"   .venv/bin/poststelle inspect -c {config_path} {cases_dir(config)}/*/*/original.eml")
    for hint in explore_hints(work, config_path, relay, sending.outbound_id):
        typer.echo(f"   .venv/bin/{hint}")
    return 0 if report.ok and (relay is None or sending.ok) else 1
