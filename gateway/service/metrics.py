"""The daemon's figures in the Prometheus text format (0.0.4) on ``[metrics] listen``.

A stdlib HTTP server in a thread of its own, beside the mailbox workers: a scrape reads
the ledger's counts through a read-only store of its own (so it never waits for, or
holds, the writers' lock for long) and the live mailbox states from the ``StatusBoard``.
Every state a series can have is always present, with 0 when empty, so a dashboard's
rate of a series that was absent never starts from nothing.
"""

from __future__ import annotations

import math
import platform
import socket
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, get_args

import structlog

from gateway.clock import utcnow
from gateway.config import Config
from gateway.errors import ConfigError
from gateway.receipts.model import DeliveryState
from gateway.records.messages import State
from gateway.records.open import open_store
from gateway.records.outbox import OUTBOX_STATES
from gateway.service.snapshot import StatusBoard
from gateway.unwrap.verdict import VerdictName

log = structlog.get_logger("poststelle.metrics")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Kind = Literal["gauge", "counter"]


@dataclass(frozen=True)
class Sample:
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(frozen=True)
class Family:
    name: str
    help: str
    kind: Kind
    samples: tuple[Sample, ...]


def escape_label(value: str) -> str:
    """A label value as the format quotes it: backslash, double quote and line feed escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))


def render(families: Iterable[Family]) -> str:
    lines: list[str] = []
    for fam in families:
        lines.append(f"# HELP {fam.name} {escape_help(fam.help)}")
        lines.append(f"# TYPE {fam.name} {fam.kind}")
        for s in fam.samples:
            labels = ",".join(f'{k}="{escape_label(v)}"' for k, v in s.labels)
            lines.append(f"{fam.name}{{{labels}}} {number(s.value)}" if labels else f"{fam.name} {number(s.value)}")
    return "\n".join(lines) + "\n"


def by_label(label: str, known: Sequence[str], counts: dict[str, int]) -> tuple[Sample, ...]:
    """One sample per known value (0 when absent), then any value the store has that the code does not know."""
    values = [*known, *sorted(k for k in counts if k not in known)]
    return tuple(Sample(((label, v),), float(counts.get(v, 0))) for v in values)


def _epoch(at: str) -> float:
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


#: What one scrape reads: (tenant or None, its configuration, its daemon's board).
Part = tuple[str | None, Config, StatusBoard]


def collect_all(parts: Sequence[Part]) -> list[Family]:
    """Every tenant's figures, each series with a ``tenant`` label; without tenants, as ``collect``."""
    merged: dict[str, Family] = {}
    for tenant, config, board in parts:
        for fam in collect(config, board, tenant=tenant):
            seen = merged.get(fam.name)
            if seen is None:
                merged[fam.name] = fam
            elif fam.name != "poststelle_build_info":
                merged[fam.name] = Family(fam.name, fam.help, fam.kind, seen.samples + fam.samples)
    return list(merged.values())


def collect(config: Config, board: StatusBoard, *, tenant: str | None = None) -> list[Family]:
    """Everything one scrape shows, read in one snapshot of the ledger (``tenant``: labelled so)."""
    from importlib.metadata import PackageNotFoundError, version

    store = open_store(config, readonly=True)
    try:
        with store.snapshot() as snap:
            messages = snap.counts_by_state()
            verdicts = snap.verification_counts()
            outbox = snap.outbox_counts()
            oldest = snap.outbox_oldest_waiting()
            deliveries = snap.delivery_counts()
            recorded = {s.mailbox: s.last_success for s in snap.statuses()}
    finally:
        store.close()
    age = max(0.0, utcnow().timestamp() - _epoch(oldest)) if oldest else 0.0
    live: dict[str, Any] = board.view()["mailboxes"]
    last_success: list[Sample] = []
    up: list[Sample] = []
    for name in sorted(live):
        view = live[name]
        when = view.get("last_success") or recorded.get(name)
        if when:
            last_success.append(Sample((("mailbox", name),), _epoch(when)))
        up.append(Sample((("mailbox", name),), 1.0 if view["state"] == "ok" and view["connected"] else 0.0))
    try:
        release = version("poststelle")
    except PackageNotFoundError:
        release = "unknown"
    families = [
        Family(
            "poststelle_messages",
            "Messages in the ledger by state.",
            "gauge",
            by_label("state", get_args(State), messages),
        ),
        Family(
            "poststelle_verification_total",
            "Recorded messages by verification outcome.",
            "counter",
            by_label("outcome", get_args(VerdictName), verdicts),
        ),
        Family("poststelle_outbox", "Outgoing documents by state.", "gauge", by_label("state", OUTBOX_STATES, outbox)),
        Family(
            "poststelle_outbox_oldest_queued_age_seconds",
            "Age of the oldest document waiting to be sent (queued or deferred); 0 when none waits.",
            "gauge",
            (Sample((), age),),
        ),
        Family(
            "poststelle_deliveries",
            "Delivery records (document, recipient) by state.",
            "gauge",
            by_label("state", get_args(DeliveryState), deliveries),
        ),
        Family(
            "poststelle_mailbox_last_success_timestamp_seconds",
            "When the last pass over the mailbox succeeded (Unix time).",
            "gauge",
            tuple(last_success),
        ),
        Family(
            "poststelle_mailbox_up", "1 when the mailbox is connected and its last pass succeeded.", "gauge", tuple(up)
        ),
        Family(
            "poststelle_build_info",
            "The running version.",
            "gauge",
            (Sample((("version", release), ("python", platform.python_version())), 1.0),),
        ),
    ]
    if tenant is None:
        return families
    label = ("tenant", tenant)
    return [
        fam
        if fam.name == "poststelle_build_info"
        else Family(fam.name, fam.help, fam.kind, tuple(Sample((label, *s.labels), s.value) for s in fam.samples))
        for fam in families
    ]


class MetricsServer:
    """The ``/metrics`` endpoint as a daemon ``Listener``: bound at ``start``, closed at ``stop``."""

    def __init__(self, config: Config, board: StatusBoard | Sequence[Part]) -> None:
        assert config.metrics is not None
        self.config = config
        self.parts: Sequence[Part] = [(None, config, board)] if isinstance(board, StatusBoard) else board
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port (the port is the kernel's choice when configured as 0)."""
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        metrics = self.config.metrics
        assert metrics is not None
        server_class = _V6Server if ":" in metrics.host else ThreadingHTTPServer
        try:
            self._server = server_class((metrics.host, metrics.port), _handler(self.parts))
        except OSError as exc:
            where = f"{metrics.host}:{metrics.port}"
            problem = f"cannot listen on {where}: {exc.strerror}"
            raise ConfigError(str(self.config.path), "metrics.listen", problem) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()
        log.info("metrics endpoint listening", address="{}:{}".format(*self.address))

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _handler(parts: Sequence[Part]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "poststelle"
        sys_version = ""

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                self.send_error(404)
                return
            try:
                body = render(collect_all(parts)).encode("utf-8")
            except Exception as exc:  # a scrape that fails says so; the daemon runs on
                log.error("metrics scrape failed", error=f"{type(exc).__name__}: {exc}"[:500], exc_info=exc)
                self.send_error(500)
                return
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Scrapes every few seconds would drown the log; failures are logged above."""

    return Handler
