"""Where the gateway keeps its state, and how a process opens it.

One place that knows the state directory's layout, so the daemon, the CLI and the tests
agree on it (docs/case-folders.md describes it for people).
"""

from __future__ import annotations

from pathlib import Path

from gateway.config import Config
from gateway.records.audit import AuditTrail, load_or_create_key
from gateway.records.ledger import Ledger


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


def open_audit(config: Config, *, actor: str, sign: bool = True) -> AuditTrail:
    """The audit trail; the signing key is created (0600) on first start."""
    key = None
    if sign:
        from gateway.records.audit import public_key_pem

        key = load_or_create_key(audit_key_path(config))
        pub = audit_public_key_path(config)
        if not pub.exists():
            pub.write_bytes(public_key_pem(key))
    return AuditTrail(
        key=key, jsonl_path=audit_jsonl_path(config), checkpoint_every=config.audit.checkpoint_every, actor=actor
    )


def open_ledger(config: Config, *, actor: str = "daemon", readonly: bool = False) -> Ledger:
    if readonly:
        return Ledger(ledger_path(config), readonly=True)
    prepare_state(config)
    return Ledger(ledger_path(config), audit=open_audit(config, actor=actor))
