"""The delivery agent: one SMTP transaction per attempt, answers sorted per recipient.

Protocol only; what an answer means for the document (deferred, bounced, sent) is the
drain's business. Transport security follows ``[smtp] security``: implicit TLS, STARTTLS
(refused if the relay does not offer it), or plain only to loopback (the loader checks).
DSN parameters (RET=HDRS, ENVID, NOTIFY, ORCPT) are sent only when the relay advertises
DSN: a server that does not know them must refuse them (RFC 3461), and that would bounce
a document for asking politely.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from gateway.config import SmtpConfig

Outcome = Literal["accepted", "temporary", "permanent"]
_QUEUE_ID = re.compile(rb"queued as ([0-9A-Za-z]+)")
#: In the deferral reply when the connection died after the whole message, before the answer:
#: the relay may have queued it, so the next attempt may deliver it a second time.
REPLY_LOST = "reply lost after the whole message was sent"


class ReplyLost(smtplib.SMTPServerDisconnected):
    """The end of DATA was sent and no answer came: accepted or not is unknown (RFC 1047)."""


@dataclass(frozen=True)
class Reply:
    """One SMTP reply, kept as the relay gave it (for the record and for people)."""

    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.text}"

    @property
    def outcome(self) -> Outcome:
        if 200 <= self.code < 400:
            return "accepted"
        return "temporary" if 400 <= self.code < 500 else "permanent"


@dataclass
class Attempt:
    """What one transaction achieved: per recipient the final reply and, if accepted, the queue id."""

    replies: dict[str, Reply] = field(default_factory=dict)
    queue_ids: dict[str, str] = field(default_factory=dict)
    dsn: bool = False  # whether DSN parameters were sent
    error: str | None = None  # a transaction-level failure (connection, TLS, AUTH, MAIL FROM)
    reply_lost: bool = False  # the whole message went out, its answer did not come back

    def outcome(self, rcpt: str) -> Outcome:
        return self.replies[rcpt].outcome


def xtext(value: str) -> str:
    """RFC 3461 xtext: printable ASCII except ``+`` and ``=``, everything else ``+HH``."""
    return "".join(
        c if 33 <= ord(c) <= 126 and c not in "+=" else "".join(f"+{b:02X}" for b in c.encode()) for c in value
    )


def _reply(exc: smtplib.SMTPResponseException) -> Reply:
    text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
    return Reply(exc.smtp_code, text)


def _decode(msg: bytes | str) -> str:
    return msg.decode("utf-8", "replace") if isinstance(msg, bytes) else msg


def _quit(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()


def dot_stuff(raw: bytes) -> bytes:
    """RFC 5321 transparency: a ``.`` starting a line is doubled, at C speed.

    The same bytes as smtplib's ``re.sub(rb"(?m)^\\.", b"..", raw)``, which scans the
    whole message in the regular-expression engine: a line starts at the beginning and
    after every LF.
    """
    return (b"." + raw if raw.startswith(b".") else raw).replace(b"\n.", b"\n..")


def _data(smtp: smtplib.SMTP, raw: bytes) -> tuple[int, bytes]:
    """smtplib's ``data`` for bytes (no line-end changes, a final CRLF added if missing), dot-stuffed faster."""
    code, reply = smtp.docmd("data")
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)
    return _content(smtp, raw)


def _content(smtp: smtplib.SMTP, raw: bytes) -> tuple[int, bytes]:
    """The message after the relay's 354, and the relay's answer to it (``ReplyLost`` if none comes)."""
    stuffed = dot_stuff(raw)
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    smtp.send(stuffed + b".\r\n")
    try:
        return smtp.getreply()
    except (OSError, smtplib.SMTPServerDisconnected) as exc:
        raise ReplyLost(str(exc) or type(exc).__name__) from exc


def _command(cmd: str, args: str = "") -> str:
    """One command line as smtplib's ``putcmd`` writes it (and refuses it if it would hold a line break)."""
    line = f"{cmd} {args}".rstrip() + "\r\n"
    if "\r" in line[:-2] or "\n" in line[:-2]:
        raise ValueError("prohibited newline characters in an SMTP command")
    return line


def _with(options: Sequence[str]) -> str:
    return "".join(f" {o}" for o in options)


class _Stale(Exception):
    """A kept connection answered the RSET at the head of a pipelined group badly or not at all."""


