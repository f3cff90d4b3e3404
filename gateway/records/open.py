"""Opening the store a process works with, from the configuration.

The one place that chooses the backend (``[storage] backend``) and wires in the audit key
and the JSON-lines copy, so the daemon, the CLI and the tests open the same store the
same way. The PostgreSQL backend is imported only when chosen: an installation on SQLite
needs no database driver.
"""

from __future__ import annotations

from gateway.config import Config
from gateway.records.actors import DAEMON
from gateway.records.export import JsonlExport
from gateway.records.signing import Signer, load_or_create_key, public_key_pem
from gateway.records.sqlite.store import SQLiteStore
from gateway.records.store import AuditSettings, Store, StoreError
from gateway.statedir import audit_jsonl_path, audit_key_path, audit_public_key_path, ledger_path, prepare_state


def open_store(config: Config, *, actor: str = DAEMON, readonly: bool = False) -> Store:
    """The store; ``actor`` is who the audit entries written through it name by default.

    Read-only opening needs no write access to the state directory (auditors) and never
    migrates. Otherwise the state directories and the audit signing key (0600, with its
    public key beside it) are created on first start; the key and the JSON-lines copy
    stay under ``state_dir`` whichever backend keeps the records.
    """
    if readonly:
        return _backend(config, None, readonly=True)
    return _backend(config, audit_settings(config, actor=actor), readonly=False)


def audit_settings(config: Config, *, actor: str = DAEMON) -> AuditSettings:
    """How a writer chains: the audit key (made on first start, with its public key), the JSON-lines copy."""
    prepare_state(config)
    key = load_or_create_key(audit_key_path(config))
    pub = audit_public_key_path(config)
    if not pub.exists():
        pub.write_bytes(public_key_pem(key))
    return AuditSettings(
        actor=actor,
        signer=Signer(key),
        checkpoint_every=config.audit.checkpoint_every,
        export=JsonlExport(audit_jsonl_path(config)),
        # Several nodes may share a PostgreSQL trail: each entry names the node that wrote it.
        node=config.storage.node if config.storage.backend == "postgresql" else None,
    )


def _backend(config: Config, settings: AuditSettings | None, *, readonly: bool) -> Store:
    storage = config.storage
    if storage.backend == "postgresql":
        from gateway.records.postgres.store import PostgresStore

        assert storage.dsn is not None, "the loader requires dsn_file with backend = postgresql"
        return PostgresStore(storage.dsn.reveal(), audit=settings, readonly=readonly, schema=storage.schema)
    return SQLiteStore(ledger_path(config), audit=settings, readonly=readonly)


def store_exists(config: Config) -> bool:
    """Whether anything can have been recorded yet: the SQLite file exists, or the PostgreSQL
    database has the store's schema (the database itself is the provider's and exists
    before the first start; the first writer makes the tables)."""
    if config.storage.backend == "postgresql":
        store = _backend(config, None, readonly=True)
        try:
            return store.schema_version > 0
        finally:
            store.close()
    return ledger_path(config).exists()


def store_name(config: Config) -> str:
    """The store as a person finds it: the SQLite file, or the database without its password."""
    if config.storage.backend == "postgresql":
        from gateway.records.postgres.connect import describe

        assert config.storage.dsn is not None
        schema = config.storage.schema
        return describe(config.storage.dsn.reveal()) + (f" (schema {schema})" if schema else "")
    return str(ledger_path(config))


def database_check(config: Config) -> tuple[bool, str]:
    """For ``poststelle check``: whether the configured PostgreSQL database answers, and its
    schema version; the detail names the problem, never the password."""
    try:
        store = _backend(config, None, readonly=True)
    except StoreError as exc:
        return False, str(exc)
    try:
        version = store.schema_version
    except StoreError as exc:
        return False, str(exc)
    finally:
        store.close()
    if version == 0:
        return True, "reachable, no tables yet (the first start creates them)"
    return True, f"reachable, schema version {version}"
