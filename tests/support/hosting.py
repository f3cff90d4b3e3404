"""A hosting platform in one test: several nodes, several tenants, one PostgreSQL, one shared file system.

Each node is a ``poststelle run`` process with its own ``state_dir`` and node name; every
node has the same ``[[tenant]]`` blocks, so the nodes share each tenant's schema, case
folders (a tree per tenant under one shared root), audit signing key and the outbox spool.
The mailboxes may live on several Dovecot servers. What a test reads back (rows, trails,
leases, outbox records) it reads through a tenant's store, as an auditor would.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import POSTSTELLE, REPO, ROUTES

from gateway.config import Config, load_config
from gateway.demo.dovecot import Dovecot
from gateway.records.chain import AuditEntry
from gateway.records.leases import Lease
from gateway.records.messages import MessageRecord
from gateway.records.open import open_store
from gateway.records.outbox import OutboxRecord
from gateway.records.store import StoreError
from gateway.service.snapshot import read_status
from gateway.statedir import daemon_status_path


@dataclass(frozen=True)
class Mailbox:
    """One tenant's mailbox: its name in the configuration, its server and its user there."""

    tenant: str
    name: str
    server: Dovecot
    user: str
    password: str


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    return json.dumps(str(v))


def _table(header: str, values: dict[str, Any]) -> str:
    return "\n".join([header, *(f"{k} = {_value(v)}" for k, v in values.items())]) + "\n"


