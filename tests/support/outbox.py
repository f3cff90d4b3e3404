"""Outbox test helpers: documents as compose will hand them over, a clock tests move, configs."""

from __future__ import annotations

import contextlib
import re
import secrets
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.config import load_config
from gateway.demo.dovecot import Dovecot
from gateway.errors import ConfigError
from gateway.outbound.document import ComposedDocument
from gateway.statedir import init_storage


def document(
    *,
    case: str = "63-BV-2026-0412",
    to: tuple[str, ...] = ("user1@mailbox.test",),
    mail_from: str = "rathaus@mailbox.test",
    body: bytes | None = None,
) -> ComposedDocument:
    """A plain signed-looking letter with CRLF line ends and a fresh Message-ID."""
    mid = f"{secrets.token_hex(8)}@rathaus.test"
    body = (
        body
        if body is not None
        else (
            "Sehr geehrte Damen und Herren,\r\n\r\nanbei der Bescheid (Grüße aus Hofheim).\r\n.\r\n"
            ".Zeile mit Punkt am Anfang\r\n"
        ).encode()
    )
    raw = (
        f"From: Rathaus <{mail_from}>\r\nTo: {', '.join(to)}\r\n"
        f"Subject: Az. {case} Bescheid\r\nMessage-ID: <{mid}>\r\n"
        "Date: Wed, 02 Dec 2026 09:00:00 +0100\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + body
    return ComposedDocument(mid, case, mail_from, to, raw, "none", False, ())


class Clock:
    """Time that moves only when a test says so."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def smtp_config(root: Path, *, port: int, extra: dict[str, Any] | None = None) -> Path:
    """A config with no mailbox and an ``[smtp]`` relay on loopback (plain, no AUTH)."""
    smtp: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "plain",
        "from": "rathaus@mailbox.test",
        "min_backoff": "5m",
        "max_backoff": "1h",
        "max_lifetime": "5d",
        "timeout": 10,
        **(extra or {}),
    }
    lines = ["[storage]", f'state_dir = "{root}/state"', f'cases_dir = "{root}/state/cases"', "", "[smtp]"]
    for k, v in smtp.items():
        if isinstance(v, bool):
            lines.append(f"{k} = {'true' if v else 'false'}")
        elif isinstance(v, int | float):
            lines.append(f"{k} = {v}")
        else:
            lines.append(f'{k} = "{v}"')
    lines.append('\n[logging]\nformat = "json"\n')
    path = root / "poststelle.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    # The roots, as `poststelle init` makes them (start-up never does); a config the test
    # means to be refused has nothing to create.
    with contextlib.suppress(ConfigError):
        init_storage(load_config(path))
    return path


_MESSAGE_ID = re.compile(rb"<([^>\s]+)>")


def inbox_message_ids(dovecot: Dovecot, user: str) -> Counter[str]:
    """How often each Message-ID is in the user's INBOX (duplicates are what crash tests count)."""
    found: Counter[str] = Counter()
    with dovecot.client(user, tls=False) as conn:
        conn.select_folder("INBOX", readonly=True)
        uids = conn.search("ALL")
        if not uids:
            return found
        for data in conn.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]).values():
            header = next(v for k, v in data.items() if k.startswith(b"BODY[HEADER"))
            match = _MESSAGE_ID.search(header)
            assert match, f"a delivered message without a Message-ID: {header!r}"
            found[match.group(1).decode()] += 1
    return found
