"""Hostile subjects, attachment names and MIME: a clear answer, nothing lost, nothing outside the case folder."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from conftest import ROUTES, Env, mailbox_entry, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import Config, load_config
from gateway.demo.samples import letter
from gateway.inbound.decide import analyse
from gateway.unwrap import UnwrapContext


def nested(depth: int) -> bytes:
    head = b"From: a@example.org\r\nSubject: Az. 63-BV-2026-0900 nested\r\nMIME-Version: 1.0\r\n"
    body = b"innermost\r\n"
    for i in range(depth):
        b = f"b{i}".encode()
        body = (
            b"Content-Type: multipart/mixed; boundary="
            + b
            + b"\r\n\r\n--"
            + b
            + b"\r\n"
            + body
            + b"\r\n--"
            + b
            + b"--\r\n"
        )
    return head + body


def with_attachment_name(raw_name_header: bytes) -> bytes:
    return (
        b"From: a@example.org\r\nSubject: Az. 63-BV-2026-0901 Anlage\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nsiehe Anlage\r\n'
        b"--XX\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; "
        + raw_name_header
        + b"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(b"payload")
        + b"\r\n--XX--\r\n"
    )


def encoded(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


HOSTILE: list[tuple[str, bytes]] = [
    ("traversal subject", letter(subject="Az. ../../etc")),
    (
        "encoded traversal",
        letter(subject="x").replace(b"Subject: x", b"Subject: " + encoded("Az. ../../../etc/passwd").encode()),
    ),
    ("NUL in subject", b"From: a@example.org\r\nSubject: Az. 63-BV\x00/../../x\r\n\r\nbody\r\n"),
    ("very long subject", letter(subject="Az. " + "A" * 10_000)),
    ("dots only", letter(subject="Az. ..")),
    ("device name", letter(subject="Az. CON")),
    ("reserved folder", letter(subject="Az. _unassigned")),
    ("slash escape collision", letter(subject="Az. 1 K 1234%2F25")),
    ("traversal file name", with_attachment_name(b'filename="../../evil.sh"')),
    ("windows path file name", with_attachment_name(b'filename="C:\\\\Windows\\\\evil.exe"')),
    ("rfc2231 NUL file name", with_attachment_name(b"filename*=utf-8''..%2F..%00evil")),
    (
        "bidi override file name",
        with_attachment_name(b'filename="=?utf-8?b?' + base64.b64encode("\u202etxt.exe".encode()) + b'?="'),
    ),
    ("long file name", with_attachment_name(b'filename="' + b"x" * 5000 + b'.pdf"')),
    ("device file name", with_attachment_name(b'filename="CON.txt"')),
    ("malformed multipart", b"From: a@example.org\r\nSubject: y\r\nContent-Type: multipart/mixed\r\n\r\n--a\r\nx\r\n"),
    ("nested 30 levels", nested(30)),
    ("nested 3000 levels", nested(3000)),
    ("binary garbage", bytes(range(256)) * 20),
    ("header only", b"Subject: nothing else\r\n"),
    (
        "8-bit From, Message-ID and subject",
        b'From: "a\xc2\x9b\xff"@example.org\r\nSubject: Az. 63-BV-2026-0902 \xff\xc3\r\nMessage-ID: <\xff\x9b@x>\r\n'
        b"Date: \xff\r\n\r\nbody\r\n",
    ),
]


def test_hostile_messages_end_in_a_case_folder_or_quarantine_and_nothing_escapes(env: Env) -> None:
    env.dovecot.seed_maildir(env.user, [m for _, m in HOSTILE])
    before = {p for p in env.root.rglob("*")}
    proc = env.cli("run", "--once")
    assert proc.returncode == 0, proc.stderr
    assert len(env.entries()) + len(env.quarantined()) == len(HOSTILE)
    assert env.uids("INBOX") == []
    cases = env.cases_dir.resolve()
    for entry in env.entries():
        assert entry.resolve().parent.parent == cases
        for f in entry.rglob("*"):
            assert f.resolve().is_relative_to(entry.resolve())
            assert "\x00" not in f.name
    new_paths = {p for p in env.root.rglob("*")} - before
    assert all(p.resolve().is_relative_to(env.state_dir.resolve()) for p in new_paths)
    names = {p.parent.name for p in env.entries()}
    assert "_unassigned" in names  # the unusable references fall back here, with the reason kept
    assert not any(n in ("..", ".", "etc", "CON") for n in names)
    reasons = [json.loads((q / "reason.json").read_text())["reasons"] for q in env.quarantined()]
    flat = {r for rs in reasons for r in rs}
    assert {"malformed-mime", "mime-too-deep"} <= flat or {"malformed-mime", "too-many-parts"} <= flat


def test_each_hostile_attachment_name_is_made_safe(env: Env) -> None:
    env.dovecot.seed_maildir(env.user, [m for d, m in HOSTILE if "file name" in d])
    env.cli("run", "--once", check=True)
    names = sorted(f.name for e in env.entries() for f in (e / "attachments").iterdir())
    assert len(names) == 6
    for n in names:
        assert "/" not in n and "\\" not in n and not n.startswith(".") and "\u202e" not in n
        assert len(n.encode()) <= 120
    assert "evil.sh" in names
    assert "_CON.txt" in names


def test_oversize_message_is_quarantined_with_its_bytes(env: Env) -> None:
    cfg = write_config(
        env.root, [mailbox_entry(env.dovecot, env.user, env.root)], extra="[limits]\nmax_message_bytes = 100000\n"
    )
    big = letter(subject="Az. 63-BV-2026-0902", attachment=("big.pdf", os.urandom(200_000)))
    env.dovecot.seed_maildir(env.user, [big])
    env.config_path = cfg
    env.cli("run", "--once", check=True)
    (q,) = env.quarantined()
    assert json.loads((q / "reason.json").read_text())["reasons"] == ["oversize"]
    assert (q / "original.eml").stat().st_size >= 200_000


def _config(tmp: Path) -> Config:
    p = tmp / "c.toml"
    p.write_text(f'[storage]\nstate_dir = "{tmp}/s"\n{ROUTES}')
    return load_config(p)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    raw=st.one_of(
        st.binary(max_size=3000),
        st.builds(lambda h, b: h + b"\r\n\r\n" + b, st.binary(max_size=500), st.binary(max_size=500)),
    )
)
def test_analysis_of_arbitrary_bytes_never_raises(tmp_path: Path, raw: bytes) -> None:
    config = _config(tmp_path)
    plan = analyse(raw, config, UnwrapContext.from_config(config, collect_certificates=False), at=datetime.now(UTC))
    assert plan.target in ("stored", "quarantined")
    if plan.target == "quarantined":
        assert plan.reasons
    if plan.route is not None:
        assert "/" not in plan.route.case_folder and plan.route.case_folder not in ("", ".", "..")
