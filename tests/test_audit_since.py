"""`audit verify --since HEAD_HASH`: only what was added after a head an earlier run proved.

A real gateway files letters, a full verify prints the head, more letters are filed, and
the continuation is checked; tampering before and after the head, heads that are not in
the trail, and a history rewritten before the head are each tried on the real record.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, Env, mailbox_entry, write_config
from support.audit import breaks, entries, file_correspondence, store_path, verify
from support.tamper import tamper_sql

from gateway.demo.dovecot import Dovecot
from gateway.demo.samples import fake_pdf, letter
from gateway.records.chain import GENESIS, entry_hash


def later_correspondence() -> list[bytes]:
    return [
        letter(subject="Az. 63-BV-2026-0147 Statik", attachment=("Statik.pdf", fake_pdf(2500, seed=7))),
        letter(subject="Ladung Az. 1 K 1234/25 Terminverlegung"),
    ]


@pytest.fixture
def continued(env: Env) -> tuple[Env, str, int]:
    """A record verified once (its head kept), then continued by a second run with new letters."""
    file_correspondence(env)
    rc, first = verify(env)
    assert rc == 0, first["breaks"]
    file_correspondence(env, later_correspondence())
    return env, first["head_hash"], first["entries"]


def since(env: Env, head: str) -> tuple[int, dict[str, Any]]:
    return verify(env, "--since", head)


def test_continuation_after_a_verified_head_passes_and_names_the_new_head(continued: tuple[Env, str, int]) -> None:
    env, head, old_count = continued
    rc, report = since(env, head)
    assert rc == 0, report["breaks"]
    rc_full, full = verify(env)
    assert rc_full == 0, full["breaks"]
    assert report["since_seq"] == old_count and report["since_hash"] == head
    assert report["entries"] == full["entries"] - old_count > 0
    assert report["head_hash"] == full["head_hash"]
    assert report["case_entries"] == 2, "the two letters filed since were checked against their manifests"
    assert report["checkpoints"] >= 1 and report["sealed_up_to"] == full["entries"]
    text = env.cli("audit", "verify", "--since", head).stdout
    assert "audit verify: OK" in text and full["head_hash"] in text


def test_every_verify_prints_the_whole_head_hash_to_keep(continued: tuple[Env, str, int]) -> None:
    env, _, _ = continued
    last = entries(env)[-1]
    assert re.search(rf"head\s+{last.hash}\b", env.cli("audit", "verify").stdout)
    assert json.loads(env.cli("audit", "verify", "--json").stdout)["head_hash"] == last.hash


def test_entry_altered_after_the_head_fails(continued: tuple[Env, str, int]) -> None:
    env, head, old_count = continued
    target = next(e for e in entries(env) if e.seq > old_count and e.event == "fetched")
    db = store_path(env)
    ((details,),) = tamper_sql(db, "SELECT details FROM audit WHERE seq=?", (target.seq,))
    tamper_sql(db, "UPDATE audit SET details=? WHERE seq=?", (details.replace('"uid":', '"uid":1'), target.seq))
    rc, report = since(env, head)
    assert rc == 1
    assert ("altered-entry", target.seq) in breaks(report)


def test_case_file_altered_after_the_head_fails(continued: tuple[Env, str, int]) -> None:
    env, head, _ = continued
    pdf = next(found for entry in env.entries() for found in entry.rglob("Statik.pdf"))
    pdf.write_bytes(pdf.read_bytes() + b"%")
    rc, report = since(env, head)
    assert rc == 1
    assert [b["file"] for b in report["breaks"] if b["kind"] == "file-altered"] == [str(pdf)]


def test_entry_removed_after_the_head_breaks_the_link(continued: tuple[Env, str, int]) -> None:
    env, head, old_count = continued
    tamper_sql(store_path(env), "DELETE FROM audit WHERE seq=?", (old_count + 1,))
    rc, report = since(env, head)
    assert rc == 1
    assert {("sequence-gap", old_count + 2), ("broken-link", old_count + 2)} <= set(breaks(report))


def test_unknown_head_is_an_error_not_a_pass(continued: tuple[Env, str, int]) -> None:
    env, head, _ = continued
    rc, report = since(env, head[::-1])
    assert rc == 1 and breaks(report) == [("unknown-head", None)]
    assert env.cli("audit", "verify", "--since", GENESIS).returncode == 1
    typo = env.cli("audit", "verify", "--since", head[:40])
    assert typo.returncode == 1 and "64 hex digits" in typo.stderr


def test_head_from_another_gateways_trail_fails(
    continued: tuple[Env, str, int], dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    env, _, _ = continued
    root = tmp_path / "other"
    root.mkdir()
    user = new_user()
    other = Env(dovecot, user, root, write_config(root, [mailbox_entry(dovecot, user, root)]))
    file_correspondence(other, later_correspondence())
    foreign = entries(other)[-1].hash
    rc, report = since(env, foreign)
    assert rc == 1 and breaks(report) == [("unknown-head", None)]


def test_history_rewritten_and_rechained_before_the_head_makes_the_head_unknown(
    continued: tuple[Env, str, int],
) -> None:
    """Someone edits an early entry and re-chains everything after it: the kept head is gone."""
    env, head, _ = continued
    rows = entries(env)
    updates, prev = [], GENESIS
    for e in rows:
        body = e.body() | {"prev_hash": prev}
        if e.seq == 2:
            body["actor"] = "mallory"
        h = entry_hash(body)
        updates.append((body["actor"], prev, h, e.seq))
        prev = h
    tamper_sql(store_path(env), "UPDATE audit SET actor=?, prev_hash=?, hash=? WHERE seq=?", *updates)
    rc, report = since(env, head)
    assert rc == 1 and ("unknown-head", None) in breaks(report)


def test_entry_altered_before_the_head_is_left_to_the_full_verify(continued: tuple[Env, str, int]) -> None:
    """--since proves the continuation; the earlier run proved what came before, a full run re-proves it."""
    env, head, old_count = continued
    target = next(e for e in entries(env) if e.seq < old_count and e.event == "fetched")
    db = store_path(env)
    ((details,),) = tamper_sql(db, "SELECT details FROM audit WHERE seq=?", (target.seq,))
    tamper_sql(db, "UPDATE audit SET details=? WHERE seq=?", (details.replace('"uid":', '"uid":1'), target.seq))
    rc, report = since(env, head)
    assert rc == 0, report["breaks"]
    rc_full, full = verify(env)
    assert rc_full == 1 and ("altered-entry", target.seq) in breaks(full)


def test_the_continuation_imports_neither_the_full_verify_nor_x509(tmp_path: Path) -> None:
    """An auditor's daily run starts fast: loading a configuration without De-Mail anchors
    and the ``--since`` module pull in no disk listing, JSON-lines comparison, filing code
    or certificate parsing (each is a part of the start-up the command would pay for)."""
    secret = tmp_path / "password"
    secret.write_text("unused")
    secret.chmod(0o600)
    cfg = tmp_path / "poststelle.toml"
    cfg.write_text(
        f'[storage]\nstate_dir = "{tmp_path}/state"\n\n[[mailbox]]\nname = "m"\nhost = "127.0.0.1"\n'
        f'username = "m"\npassword_file = "{secret}"\n'
    )
    probe = (
        "import sys; from pathlib import Path; from gateway.config import load_config; "
        f"load_config(Path({str(cfg)!r})); import gateway.audit.since; "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(("
        "'gateway.audit.files', 'gateway.audit.jsonl', 'gateway.audit.verify', 'gateway.filing', "
        "'cryptography.x509')))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == [], out.stdout
