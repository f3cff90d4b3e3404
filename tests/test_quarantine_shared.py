"""The quarantine on a shared file system (``[storage] quarantine_dir``): any node releases what another quarantined.

Two node configurations with their own ``state_dir`` share one PostgreSQL database, the
case folders and the quarantine directory, as nodes on one shared file system would. Node
alpha quarantines a malformed letter from a real Dovecot; node beta lists, releases and
verifies it. Without the setting nothing changes: the quarantine stays in ``state_dir``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import POSTSTELLE, REPO, ROUTES, mailbox_entry
from support.audit import MALFORMED

from gateway.config import load_config
from gateway.demo.dovecot import Dovecot
from gateway.errors import ConfigError
from gateway.records.open import open_store
from gateway.statedir import init_storage, quarantine_dir, require_roots


def _toml(values: dict[str, Any]) -> str:
    return "\n".join(
        f"{k} = {json.dumps(v) if not isinstance(v, Path) else json.dumps(str(v))}" for k, v in values.items()
    )


def node_config(root: Path, node: str, storage: str, mailbox: dict[str, Any] | None = None) -> Path:
    shared = root / "shared"
    path = root / node / "poststelle.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    box = f"[[mailbox]]\n{_toml(mailbox)}\n" if mailbox else ""
    path.write_text(
        f'[storage]\nstate_dir = "{root / node / "state"}"\ncases_dir = "{shared / "cases"}"\n'
        f'quarantine_dir = "{shared / "quarantine"}"\nnode = "{node}"\n{storage}\n'
        f'[audit]\nkey_file = "{shared / "audit-signing.key"}"\n[logging]\nformat = "json"\n{box}{ROUTES}',
        encoding="utf-8",
    )
    return path


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "POSTSTELLE_CONFIG": str(config)}
    proc = subprocess.run([*POSTSTELLE, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, f"poststelle {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def entries(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*") if p.is_dir() and not p.name.startswith("."))


def test_a_letter_quarantined_by_one_node_is_released_by_another_through_the_shared_quarantine(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str], pg_template: tuple[Any, str]
) -> None:
    from support.stores import PostgresBackend

    server, template = pg_template
    pg = PostgresBackend(server, template)
    try:
        dsn_file = tmp_path / "dsn"
        dsn_file.write_text(pg.dsn + "\n")
        dsn_file.chmod(0o600)
        storage = f'backend = "postgresql"\ndsn_file = "{dsn_file}"\n'
        user = new_user()
        alpha = node_config(tmp_path, "alpha", storage, mailbox_entry(dovecot, user, tmp_path, name="post"))
        beta = node_config(tmp_path, "beta", storage)
        shared = tmp_path / "shared"
        (shared / "cases").mkdir(parents=True)
        (shared / "quarantine").mkdir()
        cli(alpha, "init")
        cli(beta, "init")
        dovecot.append(user, "INBOX", [MALFORMED])

        cli(alpha, "run", "--once")

        cfg_a, cfg_b = load_config(alpha), load_config(beta)
        assert quarantine_dir(cfg_a) == quarantine_dir(cfg_b) == shared / "quarantine"
        (entry,) = entries(shared / "quarantine")
        assert not entries(tmp_path / "alpha" / "state" / "quarantine"), "nothing in the node's own state"
        assert (entry / "original.eml").is_file() and (entry / "reason.json").is_file()
        listed = json.loads(cli(beta, "quarantine", "list", "--json").stdout)
        (row,) = listed
        assert row["path"] == str(entry)

        cli(beta, "quarantine", "release", row["id"], "--case", "63-BV-2026-0147", "--note", "Bitte ablegen")

        assert not entries(shared / "quarantine"), "the quarantined copy is gone"
        (released,) = entries(shared / "cases" / "63-BV-2026-0147")
        manifest = json.loads((released / "manifest.json").read_text())
        assert manifest["state"] == "released" and manifest["released"]["note"] == "Bitte ablegen"
        store = open_store(cfg_b, readonly=True)
        try:
            rec = store.get(row["id"])
        finally:
            store.close()
        assert rec is not None and rec.state == "released" and rec.path == str(released)
        for node in (alpha, beta):
            report = json.loads(cli(node, "audit", "verify", "--json").stdout)
            assert report["breaks"] == [], report
    finally:
        pg.close_all()


def test_without_quarantine_dir_the_quarantine_stays_in_state_dir(tmp_path: Path) -> None:
    path = tmp_path / "poststelle.toml"
    path.write_text(f'[storage]\nstate_dir = "{tmp_path / "state"}"\n', encoding="utf-8")
    cfg = load_config(path)
    assert cfg.storage.quarantine_dir is None and quarantine_dir(cfg) == tmp_path / "state" / "quarantine"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('quarantine_dir = "relative/q"', "absolute"),
        ('quarantine_dir = "{root}/shared/cases/q"', "inside cases_dir"),
        ('quarantine_dir = "{root}/shared"', "inside cases_dir"),
        ('quarantine_dir = "{root}/spool"\nspool_dir = "{root}/spool"', "inside spool_dir"),
    ],
)
def test_a_bad_quarantine_dir_stops_start_up_naming_the_key(tmp_path: Path, line: str, problem: str) -> None:
    path = node_config(tmp_path, "alpha", "")
    text = path.read_text().replace(
        f'quarantine_dir = "{tmp_path / "shared" / "quarantine"}"', line.format(root=tmp_path)
    )
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == "storage.quarantine_dir" and problem in err.value.problem


def test_a_quarantine_dir_that_is_not_there_stops_start_up_like_a_missing_share(tmp_path: Path) -> None:
    cfg = load_config(node_config(tmp_path, "alpha", ""))
    (tmp_path / "shared" / "cases").mkdir(parents=True)
    (tmp_path / "alpha" / "state").mkdir(parents=True)
    with pytest.raises(ConfigError) as err:
        require_roots(cfg)
    assert err.value.key == "storage.quarantine_dir" and "does not exist" in err.value.problem
    assert not (tmp_path / "shared" / "quarantine").exists(), "a share that is not mounted is never created"


def test_each_tenant_has_its_own_part_of_a_shared_quarantine_and_spool(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    blocks = "".join(
        f'[[tenant]]\nname = "{name}"\n[tenant.storage]\ncases_dir = "{shared / ("cases-" + name)}"\n'
        for name in ("a", "b")
    )
    path = tmp_path / "poststelle.toml"
    path.write_text(
        f'[storage]\nstate_dir = "{tmp_path / "state"}"\nquarantine_dir = "{shared / "quarantine"}"\n'
        f'spool_dir = "{shared / "spool"}"\n{blocks}',
        encoding="utf-8",
    )
    cfg = load_config(path)
    ta, tb = cfg.tenant_config("a"), cfg.tenant_config("b")
    assert quarantine_dir(ta) == shared / "quarantine" / "tenants" / "a"
    assert (ta.storage.spool_dir, tb.storage.spool_dir) == (
        shared / "spool" / "tenants" / "a",
        shared / "spool" / "tenants" / "b",
    )
    init_storage(cfg)
    for name in ("cases-a", "cases-b"):
        (shared / name).mkdir()
    (tmp_path / "state").mkdir(exist_ok=True)
    for tenant in (ta, tb):
        require_roots(tenant)  # makes the tenant's part inside the shared directories that exist
        assert quarantine_dir(tenant).is_dir() and tenant.storage.spool_dir is not None
        assert tenant.storage.spool_dir.is_dir()
    text = path.read_text().replace('name = "b"\n', 'name = "b"\n[tenant.storage]\nquarantine_dir = "/srv/q"\n', 1)
    path.write_text(text.replace(f'[tenant.storage]\ncases_dir = "{shared / "cases-b"}"\n', "", 1))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == "tenant[1].storage.quarantine_dir" and "top-level" in err.value.problem


def test_a_tenants_spool_sweep_leaves_another_tenants_queued_documents_in_a_shared_spool(tmp_path: Path) -> None:
    from support.outbox import document

    from gateway.outbound import outbox
    from gateway.outbound.orphans import MIN_AGE, sweep_orphans

    shared = tmp_path / "shared"
    blocks = "".join(
        f'[[tenant]]\nname = "{name}"\n[tenant.smtp]\nfrom = "post@{name}.example"\n' for name in ("a", "b")
    )
    path = tmp_path / "poststelle.toml"
    path.write_text(
        f'[storage]\nstate_dir = "{tmp_path / "state"}"\nspool_dir = "{shared / "spool"}"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = 2525\nsecurity = "plain"\n{blocks}',
        encoding="utf-8",
    )
    cfg = load_config(path)
    ta, tb = cfg.tenant_config("a"), cfg.tenant_config("b")
    for t in (ta, tb):
        init_storage(t)
    stores = {t.tenant: open_store(t) for t in (ta, tb)}
    try:
        queued = outbox.enqueue(tb, stores["b"], document(mail_from="post@b.example"))
        rec = stores["b"].outbox_get(queued)
        assert rec is not None and Path(rec.path).parent == shared / "spool" / "tenants" / "b"
        later = Path(rec.path).stat().st_mtime + MIN_AGE + 60  # b's document has waited past the sweep's age
        assert sweep_orphans(ta, stores["a"], now=later) == []
        assert Path(rec.path).is_file(), "a's sweep never sees b's spool"
    finally:
        for s in stores.values():
            s.close()
