"""Run the per-message analysis on all cores.

``pipeline.analyse`` is CPU-bound Python (MIME cutting, CMS, RSA, routing), so threads
would take turns on the GIL. Worker processes, started through a fork server before any
work begins, each build their own ``UnwrapContext`` from the same configuration; the
messages go in as bytes and the plans come back as values. ``workers = 0`` keeps the
analysis in the calling thread (tests, ``inspect``, single-core machines).
"""

from __future__ import annotations

import multiprocessing
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


def _init_worker(config: Config) -> None:
    global _worker_config, _worker_ctx
    _worker_config = config
    _worker_ctx = UnwrapContext.from_config(config, collect_certificates=False)


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
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=_init_worker,
            initargs=(self.config,),
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
