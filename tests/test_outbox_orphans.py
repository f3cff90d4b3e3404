"""Spool files without an outbox row (an enqueue killed before its commit) are set aside, never sent."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.outbox import document, smtp_config

from gateway.config import Config, load_config
from gateway.outbound import outbox
from gateway.outbound.orphans import MIN_AGE, sweep_orphans
from gateway.records.open import open_store
from gateway.records.store import EntryFilter, Store
from gateway.service.outbox_worker import run_outbox
from gateway.statedir import outbox_dir


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(smtp_config(tmp_path, port=2525))


@pytest.fixture
def store(config: Config) -> Iterator[Store]:
    s = open_store(config)
    yield s
    s.close()


def stray(config: Config, name: str, *, age: float) -> Path:
    """A spool file as an enqueue leaves it when killed between its write and its commit."""
    spool = outbox_dir(config)
    spool.mkdir(parents=True, exist_ok=True)
    path = spool / f"{name}.eml"
    path.write_bytes(b"Subject: never queued\r\n\r\nbody\r\n")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_an_old_spool_file_without_a_row_is_moved_aside_and_recorded(config: Config, store: Store) -> None:
    path = stray(config, "0123456789ab", age=MIN_AGE + 60)
    moved = sweep_orphans(config, store)
    assert moved == [outbox_dir(config) / "orphaned" / path.name]
    assert not path.exists() and moved[0].read_bytes().startswith(b"Subject: never queued")
    (event,) = [e for e in store.select(EntryFilter()) if e.event == "outbox-orphan-set-aside"]
    assert event.details["file"] == path.name and event.details["size"] == len(moved[0].read_bytes())


def test_a_young_spool_file_is_left_alone_its_enqueue_may_be_running(config: Config, store: Store) -> None:
    path = stray(config, "ba9876543210", age=5)
    assert sweep_orphans(config, store) == []
    assert path.exists()


def test_a_queued_document_is_never_set_aside_however_old(config: Config, store: Store) -> None:
    oid = outbox.enqueue(config, store, document())
    path = outbox_dir(config) / f"{oid}.eml"
    old = time.time() - 10 * MIN_AGE
    os.utime(path, (old, old))
    assert sweep_orphans(config, store) == []
    assert path.exists()


def test_the_daemons_outbox_sweeps_before_its_first_pass(config: Config, store: Store) -> None:
    path = stray(config, "00aa11bb22cc", age=MIN_AGE + 1)
    failures: list[str] = []
    run_outbox(config, threading.Event(), once=True, on_pass=lambda _: None, on_failure=failures.append)
    assert failures == []
    assert not path.exists() and (outbox_dir(config) / "orphaned" / path.name).exists()
