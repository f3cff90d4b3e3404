"""A scripted SMTP peer on aiosmtpd: answers chosen recipients as a test asks (450 then 250, 550).

aiosmtpd does not advertise DSN and refuses DSN parameters before any handler runs, so it
stands for a relay without DSN, or for a "remote" server behind the throwaway Postfix.
Every accepted transaction is recorded with its envelope parameters; ``arrived`` is set
on each, so a test waits on an event, not on time.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller

from gateway.demo.postfix import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    mail_options: list[str]
    rcpt_options: list[str]


@dataclass
class _Handler:
    script: dict[str, list[str]]
    received: list[Received] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    pipelining: bool = False  # advertise PIPELINING (aiosmtpd reads commands in order either way)
    sessions: int = 0  # EHLOs: the sessions clients opened
    quits: int = 0

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        with self.arrived:
            self.quits += 1
            self.arrived.notify_all()
        return "221 Bye"

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        self.sessions += 1
        if self.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        answers = self.script.get(address.lower())
        answer = answers.pop(0) if answers else "250 2.1.5 OK"
        if answer.startswith("250"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return answer

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        got = Received(
            envelope.mail_from,
            list(envelope.rcpt_tos),
            bytes(envelope.original_content or envelope.content),
            list(envelope.mail_options),
            list(envelope.rcpt_options),
        )
        with self.arrived:
            self.received.append(got)
            self.arrived.notify_all()
        return f"250 2.0.0 Ok: queued as PEER{next(self._ids):04d}"


class ScriptedPeer:
    """``script``: recipient -> answers to its RCPT, used up in order (then 250)."""

    def __init__(
        self, script: dict[str, Iterable[str]] | None = None, *, port: int = 0, pipelining: bool = False
    ) -> None:
        self.handler = _Handler({k.lower(): list(v) for k, v in (script or {}).items()}, pipelining=pipelining)
        self.port = port or free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def script(self, address: str, *answers: str) -> None:
        self.handler.script[address.lower()] = list(answers)

    def wait_for(self, count: int, timeout: float = 30.0) -> bool:
        """Block until ``count`` transactions arrived (False on timeout: a failure, not a sync)."""
        with self.handler.arrived:
            return self.handler.arrived.wait_for(lambda: len(self.handler.received) >= count, timeout)

    def __enter__(self) -> ScriptedPeer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
