"""Run the gateway one observable step at a time, where a test says so.

A test that needs "the auditor reads while the gateway writes" must not hope that the
scheduler interleaves two processes in an interesting way: on a busy machine it may
never happen, on a quiet one always the same way. Instead, every action of the gateway
that an auditor can observe (a ledger commit, an entry made visible by its rename, the
JSON-lines export) first waits here until the test grants it one step. The test then
decides exactly what happens between any two reads of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from gateway.filing import entries
from gateway.inbound import intake
from gateway.records.store import StoreOperations

#: A failsafe against a hung gateway thread, not a timing assumption: nothing waits this
#: long unless the test is broken.
HANG = 300.0
#: Store operations that commit or write something an auditor reads.
OBSERVABLE = ("plan", "finish", "abandon", "mark_server_done", "release", "record_events", "seal", "export_jsonl")


class Stepper:
    """A turnstile between one gateway thread at a time and the test thread."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._waiting: str | None = None
        self._grants = 0
        self.done = False
        self.taken: list[str] = []

    # -- the gateway's side ---------------------------------------------------------------
    def step(self, name: str) -> None:
        with self._cv:
            if self._waiting is not None:
                raise AssertionError(f"two gateway threads at a step at once: {self._waiting}, {name}")
            self._waiting = name
            self._cv.notify_all()
            if not self._cv.wait_for(lambda: self._grants > 0, timeout=HANG):
                raise AssertionError(f"the test never granted step {name}")
            self._grants -= 1
            self._waiting = None
            self.taken.append(name)

    def finished(self) -> None:
        with self._cv:
            self.done = True
            self._cv.notify_all()

    # -- the test's side ------------------------------------------------------------------
    def _parked(self) -> bool:
        return self._grants == 0 and (self._waiting is not None or self.done)

    def settle(self) -> str | None:
        """Wait until the gateway waits at its next step (its name) or has finished (None)."""
        with self._cv:
            if not self._cv.wait_for(self._parked, timeout=HANG):
                raise AssertionError("the gateway neither reached a step nor finished")
            return self._waiting

    def grant(self) -> str | None:
        """Let exactly one step happen; return the name of the next one (None: finished)."""
        if self.settle() is None:
            return None
        with self._cv:
            self._grants += 1
            self._cv.notify_all()
        return self.settle()


@contextmanager
def stepped_gateway(monkeypatch: pytest.MonkeyPatch, run: Callable[[], Any]) -> Iterator[Stepper]:
    """Start ``run`` (a gateway run) in a thread whose observable actions wait for the test."""
    stepper = Stepper()

    def gate(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def stepped(*args: Any, **kwargs: Any) -> Any:
            stepper.step(name)
            return original(*args, **kwargs)

        return stepped

    for name in OBSERVABLE:
        monkeypatch.setattr(StoreOperations, name, gate(name, getattr(StoreOperations, name)))

    def publish_one_at_a_time(areas: Any, staged: Any) -> None:
        # Each entry becomes visible by its own rename; let the test look between them.
        for entry in staged:
            stepper.step("publish")
            entries.publish_entries(areas, [entry])

    monkeypatch.setattr(intake, "publish_entries", publish_one_at_a_time)
    failure: list[BaseException] = []

    def body() -> None:
        try:
            run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            failure.append(exc)
        finally:
            stepper.finished()

    thread = threading.Thread(target=body, name="stepped-gateway", daemon=True)
    thread.start()
    try:
        yield stepper
    finally:
        while stepper.grant() is not None:  # let the rest of the run through (also after a failure)
            pass
        thread.join(HANG)
    if failure:
        raise failure[0]
