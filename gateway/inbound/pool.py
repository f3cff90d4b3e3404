"""One pool of analysis worker processes for every tenant of the process.

A pool per tenant would multiply interpreters (and the CPU to spawn them) by the number
of authorities, so with ``[[tenant]]`` blocks the process runs one pool, sized by the
top-level ``[processing] analysis_workers``, and each tenant's ``Analyser`` hands it jobs.

Isolation is per job, not per process: a job carries its tenant's name, a generation (one
per ``Analyser``, so a reloaded tenant gets fresh state) and that tenant's configuration,
pickled once by its ``Analyser``. A worker keeps one state per tenant name (the
configuration, the ``UnwrapContext`` with that tenant's keys and trust anchors, the open
areas) and prepares every message of a job with the state of the job's tenant only,
rebuilding it when the generation differs. Nothing a worker learns from one tenant's
message (certificate paths, CRLs) lives outside that tenant's context; the caches shared
across contexts are keyed by certificate bytes and decide nothing about trust.
"""

from __future__ import annotations

import os
import pickle
import threading
import uuid
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import structlog

from gateway.config import Config
from gateway.filemodes import apply as apply_modes
from gateway.filing.areas import Areas
from gateway.inbound.workers import Item, Prepared, prepare, start_pool, stop_pool, watch_parent
from gateway.unwrap import UnwrapContext

log = structlog.get_logger("poststelle.analysis")


@dataclass(frozen=True)
class TenantKey:
    """Which tenant's state a job needs, and which generation of it."""

    tenant: str
    generation: str
    config: bytes  # the pickled ``Config``: unpickled only by a worker that lacks this generation

    @classmethod
    def of(cls, config: Config) -> TenantKey:
        assert config.tenant is not None, "the shared pool serves tenants"
        return cls(config.tenant, uuid.uuid4().hex, pickle.dumps(config))


@dataclass
class _TenantState:
    generation: str
    config: Config
    ctx: UnwrapContext
    areas: Areas

    def close(self) -> None:
        self.areas.close()
        self.ctx.close()


_states: dict[str, _TenantState] = {}  # in a worker: tenant name -> its current state


def _init_shared(parent: int, file_mode: int, dir_mode: int) -> None:
    watch_parent(parent)
    apply_modes(file_mode, dir_mode)  # the file modes are shared by every tenant ([storage])


def _state(key: TenantKey) -> _TenantState:
    """The worker's state for ``key``'s tenant, built from the job's configuration if new."""
    state = _states.get(key.tenant)
    if state is not None and state.generation == key.generation:
        return state
    config: Config = pickle.loads(key.config)  # noqa: S301 - written by the gateway that spawned this worker
    if config.tenant != key.tenant:
        raise ValueError(f"a job for tenant {key.tenant!r} carried tenant {config.tenant!r}'s configuration")
    ctx = UnwrapContext.from_config(config, collect_certificates=False)
    if state is not None:
        del _states[key.tenant]
        state.close()
    state = _states[key.tenant] = _TenantState(key.generation, config, ctx, Areas(config))
    return state


def tenant_jobs(key: TenantKey, items: list[Item]) -> list[Prepared] | None:
    """Prepare a chunk of one tenant's messages with that tenant's configuration and keys only.

    None when this worker cannot build the tenant's state (its key material changed on disk
    since the daemon loaded it): the gateway then prepares the chunk in-process, with the
    context it holds, as it would after a tenant's own pool failed to start.
    """
    try:
        state = _state(key)
    except Exception as exc:  # noqa: BLE001 - answered by in-process analysis, logged here
        log.error("analysis worker cannot load the tenant's keys", tenant=key.tenant, error=f"{type(exc).__name__}")
        return None
    return [prepare(raw, arrival, job, state.config, state.ctx, state.areas) for raw, arrival, job in items]


class SharedPool:
    """The worker processes every tenant's ``Analyser`` submits to (``workers = 0``: none)."""

    def __init__(self, workers: int, *, file_mode: int, dir_mode: int) -> None:
        self.workers = workers
        self._lock = threading.Lock()
        self.executor: ProcessPoolExecutor | None = None
        if workers > 0:
            self.executor = start_pool(workers, _init_shared, (os.getpid(), file_mode, dir_mode))

    @classmethod
    def for_tenants(cls, config: Config) -> SharedPool:
        """The pool of a configuration with tenants: the top-level size, none if no tenant reads mail."""
        reads = any(t.mailboxes for t in config.tenants)
        workers = config.processing.analysis_workers if reads else 0
        return cls(workers, file_mode=config.storage.file_mode, dir_mode=config.storage.dir_mode)

    def submit(self, key: TenantKey, items: list[Item]) -> Future[list[Prepared] | None] | None:
        """Queue a chunk; None when there are no workers (any more): the caller prepares in-process."""
        executor = self.executor
        if executor is None:
            return None
        try:
            return executor.submit(tenant_jobs, key, items)
        except BrokenProcessPool:
            self.give_up(executor)
        except RuntimeError:  # shut down meanwhile (the daemon is stopping)
            pass
        return None

    def give_up(self, broken: ProcessPoolExecutor | None) -> None:
        """A worker died: every tenant analyses in-process from now on (see ``Analyser.give_up_workers``)."""
        with self._lock:
            if broken is None or self.executor is not broken:
                return
            self.executor = None
        log.error("shared analysis worker died; every tenant continues with in-process analysis")
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self, *, kill: bool = False) -> None:
        """Once every tenant's daemon has stopped; ``kill`` as in ``Analyser.close``."""
        with self._lock:
            executor, self.executor = self.executor, None
        if executor is not None:
            stop_pool(executor, kill=kill)
