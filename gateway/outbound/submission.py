"""The SMTP submission listener: clerks' mail programs hand in letters for the outbox.

A thin aiosmtpd handler: it authenticates against the users file, hands each envelope
step to ``acceptance.SubmissionPolicy`` and sends back the reply it gets. Protocol rules
that are not policy stay aiosmtpd's: AUTH PLAIN/LOGIN is required before MAIL; AUTH is
only accepted after STARTTLS unless the listener is on a loopback address; the size
limit is ``[limits] max_message_bytes``, advertised as SIZE.

The listener runs its own event loop in one thread so that it can sit beside the
intake's threads; spooling (disk writes and fsyncs, signing) runs in a small thread pool
so that one slow letter does not stall the other sessions. A password check (scrypt) runs
in the loop itself, because aiosmtpd calls its authenticator synchronously: logins are
rare next to the letters, but each one holds the other sessions for the length of a hash.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from gateway.config import Config
from gateway.display import safe_text
from gateway.errors import ConfigError
from gateway.outbound.acceptance import SubmissionPolicy
from gateway.outbound.spool import Spool
from gateway.outbound.tlsserver import server_context
from gateway.outbound.users import UsersFile

log = structlog.get_logger("poststelle.submission")

# aiosmtpd's own logger: at debug level it writes every line of every letter (DATA
# readline), and letters to citizens do not belong in logs; info (who sent to whom) stays.
# Its warning that ``Session.login_data`` is deprecated comes from aiosmtpd itself at
# every login and says nothing about the gateway.
_aiosmtpd_log = logging.getLogger("mail.log")
_aiosmtpd_log.setLevel(logging.INFO)
_aiosmtpd_log.addFilter(lambda record: "login_data is deprecated" not in record.getMessage())
SPOOL_THREADS = 4
SHUTDOWN_TIMEOUT = 30.0


class SubmissionHandler:
    """aiosmtpd's handler: protocol events in, the policy's replies out."""

    def __init__(self, policy: SubmissionPolicy, users: UsersFile, executor: ThreadPoolExecutor) -> None:
        self.policy = policy
        self.users = users
        self.executor = executor
        #: Letters being spooled now: a shutdown lets them finish and answer before it ends
        #: the sessions; a letter taken but left unanswered would be handed in again.
        self.spooling: set[asyncio.Future[str]] = set()

    def authenticate(self, server: SMTP, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        """aiosmtpd's ``authenticator``: PLAIN and LOGIN give a name and a password."""
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        try:
            name = auth_data.login.decode("utf-8")
        except UnicodeDecodeError:
            return AuthResult(success=False, handled=False)
        try:
            ok = self.users.authenticate(name, auth_data.password)
        except ConfigError as exc:
            log.error("users file unusable; nobody can log in", error=str(exc))
            return AuthResult(success=False, handled=False, message="454 4.7.0 Temporary authentication failure")
        log.info("login" if ok else "login refused", user=safe_text(name), peer=str(session.peer), mechanism=mechanism)
        if not ok:
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=name)

    async def handle_MAIL(self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        reply = self.policy.sender(address)
        if reply.ok:
            envelope.mail_from = address
            envelope.mail_options.extend(options)
        return reply.line()

    async def handle_RCPT(self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        reply = self.policy.recipient(address, len(envelope.rcpt_tos))
        if reply.ok:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
        return reply.line()

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        raw = envelope.content
        assert isinstance(raw, bytes)  # decode_data=False
        user = session.auth_data
        assert isinstance(user, str)  # auth_required: DATA only after a successful AUTH

        def accept() -> str:
            return self.policy.accept(raw, mail_from=envelope.mail_from, recipients=envelope.rcpt_tos, user=user).line()

        future = asyncio.get_running_loop().run_in_executor(self.executor, accept)
        self.spooling.add(future)
        future.add_done_callback(self.spooling.discard)
        return await future


def is_loopback(host: str) -> bool:
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


class SubmissionListener:
    """The listener for ``[submission]``: ``start()`` binds (errors raise there), ``stop()`` ends it.

    ``listen`` overrides the configured address (tests bind port 0 and read ``address``).
    """

    def __init__(self, config: Config, spool: Spool, *, listen: tuple[str, int] | None = None) -> None:
        sub = config.submission
        if sub is None:
            raise ValueError("the configuration has no [submission] section")
        self.host, self.port = listen or (sub.host, sub.port)
        self.address: tuple[str, int] = (self.host, self.port)
        self.users = UsersFile(sub.users_file)
        self.users.check()  # an unreadable or malformed users file stops start-up
        self.tls = server_context(sub.tls_cert, sub.tls_key) if sub.tls_cert and sub.tls_key else None
        self.limit = config.limits.max_message_bytes
        self.executor = ThreadPoolExecutor(SPOOL_THREADS, thread_name_prefix="submission-spool")
        self.handler = SubmissionHandler(SubmissionPolicy(config, spool), self.users, self.executor)
        self.loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self.config_file = str(config.path)
        #: Set once the socket is bound and served (``address`` then holds the real port).
        self.started = threading.Event()

    def _protocol(self) -> SMTP:
        with warnings.catch_warnings():
            # aiosmtpd warns whenever AUTH is allowed without TLS; on loopback that is the
            # decision of [submission] (the password never crosses a network).
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS", UserWarning)
            return self._smtp()

    def _smtp(self) -> SMTP:
        return SMTP(
            self.handler,
            data_size_limit=self.limit,
            decode_data=False,
            hostname=socket.gethostname(),
            ident="Poststelle submission",
            tls_context=self.tls,
            auth_required=True,
            auth_require_tls=not is_loopback(self.host),
            authenticator=self.handler.authenticate,
            loop=self.loop,
        )

    def start(self) -> None:
        """Bind and serve in a thread of its own; a port that cannot be bound is a ConfigError."""
        try:
            server = self.loop.run_until_complete(self.loop.create_server(self._protocol, self.host, self.port))
        except OSError as exc:
            self.executor.shutdown(wait=False)
            self.loop.close()  # this listener is spent; a new one may try again
            raise ConfigError(
                self.config_file, "submission.listen", f"cannot listen on {self.host}:{self.port}: {exc.strerror}"
            ) from None
        self._server = server
        self.address = server.sockets[0].getsockname()[:2]
        self._thread = threading.Thread(target=self.loop.run_forever, name="submission", daemon=True)
        self._thread.start()
        self.started.set()
        log.info("submission listener started", host=self.address[0], port=self.address[1], tls=self.tls is not None)

    def stop(self) -> None:
        """Close the socket, end open sessions, and wait for letters being spooled."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return

        async def shutdown() -> None:
            server.close()
            await server.wait_closed()
            # A session waiting for its spool is woken before this coroutine (it awaited
            # first), and writes its reply before it awaits again.
            await asyncio.gather(*self.handler.spooling, return_exceptions=True)
            await asyncio.sleep(0)
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(SHUTDOWN_TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        thread.join()
        self.executor.shutdown(wait=True)
        self.loop.close()
        self._server = self._thread = None
        log.info("submission listener stopped")

    def __enter__(self) -> SubmissionListener:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
