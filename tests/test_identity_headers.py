"""Identity headers: a From a mail program may show differently is not verified; a Sender or
Reply-To other than the signer is a warning on a verified message, which a route may refuse.

Every message here is signed for real in the test run (S/MIME by the test PKI, OpenPGP by
gpg), because what is tested is what the whole unwrap makes of the headers around a valid
signature: the "ID attacks" of the Johnny research work only against a valid signature.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from conftest import ROUTES, Env, mailbox_entry, write_config
from support.pgp_keys import Keys, gateway_context, keys, pgp_signed, text_part
from support.pgp_keys import headers as pgp_headers
from support.smime_pki import (
    RECIPIENT,
    SENDER,
    TestPKI,
    make_context,
    mime_text,
    multipart_signed,
    now,
    run_unwrap,
    sign_detached_der,
)
from typer.testing import CliRunner

from cli.main import app
from gateway.config import load_config
from gateway.demo.dovecot import Dovecot
from gateway.errors import ConfigError
from gateway.inbound.decide import analyse
from gateway.records.open import open_store
from gateway.unwrap import UnwrapContext, UnwrapResult, unwrap
from gateway.unwrap.verdict import Verdict

MANAGER = "manager@example.org"
BOB = "bob@nachbar.test"

# Each shows (or may show, depending on the mail program) an address that is not the signer's.
ID_ATTACKS = {
    "address as display text before the angle address": f"{SENDER} <{MANAGER}>",
    "same without a space": f"{SENDER}<{MANAGER}>",
    "angle address first, bare address after": f"<{MANAGER}> {SENDER}",
    "quoted display name that is an address": f'"{MANAGER}" <{SENDER}>',
    "unquoted address with 'via' in the display name": f"{MANAGER} via <{SENDER}>",
    "quoted address with 'via' in the display name": f'"{MANAGER} via" <{SENDER}>',
    "encoded-word display name that is an address": f"=?utf-8?q?{MANAGER}?= <{SENDER}>",
    "full-width at sign in the display name": f"manager\uff20example.org <{SENDER}>",
    "address in a comment": f"{SENDER} ({MANAGER})",
}

# Display names as real senders write them: these stay verified.
CLEAR_FROMS = [
    f"Alice Example <{SENDER}>",
    f"Dr. Alice Example <{SENDER}>",  # an unquoted period is obsolete syntax, not ambiguous
    f'"Example, Alice" <{SENDER}>',
    f"=?utf-8?q?Alice_M=C3=BCller?= <{SENDER}>",
    f'"{SENDER}" <{SENDER}>',  # Outlook's habit: the display name is the address itself
    f"{SENDER} (Alice)",
    SENDER,
]


def smime_message(
    pki: TestPKI,
    from_: str,
    *,
    extra: str = "",
    inner: bytes | None = None,
    signer: str = "sender",
    subject: str = "Antrag 2024-17",
) -> bytes:
    inner = inner if inner is not None else mime_text()
    head = (
        f"From: {from_}\r\nTo: {RECIPIENT}\r\nSubject: {subject}\r\nDate: {format_datetime(now())}\r\n"
        f"Message-ID: <ident@example.org>\r\nMIME-Version: 1.0\r\n{extra}"
    )
    return multipart_signed(head.encode(), inner, sign_detached_der(pki[signer], inner))


@pytest.fixture(scope="module")
def smime_ctx(pki: TestPKI) -> Any:
    return make_context(pki)


def smime(pki: TestPKI, ctx: Any, from_: str, **kw: Any) -> Verdict:
    return run_unwrap(smime_message(pki, from_, **kw), ctx).verdict


# --- From: one clear address ----------------------------------------------------------------


@pytest.mark.parametrize("from_", ID_ATTACKS.values(), ids=ID_ATTACKS.keys())
def test_smime_signed_message_whose_from_shows_another_address_is_not_verified(
    pki: TestPKI, smime_ctx: Any, from_: str
) -> None:
    v = smime(pki, smime_ctx, from_)
    assert v.verdict == "unverified"
    assert v.reasons == ("from-ambiguous",)
    assert v.from_addr is None
    assert v.signature.status == "valid"


@pytest.mark.parametrize("from_", CLEAR_FROMS)
def test_smime_signed_message_with_an_ordinary_display_name_stays_verified(
    pki: TestPKI, smime_ctx: Any, from_: str
) -> None:
    v = smime(pki, smime_ctx, from_)
    assert v.verified, v.reasons
    assert v.from_addr == SENDER and v.warnings == ()


def test_from_with_parser_defects_is_ambiguous_even_when_every_address_is_the_signer(
    pki: TestPKI, smime_ctx: Any
) -> None:
    """``a <a>`` parses only with defects: which part a program shows is not ours to guess."""
    assert smime(pki, smime_ctx, f"{SENDER} <{SENDER}>").reasons == ("from-ambiguous",)
    assert smime(pki, smime_ctx, f"Alice <{SENDER}").reasons == ("from-ambiguous",)  # no closing '>'


def test_from_address_with_an_invisible_character_is_ambiguous(pki: TestPKI, smime_ctx: Any) -> None:
    assert smime(pki, smime_ctx, "Alice <alice@exa\u200bmple.org>").reasons == ("from-ambiguous",)


# --- the protected (inner) headers ------------------------------------------------------------


def inner_entity(headers: str) -> bytes:
    return headers.encode() + mime_text()


@pytest.mark.parametrize("inner_from", [f"{SENDER} <{MANAGER}>", f'"{MANAGER}" <{SENDER}>'])
def test_ambiguous_protected_from_is_not_verified(pki: TestPKI, smime_ctx: Any, inner_from: str) -> None:
    """Clients that understand protected headers show the inner From instead of the outer one."""
    v = smime(pki, smime_ctx, f"Alice <{SENDER}>", inner=inner_entity(f"From: {inner_from}\r\n"))
    assert v.verdict == "unverified"
    assert v.reasons == ("protected-from-ambiguous",)


def test_clear_protected_from_that_is_the_signer_stays_verified(pki: TestPKI, smime_ctx: Any) -> None:
    v = smime(pki, smime_ctx, f"Alice <{SENDER}>", inner=inner_entity(f"From: Dr. Alice <{SENDER}>\r\n"))
    assert v.verified, v.reasons


# --- Sender and Reply-To: warnings on a verified message ------------------------------------


@pytest.mark.parametrize(
    ("extra", "warnings"),
    [
        ("Sender: sekretariat@example.org\r\n", ("sender-not-signer",)),
        ("Reply-To: eve@example.net\r\n", ("reply-to-not-signer",)),
        (f"Reply-To: {SENDER}, eve@example.net\r\n", ("reply-to-not-signer",)),
        (f'Reply-To: "eve@example.net" <{SENDER}>\r\n', ("reply-to-not-signer",)),  # shows another address
        (
            "Reply-To: eve@example.net\r\nSender: sekretariat@example.org\r\n",
            ("sender-not-signer", "reply-to-not-signer"),
        ),
        (f"Sender: {SENDER}\r\nReply-To: Alice <alice@EXAMPLE.org>\r\n", ()),
    ],
)
def test_sender_or_reply_to_other_than_the_signer_is_a_warning_not_a_reason(
    pki: TestPKI, smime_ctx: Any, extra: str, warnings: tuple[str, ...]
) -> None:
    v = smime(pki, smime_ctx, f"Alice <{SENDER}>", extra=extra)
    assert v.verified, v.reasons
    assert v.warnings == warnings
    assert v.to_json()["warnings"] == list(warnings)


def test_protected_reply_to_other_than_the_signer_is_a_warning(pki: TestPKI, smime_ctx: Any) -> None:
    inner = inner_entity(f"From: Alice <{SENDER}>\r\nReply-To: eve@example.net\r\n")
    v = smime(pki, smime_ctx, f"Alice <{SENDER}>", inner=inner)
    assert v.verified, v.reasons
    assert v.warnings == ("reply-to-not-signer",)


def test_unverified_message_carries_no_warnings(pki: TestPKI, smime_ctx: Any) -> None:
    """Warnings compare with a verified signer; without one the reasons already say enough."""
    v = smime(pki, smime_ctx, f"Alice <{SENDER}>", extra="Reply-To: eve@example.net\r\n", signer="rogue")
    assert v.verdict == "unverified" and v.warnings == ()


def test_verdict_json_always_has_a_warnings_list() -> None:
    assert Verdict("unverified").to_json()["warnings"] == []


# --- OpenPGP: the same rules ------------------------------------------------------------------


@pytest.fixture(scope="module")
def pgp() -> Iterator[tuple[Keys, UnwrapContext]]:
    k = keys()
    root = Path(tempfile.mkdtemp(prefix="pid-", dir="/tmp"))
    ctx, handler = gateway_context(
        root,
        secrets=[k.world.secret(k.us)],
        correspondents=[k.world.public(k.bob)],
        pinned=[(k.bob.email, k.bob.fingerprint)],
    )
    yield k, ctx
    handler.close()


def pgp_run(pgp: tuple[Keys, UnwrapContext], frm: str, *, extra: str = "", inner: bytes | None = None) -> UnwrapResult:
    k, ctx = pgp
    raw = pgp_signed(k.world, k.bob, inner if inner is not None else text_part(), pgp_headers(frm, extra=extra))
    return unwrap(raw, ctx, at=datetime.now(UTC))


@pytest.mark.parametrize(
    "frm", [f"{BOB} <manager@nachbar.test>", f'"manager@nachbar.test" <{BOB}>', f"manager@nachbar.test via <{BOB}>"]
)
def test_openpgp_signed_message_whose_from_shows_another_address_is_not_verified(
    pgp: tuple[Keys, UnwrapContext], frm: str
) -> None:
    v = pgp_run(pgp, frm).verdict
    assert v.verdict == "unverified"
    assert v.reasons == ("from-ambiguous",)
    assert v.signature.status == "valid"


def test_openpgp_reply_to_other_than_the_signer_is_a_warning(pgp: tuple[Keys, UnwrapContext]) -> None:
    v = pgp_run(pgp, f"Bob <{BOB}>", extra="Reply-To: eve@example.net\r\n").verdict
    assert v.verified, v.reasons
    assert v.warnings == ("reply-to-not-signer",)


def test_openpgp_ambiguous_protected_from_is_not_verified(pgp: tuple[Keys, UnwrapContext]) -> None:
    inner = f"From: {BOB} <manager@nachbar.test>\r\nSender: x@nachbar.test\r\n".encode() + text_part()
    v = pgp_run(pgp, f"Bob <{BOB}>", inner=inner).verdict
    assert v.reasons == ("protected-from-ambiguous",)


# --- the route policy -----------------------------------------------------------------------


def policy_config(pki: TestPKI, root: Path, strict: bool | str) -> Path:
    files = pki.write(root / "pki")
    value = strict if isinstance(strict, str) else ("true" if strict else "false")
    path = root / "poststelle.toml"
    path.write_text(
        f"""[storage]
