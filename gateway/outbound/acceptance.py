"""What a submitted letter must be before the outbox takes it: the policy of the listener.

The SMTP handler (``submission.py``) only speaks the protocol; every decision is here, as
plain functions of the configuration and the submitted bytes, each answering with the
``Reply`` the handler sends:

- The envelope sender and the header From must be the authority's address
  (``[submission] sender``). The letter goes out signed with the authority's identity, so a
  different From would contradict the signature at the recipient. It is refused, not
  rewritten: the outbox keeps and sends the bytes the clerk's program produced.
- The case comes from the Subject through the routing rules, exactly as for incoming mail
  (the rules see the From address, the authority's). No case, or a reference that cannot
  become a folder: refused with 550, so the clerk sees at once that nothing was queued.
- The letter is spooled (``Spool.submit``) and only then answered 250 with the outbound
  id. A ``PermanentError`` of the spool becomes 554 with its message, a ``TransientError``
  451; anything unexpected 451 without details (they may hold paths or secrets).
"""

from __future__ import annotations

import email.parser
import email.policy
import re
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from gateway.config import Config
from gateway.errors import PermanentError, TransientError
from gateway.mime.headers import decode_header_text
from gateway.outbound.spool import Spool
from gateway.routing.rules import route
from gateway.unwrap.identity import from_values, same_address

log = structlog.get_logger("poststelle.submission")
MAX_RECIPIENTS = 100
_ADDRESS = re.compile(r"[!-?A-~]+@[!-?A-~]+")  # printable ASCII, no space, no '@' rules beyond one


@dataclass(frozen=True)
class Reply:
    """One SMTP reply: code, enhanced status code (RFC 3463) and a one-line text."""

    code: int
    status: str
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    def line(self) -> str:
        return f"{self.code} {self.status} {_one_line(self.text)}"


def _one_line(text: str, limit: int = 400) -> str:
    """Printable ASCII on one line: a reply is protocol, and the text may quote a stranger."""
    cleaned = "".join(c if " " <= c <= "~" else "?" for c in text)
    return cleaned[:limit]


OK = Reply(250, "2.1.0", "OK")


class SubmissionPolicy:
    """The listener's decisions for one configuration and one spool."""

    def __init__(self, config: Config, spool: Spool) -> None:
        if config.submission is None:
            raise ValueError("the configuration has no [submission] section")
        self.config = config
        self.sender_address = config.submission.sender
        self.spool = spool

    def sender(self, mail_from: str) -> Reply:
        """MAIL FROM: only the authority's address."""
        if not same_address(mail_from, self.sender_address):
            return Reply(553, "5.7.1", f"the sender must be {self.sender_address} (letters go out as the authority)")
        return Reply(250, "2.1.0", "sender OK")

    def recipient(self, address: str, count_so_far: int) -> Reply:
        """RCPT TO: a plain address, at most ``MAX_RECIPIENTS`` per letter."""
        if count_so_far >= MAX_RECIPIENTS:
            return Reply(452, "4.5.3", f"too many recipients (at most {MAX_RECIPIENTS} per letter)")
        if not _ADDRESS.fullmatch(address) or address.count("@") != 1:
            return Reply(553, "5.1.3", "the recipient must be a plain address local@domain")
        return Reply(250, "2.1.5", "recipient OK")

    def accept(self, raw: bytes, *, mail_from: str, recipients: Sequence[str], user: str) -> Reply:
        """DATA: check From and case, spool durably, and only then say 250 with the id."""
        headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(_header_block(raw))
        from_addr, problems = from_values([str(v) for v in headers.get_all("From") or []])
        if from_addr is None or not same_address(from_addr, self.sender_address):
            why = f" ({', '.join(problems)})" if problems else ""
            return Reply(550, "5.7.1", f"the From header must be {self.sender_address} alone{why}")
        subjects = headers.get_all("Subject") or []
        if len(subjects) != 1:
            return Reply(550, "5.6.0", "a letter needs exactly one Subject naming its case")
        subject = decode_header_text(str(subjects[0]))
        routing = self.config.routing
        decision = route(subject, [from_addr], self.config.routes, routing.unassigned, routing.folder_slash)
        if decision.case_ref is None:
            reasons = ", ".join(decision.reasons)
            return Reply(550, "5.6.0", f"no case reference found in the Subject ({reasons}); nothing was queued")
        try:
            outbound_id = self.spool.submit(
                raw, mail_from=mail_from, recipients=tuple(recipients), case=decision.case_ref, submitted_by=user
            )
        except PermanentError as exc:
            log.warning("submission refused by the outbox", user=user, case=decision.case_ref, error=str(exc))
            return Reply(554, "5.0.0", str(exc) or "refused by the outbox")
        except TransientError as exc:
            log.warning("submission deferred by the outbox", user=user, case=decision.case_ref, error=str(exc))
            return Reply(451, "4.3.0", str(exc) or "the outbox is not available; try again later")
        except Exception:  # the mail program must hear "not taken", never silence
            log.exception("submission failed", user=user, case=decision.case_ref)
            return Reply(451, "4.3.0", "the letter could not be queued; try again later")
        log.info("submission queued", user=user, case=decision.case_ref, outbound_id=outbound_id)
        return Reply(250, "2.0.0", f"queued as {outbound_id} for case {decision.case_ref}")


def _header_block(raw: bytes) -> bytes:
    """The header fields of ``raw`` (up to the first empty line): the body is none of our business here."""
    ends = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    return raw[: min(ends) + 2] if ends else raw
