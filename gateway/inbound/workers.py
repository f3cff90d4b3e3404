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
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import structlog

from gateway.config import Config
from gateway.diskfull import disk_full_code, disk_full_text, full_path
from gateway.filemodes import apply as apply_modes
from gateway.filing.areas import Areas
from gateway.filing.entries import EntryFile, StagedFiles, case_folder_problem, entry_files, entry_name, stage_files
from gateway.inbound.arrival import Arrival
from gateway.inbound.decide import Plan, analyse, oversize_plan, receipt_plan, unsafe_folder_plan
from gateway.receipts.lookup import outbox_lookup
from gateway.receipts.match import ReceiptMatch, match_receipt, unproven
from gateway.receipts.model import kind_of
from gateway.receipts.placement import receipts_folder
from gateway.records.store import StoreError
from gateway.unwrap import UnwrapContext

if TYPE_CHECKING:
    from gateway.inbound.pool import SharedPool, TenantKey

log = structlog.get_logger("poststelle.analysis")

_worker_config: Config | None = None
_worker_ctx: UnwrapContext | None = None
_worker_areas: Areas | None = None


def _init_worker(config: Config, parent: int) -> None:
    global _worker_config, _worker_ctx, _worker_areas
    watch_parent(parent)
    apply_modes(config.storage.file_mode, config.storage.dir_mode)  # also a worker's files
    _worker_config = config
    _worker_ctx = UnwrapContext.from_config(config, collect_certificates=False)
    _worker_areas = Areas(config)  # opened on first use, for the life of the worker


def watch_parent(parent: int) -> None:
    """In a worker: exit once the gateway that spawned it is gone."""
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="parent-watch").start()


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
    size: int  # of the raw bytes


@dataclass(frozen=True)
class Prepared:
    """A plan whose entry files are staged (``staged``), or could not be (``write_error``)."""

    plan: Plan  # without parts and decrypted content: those are on disk now
    staged: StagedFiles | None
    write_error: str | None = None
    disk_full: str | None = None  # where there was no room, when that was why writing failed


def placement(plan: Plan) -> tuple[str, str | None]:
    """The area and case folder an entry goes to: the quarantine, or its routed case folder."""
    if plan.target == "quarantined":
        return "quarantine", None
    assert plan.route is not None
    if plan.receipt_match is not None:
        return "cases", receipts_folder(plan.route.case_folder)
    return "cases", plan.route.case_folder


def prepare(raw: bytes, arrival: Arrival, job: EntryJob, config: Config, ctx: UnwrapContext, areas: Areas) -> Prepared:
    """Analyse a message as of its arrival and stage its entry's files; never raises.

    A case folder that is a link, not a directory or not ours right now quarantines this
    message (``unsafe-case-folder``) instead of stopping the batch; ``publish_entries``
    checks again when the entry goes in. A failed write (disk full, permissions) is
    returned, not raised: the intake turns it into a transient error for the whole batch,
    and recovery sweeps the staging area.
    """
    plan = analyse(raw, config, ctx, at=arrival.at, at_source=arrival.source)
    try:
        if plan.receipt is not None:
            problem = unproven(plan.receipt, plan.verdict.demail)
            found = (
                ReceiptMatch(kind_of(plan.receipt), problem=problem)
                if problem is not None
                else match_receipt(plan.receipt, outbox_lookup(config))
            )
            plan = receipt_plan(plan, found)
        area, folder = placement(plan)
        if folder is not None:
            problem = case_folder_problem(areas[area], folder)
            if problem is not None:
                log.warning("unsafe case folder", folder=folder, problem=problem, msg=job.msg_id)
                plan = unsafe_folder_plan(plan, f"case folder {folder!r} {problem}")
                area, folder = placement(plan)
        files = entry_files(
            raw, decrypted=plan.decrypted, parts=plan.parts, extra_json=_json_files(plan), raw_sha256=job.sha256
        )
        staged: StagedFiles | None = stage_files(
            areas[area], folder, entry_name(arrival.utc, job.msg_id), files, bucket=job.bucket, sync=False
        )
        error = None
    except (OSError, ValueError, StoreError) as exc:
        return _unwritten(replace(plan, parts=[], decrypted=None), exc, areas)
    return Prepared(replace(plan, parts=[], decrypted=None), staged, error)