state_dir = "{root}/state"

[[route]]
name = "applications"
subject = '(?i)\\bAntrag\\s+(?P<case>\\d{{4}}-\\d+)'
case = "{{case}}"
require_clean_identity = {value}

[smime]
identities = [{{ key_file = "{files["recipient.key"]}", cert_file = "{files["recipient.pem"]}" }}]
trust_anchors = ["{files["root"]}"]
crl_files = ["{files["crl"]}"]
""",
        encoding="utf-8",
    )
    return path


def test_route_requiring_clean_identity_quarantines_verified_message_with_warnings(
    pki: TestPKI, tmp_path: Path
) -> None:
    cfg = load_config(policy_config(pki, tmp_path, strict=True))
    ctx = UnwrapContext.from_config(cfg, collect_certificates=False)
    plan = analyse(smime_message(pki, f"Alice <{SENDER}>", extra="Reply-To: eve@example.net\r\n"), cfg, ctx, at=now())
    assert plan.target == "quarantined"
    assert plan.reasons == ["policy-clean-identity-required"]
    assert plan.verdict.warnings == ("reply-to-not-signer",)
    clean = analyse(smime_message(pki, f"Alice <{SENDER}>"), cfg, ctx, at=now())
    assert clean.target == "stored" and clean.verdict.verified


def test_route_without_the_option_files_the_verified_message_with_its_warnings(pki: TestPKI, tmp_path: Path) -> None:
    cfg = load_config(policy_config(pki, tmp_path, strict=False))
    ctx = UnwrapContext.from_config(cfg, collect_certificates=False)
    plan = analyse(smime_message(pki, f"Alice <{SENDER}>", extra="Sender: x@example.org\r\n"), cfg, ctx, at=now())
    assert plan.target == "stored" and plan.verdict.verified
    assert plan.verdict.warnings == ("sender-not-signer",)


def test_require_clean_identity_must_be_a_boolean(pki: TestPKI, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="require_clean_identity"):
        load_config(policy_config(pki, tmp_path, strict='"yes"'))


def test_require_clean_identity_defaults_to_false(pki: TestPKI, tmp_path: Path) -> None:
    path = policy_config(pki, tmp_path, strict=False)
    path.write_text(path.read_text().replace("require_clean_identity = false\n", ""))
    assert load_config(path).routes[0].require_clean_identity is False


# --- where a clerk sees the warnings: through a real Dovecot and the CLI ---------------------

COURT = "Ladung Az. 1 K 1234/25"


def gateway_env(dovecot: Dovecot, root: Path, user: str, pki: TestPKI, routes: str = ROUTES) -> Env:
    files = pki.write(root / "pki")
    smime_toml = f"""
