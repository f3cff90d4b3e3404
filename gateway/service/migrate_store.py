"""``migrate-store``: move an installation's SQLite ledger into the configured PostgreSQL database.

The source is only read, at one moment (one read transaction), and only while no gateway
works on it: the command holds the configured state directory's lock for the whole copy
(a daemon that holds it makes the command refuse; one started meanwhile refuses to start),
and refuses as well when the ledger's own directory is held by a daemon of another
configuration. Before anything is written, the source's chain is checked as ``audit
verify`` checks it (numbering, links, every entry's hash, the head row): a trail that does
not hold together is reported, entry by entry, and not copied, because the copy would
carry the damage into a trail that then looks freshly proven.

The copy is one PostgreSQL transaction (``records.postgres.load``); the ``store-migrated``
entry, naming the source, the rows copied per table and the head it continued from, is
chained after the copied trail in the same transaction and sealed with the audit key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config import Config
from gateway.errors import PoststelleError
from gateway.records.actors import Actor
from gateway.records.chain import AuditEvent, ChainBreak, ChainChecker, ChainHead
from gateway.records.open import audit_settings, open_store, store_name
from gateway.records.sqlite.dump import NotALedger, SQLiteLedgerSource
from gateway.records.transfer import TABLES
from gateway.service.statelock import AlreadyRunning, StateLock, holder_at


class MigrationRefused(PoststelleError):
    """The copy was not made (the message says why and what to do); nothing was written."""


class SourceChainBroken(MigrationRefused):
    """The source's audit trail does not hold together; ``breaks`` names where."""

    def __init__(self, source: Path, breaks: list[ChainBreak]) -> None:
        self.breaks = breaks
        first = breaks[0]
        super().__init__(
            f"{source}: the audit trail does not verify ({len(breaks)} break(s), first at entry {first.seq}: "
            f"{first.kind}); nothing was copied"
        )


@dataclass
class MigrationResult:
    source: Path
    target: str
    rows: dict[str, int]
    source_head: ChainHead
    head: ChainHead
    exported: int = 0
    mismatches: list[str] = field(default_factory=list)


def migrate_store(config: Config, source: Path, *, actor: Actor) -> MigrationResult:
    """Copy the ledger at ``source`` into the configured (empty) PostgreSQL database.

    Raises ``MigrationRefused`` (a refusal, nothing written) or ``StoreError`` (the target
    failed; its transaction was rolled back and the database is as empty as before).
    """
    if config.storage.backend != "postgresql" or config.storage.dsn is None:
        raise MigrationRefused(
            f"{config.path}: [storage] backend is {config.storage.backend!r}: the target is the configured "
            'PostgreSQL database: set backend = "postgresql" and dsn_file in [storage]'
        )
    try:
        lock = StateLock.acquire(config)
    except AlreadyRunning as exc:
        raise MigrationRefused(f"{exc}: stop the gateway before migrating its ledger") from None
    except OSError as exc:
        raise MigrationRefused(f"cannot lock {config.storage.state_dir}: {exc.strerror}") from None
    try:
        pid = holder_at(source.parent / "poststelle.lock")
        if pid is not None and pid != os.getpid():
            raise MigrationRefused(f"{source} is in use by pid {pid} (a running gateway): stop it first")
        return _copy(config, source, actor)
    finally:
        lock.release()


def _copy(config: Config, source: Path, actor: Actor) -> MigrationResult:
    from gateway.records.postgres.load import load_ledger

    assert config.storage.dsn is not None
    src = SQLiteLedgerSource(source)
    try:
        with src.snapshot() as snap:
            head = snap.head()
            if head is None:
                raise NotALedger(f"{source}: the ledger has no audit_head row (not a Poststelle ledger)")
            checker = ChainChecker()
            for row in snap.chain_rows():
                checker.check_entry(row)
            if (checker.expected_seq - 1, checker.prev) != (head.seq, head.hash):
                checker.breaks.append(
                    ChainBreak(
                        "head-mismatch",
                        head.seq,
                        "the head row does not name the last entry",
                        f"{checker.expected_seq - 1} {checker.prev}",
                        f"{head.seq} {head.hash}",
                    )
                )
            if checker.breaks:
                raise SourceChainBroken(source, checker.breaks)
            counts = snap.row_counts()
            settings = audit_settings(config, actor=actor.name)
            target = store_name(config)

            def events(rows: dict[str, int]) -> list[AuditEvent]:
                details = {
                    "source": str(source),
                    "target": target,
                    "rows": rows,
                    "source_head_seq": head.seq,
                    "source_head_hash": head.hash,
                    **actor.fields(),
                }
                return [AuditEvent("store-migrated", details=details)]

            loaded = load_ledger(
                config.storage.dsn.reveal(),
                (snap.table_rows(t) for t in TABLES),
                head,
                settings=settings,
                events=events,
            )
    finally:
        src.close()
    result = MigrationResult(source, target, loaded.rows, head, loaded.head)
    result.mismatches = [
        f"{t}: {counts[t]} rows in the source, {loaded.rows.get(t, 0)} copied"
        for t in TABLES
        if counts[t] != loaded.rows.get(t, 0)
    ]
    store = open_store(config, actor=actor.name)
    try:
        result.exported = store.export_jsonl()
    finally:
        store.close()
    return result
