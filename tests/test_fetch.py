"""IMAP access against a real Dovecot: what the session fetches, and what it never logs."""

from __future__ import annotations

import logging

import pytest
from conftest import Env

from gateway.demo.samples import letter
from gateway.inbound.imap import MailboxSession


def test_debug_logging_never_shows_the_imap_password_or_message_content(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """imapclient's imaplib trace would log LOGIN with the password and every literal."""
    env.append(letter(subject="Az. 63-BV-2026-0001", body="Vertraulicher Inhalt 4711"))
    (mb,) = env.config.mailboxes
    with caplog.at_level(logging.DEBUG), MailboxSession(mb) as session:
        (fetched,) = list(session.fetch(session.list_uids()))
    assert b"Vertraulicher Inhalt 4711" in fetched.raw
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert mb.password.reveal() not in logged
    assert "Vertraulicher Inhalt" not in logged
