"""Tenants share one pool of analysis workers, and each job is analysed with its own tenant's trust only.

Two tenants whose S/MIME trust anchors differ hand the same signed letter to one pool of a
single worker process, interleaved: the letter is verified for the tenant that trusts the
signer's root and untrusted for the other, job after job, in the same process. Real
certificates, real worker processes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import ROUTES
from support.smime_pki import SENDER, TestPKI, headers, mime_text, multipart_signed, sign_detached_der
from test_tenants import mailbox, tenant_block, write

from gateway.config import Config, default_analysis_workers, load_config
from gateway.errors import ConfigError
from gateway.inbound.arrival import Arrival
from gateway.inbound.pool import SharedPool
from gateway.inbound.workers import Analyser, EntryJob, Item, PendingPlan
from gateway.statedir import init_storage
from gateway.unwrap import UnwrapContext


def signed_letter(pki: TestPKI, n: int) -> bytes:
    inner = mime_text(body=f"Sehr geehrte Damen und Herren,\r\nanbei Antrag Nr. {n}.\r\n")
    return multipart_signed(
        headers(SENDER, subject=f"Antrag {n} Az. 63-BV-2026-0200"), inner, sign_detached_der(pki["sender"], inner)
    )


def configs(root: Path, pki: TestPKI, *, top: str = "") -> tuple[Path, Path, Path]:
    """The configuration file with tenants a (trusting the test PKI's root) and b (trusting a rogue root)."""
    files = pki.write(root / "pki")
    rogue = root / "pki" / "rogue-root.pem"
    rogue.write_bytes(pki.rogue_root.cert_pem())
    blocks = [
        tenant_block(
            name,
            mailboxes=[mailbox(f"post_{name}", f"user_{name}")],
            cases_dir=root / f"cases-{name}",
            sections={"smime": {"trust_anchors": [str(anchor)]}},
            routes=ROUTES,
        )
        for name, anchor in (("a", files["root"]), ("b", rogue))
    ]
    return write(root, *blocks, top=top), files["root"], rogue


def items(pki: TestPKI, count: int, start: int = 0) -> list[Item]:
    out: list[Item] = []
    for n in range(start, start + count):
        raw = signed_letter(pki, n)
        job = EntryJob(msg_id=f"{n:012x}", sha256=hashlib.sha256(raw).hexdigest(), bucket="post", size=len(raw))
        out.append((raw, Arrival(None, datetime.now(UTC)), job))
    return out


def verdicts(pending: list[PendingPlan]) -> list[str]:
    assert all(p.future is not None for p in pending), "analysed in the pool, not in the calling thread"
    return [p.result().plan.verdict.verdict for p in pending]


@pytest.fixture
def one_worker() -> Iterator[SharedPool]:
    pool = SharedPool(1, file_mode=0o640, dir_mode=0o750)
    try:
        yield pool
    finally:
        pool.close(kill=True)


def analyser(tenant: Config, pool: SharedPool) -> Analyser:
    init_storage(tenant)
    return Analyser(tenant, UnwrapContext.from_config(tenant), workers=pool.workers, shared=pool)


def test_one_worker_analyses_both_tenants_each_with_its_own_trust_anchors_only(
    tmp_path: Path, pki: TestPKI, one_worker: SharedPool
) -> None:
    cfg = load_config(configs(tmp_path, pki)[0])
    a = analyser(cfg.tenant_config("a"), one_worker)
    b = analyser(cfg.tenant_config("b"), one_worker)
    try:
        staged_ids: dict[str, set[str]] = {"a": set(), "b": set()}
        n = 0
        for order in ((a, b, a, b), (b, a, b, a)):  # interleaved in the queue of the one worker
            submitted = []
            for who in order:
                batch = items(pki, 3, n)
                staged_ids[str(who.config.tenant)] |= {job.msg_id for _, _, job in batch}
                submitted.append((who, who.submit(batch)))
                n += 3
            for who, pending in submitted:
                got = verdicts(pending)
                if who is a:
                    assert got == ["verified"] * 3
                else:
                    assert "verified" not in got
                    for p in pending:
                        sig = p.result().plan.verdict.signature
                        assert sig is not None and sig.status == "untrusted"
        executor = one_worker.executor
        assert executor is not None and len(executor._processes) == 1, "one process served both tenants"
        for name, own in staged_ids.items():
            state = tmp_path / "state" / "tenants" / name / "staging"
            found = {p.name for p in state.glob("*/post/*")}
            assert {i for i in own if any(i in f for f in found)} == own, "each job staged in its own tenant's state"
            assert not any(i in f for f in found for i in staged_ids["b" if name == "a" else "a"])
    finally:
        for an in (a, b):
            an.close()
            an.ctx.close()


def test_a_reloaded_tenant_is_analysed_with_its_new_anchors_in_the_same_workers(
    tmp_path: Path, pki: TestPKI, one_worker: SharedPool
) -> None:
    path, root, rogue = configs(tmp_path, pki)
    tenant = load_config(path).tenant_config("a")
    before = analyser(tenant, one_worker)
    assert verdicts(before.submit(items(pki, 2))) == ["verified", "verified"]
    path.write_text(path.read_text().replace(str(root), str(rogue)))
    after = analyser(load_config(path).tenant_config("a"), one_worker)
    try:
        assert "verified" not in verdicts(after.submit(items(pki, 2, 10)))
        assert verdicts(before.submit(items(pki, 2, 20))) == ["verified", "verified"], "each job its own generation"
    finally:
        for an in (before, after):
            an.close()
            an.ctx.close()


def test_tenants_share_the_top_level_pool_size_and_a_tenant_may_not_set_its_own(tmp_path: Path, pki: TestPKI) -> None:
    cfg = load_config(configs(tmp_path, pki)[0])
    assert [t.processing.analysis_workers for t in cfg.tenants] == [default_analysis_workers()] * 2
    assert cfg.processing.analysis_workers == default_analysis_workers()
    one = load_config(configs(tmp_path, pki, top="[processing]\nanalysis_workers = 1\n")[0])
    assert [t.processing.analysis_workers for t in one.tenants] == [1, 1]
    text = (
        configs(tmp_path, pki)[0]
        .read_text()
        .replace("[[tenant]]\n", "[[tenant]]\n", 1)
        .replace('name = "b"\n', 'name = "b"\n[tenant.processing]\nanalysis_workers = 4\n', 1)
    )
    (tmp_path / "poststelle.toml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "poststelle.toml")
    assert err.value.key == "tenant[1].processing" and "whole process" in err.value.problem


def test_without_workers_every_tenant_analyses_in_its_own_thread(tmp_path: Path, pki: TestPKI) -> None:
    cfg = load_config(configs(tmp_path, pki, top="[processing]\nanalysis_workers = 0\n")[0])
    pool = SharedPool.for_tenants(cfg)
    assert pool.executor is None
    a = analyser(cfg.tenant_config("a"), pool)
    try:
        pending = a.submit(items(pki, 3))
        assert all(p.future is None for p in pending)
        assert [p.result().plan.verdict.verdict for p in pending] == ["verified"] * 3
    finally:
        a.close()
        a.ctx.close()


def test_a_worker_that_cannot_load_a_tenants_anchors_gives_the_job_back_to_the_gateway(
    tmp_path: Path, pki: TestPKI, one_worker: SharedPool
) -> None:
    path, root, _rogue = configs(tmp_path, pki)
    tenant = load_config(path).tenant_config("a")
    a = analyser(tenant, one_worker)  # the gateway's context holds the anchors already
    root.rename(root.with_suffix(".gone"))  # the worker, loading them now, cannot
    try:
        pending = a.submit(items(pki, 3))
        assert all(p.future is not None for p in pending)
        assert [p.result().plan.verdict.verdict for p in pending] == ["verified"] * 3
        assert one_worker.executor is not None, "the pool stays for the other tenants"
    finally:
        a.close()
        a.ctx.close()