@dataclass
class Node:
    name: str
    config_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    status_files: list[Path] = field(default_factory=list)  # each tenant's daemon status file on this node

    @property
    def log(self) -> Path:
        return self.config_path.parent / "daemon.log"

    def start(self) -> None:
        env = {**os.environ, "POSTSTELLE_CONFIG": str(self.config_path)}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([*POSTSTELLE, "run"], cwd=REPO, env=env, stdout=log, stderr=log)
        self.starts += 1

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def up(self) -> bool:
        """Whether the running process has started every tenant's daemon (each wrote its status with its pid)."""
        if not self.running:
            return False
        assert self.proc is not None
        if not self.status_files:
            self.status_files = [daemon_status_path(t) for t in load_config(self.config_path).tenants]
        return all((read_status(path) or {}).get("pid") == self.proc.pid for path in self.status_files)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        """SIGTERM and wait; a node that does not stop within a minute is killed (and reported by its code)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)
                self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "POSTSTELLE_CONFIG": str(self.config_path)}
        return subprocess.run(
            [*POSTSTELLE, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=False
        )


@dataclass
class Platform:
    """Nodes with identical tenants on one database and one shared root (``shared``)."""

    root: Path
    dsn_file: Path
    tenants: dict[str, list[Mailbox]]
    relay_port: int
    lease_ttl: float
    claim_ttl: float
    nodes: dict[str, Node] = field(default_factory=dict)

    @property
    def shared(self) -> Path:
        return self.root / "shared"

    def cases_dir(self, tenant: str) -> Path:
        return self.shared / "cases" / tenant

    def config_text(self, node: str) -> str:
        state = self.root / node / "state"
        out = [
            _table(
                "[storage]",
                {
                    "state_dir": state,
                    "spool_dir": self.shared / "spool",
                    "backend": "postgresql",
                    "dsn_file": self.dsn_file,
                    "node": node,
                    "lease_ttl": f"{self.lease_ttl:g}s",
                },
            ),
            _table(
                "[smtp]",
                {
                    "host": "127.0.0.1",
                    "port": self.relay_port,
                    "security": "plain",
                    "request_dsn": False,
                    "min_backoff": "1s",
                    "max_backoff": "2s",
                    "timeout": 30,
                },
            ),
            _table("[logging]", {"format": "json"}),
        ]
        for tenant, mailboxes in self.tenants.items():
            out.append(_table("[[tenant]]", {"name": tenant}))
            out.append(_table("[tenant.storage]", {"cases_dir": self.cases_dir(tenant)}))
            out.append(_table("[tenant.audit]", {"key_file": self.shared / "keys" / tenant / "audit-signing.key"}))
            out.append(_table("[tenant.smtp]", {"from": self.sender(tenant)}))
            out.append(
                _table(
                    "[tenant.outbound]",
                    {"sign": "none", "copy_to_sent_folder": False, "claim_ttl": f"{self.claim_ttl:g}s"},
                )
            )
            for mb in mailboxes:
                secret = self.root / "secrets" / f"{tenant}-{mb.name}.secret"
                out.append(
                    _table(
                        "[[tenant.mailbox]]",
                        {
                            "name": mb.name,
                            "host": "127.0.0.1",
                            "port": mb.server.imaps_port,
                            "security": "tls",
                            "username": mb.user,
                            "password_file": secret,
                            "ca_file": mb.server.ca_file,
                            "poll_interval": 1,
                            "timeout": 10,
                            "idle": True,
                            "idle_renewal": 60,
                        },
                    )
                )
            out.append(ROUTES.replace("[[route]]", "[[tenant.route]]"))
        return "\n".join(out)

    @staticmethod
    def sender(tenant: str) -> str:
        return f"post@{tenant.replace('_', '-')}.mailbox.test"

    def add_node(self, name: str) -> Node:
        """Write the node's configuration and run ``poststelle init`` for it (nodes one after the other:
        the first creates each tenant's schema and audit key, the others find them)."""
        for mailboxes in self.tenants.values():
            for mb in mailboxes:
                secret = self.root / "secrets" / f"{mb.tenant}-{mb.name}.secret"
                if not secret.exists():
                    secret.parent.mkdir(parents=True, exist_ok=True)
                    secret.write_text(mb.password)
                    secret.chmod(0o600)
        path = self.root / name / "poststelle.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.config_text(name), encoding="utf-8")
        node = Node(name, path)
        proc = node.cli("init")
        assert proc.returncode == 0, f"poststelle init for {name}: {proc.stdout}\n{proc.stderr}"
        self.nodes[name] = node
        return node

    def config(self, tenant: str, node: str | None = None) -> Config:
        path = self.nodes[node or next(iter(self.nodes))].config_path
        return load_config(path).tenant_config(tenant)

    def _read(self, tenant: str, what: Any) -> Any:
        try:
            store = open_store(self.config(tenant), readonly=True)
        except StoreError:
            return None
        try:
            return what(store)
        except StoreError:
            return None
        finally:
            store.close()

    def rows(self, tenant: str) -> list[MessageRecord] | None:
        """The tenant's ledger; None while the database cannot be read."""
        found: list[MessageRecord] | None = self._read(tenant, lambda s: list(s.all_messages()))
        return found

    def outbox(self, tenant: str) -> list[OutboxRecord] | None:
        found: list[OutboxRecord] | None = self._read(tenant, lambda s: s.outbox_list())
        return found

    def leases(self, tenant: str) -> list[Lease]:
        found: list[Lease] | None = self._read(tenant, lambda s: list(s.leases()))
        return found or []

    def trail(self, tenant: str) -> list[AuditEntry]:
        store = open_store(self.config(tenant), readonly=True)
        try:
            return list(store.entries())
        finally:
            store.close()

    def stop_all(self) -> dict[str, int]:
        return {name: node.stop() for name, node in self.nodes.items() if node.proc is not None}


def case_entries(cases_dir: Path) -> list[Path]:
    """Published intake entries (``<case>/<entry>/manifest.json``): not staging, not the filed sent copies."""
    return sorted(
        p.parent
        for p in cases_dir.glob("*/*/manifest.json")
        if not p.parent.parent.name.startswith(".") and p.parent.parent.name != "sent"
    )


def manifests(cases_dir: Path) -> list[dict[str, Any]]:
    return [json.loads((e / "manifest.json").read_text()) for e in case_entries(cases_dir)]


def staged_files(*dirs: Path) -> list[str]:
    """Files left in any staging area (``.incoming``, ``staging``) under ``dirs``."""
    return sorted(
        str(p)
        for d in dirs
        if d.is_dir()
        for p in d.rglob("*")
        if p.is_file() and (".incoming" in p.parts or "staging" in p.relative_to(d).parts)
    )


def counted(values: list[str]) -> dict[str, int]:
    """Only the values that occur more than once (what a duplicate check reports)."""
    return {v: n for v, n in Counter(values).items() if n > 1}
