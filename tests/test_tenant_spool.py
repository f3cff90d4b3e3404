"""A shared ``[storage] spool_dir`` with ``[[tenant]]`` blocks: one spool directory per tenant.

Each tenant's daemon sweeps its spool for files without an outbox row (``orphans.py``) and
judges them by its own rows only. Were the tenants' documents in one directory, a document
of one tenant waiting longer than the sweep's minimum age (deferred, held) would be set
aside as an orphan by every other tenant, and recorded in their chains.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from conftest import POSTSTELLE, REPO
from support.outbox import document

from gateway.config import load_config
from gateway.outbound import outbox
from gateway.outbound.orphans import MIN_AGE, sweep_orphans
from gateway.records.open import open_store
from gateway.statedir import outbox_dir, prepare_state


def _config(root: Path) -> Path:
    blocks = []
    for name in ("a", "b"):
        blocks.append(
            f'[[tenant]]\nname = "{name}"\n[tenant.storage]\ncases_dir = "{root / f"cases-{name}"}"\n'
            f'[tenant.smtp]\nfrom = "post@{name}.example"\n[tenant.outbound]\nsign = "none"\n'
        )
    text = (
        f'[storage]\nstate_dir = "{root / "state"}"\nspool_dir = "{root / "spool"}"\n\n'
        '[smtp]\nhost = "127.0.0.1"\nport = 2525\nsecurity = "plain"\n\n[logging]\nformat = "json"\n\n'
        + "\n".join(blocks)
    )
    path = root / "poststelle.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_each_tenant_has_its_own_directory_in_a_shared_spool(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path))
    ta, tb = cfg.tenant_config("a"), cfg.tenant_config("b")
    assert outbox_dir(ta) == tmp_path / "spool" / "tenants" / "a"
    assert outbox_dir(tb) == tmp_path / "spool" / "tenants" / "b"


def test_a_tenants_orphan_sweep_leaves_another_tenants_waiting_document_alone(tmp_path: Path) -> None:
    path = _config(tmp_path)
    env = {**os.environ, "POSTSTELLE_CONFIG": str(path)}
    proc = subprocess.run([*POSTSTELLE, "init"], cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    cfg = load_config(path)
    ta, tb = cfg.tenant_config("a"), cfg.tenant_config("b")
    store_b = open_store(tb)
    try:
        doc_id = outbox.enqueue(tb, store_b, document(mail_from="post@b.example"))
        (rec,) = store_b.outbox_list()
    finally:
        store_b.close()
    assert Path(rec.path).parent == tmp_path / "spool" / "tenants" / "b"

    store_a = open_store(ta)
    try:
        moved = sweep_orphans(ta, store_a, now=time.time() + 2 * MIN_AGE)  # b's document has waited long
        events = [e for e in store_a.entries() if e.event == "outbox-orphan-set-aside"]
    finally:
        store_a.close()
    assert moved == [] and events == []
    assert Path(rec.path).is_file(), "b's document is still where its row says"
    assert doc_id not in json.dumps([e.details for e in events])


def test_a_tenants_spool_directory_is_made_on_start_inside_an_existing_shared_spool(tmp_path: Path) -> None:
    """An installation whose shared spool predates the per-tenant directories starts without a new init."""
    cfg = load_config(_config(tmp_path))
    (tmp_path / "state").mkdir()
    (tmp_path / "spool").mkdir()
    for d in ("cases-a", "cases-b"):
        (tmp_path / d).mkdir()
    for tenant in cfg.tenants:
        prepare_state(tenant)
        assert outbox_dir(tenant).is_dir()
