"""Run the per-message analysis on all cores.

``pipeline.analyse`` is CPU-bound Python (MIME cutting, CMS, RSA, routing), so threads
would take turns on the GIL. Worker processes (spawned: fresh interpreters, safe to start
from a threaded process) each build their own ``UnwrapContext`` from the same
configuration; the messages go in as bytes and the plans come back as values. A worker
whose gateway was killed notices it is orphaned and exits. ``workers = 0`` keeps the
analysis in the calling thread (tests, ``inspect``, single-core machines).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime

import structlog

from gateway.config import Config
from gateway.pipeline import Plan, analyse
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


def _job(item: tuple[bytes, datetime]) -> Plan:
    assert _worker_config is not None and _worker_ctx is not None
    raw, at = item
    return analyse(raw, _worker_config, _worker_ctx, at=at)


class PendingPlan:
    """A plan being computed; ``result`` falls back to in-process analysis if a worker died."""

    def __init__(
        self,
        analyser: Analyser,
        raw: bytes,
        at: datetime,
        *,
        value: Plan | None = None,
        future: Future[Plan] | None = None,
        pool: ProcessPoolExecutor | None = None,
    ) -> None:
        self.pool = pool
        self.analyser = analyser
        self.raw = raw
        self.at = at
        self.value = value
        self.future = future

    def result(self) -> Plan:
        if self.value is None:
            assert self.future is not None
            try:
                self.value = self.future.result()
            except BrokenProcessPool:
                self.analyser.give_up_workers(self.pool)
                self.value = analyse(self.raw, self.analyser.config, self.analyser.ctx, at=self.at)
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
        self.pool = ProcessPoolExecutor(
            max_workers=self.workers,
            # spawn: fresh interpreters, safe in a threaded process, children of this one
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.config, os.getpid()),
        )

    def submit(self, raw: bytes, at: datetime) -> PendingPlan:
        """Start analysing one message; in-process mode analyses it right away."""
        if self.pool is None:
            return PendingPlan(self, raw, at, value=analyse(raw, self.config, self.ctx, at=at))
        return PendingPlan(self, raw, at, future=self.pool.submit(_job, (raw, at)), pool=self.pool)

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
