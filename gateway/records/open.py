"""Opening the store a process works with, from the configuration.

The one place that chooses the backend and wires in the audit key and the JSON-lines
copy, so the daemon, the CLI and the tests open the same store the same way.
"""

from __future__ import annotations

from gateway.config import Config
from gateway.records.actors import DAEMON
from gateway.records.export import JsonlExport
from gateway.records.signing import Signer, load_or_create_key, public_key_pem
from gateway.records.sqlite.store import SQLiteStore
from gateway.records.store import AuditSettings, Store
from gateway.statedir import audit_jsonl_path, audit_key_path, audit_public_key_path, ledger_path, prepare_state


def open_store(config: Config, *, actor: str = DAEMON, readonly: bool = False) -> Store:
    """The store; ``actor`` is who the audit entries written through it name by default.

    Read-only opening needs no write access to the state directory (auditors) and never
    migrates. Otherwise the state directories and the audit signing key (0600, with its
    public key beside it) are created on first start.
    """
    if readonly:
        return SQLiteStore(ledger_path(config), readonly=True)
    prepare_state(config)
    key = load_or_create_key(audit_key_path(config))
    pub = audit_public_key_path(config)
    if not pub.exists():
        pub.write_bytes(public_key_pem(key))
    settings = AuditSettings(
        actor=actor,
        signer=Signer(key),
        checkpoint_every=config.audit.checkpoint_every,
        export=JsonlExport(audit_jsonl_path(config)),
    )
    return SQLiteStore(ledger_path(config), audit=settings)
