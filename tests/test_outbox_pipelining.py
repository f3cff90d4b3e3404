"""SMTP PIPELINING (RFC 2920): a relay that offers it gets each document in two round trips, decided as before."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest
from support.outbox import document, smtp_config
from support.smtp_peer import ScriptedPeer

from gateway.config import load_config
from gateway.outbound import outbox
from gateway.outbound.drain import Drain
from gateway.outbound.smtp import Attempt, SmtpAgent
from gateway.records.open import open_store

TO = ("ok@mailbox.test", "later@mailbox.test", "never@mailbox.test")


class CountingAgent(SmtpAgent):
    """The real agent, counting the connections it opens."""

    connections = 0

    def _connect(self) -> smtplib.SMTP:
        self.connections += 1
        return super()._connect()


def _answers(att: Attempt) -> dict[str, tuple[int, str | None]]:
    return {a: (r.code, att.queue_ids.get(a)) for a, r in att.replies.items()}


def _send_twice(tmp_path: Path, *, pipelining: bool) -> tuple[list[Attempt], ScriptedPeer, CountingAgent, list[bytes]]:
    docs = [document(to=TO), document(to=TO)]
    with ScriptedPeer(pipelining=pipelining) as peer:
        peer.script("later@mailbox.test", "450 4.2.0 try again later")
        peer.script("never@mailbox.test", "550 5.1.1 no such user", "550 5.1.1 no such user")
        config = load_config(smtp_config(tmp_path, port=peer.port))
        assert config.smtp is not None
        agent = CountingAgent(config.smtp)
        with smtplib.SMTP("127.0.0.1", peer.port) as probe:
            probe.ehlo()
            assert probe.has_extn("pipelining") == pipelining
        atts = [agent.send(d.mail_from, d.recipients, d.raw, f"e{i}") for i, d in enumerate(docs)]
        agent.close()
    return atts, peer, agent, [d.raw for d in docs]


@pytest.mark.parametrize("pipelining", [True, False])
def test_each_recipient_gets_the_answer_it_gets_one_command_at_a_time(tmp_path: Path, pipelining: bool) -> None:
    atts, peer, agent, raws = _send_twice(tmp_path, pipelining=pipelining)
    first, second = atts
    assert _answers(first) == {
        "ok@mailbox.test": (250, "PEER0001"),
        "later@mailbox.test": (450, None),
        "never@mailbox.test": (550, None),
    }
    assert _answers(second) == {
        "ok@mailbox.test": (250, "PEER0002"),
        "later@mailbox.test": (250, "PEER0002"),
        "never@mailbox.test": (550, None),
    }
    assert first.error is None and second.error is None
    assert [(r.rcpt_tos, r.content) for r in peer.received] == [
        (["ok@mailbox.test"], raws[0]),
        (["ok@mailbox.test", "later@mailbox.test"], raws[1]),
    ]
    assert agent.connections == 1


def test_a_document_nobody_accepts_sends_no_message_and_the_connection_serves_the_next(tmp_path: Path) -> None:
    refused, taken = document(to=("never@mailbox.test",)), document()
    with ScriptedPeer(pipelining=True) as peer:
        peer.script("never@mailbox.test", "550 5.1.1 no such user")
        config = load_config(smtp_config(tmp_path, port=peer.port))
        assert config.smtp is not None
        agent = CountingAgent(config.smtp)
        att = agent.send(refused.mail_from, refused.recipients, refused.raw, "e1")
        assert att.replies["never@mailbox.test"].code == 550 and att.error is None
        att = agent.send(taken.mail_from, taken.recipients, taken.raw, "e2")
        agent.close()
        assert att.outcome(taken.recipients[0]) == "accepted"
        assert [r.content for r in peer.received] == [taken.raw]
    assert agent.connections == 1


def test_a_kept_pipelining_connection_the_relay_dropped_is_replaced_before_anything_is_sent(tmp_path: Path) -> None:
    first, second = document(), document()
    with ScriptedPeer(pipelining=True) as relay:
        config = load_config(smtp_config(tmp_path, port=relay.port))
        assert config.smtp is not None
        agent = CountingAgent(config.smtp)
        assert agent.send(first.mail_from, first.recipients, first.raw, "e1").outcome(first.recipients[0]) == "accepted"
    with ScriptedPeer(port=relay.port, pipelining=True) as restarted:  # the kept connection died with the first
        att = agent.send(second.mail_from, second.recipients, second.raw, "e2")
        agent.close()
        assert att.outcome(second.recipients[0]) == "accepted" and att.error is None
        assert [r.content for r in restarted.received] == [second.raw]
    assert agent.connections == 2


def test_a_pass_over_a_pipelining_relay_sends_every_document_once_byte_for_byte(tmp_path: Path) -> None:
    with ScriptedPeer(pipelining=True) as peer:
        config = load_config(smtp_config(tmp_path, port=peer.port))
        store = open_store(config)
        try:
            docs = [document(body=b".\r\n..\r\n.Zeile\r\nEnde ohne Zeilenende"), *(document() for _ in range(6))]
            ids = [outbox.enqueue(config, store, d) for d in docs]
            report = Drain(config, store, lanes=2).run_once()
            assert sorted(report.sent) == sorted(ids) and sorted(report.filed) == sorted(ids)
        finally:
            store.close()
        # A last line without CRLF gets one, as smtplib's own DATA has always done.
        assert sorted(r.content for r in peer.received) == sorted(
            d.raw if d.raw.endswith(b"\r\n") else d.raw + b"\r\n" for d in docs
        )
