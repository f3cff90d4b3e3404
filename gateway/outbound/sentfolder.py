"""The copy of a sent document in the mailbox's Sent folder, so mail programs show it too.

Optional (``[outbound] copy_to_sent_folder``, the compose side's section): the case
folder's ``sent/`` copy is the record; this one is for people reading the mailbox. One
short IMAP session per document, to the first configured mailbox; the folder is the one
flagged ``\\Sent`` (else ``Sent``). A repeat after a crash finds the Message-ID already
there and appends nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.config import Config, MailboxConfig
from gateway.inbound.imap import MailboxSession
from gateway.records.outbox import OutboxRecord

Copier = Callable[[OutboxRecord, bytes], str]


def sent_folder_copier(mb: MailboxConfig) -> Copier:
    def copy(rec: OutboxRecord, raw: bytes) -> str:
        with MailboxSession(mb).connect() as session:
            folder = session.sent_folder()
            session.append_once(folder, raw, rec.message_id)
            return folder

    return copy


def copier_from_config(config: Config) -> Copier | None:
    """The copier when ``[outbound] copy_to_sent_folder`` is set and a mailbox is configured."""
    outbound = getattr(config, "outbound", None)  # the [outbound] section arrives with compose
    if not getattr(outbound, "copy_to_sent_folder", False) or not config.mailboxes:
        return None
    return sent_folder_copier(config.mailboxes[0])