class SmtpAgent:
    """Hands documents to the configured relay, one transaction per ``send`` on a kept connection."""

    def __init__(self, cfg: SmtpConfig, *, local_hostname: str | None = None) -> None:
        self.cfg = cfg
        self.local_hostname = local_hostname
        self._open: smtplib.SMTP | None = None

    def _tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.cfg.ca_file) if self.cfg.ca_file else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def _connect(self) -> smtplib.SMTP:
        cfg = self.cfg
        smtp: smtplib.SMTP
        if cfg.security == "tls":
            smtp = smtplib.SMTP_SSL(
                cfg.host, cfg.port, local_hostname=self.local_hostname, timeout=cfg.timeout, context=self._tls()
            )
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, local_hostname=self.local_hostname, timeout=cfg.timeout)
        try:
            smtp.ehlo()
            if cfg.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise smtplib.SMTPNotSupportedError("the relay does not offer STARTTLS; nothing was sent")
                smtp.starttls(context=self._tls())
                smtp.ehlo()
            if cfg.username is not None and cfg.password is not None:
                smtp.login(cfg.username, cfg.password.reveal())
        except BaseException:
            smtp.close()
            raise
        return smtp

    def probe(self) -> str:
        """Connect, secure, log in and quit (``poststelle check``); what the relay offers, or raises."""
        smtp = self._connect()
        try:
            offers = [x for x in ("dsn", "8bitmime", "smtputf8", "size") if smtp.has_extn(x)]
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
        return f"{self.cfg.security} {self.cfg.host}:{self.cfg.port}, offers {', '.join(offers) or 'no extensions'}"

    def send(self, mail_from: str, recipients: Sequence[str], raw: bytes, envid: str) -> Attempt:
        """One transaction for ``recipients``; never raises for what the relay or network does.

        The connection stays open for the next ``send`` (``close`` ends it): a pass over
        many documents pays for connect, EHLO, TLS and AUTH once. Before each reuse an
        RSET both clears any state the last transaction left and proves the relay is
        still there; if it is not, a fresh connection is made before anything is sent.
        Any failure inside a transaction drops the connection, so the next document
        never starts on a connection in an unknown state.
        """
        att = Attempt()
        smtp = self._reuse()
        reset = smtp is not None  # a kept pipelining connection: its RSET leads the next group
        if smtp is None:
            smtp = self._fresh(att, recipients)
            if smtp is None:
                return att
        keep = False
        try:
            try:
                self._transaction(smtp, att, mail_from, recipients, raw, envid, reset=reset)
            except _Stale:
                # Nothing of this document went out (its bytes follow a 354 only): as when a
                # kept connection fails its RSET, a fresh one is made before anything is sent.
                # Closed without QUIT: a relay past the group's DATA would read it as text.
                smtp.close()
                fresh = self._fresh(att, recipients)
                if fresh is None:
                    return att
                smtp = fresh
                self._transaction(smtp, att, mail_from, recipients, raw, envid, reset=False)
            keep = True
        except ReplyLost as exc:
            att.reply_lost = True
            self._undecided(att, recipients, Reply(451, f"4.4.2 {REPLY_LOST}: {exc}"))
        except smtplib.SMTPServerDisconnected as exc:
            self._undecided(att, recipients, Reply(451, f"4.4.2 connection lost: {exc}"))
        except (OSError, smtplib.SMTPException) as exc:
            self._undecided(att, recipients, Reply(451, f"4.4.2 {exc}"))
        except (UnicodeError, ValueError) as exc:
            # What this message or envelope is cannot be said in SMTP: retrying will not help.
            self._undecided(att, recipients, Reply(554, f"5.6.7 cannot be sent as given: {exc}"))
        finally:
            if keep:
                self._open = smtp
            else:
                _quit(smtp)
        return att

    def _fresh(self, att: Attempt, recipients: Sequence[str]) -> smtplib.SMTP | None:
        """A new connection, or None with every recipient deferred (``att``) because none could be made."""
        try:
            return self._connect()
        except smtplib.SMTPResponseException as exc:
            reply = Reply(451 if exc.smtp_code >= 500 else exc.smtp_code, _reply(exc).text)
            self._all(att, recipients, reply, f"connecting: {_reply(exc)}")
        except (OSError, smtplib.SMTPException) as exc:
            self._all(att, recipients, Reply(451, f"4.4.1 {exc}"), f"connecting: {exc}")
        return None

    def _reuse(self) -> smtplib.SMTP | None:
        """The connection of the last ``send`` after a successful RSET, or None.

        A relay that offers PIPELINING gets its RSET at the head of the next transaction's
        command group instead, answered before anything else counts (``_pipelined``).
        """
        smtp, self._open = self._open, None
        if smtp is None:
            return None
        if smtp.has_extn("pipelining"):
            return smtp
        try:
            code, _ = smtp.rset()
        except (OSError, smtplib.SMTPException):
            code = 0
        if code == 250:
            return smtp
        _quit(smtp)
        return None

    def close(self) -> None:
        """QUIT the connection kept for reuse, if any (the end of a pass)."""
        smtp, self._open = self._open, None
        if smtp is not None:
            _quit(smtp)

    def _transaction(
        self,
        smtp: smtplib.SMTP,
        att: Attempt,
        mail_from: str,
        recipients: Sequence[str],
        raw: bytes,
        envid: str,
        *,
        reset: bool = False,
    ) -> None:
        att.dsn = self.cfg.request_dsn and smtp.has_extn("dsn")
        mail_opts: list[str] = []
        if att.dsn:
            mail_opts += ["RET=HDRS", f"ENVID={xtext(envid)}"]
        if smtp.has_extn("8bitmime") and not raw.isascii():
            mail_opts.append("BODY=8BITMIME")
        if smtp.has_extn("pipelining"):
            self._pipelined(smtp, att, mail_from, mail_opts, recipients, raw, reset=reset)
            return
        code, msg = smtp.mail(mail_from, mail_opts)
        if code != 250:
            smtp.rset()
            self._all(att, recipients, Reply(code, _decode(msg)), f"MAIL FROM: {code} {_decode(msg)}")
            return
        accepted: list[str] = []
        for rcpt in recipients:
            code, msg = smtp.rcpt(rcpt, self._rcpt_options(att, rcpt))
            reply = Reply(code, _decode(msg))
            if code in (250, 251):
                accepted.append(rcpt)
            else:
                att.replies[rcpt] = reply
        if not accepted:
            smtp.rset()
            return
        answer: bytes | str
        try:
            code, answer = _data(smtp, raw)
        except smtplib.SMTPDataError as exc:
            code, answer = exc.smtp_code, exc.smtp_error
        self._answered(att, accepted, code, answer)

    def _rcpt_options(self, att: Attempt, rcpt: str) -> list[str]:
        return ["NOTIFY=SUCCESS,FAILURE,DELAY", f"ORCPT=rfc822;{xtext(rcpt)}"] if att.dsn else []

    @staticmethod
    def _answered(att: Attempt, accepted: Sequence[str], code: int, answer: bytes | str) -> None:
        """The relay's answer to the message, for every recipient it had accepted."""
        reply = Reply(code, _decode(answer))
        m = _QUEUE_ID.search(answer if isinstance(answer, bytes) else answer.encode())
        for rcpt in accepted:
            att.replies[rcpt] = reply
            if m and reply.outcome == "accepted":
                att.queue_ids[rcpt] = m.group(1).decode()

    def _pipelined(
        self,
        smtp: smtplib.SMTP,
        att: Attempt,
        mail_from: str,
        mail_opts: Sequence[str],
        recipients: Sequence[str],
        raw: bytes,
        *,
        reset: bool,
    ) -> None:
        """RFC 2920: (RSET,) MAIL, every RCPT and DATA in one write, their answers read in order.

        Two round trips per document instead of one per command. The message itself goes
        only after DATA's 354, which a relay gives only when MAIL and a RCPT succeeded, so
        the answers decide exactly as one command at a time would.
        """
        group = [_command("rset")] if reset else []
        group.append(_command("mail", f"FROM:{smtplib.quoteaddr(mail_from)}{_with(mail_opts)}"))
        group += [_command("rcpt", f"TO:{smtplib.quoteaddr(r)}{_with(self._rcpt_options(att, r))}") for r in recipients]
        group.append(_command("data"))
        if reset:
            try:
                smtp.send("".join(group))
                code, _ = smtp.getreply()
            except (OSError, smtplib.SMTPServerDisconnected):
                raise _Stale from None
            if code != 250:
                raise _Stale
        else:
            smtp.send("".join(group))
        code, msg = smtp.getreply()
        answers = [(rcpt, *smtp.getreply()) for rcpt in recipients]
        data_code, data_msg = smtp.getreply()
        accepted = [rcpt for rcpt, c, _ in answers if code == 250 and c in (250, 251)]
        if data_code == 354 and not accepted:
            # A relay that would take a message nobody accepted: leave without sending one.
            raise smtplib.SMTPResponseException(data_code, b"DATA accepted without an accepted recipient")
        if code != 250:
            self._all(att, recipients, Reply(code, _decode(msg)), f"MAIL FROM: {code} {_decode(msg)}")
            return
        for rcpt, c, m in answers:
            if rcpt not in accepted:
                att.replies[rcpt] = Reply(c, _decode(m))
        if not accepted:
            return
        answer: bytes | str
        if data_code == 354:
            data_code, answer = _content(smtp, raw)
        else:
            answer = data_msg
        self._answered(att, accepted, data_code, answer)

    @staticmethod
    def _all(att: Attempt, recipients: Sequence[str], reply: Reply, error: str) -> Attempt:
        att.error = error
        for rcpt in recipients:
            att.replies.setdefault(rcpt, reply)
        return att

    @staticmethod
    def _undecided(att: Attempt, recipients: Sequence[str], reply: Reply) -> None:
        """A dropped connection: every recipient without a final answer is deferred."""
        att.error = str(reply)
        for rcpt in recipients:
            att.replies.setdefault(rcpt, reply)
