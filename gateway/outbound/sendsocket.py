"""The daemon's send socket: clerks' ``poststelle send`` hands letters in, the daemon signs and queues them.

A clerk may read the case folders but not the authority's signing key, the configuration
or the outbox, so their ``send`` cannot compose and queue by itself; like Postfix's
``sendmail`` handing mail to ``postdrop``, it passes the letter to the running daemon.
The socket is a file of mode 0660 in ``[send_socket] group``: the file system decides who
may connect, and the kernel (``SO_PEERCRED``) says who did, so the queued entry names
the clerk's account as if they had run ``send`` with the gateway's rights. The sender is
always the authority's (``[smtp] from``), since the letter is signed with its identity.

The socket is made under a temporary name, given its mode and group, and only then
renamed into place, so it is never reachable with looser permissions. Each connection
carries one request (``outbound/sendwire.py``), answered after the letter is durably
queued, or with the reason nothing was.
"""

from __future__ import annotations

import contextlib
import grp
import os
import socket
import stat
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog

from gateway.clock import utcnow
from gateway.config import Config
from gateway.errors import ConfigError, PermanentError
from gateway.outbound.compose import Attachment, ComposeError, Letter
from gateway.outbound.demail_options import DemailOptions
from gateway.outbound.document import send_summary
from gateway.outbound.sendwire import SendRequest, WireError, encode_answer, read_request
from gateway.records.actors import Actor, account_name

log = structlog.get_logger()

__all__ = ["SendSocketListener", "compose_and_queue", "peer_actor"]

#: Letters composed at once; more clients wait in the kernel's backlog.
WORKERS = 4
#: Seconds a client may take to send its request or read the answer.
CLIENT_TIMEOUT = 120.0
EXIT_REFUSED, EXIT_CONFIG = 1, 2


class Refused(Exception):
    """A request the daemon answers with an error and an exit status for the clerk's ``send``."""

    def __init__(self, message: str, exit_status: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def peer_actor(conn: socket.socket) -> Actor:
    """The connecting process's account, from the kernel (``SO_PEERCRED``), never from the request."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return Actor(os_user=account_name(uid), uid=uid)


def compose_and_queue(config: Config, req: SendRequest, actor: Actor) -> dict[str, Any]:
    """Compose ``req`` as the authority, queue it in ``actor``'s name, and return ``send``'s summary."""
    if config.outbound is None:
        raise Refused("sending is not configured: the gateway has no [outbound] section", EXIT_CONFIG)
    if config.smtp is None:
        raise Refused("no [smtp] relay is configured: nothing would send it; nothing was queued", EXIT_CONFIG)
    options = None
    if req.demail is not None:
        if not config.demail.enabled:
            raise Refused("--demail: De-Mail is not configured on the gateway", EXIT_CONFIG)
        options = DemailOptions(**req.demail)
    letter = Letter(
        case=req.case,
        to=req.to,
        cc=req.cc,
        bcc=req.bcc,
        subject=req.subject,
        body=req.body,
        attachments=tuple(
            Attachment(Path(name or "attachment"), filename=name, data=data) for name, data in req.attachments
        ),
        demail=options,
    )
    from gateway.outbound.outbox import enqueue
    from gateway.outbound.protect import OutboundKeys, compose_document
    from gateway.records.open import open_store

    keys = OutboundKeys.from_config(config)
    try:
        doc = compose_document(letter, mail_from=config.smtp.mail_from, config=config, keys=keys, at=utcnow())
    finally:
        keys.close()
    if req.dry_run:
        return send_summary(doc, None, queued=False)
    store = open_store(config, actor=actor.name)
    try:
        outbound_id = enqueue(config, store, doc, actor=actor.name)
        store.seal()  # the clerk's letter is in the signed trail when their send returns
        store.export_jsonl()
    finally:
        store.close()
    return send_summary(doc, outbound_id, queued=True)


class SendSocketListener:
    """The daemon's side of the send socket (a ``Listener``: started and stopped with the daemon)."""

    def __init__(self, config: Config) -> None:
        assert config.send_socket is not None
        self.config = config
        self.path = config.send_socket.path
        self.group = config.send_socket.group
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="send-socket")

    def _fail(self, problem: str) -> ConfigError:
        return ConfigError(str(self.config.path), "send_socket.path", problem)

    def _clear_stale(self) -> None:
        """Remove a socket a killed daemon left behind; refuse to remove anything else."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise self._fail(f"{self.path} exists and is not a socket; not removing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.path))
        except OSError:
            os.unlink(self.path)  # nobody listens: left by a daemon that was killed
            return
        finally:
            probe.close()
        raise self._fail(f"{self.path} is in use by another process")

    def start(self) -> None:
        """Bind with mode 0660 (and the group) before the socket is reachable under its name."""
        if not self.path.parent.is_dir():
            raise self._fail(f"directory not found: {self.path.parent}")
        self._clear_stale()
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if temporary.exists():
                temporary.unlink()
            sock.bind(str(temporary))
            os.chmod(temporary, 0o660)
            if self.group is not None:
                gid = grp.getgrnam(self.group).gr_gid
                if os.stat(temporary).st_gid != gid:  # a setgid directory of that group needs no chown
                    os.chown(temporary, -1, gid)
            sock.listen(16)
            os.rename(temporary, self.path)
        except OSError as exc:
            sock.close()
            temporary.unlink(missing_ok=True)
            raise self._fail(f"cannot listen on {self.path}: {exc.strerror or exc}") from None
        self._sock = sock
        self._thread = threading.Thread(target=self._accept, name="send-socket", daemon=True)
        self._thread.start()
        log.info("send socket listening", path=str(self.path), group=self.group)

    def _accept(self) -> None:
        sock = self._sock
        assert sock is not None
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:  # closed by stop()
                return
            self._executor.submit(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(CLIENT_TIMEOUT)
            actor = peer_actor(conn)
            try:
                req = read_request(conn.recv, self.config.limits.max_message_bytes)
                summary = compose_and_queue(self.config, req, actor)
                answer: dict[str, Any] = {"ok": True, "summary": summary}
                log.info("letter handed in", actor=actor.name, outbound_id=summary["outbound_id"], case=req.case)
            except Refused as exc:
                answer = {"ok": False, "error": str(exc), "exit": exc.exit_status}
            except WireError as exc:
                answer = {"ok": False, "error": f"bad request: {exc}", "exit": EXIT_REFUSED}
            except (ComposeError, PermanentError) as exc:
                answer = {"ok": False, "error": str(exc), "exit": EXIT_REFUSED}
            except ConfigError as exc:
                answer = {"ok": False, "error": str(exc), "exit": EXIT_CONFIG}
            except TimeoutError:
                log.warning("send socket client too slow", actor=actor.name)
                return
            except Exception as exc:  # a bug or a full disk: the clerk hears nothing was queued
                log.exception("send socket request failed", actor=actor.name)
                answer = {"ok": False, "error": f"nothing was queued: {type(exc).__name__}", "exit": EXIT_REFUSED}
            if not answer["ok"]:
                log.info("letter refused", actor=actor.name, reason=answer["error"])
            try:
                conn.sendall(encode_answer(answer))
            except OSError:
                log.warning("send socket client left before the answer", actor=actor.name)

    def stop(self) -> None:
        """Stop accepting, let letters being composed finish, and remove the socket."""
        sock, thread = self._sock, self._thread
        if sock is None or thread is None:
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        thread.join()
        self._executor.shutdown(wait=True)
        try:
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)
        except OSError:
            pass
        self._sock = self._thread = None
        log.info("send socket closed", path=str(self.path))