def _unwritten(plan: Plan, exc: BaseException, areas: Areas) -> Prepared:
    """The plan with why its files could not be written; a full disk named as such, with the path."""
    if disk_full_code(exc) is not None:
        where = full_path(exc, areas[placement(plan)[0]].staging)
        return Prepared(plan, None, disk_full_text(exc, where), disk_full=where)
    return Prepared(plan, None, f"{type(exc).__name__}: {exc}")


def _json_files(plan: Plan) -> dict[str, Any]:
    extra: dict[str, Any] = {"verification.json": plan.verdict.to_json()}
    if plan.target == "quarantined":
        extra["reason.json"] = {"reasons": plan.reasons, "warnings": plan.warnings}
    return extra


HEAD_BYTES = 256 * 1024  # of an oversize message, read for its header fields (as ``headers_only``)
_HEADER_END = re.compile(rb"\r?\n\r?\n")


def prepare_oversize(
    chunks: Iterable[bytes], arrival: Arrival, msg_id: str, bucket: str, reported: int, config: Config, areas: Areas
) -> tuple[EntryJob, Prepared]:
    """Stream a message over ``max_message_bytes`` into a quarantine entry, chunk by chunk.

    Never holds the message: each chunk is hashed and written as it arrives, and only the
    first ``HEAD_BYTES`` are kept to read the header fields for the record. Write failures
    are returned as in ``prepare``; a failure of the server raises (``TransientError``)
    and recovery sweeps what was staged.
    """
    head = bytearray()

    def keep_head(source: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in source:
            if len(head) < HEAD_BYTES:
                head.extend(chunk[: HEAD_BYTES - len(head)])
            yield chunk

    limit = config.limits.max_message_bytes
    plan = oversize_plan(b"", reported, limit)  # the json files need only the verdict and reasons
    files = [EntryFile("original.eml", b"", stream=keep_head(chunks)), *_entry_json(plan)]
    full: str | None = None
    try:
        staged: StagedFiles | None = stage_files(
            areas["quarantine"], None, entry_name(arrival.utc, msg_id), files, bucket=bucket, sync=False
        )
        error = None
    except (OSError, ValueError) as exc:
        staged, error = None, f"{type(exc).__name__}: {exc}"
        if disk_full_code(exc) is not None:
            full = full_path(exc, areas["quarantine"].staging)
            error = disk_full_text(exc, full)
    sha, size = "", reported
    if staged is not None:
        sha, size = staged.files["original.eml"]["sha256"], staged.files["original.eml"]["size"]
    job = EntryJob(msg_id=msg_id, sha256=sha, bucket=bucket, size=size)
    end = _HEADER_END.search(head)
    header_block = bytes(head[: end.end()] if end else head)  # the body is nobody's business here
    return job, Prepared(oversize_plan(header_block, reported, limit), staged, error, disk_full=full)


def _entry_json(plan: Plan) -> list[EntryFile]:
    return entry_files(b"", decrypted=None, parts=[], extra_json=_json_files(plan))[1:]


def _ready() -> None:
    """The empty job that makes a worker start (``Analyser._start``)."""


Item = tuple[bytes, Arrival, EntryJob]
CHUNK = 8  # messages per worker job
INLINE = 1  # batches this small are prepared in the calling thread (``Analyser.submit``)


def _jobs(items: list[Item]) -> list[Prepared]:
    assert _worker_config is not None and _worker_ctx is not None and _worker_areas is not None
    return [prepare(raw, arrival, job, _worker_config, _worker_ctx, _worker_areas) for raw, arrival, job in items]


class PendingPlan:
    """A message being prepared; ``result`` falls back to in-process work if a worker died."""

    def __init__(
        self,
        analyser: Analyser,
        item: Item | None,
        *,
        value: Prepared | None = None,
        future: Future[list[Prepared] | None] | Future[list[Prepared]] | None = None,
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
                done = self.future.result()
            except BrokenProcessPool:
                assert self.item is not None
                self.analyser.give_up_workers(self.pool)
                done = None
            if done is None:  # the worker gave the job back (``pool.tenant_jobs``) or died
                assert self.item is not None
                self.value = self.analyser.prepare(self.item)
            else:
                self.value = done[self.index]
        return self.value


class Analyser:
    """``analyse`` for a batch, in worker processes when there are cores for it.

    The workers are its own, or, for a tenant, the process's ``shared`` pool (``inbound.pool``),
    whose jobs carry this tenant's configuration.
    """

    def __init__(self, config: Config, ctx: UnwrapContext, *, workers: int, shared: SharedPool | None = None) -> None:
        self.config = config
        self.ctx = ctx
        self.workers = workers
        self.areas = Areas(config)  # for in-process preparing
        self.pool: ProcessPoolExecutor | None = None
        self.shared = shared if workers > 0 else None
        self._key: TenantKey | None = None
        if self.shared is not None:
            from gateway.inbound.pool import TenantKey

            self._key = TenantKey.of(config)
        elif workers > 0:
            self._start()

    def prepare(self, item: Item) -> Prepared:
        """Prepare one message here, in this process."""
        raw, arrival, job = item
        return prepare(raw, arrival, job, self.config, self.ctx, self.areas)

    def _start(self) -> None:
        """Start the pool, and its workers right away.

        A spawned pool starts a worker only when a job arrives, and a worker needs a
        noticeable amount of CPU (a fresh interpreter, imports, its ``UnwrapContext``)
        before its first job, which would delay the first batch's commit. One empty job
        per worker here makes them start while the gateway logs in and fetches.
        """
        self.pool = start_pool(self.workers, _init_worker, (self.config, os.getpid()))

    def submit(self, items: list[Item]) -> list[PendingPlan]:
        """Start preparing messages; in-process mode prepares them right away.

        Workers get them ``CHUNK`` at a time: one job per message made the gateway's
        feeder and result threads (which need its GIL) the bottleneck, and the workers
        waited for work. A batch of ``INLINE`` messages or fewer (mail trickling in while
        the daemon idles) is prepared right here: in the pool it would queue behind the
        jobs of a backlog another mailbox is draining, and wait seconds for milliseconds
        of work.
        """
        pool = self.shared.executor if self.shared is not None else self.pool
        if pool is None or len(items) <= INLINE:
            return [PendingPlan(self, it, value=self.prepare(it)) for it in items]
        pending: list[PendingPlan] = []
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            if self.shared is not None:
                assert self._key is not None
                future = self.shared.submit(self._key, chunk)
                if future is None:  # the shared pool was given up meanwhile
                    pending.extend(PendingPlan(self, it, value=self.prepare(it)) for it in chunk)
                    continue
            else:
                future = pool.submit(_jobs, chunk)
            pending.extend(PendingPlan(self, it, future=future, index=i, pool=pool) for i, it in enumerate(chunk))
        return pending

    def give_up_workers(self, broken: ProcessPoolExecutor | None) -> None:
        """A worker died (out of memory, killed): analyse in-process from now on.

        Restarting could loop on a message that kills workers; the in-process path is
        always correct, only slower. Logged once per broken pool.
        """
        if self.shared is not None:
            self.shared.give_up(broken)
        elif broken is not None and self.pool is broken:
            log.error("analysis worker died; continuing with in-process analysis")
            broken.shutdown(wait=False, cancel_futures=True)
            self.pool = None

    def close(self, *, kill: bool = False) -> None:
        """Stop the workers; ``kill`` ends them at once instead of letting each wind down.

        For a daemon that is stopping and has nothing in hand: an idle worker holds no
        state (whatever it staged without an intent is swept by ``recover``), and a polite
        exit of each interpreter took over a second on a busy machine, longer than a stop
        may take. A shared pool is its owner's to stop (``SharedPool.close``).
        """
        if self.pool is not None:
            pool, self.pool = self.pool, None
            stop_pool(pool, kill=kill)
        self.areas.close()


def start_pool(workers: int, initializer: Callable[..., None], initargs: tuple[Any, ...]) -> ProcessPoolExecutor:
    """A spawned pool of ``workers`` processes, each started right away (``Analyser._start``)."""
    pool = ProcessPoolExecutor(
        max_workers=workers,
        # spawn: fresh interpreters, safe in a threaded process, children of this one
        mp_context=multiprocessing.get_context("spawn"),
        initializer=initializer,
        initargs=initargs,
    )
    for _ in range(workers):
        pool.submit(_ready)
    return pool


def stop_pool(pool: ProcessPoolExecutor, *, kill: bool) -> None:
    """Shut ``pool`` down; ``kill`` ends its processes at once (``Analyser.close``)."""
    found = getattr(pool, "_processes", None) if kill else None  # pid -> Process (CPython's pool)
    processes = list(found.values()) if found else []
    pool.shutdown(wait=not kill, cancel_futures=True)
    for process in processes:
        process.kill()
    for process in processes:
        process.join()
