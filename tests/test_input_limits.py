"""Input-size limits: memory follows the limit, not the message; one MIME part limit, checked at start-up."""

from __future__ import annotations

import hashlib
import json
import os
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import ROUTES, Env, mailbox_entry, write_config

from gateway.config import load_config
from gateway.demo.samples import letter
from gateway.errors import ConfigError
from gateway.inbound.decide import analyse
from gateway.inbound.imap import MailboxSession
from gateway.inbound.intake import Intake
from gateway.mime.cut import MAX_PARTS
from gateway.records.open import open_store
from gateway.unwrap import UnwrapContext

MiB = 1024 * 1024


def test_oversize_message_is_streamed_into_quarantine_without_holding_it_in_memory(env: Env) -> None:
    """8 MiB against a 1 MiB limit: quarantined with every byte, peak Python memory under 2 MiB."""
    env.config_path = write_config(
        env.root, [mailbox_entry(env.dovecot, env.user, env.root)], extra=f"[limits]\nmax_message_bytes = {MiB}\n"
    )
    big = letter(subject="Az. 63-BV-2026-0902 Pläne", attachment=("plaene.pdf", os.urandom(6 * MiB)))
    assert len(big) > 8 * MiB
    env.append(letter(subject="Az. 63-BV-2026-0901 Anschreiben"))
    config = env.config
    (mb,) = config.mailboxes
    store = open_store(config)
    ctx = UnwrapContext.from_config(config)
    intake = Intake(config, mb, store, ctx)
    try:
        with MailboxSession(mb) as session:
            # A small letter first, so that what a first pass costs anyway (imports, caches)
            # is not counted; then the big one, measured.
            assert intake.run(session).stored == 1
            env.append(big)
            session.noop()
            tracemalloc.start()
            outcome = intake.run(session)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    finally:
        intake.close()
        ctx.close()
        store.close()

    served = big.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # IMAP hands out CRLF line ends
    print(f"message {len(served)} bytes, limit {MiB}, traced peak {peak} bytes")
    assert peak < 2 * MiB, f"peak {peak} bytes for a {len(served)}-byte message"
    assert (outcome.quarantined, outcome.stored) == (1, 0)
    (q,) = env.quarantined()
    reason = json.loads((q / "reason.json").read_text())
    assert reason["reasons"] == ["oversize"]
    assert reason["warnings"] == [f"{len(served)} bytes > limit {MiB}"]
    assert (q / "original.eml").read_bytes() == served
    manifest = json.loads((q / "manifest.json").read_text())
    assert manifest["sha256"] == hashlib.sha256(served).hexdigest() and manifest["size"] == len(served)
    assert manifest["subject"] == "Az. 63-BV-2026-0902 Pläne"
    assert manifest["files"]["original.eml"]["size"] == len(served)
    assert env.uids("INBOX") == [] and len(env.uids("Poststelle/Quarantine")) == 1
    reader = open_store(env.config, readonly=True)
    try:
        (rec,) = [r for r in reader.all_messages() if r.state == "quarantined"]
        events = [e.event for e in reader.entries() if e.message == rec.id]
    finally:
        reader.close()
    assert (rec.state, rec.size, rec.reasons) == ("quarantined", len(served), ["oversize"])
    assert rec.sha256 == manifest["sha256"]
    assert events[:1] == ["fetched"] and "quarantined" in events and "moved" in events


def _many_parts(n: int) -> bytes:
    parts = b"".join(b"--p\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(n))
    return (
        b"From: a@example.org\r\nSubject: Az. 63-BV-2026-0903\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="p"\r\n\r\n' + parts + b"--p--\r\n"
    )


def _config(tmp: Path, limits: str = "") -> Path:
    p = tmp / "c.toml"
    p.write_text(f'[storage]\nstate_dir = "{tmp}/s"\n{limits}\n{ROUTES}')
    return p


@pytest.mark.parametrize("limit", [500, MAX_PARTS])
def test_more_parts_than_the_parser_cuts_is_too_many_parts_not_malformed(tmp_path: Path, limit: int) -> None:
    """The parser's own bound and the configured limit give the same answer."""
    config = load_config(_config(tmp_path, f"[limits]\nmax_mime_parts = {limit}\n"))
    ctx = UnwrapContext.from_config(config, collect_certificates=False)
    for n in (limit + 1, MAX_PARTS + 1):
        plan = analyse(_many_parts(n), config, ctx, at=datetime.now(UTC))
        assert (plan.target, plan.reasons) == ("quarantined", ["too-many-parts"]), n
    assert analyse(_many_parts(limit - 1), config, ctx, at=datetime.now(UTC)).target == "stored"


def test_max_mime_parts_above_what_the_parser_honours_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_config(tmp_path, f"[limits]\nmax_mime_parts = {MAX_PARTS + 1}\n"))
    assert err.value.key == "limits.max_mime_parts"
    assert f"between 1 and {MAX_PARTS}" in err.value.problem
    at_bound = load_config(_config(tmp_path, f"[limits]\nmax_mime_parts = {MAX_PARTS}\n"))
    assert at_bound.limits.max_mime_parts == MAX_PARTS


@pytest.mark.parametrize("cases", ["{s}", "{tmp}", "{s}/staging/cases", "{s}/quarantine/x"])
def test_cases_dir_that_would_expose_the_state_directory_stops_start_up(tmp_path: Path, cases: str) -> None:
    """The share must not reach the ledger, the quarantine or the staging directory."""
    p = tmp_path / "c.toml"
    state = f"{tmp_path}/s"
    p.write_text(f'[storage]\nstate_dir = "{state}"\ncases_dir = "{cases.format(s=state, tmp=tmp_path)}"\n{ROUTES}')
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert err.value.key == "storage.cases_dir"


def test_many_parts_message_is_not_reported_as_unreadable_at_intake(env: Env) -> None:
    """End to end: reason.json says ``too-many-parts`` for a multipart the cutter stops on."""
    env.append(_many_parts(MAX_PARTS + 5))
    env.cli("run", "--once", check=True)
    (q,) = env.quarantined()
    assert json.loads((q / "reason.json").read_text())["reasons"] == ["too-many-parts"]
