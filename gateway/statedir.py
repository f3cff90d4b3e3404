"""Where the gateway keeps its state.

One place that knows the state directory's layout, so the daemon, the CLI and the tests
agree on it (docs/case-folders.md describes it for people). Opening the store is
``gateway.records.open``.
"""

from __future__ import annotations

from pathlib import Path

from gateway.config import Config


def ledger_path(config: Config) -> Path:
    return config.storage.state_dir / "ledger.sqlite3"


def audit_key_path(config: Config) -> Path:
    return config.audit.key_file or config.storage.state_dir / "audit" / "audit-signing.key"


def audit_public_key_path(config: Config) -> Path:
    return audit_key_path(config).with_suffix(".pub.pem")


def audit_jsonl_path(config: Config) -> Path:
    return config.audit.jsonl_file or config.storage.state_dir / "audit" / "audit.jsonl"


def prepare_state(config: Config) -> None:
    """Create the state and cases directories (0750) on first start."""
    for d in (
        config.storage.state_dir,
        config.storage.cases_dir,
        config.storage.state_dir / "quarantine",
        config.storage.state_dir / "audit",
    ):
        d.mkdir(parents=True, exist_ok=True, mode=0o750)
