"""Run the per-message analysis, and the writing of its files, on all cores.

``decide.analyse`` is CPU-bound Python (MIME cutting, CMS, RSA, routing), so threads
would take turns on the GIL. Worker processes (spawned: fresh interpreters, safe to start
from a threaded process) each build their own ``UnwrapContext`` from the same
configuration. A message goes in as bytes; the worker decides its plan and also writes
the entry's files into the mailbox's staging area (``prepare``), so that what comes back
is small (the plan without its parts, and the sha256 of every file) and the gateway
process is left with fetching, the ledger and publishing. Nothing staged is visible or
durable yet: the intake adds the manifest, flushes the batch and renames each entry into
place only after the ledger holds its intent; recovery sweeps what a crash left staged.

A worker whose gateway was killed notices it is orphaned and exits. ``workers = 0`` keeps
everything in the calling thread (tests, ``inspect``, single-core machines).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from gateway.config import Config
from gateway.filing.entries import StagedFiles, entry_files, entry_name, stage_files
from gateway.inbound.decide import Plan, analyse
from gateway.statedir import cases_dir, quarantine_dir
from gateway.unwrap import UnwrapContext

log = structlog.get_logger("poststelle.analysis")

_worker_config: Config | None = None
_worker_ctx: UnwrapContext | None = None


def _init_worker(config: Config, parent: int) -> None:
    global _worker_config, _worker_ctx
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="parent-watch").start()
    _worker_config = config
    _worker_ctx = UnwrapContext.from_config(config, collect_certificates=False)


def _exit_with_parent(parent: int) -> None:
    """A gateway killed with -9 cannot stop its workers; they notice being orphaned and go."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


@dataclass(frozen=True)
class EntryJob:
    """What the intake already knows of a message when it hands it to analysis."""

    msg_id: str  # the ledger id, also the entry's name
    sha256: str  # of the raw bytes (hashed once, on the fetching thread)
    bucket: str  # the mailbox's staging bucket


@dataclass(frozen=True)
class Prepared:
    """A plan whose entry files are staged (``staged``), or could not be (``write_error``)."""

    plan: Plan  # without parts and decrypted content: those are on disk now
    staged: StagedFiles | None
    write_error: str | None = None


def placement(config: Config, plan: Plan) -> tuple[Path, str | None]:
    """The root and case folder an entry goes to: quarantine, or its routed case folder."""
    if plan.target == "quarantined":
        return quarantine_dir(config), None
    assert plan.route is not None
    return cases_dir(config), plan.route.case_folder


def prepare(raw: bytes, at: datetime, job: EntryJob, config: Config, ctx: UnwrapContext) -> Prepared:
    """Analyse a message and stage its entry's files; never raises.

    A failed write (disk full, permissions) is returned, not raised: the intake turns it
    into a transient error for the whole batch, and recovery sweeps the staging area.
    """
    plan = analyse(raw, config, ctx, at=at)
    extra: dict[str, Any] = {"verification.json": plan.verdict.to_json()}
    if plan.target == "quarantined":
        extra["reason.json"] = {"reasons": plan.reasons, "warnings": plan.warnings}
    root, folder = placement(config, plan)
    try:
        files = entry_files(raw, decrypted=plan.decrypted, parts=plan.parts, extra_json=extra, raw_sha256=job.sha256)
        staged: StagedFiles | None = stage_files(
            root, folder, entry_name(at, job.msg_id), files, bucket=job.bucket, sync=False
        )
        error = None
    except (OSError, ValueError) as exc:
        staged, error = None, f"{type(exc).__name__}: {exc}"
    return Prepared(replace(plan, parts=[], decrypted=None), staged, error)


def _ready() -> None:
    """The empty job that makes a worker start (``Analyser._start``)."""


Item = tuple[bytes, datetime, EntryJob]
CHUNK = 8  # messages per worker job


def _jobs(items: list[Item]) -> list[Prepared]:
    assert _worker_config is not None and _worker_ctx is not None
    return [prepare(raw, at, job, _worker_config, _worker_ctx) for raw, at, job in items]


class PendingPlan:
    """A message being prepared; ``result`` falls back to in-process work if a worker died."""

    def __init__(
        self,
        analyser: Analyser,
        item: Item,
        *,
        value: Prepared | None = None,
        future: Future[list[Prepared]] | None = None,
        index: int = 0,
        pool: ProcessPoolExecutor | None = None,
    ) -> None:
        self.pool = pool
        self.analyser = analyser
        self.item = item
        self.value = value
        self.future = future
        self.index = index

    def result(self) -> Prepared:
        if self.value is None:
            assert self.future is not None
            try:
                self.value = self.future.result()[self.index]
            except BrokenProcessPool:
                self.analyser.give_up_workers(self.pool)
                self.value = prepare(*self.item, self.analyser.config, self.analyser.ctx)
        return self.value


class Analyser:
    """``analyse`` for a batch, in worker processes when there are cores for it."""

    def __init__(self, config: Config, ctx: UnwrapContext, *, workers: int) -> None:
        self.config = config
        self.ctx = ctx
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = None
        if workers > 0:
            self._start()

    def _start(self) -> None:
        """Start the pool, and its workers right away.

        A spawned pool starts a worker only when a job arrives, and a worker needs a
        noticeable amount of CPU (a fresh interpreter, imports, its ``UnwrapContext``)
        before its first job, which would delay the first batch's commit. One empty job
        per worker here makes them start while the gateway logs in and fetches.
        """
        self.pool = ProcessPoolExecutor(
            max_workers=self.workers,
            # spawn: fresh interpreters, safe in a threaded process, children of this one
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.config, os.getpid()),
        )
        for _ in range(self.workers):
            self.pool.submit(_ready)

    def submit(self, items: list[Item]) -> list[PendingPlan]:
        """Start preparing messages; in-process mode prepares them right away.

        Workers get them ``CHUNK`` at a time: one job per message made the gateway's
        feeder and result threads (which need its GIL) the bottleneck, and the workers
        waited for work.
        """
        if self.pool is None:
            return [PendingPlan(self, it, value=prepare(*it, self.config, self.ctx)) for it in items]
        pending: list[PendingPlan] = []
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            future = self.pool.submit(_jobs, chunk)
            pending.extend(PendingPlan(self, it, future=future, index=i, pool=self.pool) for i, it in enumerate(chunk))
        return pending

    def give_up_workers(self, broken: ProcessPoolExecutor | None) -> None:
        """A worker died (out of memory, killed): analyse in-process from now on.

        Restarting could loop on a message that kills workers; the in-process path is
        always correct, only slower. Logged once per broken pool.
        """
        if broken is not None and self.pool is broken:
            log.error("analysis worker died; continuing with in-process analysis")
            broken.shutdown(wait=False, cancel_futures=True)
            self.pool = None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