[smime]
identities = [{{ key_file = "{files["recipient.key"]}", cert_file = "{files["recipient.pem"]}" }}]
trust_anchors = ["{files["root"]}"]
crl_files = ["{files["crl"]}"]
"""
    config = write_config(root, [mailbox_entry(dovecot, user, root)], extra=smime_toml, routes=routes)
    return Env(dovecot, user, root, config)


def test_warnings_reach_the_manifest_the_ledger_the_audit_trail_and_the_report(
    dovecot: Dovecot, tmp_path: Path, pki: TestPKI, new_user: Callable[[], str]
) -> None:
    env = gateway_env(dovecot, tmp_path, new_user(), pki)
    env.append(smime_message(pki, f"Alice <{SENDER}>", extra="Reply-To: eve@example.net\r\n", subject=COURT))
    env.cli("run", "--once", check=True)

    [entry] = env.entries()
    assert json.loads((entry / "verification.json").read_text())["warnings"] == ["reply-to-not-signer"]
    assert json.loads((entry / "manifest.json").read_text())["warnings"] == ["reply-to-not-signer"]
    shown = json.loads(env.cli("cases", "show", "VG 1 K 1234/25", "--json", check=True).stdout)
    assert shown["messages"][0]["warnings"] == ["reply-to-not-signer"]
    assert "reply-to-not-signer" in env.cli("cases", "show", "VG 1 K 1234/25", check=True).stdout
    store = open_store(env.config, readonly=True)
    try:
        verdicts = [e for e in store.entries() if e.event == "verdict"]
    finally:
        store.close()
    assert [e.details["warnings"] for e in verdicts] == [["reply-to-not-signer"]]
    report = tmp_path / "report.html"
    env.cli("audit", "export", "--format", "html", "-o", str(report), check=True)
    assert "Warning:</b> replies would go to an address other than the signer" in report.read_text()


def test_strict_route_sends_a_verified_message_with_warnings_to_quarantine(
    dovecot: Dovecot, tmp_path: Path, pki: TestPKI, new_user: Callable[[], str]
) -> None:
    routes = ROUTES.replace('case = "VG {case}"', 'case = "VG {case}"\nrequire_clean_identity = true')
    env = gateway_env(dovecot, tmp_path, new_user(), pki, routes=routes)
    env.append(smime_message(pki, f"Alice <{SENDER}>", extra="Sender: x@example.org\r\n", subject=COURT))
    env.cli("run", "--once", check=True)
    assert env.entries() == []
    [q] = env.quarantined()
    assert json.loads((q / "reason.json").read_text())["reasons"] == ["policy-clean-identity-required"]
    verdict = json.loads((q / "verification.json").read_text())
    assert verdict["warnings"] == ["sender-not-signer"]
    assert "policy-clean-identity-required" in verdict["reasons"]


def test_inspect_shows_warnings_in_the_table_and_in_json(pki: TestPKI, tmp_path: Path) -> None:
    config = policy_config(pki, tmp_path, strict=False)
    mail = tmp_path / "reply-to.eml"
    mail.write_bytes(smime_message(pki, f"Alice <{SENDER}>", extra="Reply-To: eve@example.net\r\n"))
    runner = CliRunner()
    saved = structlog.get_config()
    try:
        as_json = runner.invoke(app, ["inspect", "--json", "--config", str(config), str(mail)])
        table = runner.invoke(app, ["inspect", "--config", str(config), str(mail)])
    finally:
        structlog.configure(**saved)
    assert as_json.exit_code == 0, as_json.output
    row = json.loads(as_json.stdout.splitlines()[0])
    assert row["verdict"] == "verified" and row["warnings"] == ["reply-to-not-signer"]
    assert "WARNINGS" in table.stdout and "reply-to-not-signer" in table.stdout
