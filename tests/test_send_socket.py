"""Clerks send through the daemon's socket: it signs with keys they may not read and queues in their name.

The real listener, the real outbox and real S/MIME; the clerk is a real other account
(``setpriv`` as ``nobody``) where the tests run as root, so the socket's mode and group
are enforced by the kernel, and the name in the trail comes from ``SO_PEERCRED``.
"""

from __future__ import annotations

import grp
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import POSTSTELLE, REPO
from hypothesis import given, settings
from hypothesis import strategies as st
from support.smime_pki import RECIPIENT, SENDER, TestPKI, build_pki
from typer.testing import CliRunner

from cli.main import app
from gateway.config import Config, load_config
from gateway.errors import ConfigError
from gateway.outbound.sendsocket import SendSocketListener
from gateway.outbound.sendwire import MAGIC, SendRequest, WireError, encode_request, read_request
from gateway.records.actors import account_name
from gateway.records.open import open_store
from gateway.records.store import EntryFilter
from gateway.statedir import init_storage

AUTHORITY = RECIPIENT  # the test PKI's "recipient" party is the authority's identity here
CASE = "63-BV-2026-0412"
NOBODY = 65534
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another account (setpriv)")


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return build_pki()


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory every account may enter: the socket and the clerk's files live here."""
    path = Path(tempfile.mkdtemp(prefix="poststelle-send-"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def make_config(tmp_path: Path, pki: TestPKI, sock: Path, group: str | None = None) -> Config:
    files = pki.write(tmp_path / "pki")
    chain = tmp_path / "chain.pem"
    chain.write_bytes(pki["recipient"].cert_pem() + pki.inter.cert_pem())
    corr = tmp_path / "corr"
    corr.mkdir(exist_ok=True)
    (corr / "alice.pem").write_bytes(pki["sender"].cert_pem())
    path = tmp_path / "poststelle.toml"
    group_line = f'group = "{group}"' if group else ""
    path.write_text(f"""[storage]
state_dir = "{tmp_path}/state"

[smime]
identities = [{{ key_file = "{files["recipient.key"]}", cert_file = "{chain}" }}]
trust_anchors = ["{files["root"]}"]

[outbound]
sign = "smime"
encrypt = "auto"
correspondents_dir = "{corr}"

[smtp]
host = "127.0.0.1"
port = 25
security = "plain"
from = "{AUTHORITY}"

[send_socket]
path = "{sock}"
{group_line}

[logging]
format = "json"
""")
    path.chmod(0o600)  # a clerk may not read it
    cfg = load_config(path)
    init_storage(cfg)
    return cfg


@pytest.fixture
def config(tmp_path: Path, pki: TestPKI, shared: Path) -> Config:
    return make_config(tmp_path, pki, shared / "send.sock")


@pytest.fixture
def listener(config: Config) -> Iterator[SendSocketListener]:
    lst = SendSocketListener(config)
    lst.start()
    yield lst
    lst.stop()


def clerk_send(sock: Path, *args: str, groups: str = "") -> subprocess.CompletedProcess[str]:
    """``poststelle send`` as ``nobody`` (primary group nogroup, ``groups`` supplementary)."""
    ids = [f"--reuid={NOBODY}", f"--regid={NOBODY}", f"--groups={groups}" if groups else "--clear-groups"]
    env = {"PATH": os.environ["PATH"], "HOME": "/nonexistent", "LANG": "C.UTF-8"}
    return subprocess.run(
        ["setpriv", *ids, *POSTSTELLE, "send", "--socket", str(sock), *args],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def queued(config: Config) -> list[tuple[str, str, bool, str]]:
    """(id, signed, encrypted, the queued event's actor) of every document in the outbox."""
    store = open_store(config)  # made here when nothing was ever queued
    try:
        out = []
        for rec in store.outbox_list():
            [event] = [e for e in store.select(EntryFilter(document=rec.id)) if e.event == "queued"]
            out.append((rec.id, rec.signed, rec.encrypted, event.actor))
        return out
    finally:
        store.close()


def test_a_letter_handed_to_the_socket_is_signed_encrypted_and_queued_in_the_callers_name(
    config: Config, listener: SendSocketListener, shared: Path
) -> None:
    doc = shared / "bescheid.pdf"
    doc.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 40)
    result = CliRunner().invoke(
        app, ["send", "--socket", str(listener.path), "--case", CASE, "--to", SENDER, "--subject", "Bescheid", str(doc)]
    )
    assert result.exit_code == 0, result.output
    outbound_id = result.stdout.strip().splitlines()[-1]  # the listener logs to stdout in this process
    [(oid, signed, encrypted, actor)] = queued(config)
    assert (oid, signed, encrypted) == (outbound_id, "smime", True)
    assert actor == f"cli:{account_name(os.getuid())}"


def test_json_answer_is_the_same_summary_a_local_send_prints(listener: SendSocketListener) -> None:
    result = CliRunner().invoke(
        app,
        [
            "send",
            "--socket",
            str(listener.path),
            "--case",
            CASE,
            "--to",
            SENDER,
            "--subject",
            "x",
            "--json",
            "--dry-run",
        ],
    )
    assert result.exit_code == 0, result.output
    import json

    summary = json.loads(result.stdout[result.stdout.index("{\n") :])
    assert summary["queued"] is False and summary["outbound_id"] is None and summary["signed"] == "smime"
    assert summary["keys"][0]["recipient"] == SENDER


@root_only
def test_an_account_outside_the_sockets_group_is_refused_by_the_file_system(
    tmp_path: Path, pki: TestPKI, shared: Path
) -> None:
    cfg = make_config(tmp_path, pki, shared / "send.sock", group="root")
    lst = SendSocketListener(cfg)
    lst.start()
    try:
        assert (lst.path.stat().st_mode & 0o777, lst.path.stat().st_gid) == (0o660, 0)
        proc = clerk_send(lst.path, "--case", CASE, "--to", SENDER, "--subject", "Bescheid")
    finally:
        lst.stop()
    assert proc.returncode == 1, proc.stderr
    assert "permission denied" in proc.stderr and "nothing was queued" in proc.stderr
    assert queued(cfg) == []


@root_only
def test_a_clerk_in_the_group_sends_a_file_only_they_can_read_and_is_named_by_the_kernel(
    tmp_path: Path, pki: TestPKI, shared: Path
) -> None:
    cfg = make_config(tmp_path, pki, shared / "send.sock", group="nogroup")
    clerks_file = shared / "antrag.txt"
    clerks_file.write_text("Antwort auf Ihren Antrag\n", encoding="utf-8")
    os.chown(clerks_file, NOBODY, NOBODY)
    clerks_file.chmod(0o600)
    lst = SendSocketListener(cfg)
    lst.start()
    try:
        assert lst.path.stat().st_gid == grp.getgrnam("nogroup").gr_gid
        proc = clerk_send(lst.path, "--case", CASE, "--to", SENDER, "--subject", "Antwort", str(clerks_file))
    finally:
        lst.stop()
    assert proc.returncode == 0, proc.stderr
    [(oid, signed, _, actor)] = queued(cfg)
    assert proc.stdout.strip() == oid and signed == "smime"
    assert actor == f"cli:{account_name(NOBODY)}"
    assert not lst.path.exists(), "the socket is removed at stop"


def test_refusals_come_back_with_their_reason_and_nothing_is_queued(
    config: Config, listener: SendSocketListener, shared: Path
) -> None:
    runner = CliRunner()
    base = ["send", "--socket", str(listener.path), "--to", SENDER, "--subject", "x"]
    bad_case = runner.invoke(app, [*base, "--case", "  "])
    assert bad_case.exit_code == 1 and "empty" in bad_case.output.lower()
    crlf = runner.invoke(app, [*base[:-1], "x\r\nBcc: evil@example.org", "--case", CASE])
    assert crlf.exit_code == 1
    forged = runner.invoke(app, [*base, "--case", CASE, "--from", "chef@example.org"])
    assert forged.exit_code == 1 and "authority's address" in forged.output
    missing = runner.invoke(app, [*base, "--case", CASE, str(shared / "missing.pdf")])
    assert missing.exit_code == 1 and "no such file" in missing.output
    assert queued(config) == []


def test_a_stale_socket_of_a_killed_daemon_is_replaced_and_a_plain_file_is_refused(
    tmp_path: Path, pki: TestPKI, shared: Path
) -> None:
    sock_path = shared / "send.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()  # bound, never listening: what a kill -9 leaves
    cfg = make_config(tmp_path, pki, sock_path)
    lst = SendSocketListener(cfg)
    lst.start()
    lst.stop()
    sock_path.write_text("not a socket")
    with pytest.raises(ConfigError, match=r"send_socket\.path.*not a socket"):
        SendSocketListener(cfg).start()
    assert sock_path.read_text() == "not a socket"


@pytest.mark.parametrize(
    ("lines", "problem"),
    [('path = "relative.sock"', "absolute path"), ('path = "/tmp/x.sock"\ngroup = "no-such-group-x"', "no such group")],
)
def test_a_bad_send_socket_section_stops_start_up_naming_the_key(tmp_path: Path, lines: str, problem: str) -> None:
    path = tmp_path / "poststelle.toml"
    path.write_text(f'[storage]\nstate_dir = "{tmp_path}/state"\n\n[send_socket]\n{lines}\n')
    with pytest.raises(ConfigError, match=f"send_socket.*{problem}"):
        load_config(path)


def test_the_daemon_serves_the_socket_while_it_runs_and_removes_it_at_sigterm(config: Config, shared: Path) -> None:
    assert config.send_socket is not None
    sock = config.send_socket.path
    env = {**os.environ, "POSTSTELLE_CONFIG": str(config.path)}
    proc = subprocess.Popen(
        [*POSTSTELLE, "run"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not sock.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sock.exists(), proc.stderr.read() if proc.poll() is not None and proc.stderr else "no socket"
        sent = subprocess.run(
            [*POSTSTELLE, "send", "--socket", str(sock), "--case", CASE, "--to", SENDER, "--subject", "Bescheid"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert sent.returncode == 0, sent.stderr
        assert [q[0] for q in queued(config)] == [sent.stdout.strip()]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    assert not sock.exists()


_requests = st.builds(
    SendRequest,
    case=st.text(max_size=30),
    to=st.lists(st.text(max_size=30), min_size=1, max_size=3).map(tuple),
    subject=st.text(max_size=60),
    body=st.text(max_size=200),
    cc=st.lists(st.text(max_size=20), max_size=2).map(tuple),
    bcc=st.lists(st.text(max_size=20), max_size=2).map(tuple),
    attachments=st.lists(st.tuples(st.text(max_size=20), st.binary(max_size=300)), max_size=3).map(tuple),
    demail=st.none() | st.fixed_dictionaries({"private": st.booleans()}),
    dry_run=st.booleans(),
)


def _reader(data: bytes):  # type: ignore[no-untyped-def]
    view = memoryview(data)
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        chunk = bytes(view[pos : pos + n])
        pos += len(chunk)
        return chunk

    return read


@settings(max_examples=200, deadline=None)
@given(req=_requests)
def test_every_request_reads_back_as_it_was_written(req: SendRequest) -> None:
    assert read_request(_reader(encode_request(req)), 10_000) == req


@settings(max_examples=300, deadline=None)
@given(tail=st.binary(max_size=400), cut=st.integers(min_value=0, max_value=500))
def test_any_bytes_are_read_as_a_request_or_refused_with_a_reason(tail: bytes, cut: int) -> None:
    for data in (MAGIC + tail, (MAGIC + tail)[:cut]):
        try:
            read_request(_reader(data), 1000)
        except WireError as exc:
            assert str(exc)


def test_files_beyond_the_message_limit_are_refused_before_they_are_read() -> None:
    req = SendRequest(case=CASE, to=(SENDER,), subject="x", attachments=(("big.pdf", b"x" * 2000),))
    with pytest.raises(WireError, match="more than the message limit"):
        read_request(_reader(encode_request(req)), 1000)
