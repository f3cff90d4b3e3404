"""The SMTP submission listener: real smtplib clients against the real aiosmtpd listener.

Only authenticated clerks get letters in; AUTH needs TLS off loopback; a letter needs a
case in its Subject and the authority as sender; 250 comes only after the spool has it.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import smtplib
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import POSTSTELLE, REPO
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import Config, load_config
from gateway.demo.certs import ca_certificate
from gateway.errors import ConfigError, PermanentError, TransientError
from gateway.outbound.submission import SubmissionListener
from gateway.outbound.users import (
    NAME_PATTERN,
    ScryptHash,
    UsersFile,
    format_users,
    hash_password,
    parse_users,
    write_users,
)
from gateway.statedir import init_storage

SENDER = "rathaus@hofheim.example"
PASSWORD = "korrekt Pferd Batterie"
FAST = 10  # scrypt ln for test users: the format and checks are the same, the cost is not

ROUTES = """
[[route]]
name = "Aktenzeichen"
subject = '(?i)\\bAz\\.?\\s*:?\\s*(?P<case>\\d{2}-[A-Z]{2}-\\d{4}-\\d{3,5})'
case = "{case}"
"""


def letter(subject: str = "Ihr Antrag, Az. 12-BV-2026-0042", sender: str = SENDER) -> bytes:
    return (
        f"From: Rathaus Hofheim <{sender}>\r\n"
        "To: buerger@example.net\r\n"
        f"Subject: {subject}\r\n"
        "Message-ID: <abc@hofheim.example>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "Sehr geehrte Damen und Herren,\r\n"
        ".ein Punkt am Zeilenanfang\r\n"
        "anbei der Bescheid.\r\n"
    ).encode()


@dataclass
class RecordingSpool:
    """Records every submit; ``fail`` makes the next submits raise."""

    calls: list[dict[str, object]] = field(default_factory=list)
    fail: Exception | None = None

    def submit(self, raw: bytes, *, mail_from: str, recipients: tuple[str, ...], case: str, submitted_by: str) -> str:
        if self.fail is not None:
            raise self.fail
        self.calls.append(
            {"raw": raw, "mail_from": mail_from, "recipients": recipients, "case": case, "user": submitted_by}
        )
        return f"out-{len(self.calls)}"


@dataclass(frozen=True)
class Tls:
    cert: Path
    key: Path
    ca: Path

    def client(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def non_loopback_ipv4() -> str | None:
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False).stdout
    for word in out.split():
        try:
            addr = ipaddress.ip_address(word)
        except ValueError:
            continue
        if addr.version == 4 and not addr.is_loopback:
            return word
    return None


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A CA and a server certificate for 127.0.0.1, localhost and the host's own address."""
    root = tmp_path_factory.mktemp("tls")
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    ca = ca_certificate(ca_key, ca_name, now - timedelta(1), now + timedelta(2))
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    other = non_loopback_ipv4()
    if other:
        names.append(x509.IPAddress(ipaddress.ip_address(other)))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(1))
        .not_valid_after(now + timedelta(2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    tls = Tls(root / "server.pem", root / "server.key", root / "ca.pem")
    tls.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tls.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    tls.key.chmod(0o600)
    tls.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return tls


def make_config(
    root: Path, *, tls: Tls | None = None, listen: str = "127.0.0.1:10587", max_bytes: int = 1_000_000
) -> Config:
    tls_lines = f'tls_cert = "{tls.cert}"\ntls_key = "{tls.key}"\n' if tls else ""
    text = (
        f'[storage]\nstate_dir = "{root}/state"\n\n[limits]\nmax_message_bytes = {max_bytes}\n'
        "[processing]\nanalysis_workers = 0\n"
        f"{ROUTES}\n"
        f'[submission]\nlisten = "{listen}"\nusers_file = "{root}/submission.users"\nsender = "{SENDER}"\n{tls_lines}'
    )
    path = root / "poststelle.toml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    init_storage(config)  # what `poststelle init` makes; the daemon creates no roots
    return config


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "submission.users"
    write_users(path, {"clerk": hash_password(PASSWORD.encode(), ln=FAST)})
    return path


Start = Callable[..., SubmissionListener]


@pytest.fixture
def start(tmp_path: Path, users_file: Path) -> Iterator[Start]:
    """Start listeners on a free port of the given host; all are stopped after the test."""
    started: list[SubmissionListener] = []

    def run(
        spool: RecordingSpool, *, host: str = "127.0.0.1", tls: Tls | None = None, max_bytes: int = 1_000_000
    ) -> SubmissionListener:
        cfg = make_config(tmp_path, tls=tls, listen=f"{host}:10587", max_bytes=max_bytes)
        listener = SubmissionListener(cfg, spool, listen=(host, 0))
        listener.start()
        started.append(listener)
        return listener

    yield run
    for listener in started:
        listener.stop()


def client(listener: SubmissionListener) -> smtplib.SMTP:
    host, port = listener.address
    smtp = smtplib.SMTP(host, port, timeout=30)
    smtp.ehlo("clerk-pc")
    return smtp


def test_an_authorised_clerk_submits_and_the_spool_has_the_exact_bytes_case_and_user(start: Start) -> None:
    spool = RecordingSpool()
    listener = start(spool)
    raw = letter()
    with client(listener) as smtp:
        smtp.login("clerk", PASSWORD)
        smtp.mail(SENDER)
        smtp.rcpt("buerger@example.net")
        code, text = smtp.data(raw)
    assert code == 250
    assert b"out-1" in text
    assert spool.calls == [
        {
            "raw": raw,
            "mail_from": SENDER,
            "recipients": ("buerger@example.net",),
            "case": "12-BV-2026-0042",
            "user": "clerk",
        }
    ]


def test_auth_login_mechanism_works_as_well_as_plain(start: Start) -> None:
    spool = RecordingSpool()
    listener = start(spool)
    with client(listener) as smtp:
        smtp.user, smtp.password = "clerk", PASSWORD
        code, _ = smtp.auth("LOGIN", smtp.auth_login)
        assert code == 235
        assert smtp.sendmail(SENDER, ["buerger@example.net"], letter()) == {}
    assert [c["user"] for c in spool.calls] == ["clerk"]


def test_mail_without_authentication_is_refused_530(start: Start) -> None:
    spool = RecordingSpool()
    listener = start(spool)
    with client(listener) as smtp:
        code, text = smtp.mail(SENDER)
    assert code == 530
    assert b"Authentication required" in text
    assert spool.calls == []


@pytest.mark.parametrize(("user", "password"), [("nobody", PASSWORD), ("clerk", "wrong"), ("clerk", "")])
def test_unknown_user_or_wrong_password_is_refused_535(start: Start, user: str, password: str) -> None:
    listener = start(RecordingSpool())
    with client(listener) as smtp, pytest.raises(smtplib.SMTPAuthenticationError) as info:
        smtp.login(user, password)
    assert info.value.smtp_code == 535


def test_a_user_removed_from_the_file_cannot_log_in_any_more_without_a_restart(start: Start, users_file: Path) -> None:
    listener = start(RecordingSpool())
    write_users(users_file, {"other": hash_password(b"x", ln=FAST)})
    with client(listener) as smtp, pytest.raises(smtplib.SMTPAuthenticationError) as info:
        smtp.login("clerk", PASSWORD)
    assert info.value.smtp_code == 535


def test_a_broken_users_file_lets_nobody_in_with_a_temporary_failure(start: Start, users_file: Path) -> None:
    listener = start(RecordingSpool())
    users_file.write_text("clerk:not-a-hash\n")
    with client(listener) as smtp, pytest.raises(smtplib.SMTPAuthenticationError) as info:
        smtp.login("clerk", PASSWORD)
    assert info.value.smtp_code == 454


def test_a_broken_users_file_stops_start_up(tmp_path: Path, users_file: Path) -> None:
    users_file.write_text("clerk:$scrypt$ln=30,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43 + "\n")
    with pytest.raises(ConfigError) as info:
        SubmissionListener(make_config(tmp_path), RecordingSpool(), listen=("127.0.0.1", 0))
    assert info.value.key == "line 1"


def test_auth_over_plain_tcp_on_a_non_loopback_address_is_refused(start: Start, tls: Tls) -> None:
    host = non_loopback_ipv4()
    if host is None:
        pytest.skip("this machine has no non-loopback IPv4 address (hostname -I)")
    spool = RecordingSpool()
    listener = start(spool, host=host, tls=tls)
    with client(listener) as smtp:
        assert "auth" not in smtp.esmtp_features  # not even offered before TLS
        code, text = smtp.docmd("AUTH", "PLAIN " + "AGNsZXJrAHdyb25n")
        assert (code, text[:3]) == (538, b"5.7")
        assert smtp.mail(SENDER)[0] == 530
    assert spool.calls == []


def test_starttls_then_auth_submits_on_a_non_loopback_address(start: Start, tls: Tls) -> None:
    host = non_loopback_ipv4()
    if host is None:
        pytest.skip("this machine has no non-loopback IPv4 address (hostname -I)")
    spool = RecordingSpool()
    listener = start(spool, host=host, tls=tls)
    with client(listener) as smtp:
        smtp.starttls(context=tls.client())
        smtp.ehlo("clerk-pc")
        smtp.login("clerk", PASSWORD)
        assert smtp.sendmail(SENDER, ["buerger@example.net"], letter()) == {}
    assert [c["case"] for c in spool.calls] == ["12-BV-2026-0042"]


def test_starttls_is_offered_and_works_on_loopback_when_configured(start: Start, tls: Tls) -> None:
    spool = RecordingSpool()
    listener = start(spool, tls=tls)
    with client(listener) as smtp:
        assert smtp.has_extn("starttls")
        smtp.starttls(context=tls.client())
        smtp.ehlo("clerk-pc")
        smtp.login("clerk", PASSWORD)
        assert smtp.sendmail(SENDER, ["buerger@example.net"], letter()) == {}
    assert len(spool.calls) == 1


def submit(listener: SubmissionListener, raw: bytes, *, mail_from: str = SENDER) -> tuple[int, bytes]:
    """Log in and send ``raw``; the server's reply to DATA (or to the first refused step)."""
    with client(listener) as smtp:
        smtp.login("clerk", PASSWORD)
        code, text = smtp.mail(mail_from)
        if code != 250:
            return code, text
        code, text = smtp.rcpt("buerger@example.net")
        if code != 250:
            return code, text
        return smtp.data(raw)


def test_a_letter_without_a_case_in_the_subject_is_refused_550_and_not_spooled(start: Start) -> None:
    spool = RecordingSpool()
    code, text = submit(start(spool), letter(subject="Ihr Antrag vom 3. Mai"))
    assert code == 550
    assert text.startswith(b"5.6.0 no case reference found in the Subject")
    assert spool.calls == []


def test_an_encoded_subject_is_decoded_before_routing(start: Start) -> None:
    spool = RecordingSpool()
    subject = "=?utf-8?q?Bescheid_=C3=BCber_Az=2E_12-BV-2026-0042?="
    assert submit(start(spool), letter(subject=subject))[0] == 250
    assert spool.calls[0]["case"] == "12-BV-2026-0042"


def test_a_foreign_envelope_sender_is_refused_553(start: Start) -> None:
    spool = RecordingSpool()
    code, text = submit(start(spool), letter(), mail_from="someone@else.example")
    assert code == 553
    assert SENDER.encode() in text
    assert spool.calls == []


def test_a_foreign_from_header_is_refused_550(start: Start) -> None:
    spool = RecordingSpool()
    code, text = submit(start(spool), letter(sender="someone@else.example"))
    assert code == 550
    assert text.startswith(b"5.7.1 the From header must be")
    assert spool.calls == []


def test_a_letter_over_the_size_limit_is_refused_552(start: Start) -> None:
    spool = RecordingSpool()
    listener = start(spool, max_bytes=2048)
    raw = letter() + (b"x" * 70 + b"\r\n") * 50
    with client(listener) as smtp:
        assert smtp.esmtp_features["size"] == "2048"
        smtp.login("clerk", PASSWORD)
        smtp.mail(SENDER)
        smtp.rcpt("buerger@example.net")
        code, _ = smtp.data(raw)
    assert code == 552
    assert spool.calls == []


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (PermanentError("recipient certificate unknown: buerger@example.net"), 554, b"5.0.0 recipient certificate"),
        (TransientError("outbox busy"), 451, b"4.3.0 outbox busy"),
        (RuntimeError("/secret/path exploded"), 451, b"4.3.0 the letter could not be queued"),
    ],
)
def test_spool_errors_become_permanent_or_temporary_smtp_refusals(
    start: Start, error: Exception, code: int, status: bytes
) -> None:
    spool = RecordingSpool(fail=error)
    reply = submit(start(spool), letter())
    assert reply[0] == code
    assert reply[1].startswith(status)
    assert b"secret" not in reply[1]


def test_a_listener_beyond_loopback_without_tls_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        make_config(tmp_path, listen="192.0.2.7:587")
    assert info.value.key == "submission.listen"
    assert "tls_cert" in info.value.problem


@pytest.mark.parametrize(
    ("listen", "problem"),
    [("10587", "expected host:port"), ("mail.example:25", "IP address"), ("127.0.0.1:70000", "between 1 and 65535")],
)
def test_a_bad_listen_address_is_a_config_error(tmp_path: Path, listen: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_config(tmp_path, listen=listen)
    assert info.value.key == "submission.listen"
    assert problem in info.value.problem


def test_a_certificate_without_its_key_is_a_config_error(tmp_path: Path, tls: Tls) -> None:
    wrong = tmp_path / "not-a-key.pem"
    shutil.copyfile(tls.ca, wrong)
    wrong.chmod(0o600)  # private, as a key file must be: the pair is what is wrong
    with pytest.raises(ConfigError) as info:
        make_config(tmp_path, tls=Tls(tls.cert, wrong, tls.ca))  # a certificate where the key belongs
    assert info.value.key == "submission.tls_cert"


def test_a_listener_on_ipv6_loopback_accepts_a_clerk(tmp_path: Path, users_file: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    cfg = make_config(tmp_path, listen="[::1]:10587")
    spool = RecordingSpool()
    try:
        listener = SubmissionListener(cfg, spool, listen=("::1", 0))
        listener.start()
    except OSError as exc:
        pytest.skip(f"cannot bind ::1: {exc}")
    try:
        assert submit(listener, letter())[0] == 250
    finally:
        listener.stop()


def test_the_daemon_serves_submissions_until_it_is_stopped(tmp_path: Path, users_file: Path) -> None:
    from gateway.service.daemon import Daemon

    spool = RecordingSpool()
    listener = SubmissionListener(make_config(tmp_path), spool, listen=("127.0.0.1", 0))
    daemon = Daemon(make_config(tmp_path), listeners=[listener])
    runner = threading.Thread(target=daemon.run)
    runner.start()
    try:
        assert listener.started.wait(60)
        assert submit(listener, letter())[0] == 250
    finally:
        daemon.request_stop()
        runner.join(60)
    assert not runner.is_alive()
    assert len(spool.calls) == 1
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(listener.address, timeout=10)


class BlockingSpool(RecordingSpool):
    """Holds every submit until ``release`` is set; ``entered`` says one has begun."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def submit(self, raw: bytes, *, mail_from: str, recipients: tuple[str, ...], case: str, submitted_by: str) -> str:
        self.entered.set()
        assert self.release.wait(60)
        return super().submit(raw, mail_from=mail_from, recipients=recipients, case=case, submitted_by=submitted_by)


def test_stopping_lets_a_letter_being_spooled_finish_and_get_its_250(tmp_path: Path, users_file: Path) -> None:
    spool = BlockingSpool()
    listener = SubmissionListener(make_config(tmp_path), spool, listen=("127.0.0.1", 0))
    listener.start()
    replies: list[tuple[int, bytes]] = []
    sender = threading.Thread(target=lambda: replies.append(submit(listener, letter())))
    sender.start()
    assert spool.entered.wait(60)
    stopper = threading.Thread(target=listener.stop)
    stopper.start()
    server = listener._server
    deadline = time.monotonic() + 60
    while server is not None and server.is_serving() and time.monotonic() < deadline:
        time.sleep(0.01)  # polling for the stop to have begun; the outcome does not depend on it
    spool.release.set()
    sender.join(60)
    stopper.join(60)
    assert replies and replies[0][0] == 250
    assert not stopper.is_alive()


def test_a_batch_run_does_not_start_the_listener(tmp_path: Path, users_file: Path) -> None:
    from gateway.service.daemon import Daemon

    listener = SubmissionListener(make_config(tmp_path), RecordingSpool(), listen=("127.0.0.1", 0))
    assert Daemon(make_config(tmp_path), once=True, listeners=[listener]).run().ok
    assert not listener.started.is_set()


def test_a_port_in_use_is_a_config_error_naming_the_listen_key(tmp_path: Path, users_file: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listener = SubmissionListener(make_config(tmp_path), RecordingSpool(), listen=taken.getsockname())
        with pytest.raises(ConfigError) as info:
            listener.start()
    assert info.value.key == "submission.listen"


def test_run_with_a_submission_section_but_nothing_to_send_with_stops_with_a_config_error(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    proc = cli(cfg.path, "run")
    assert proc.returncode == 2
    assert "submission: the submission listener queues letters for sending, which needs [outbound]" in proc.stderr


# --- the users file -------------------------------------------------------------------------

hashes_ = st.builds(
    ScryptHash,
    ln=st.integers(10, 17),
    r=st.integers(1, 8),
    p=st.integers(1, 4),
    salt=st.binary(min_size=12, max_size=32),
    key=st.binary(min_size=32, max_size=64),
)


@given(st.dictionaries(st.from_regex(NAME_PATTERN, fullmatch=True), hashes_, max_size=8))
def test_users_file_round_trips_through_its_text(users: dict[str, ScryptHash]) -> None:
    assert parse_users(format_users(users), source="users") == users


@given(st.text(max_size=300))
def test_users_file_parser_accepts_or_names_the_line_never_crashes(text: str) -> None:
    try:
        users = parse_users(text, source="users")
    except ConfigError as exc:
        assert exc.key.startswith("line ")
    else:
        assert all(isinstance(h, ScryptHash) for h in users.values())


@given(st.text(alphabet="abc:$scrypt=,0123456789ln rpABC+/\n#", max_size=200))
def test_users_file_parser_on_near_misses_accepts_or_names_the_line(text: str) -> None:
    try:
        parse_users(text, source="users")
    except ConfigError as exc:
        assert exc.key.startswith("line ")


def test_a_password_matches_only_its_own_hash() -> None:
    stored = hash_password(b"geheim", ln=FAST)
    assert stored.matches(b"geheim")
    assert not stored.matches(b"Geheim")
    assert hash_password(b"geheim", ln=FAST).salt != stored.salt


def test_duplicate_users_and_out_of_bounds_costs_are_refused_with_the_line() -> None:
    line = "clerk:" + hash_password(b"x", ln=FAST).encode()
    with pytest.raises(ConfigError, match="appears twice") as info:
        parse_users(f"# comment\n{line}\n\n{line}\n", source="users")
    assert info.value.key == "line 4"
    with pytest.raises(ConfigError, match="out of bounds"):
        parse_users(line.replace("ln=10", "ln=25"), source="users")


def test_the_users_file_is_written_with_mode_0640(tmp_path: Path) -> None:
    path = tmp_path / "users"
    write_users(path, {"clerk": hash_password(b"x", ln=FAST)})
    assert path.stat().st_mode & 0o777 == 0o640
    assert list(parse_users(path.read_text(), source="users")) == ["clerk"]


# --- poststelle submission-user ---------------------------------------------------------------


def cli(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*POSTSTELLE, *args, "--config", str(config)],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_submission_user_add_list_remove_manage_the_file_and_the_trail(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    users = tmp_path / "submission.users"
    added = cli(cfg.path, "submission-user", "add", "mueller", "--password-stdin", stdin="lang genug 1\n")
    assert added.returncode == 0, added.stderr
    assert users.stat().st_mode & 0o777 == 0o640
    assert UsersFile(users).authenticate("mueller", b"lang genug 1")
    assert not UsersFile(users).authenticate("mueller", b"lang genug 2")

    again = cli(cfg.path, "submission-user", "add", "mueller", "--password-stdin", stdin="lang genug 3\n")
    assert again.returncode == 1
    assert "exists" in again.stderr

    listed = cli(cfg.path, "submission-user", "list", "--json")
    assert json.loads(listed.stdout) == [{"user": "mueller", "hash": "scrypt ln=15,r=8,p=1"}]
    assert "$scrypt$" not in listed.stdout

    assert cli(cfg.path, "submission-user", "remove", "mueller").returncode == 0
    assert parse_users(users.read_text(), source="users") == {}

    trail = cli(cfg.path, "audit", "log", "--json")
    events = [(e["event"], e["details"].get("user")) for e in json.loads(trail.stdout)]
    assert ("submission-user-added", "mueller") in events
    assert ("submission-user-removed", "mueller") in events


def test_submission_user_add_refuses_a_short_password_and_a_bad_name(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    short = cli(cfg.path, "submission-user", "add", "mueller", "--password-stdin", stdin="kurz\n")
    assert short.returncode == 1
    assert "too short" in short.stderr
    bad = cli(cfg.path, "submission-user", "add", "bad:name", "--password-stdin", stdin="lang genug 1\n")
    assert bad.returncode == 1
    assert not (tmp_path / "submission.users").exists()


def test_submission_user_without_a_terminal_asks_for_password_stdin(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    proc = cli(cfg.path, "submission-user", "add", "mueller")
    assert proc.returncode == 1
    assert "--password-stdin" in proc.stderr


def test_the_example_submission_section_is_valid_once_uncommented(tmp_path: Path, tls: Tls) -> None:
    text = (REPO / "config" / "poststelle.example.toml").read_text(encoding="utf-8")
    start = text.index("# [submission]")
    block = text[start : text.find("\n\n", start) if "\n\n" in text[start:] else len(text)]
    lines = [line.removeprefix("# ") for line in block.splitlines() if line.startswith("# [") or "=" in line]
    section = "\n".join(lines).replace("/etc/poststelle/submission.users", str(tmp_path / "users"))
    section = section.replace("/etc/poststelle/submission.pem", str(tls.cert))
    section = section.replace("/etc/poststelle/submission.key", str(tls.key))
    path = tmp_path / "poststelle.toml"
    path.write_text(f'[storage]\nstate_dir = "{tmp_path}/state"\n{section}\n', encoding="utf-8")
    sub = load_config(path).submission
    assert sub is not None
    assert (sub.host, sub.port, sub.sender, sub.tls) == ("127.0.0.1", 10587, SENDER, True)


def test_check_reports_the_users_file_broken_empty_or_fine(tmp_path: Path) -> None:
    from gateway.service.health import submission_checks

    cfg = make_config(tmp_path)
    users = tmp_path / "submission.users"
    (empty,) = submission_checks(cfg)
    assert (empty.ok, empty.warning) == (True, True)
    users.write_text("clerk\n")
    (broken,) = submission_checks(cfg)
    assert not broken.ok
    assert broken.detail.startswith("line 1:")
    write_users(users, {"clerk": hash_password(b"x", ln=FAST)})
    (fine,) = submission_checks(cfg)
    assert (fine.ok, fine.warning) == (True, False)
    assert "1 user(s)" in fine.detail
