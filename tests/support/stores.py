"""Store backends the contract tests run against: each opens stores on one fresh database.

A backend added here runs the whole of ``tests/test_store_contract.py`` and
``tests/test_deliveries_store.py``. PostgreSQL's needs the session's throwaway server
(``conftest.pg_template``); without PostgreSQL installed its tests are skipped, saying why.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest

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


if TYPE_CHECKING:
    from gateway.demo.postgres import Postgres

_databases = itertools.count()


class PostgresBackend:
    """A fresh database per test, copied from a template that already has the schema (fast)."""

    name = "postgresql"

    def __init__(self, server: Postgres, template: str) -> None:
        self.server = server
        self.database = f"test_{os.getpid()}_{next(_databases)}"
        self.dsn = server.create_database(self.database, template=template)
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
        from gateway.records.postgres.store import PostgresStore

        settings = AuditSettings(
            actor=actor,
            signer=signer,
            checkpoint_every=checkpoint_every,
            export=JsonlExport(jsonl) if jsonl is not None else None,
        )
        store = PostgresStore(self.dsn, audit=settings, readonly=readonly)
        self._opened.append(store)
        return store

    def close_all(self) -> None:
        # The database stays: dropping costs a second each, the cluster goes at the session's end.
        for store in self._opened:
            store.close()


def _sqlite(request: pytest.FixtureRequest, root: Path) -> Backend:
    return SQLiteBackend(root)


def _postgres(request: pytest.FixtureRequest, root: Path) -> Backend:
    server, template = request.getfixturevalue("pg_template")
    return PostgresBackend(server, template)


#: name -> a backend on a fresh database (SQLite: in the given directory)
BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Backend]] = {
    "sqlite": _sqlite,
    "postgresql": _postgres,
}
