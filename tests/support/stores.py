"""Store backends the contract tests run against: each opens stores on one fresh database.

A backend added here (PostgreSQL later) runs the whole of ``tests/test_store_contract.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from gateway.records.actors import DAEMON
from gateway.records.export import JsonlExport
from gateway.records.signing import Signer
from gateway.records.sqlite.store import SQLiteStore
from gateway.records.store import AuditSettings, Store


class Backend(Protocol):
    name: str

    def open(
        self,
        *,
        actor: str = DAEMON,
        signer: Signer | None = None,
        checkpoint_every: int = 1000,
        jsonl: Path | None = None,
        readonly: bool = False,
    ) -> Store:
        """Another store instance (connection) on this backend's one database."""
        ...

    def close_all(self) -> None: ...


class SQLiteBackend:
    name = "sqlite"

    def __init__(self, root: Path) -> None:
        self.path = root / "ledger.sqlite3"
        self._opened: list[Store] = []

    def open(
        self,
        *,
        actor: str = DAEMON,
        signer: Signer | None = None,
        checkpoint_every: int = 1000,
        jsonl: Path | None = None,
        readonly: bool = False,
    ) -> Store:
        settings = AuditSettings(
            actor=actor,
            signer=signer,
            checkpoint_every=checkpoint_every,
            export=JsonlExport(jsonl) if jsonl is not None else None,
        )
        store = SQLiteStore(self.path, audit=settings, readonly=readonly)
        self._opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self._opened:
            store.close()


#: name -> a backend on a fresh database in the given directory
BACKENDS: dict[str, Callable[[Path], Backend]] = {"sqlite": SQLiteBackend}
