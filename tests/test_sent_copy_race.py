"""One document's sent copy filed by two processes at once: the sender, and a node taking over.

The sender files its copy after the relay's answer (the daemon: at its next idle pass); a
filing pass on another node files the copies whose claim expired. A sender paused past its
claim's expiry therefore files at the same time as the other node. Each test runs one of
the two filing passes whole at a chosen point inside the other (nested calls in one
thread, no timing), on every store backend: whatever the interleaving and whichever wins,
the case folder holds one copy, the trail one ``filed-sent``, and the ledger names that copy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from support.outbox import document, smtp_config
from support.smtp_peer import ScriptedPeer
from support.stores import BACKENDS, Backend

from gateway.clock import iso, utcnow
from gateway.config import Config, load_config
from gateway.filing import sent as sent_module
from gateway.outbound import drain as drain_module
from gateway.outbound import outbox
from gateway.outbound.claim import may_take_over
from gateway.outbound.drain import Drain, DrainReport
from gateway.records.store import EntryFilter, Store
from gateway.statedir import staging_dir

#: Where inside the outer filing pass the inner one runs, whole.
POINTS = (
    "listed",  # the outer pass has read the documents lacking copies, looked at nothing on disk
    "checked",  # it found no copy published, and stages its own next
    "staged",  # its copy is staged, the publishing rename comes next
    "published",  # its copy is published, the ledger's commit comes next
)


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b = BACKENDS[request.param](request, tmp_path)
    yield b
    b.close_all()


@pytest.fixture
def peer() -> Iterator[ScriptedPeer]:
    with ScriptedPeer() as p:
        yield p


def node_configs(root: Path, peer: ScriptedPeer) -> tuple[Config, Config]:
    """Two nodes on one state (cases, staging, spool): ``alpha`` sends, ``beta`` takes over."""
    path = smtp_config(root, port=peer.port)
    text = path.read_text() + '\n[outbound]\nsign = "none"\nclaim_ttl = "1s"\n'
    configs = []
    for node in ("alpha", "beta"):
        p = root / f"{node}.toml"
        p.write_text(text.replace("[storage]\n", f'[storage]\nnode = "{node}"\n', 1))
        configs.append(load_config(p))
    return configs[0], configs[1]


def sent_but_not_filed(config: Config, store: Store) -> tuple[str, Drain]:
    """A document alpha sent and left to file later (the daemon defers filing), its claim expired."""
    oid = outbox.enqueue(config, store, document())
    sender = Drain(config, store)
    sender.defer_filing = True
    report = sender.run_once()
    assert report.sent == [oid] and report.filing_deferred == [oid]
    deadline = time.monotonic() + 60  # bounds a failure only
    while True:
        rec = store.outbox_get(oid)
        assert rec is not None and rec.sent_path is None
        if may_take_over(rec.claimed_by, rec.claim_expires_at, node="beta", now=iso(utcnow())):
            return oid, sender
        assert time.monotonic() < deadline, "alpha's claim never expired"
        time.sleep(0.05)


def run_inside(monkeypatch: pytest.MonkeyPatch, point: str, inner: Callable[[], DrainReport]) -> list[DrainReport]:
    """Make the next filing pass run ``inner`` once, whole, at ``point``; its report is appended."""
    reports: list[DrainReport] = []
    fired: list[bool] = []

    def fire() -> None:
        if not fired:  # once: the inner pass goes through the same patched steps
            fired.append(True)
            reports.append(inner())

    def before(real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            fire()
            return real(*args, **kwargs)

        return wrapped

    if point == "listed":
        monkeypatch.setattr(drain_module, "file_sent_copies", before(drain_module.file_sent_copies))
    elif point == "checked":
        monkeypatch.setattr(sent_module, "stage_entry", before(sent_module.stage_entry))
    elif point == "staged":
        monkeypatch.setattr(sent_module, "rename_noreplace", before(sent_module.rename_noreplace))
    else:
        real = drain_module.file_sent_copies

        def published(*args: Any, **kwargs: Any) -> Any:
            results = real(*args, **kwargs)
            fire()
            return results

        monkeypatch.setattr(drain_module, "file_sent_copies", published)
    return reports


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("outer", ["sender", "taker"])
def test_a_sent_copy_filed_by_the_sender_and_a_taking_over_node_at_once_is_filed_once(
    backend: Backend, tmp_path: Path, peer: ScriptedPeer, monkeypatch: pytest.MonkeyPatch, point: str, outer: str
) -> None:
    alpha_config, beta_config = node_configs(tmp_path, peer)
    alpha_store, beta_store = backend.open(), backend.open()
    oid, sender = sent_but_not_filed(alpha_config, alpha_store)
    # beta's clock is two seconds ahead of alpha's: node clocks differ, and a copy's name must not depend on them.
    taker = Drain(beta_config, beta_store, clock=lambda: utcnow() + timedelta(seconds=2))
    first, second = (sender, taker) if outer == "sender" else (taker, sender)
    inner_reports = run_inside(monkeypatch, point, second.file_copies)
    outer_report = first.file_copies()
    assert len(inner_reports) == 1, f"the inner pass never ran at {point}"
    reports = [outer_report, inner_reports[0]]

    rec = alpha_store.outbox_get(oid)
    assert rec is not None
    sent_dir = alpha_config.storage.cases_dir / rec.case_folder / "sent"
    entries = sorted(p.name for p in sent_dir.iterdir()) if sent_dir.exists() else []
    filed = [e.details for e in alpha_store.select(EntryFilter(document=oid, events=("filed-sent",)))]
    staging = staging_dir(alpha_config, "cases")
    seen = {
        "copies in the case folder": len(entries),
        "filed-sent entries": len(filed),
        "the ledger names the copy": len(entries) == 1 and rec.sent_path == str(sent_dir / entries[0]),
        "the trail names the copy": [f["path"] for f in filed] == [f"{rec.case_folder}/sent/{n}" for n in entries],
        "manifest recorded": [f["manifest_sha256"] for f in filed] == [rec.sent_manifest_sha256],
        "filing errors": [r.unfiled for r in reports],
        "filed by": sorted(r.filed for r in reports),
        "staged copies left": [p.name for p in staging.iterdir() if oid in p.name] if staging.exists() else [],
    }
    assert seen == {
        "copies in the case folder": 1,
        "filed-sent entries": 1,
        "the ledger names the copy": True,
        "the trail names the copy": True,
        "manifest recorded": True,
        "filing errors": [[], []],
        "filed by": [[], [oid]],
        "staged copies left": [],
    }
