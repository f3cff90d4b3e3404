"""Recipients' certificates: EC key agreement, path validation with refusals named, and Bcc.

Oracles: real ``openssl cms -decrypt`` with the recipient's key, Poststelle's own inbound
analysis with that key as its identity, and the CMS RecipientInfos read back with
asn1crypto (who can open a message is who it names). Certificates are made in the run.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from asn1crypto import cms as a_cms
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from support.smime_pki import (
    DAY,
    NOW,
    RECIPIENT,
    SENDER,
    Party,
    TestPKI,
    _leaf,
    _rsa,
    body_of,
    build_pki,
    now,
    openssl,
    openssl_verify,
    pkcs7_mime,
    signed_message,
)
from support.smime_pki import headers as smime_headers
from typer.testing import CliRunner

from cli.main import app
from gateway.config import Config, load_config, parse_config
from gateway.inbound.decide import analyse
from gateway.outbound import outbox
from gateway.outbound.compose import ComposeError, Letter
from gateway.outbound.document import ComposedDocument
from gateway.outbound.envelope import enveloped_data
from gateway.outbound.handin import submitted_draft
from gateway.outbound.protect import OutboundKeys, _with_message_id, compose_document
from gateway.records.open import open_store
from gateway.records.store import EntryFilter, StoreError
from gateway.statedir import init_storage, outbox_dir
from gateway.unwrap import UnwrapContext
from gateway.unwrap.smime import cms as cms_lib

CASE = "1 K 1234/25"
EMAIL_EKU = [ExtendedKeyUsageOID.EMAIL_PROTECTION]
#: Keys for the property tests, made once: the properties are about the envelope, not the keys.
_CURVES = {"secp256r1": ec.SECP256R1(), "secp384r1": ec.SECP384R1(), "secp521r1": ec.SECP521R1()}
EC_KEYS = {
    name: _leaf(name, f"{name}@example.org", ec.generate_private_key(c), build_pki().inter, eku=EMAIL_EKU)
    for name, c in _CURVES.items()
}
RSA_KEY = build_pki()["sender"]


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return build_pki()


@pytest.fixture
def tmp() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="recipients-") as d:
        yield Path(d)


def config(
    tmp: Path,
    pki: TestPKI,
    parties: dict[str, Party],
    *,
    identity: Party | None = None,
    anchors: bool = True,
    chain: bool = True,
    **outbound: str,
) -> Config:
    """The authority (the PKI's ``recipient``) sending; ``parties`` are the correspondents directory."""
    files = pki.write(tmp / "pki")
    me = identity or pki["recipient"]
    (tmp / "me.key").write_bytes(me.key_pem())
    (tmp / "me.key").chmod(0o600)
    (tmp / "me.pem").write_bytes(me.cert_pem() + (pki.inter.cert_pem() if chain else b""))
    corr = tmp / "correspondents"
    corr.mkdir(exist_ok=True)
    for name, party in parties.items():
        (corr / f"{name}.pem").write_bytes(party.cert_pem())
    data = {
        "storage": {"state_dir": str(tmp / "state")},
        "limits": {"max_message_bytes": 2_000_000},
        "smime": {
            "identities": [{"key_file": str(tmp / "me.key"), "cert_file": str(tmp / "me.pem")}],
            "trust_anchors": [str(files["root"])] if anchors else [],
            "crl_files": [str(files["crl"])],
        },
        "outbound": {"sign": "smime", "encrypt": "auto", "correspondents_dir": str(corr), **outbound},
    }
    return parse_config(data, file=str(tmp / "poststelle.toml"))


def letter(tmp: Path, to: tuple[str, ...], **kw: tuple[str, ...]) -> Letter:
    return Letter(case=CASE, to=to, subject="Ihr Bauantrag", body="Guten Tag,\nanbei der Bescheid.\n", **kw)


def cms_decrypt(raw: bytes, cert: Path, key: Path) -> bytes:
    res = openssl("cms", "-decrypt", "-recip", str(cert), "-inkey", str(key), stdin=raw)
    assert res.returncode == 0, res.stderr.decode()
    return res.stdout


def compose(cfg: Config, letter_: Letter) -> ComposedDocument:
    keys = OutboundKeys.from_config(cfg)
    try:
        return compose_document(letter_, mail_from=RECIPIENT, config=cfg, keys=keys, at=now())
    finally:
        keys.close()


def ec_party(pki: TestPKI, address: str, curve: ec.EllipticCurve | None = None) -> Party:
    key = ec.generate_private_key(curve or ec.SECP256R1())
    return _leaf("EC " + address, address, key, pki.inter, eku=EMAIL_EKU)


def rsa_party(pki: TestPKI, address: str, slot: str) -> Party:
    return _leaf("RSA " + address, address, _rsa(2048, slot), pki.inter, eku=EMAIL_EKU)


def decrypt_with(tmp: Path, raw: bytes, party: Party) -> bytes:
    (tmp / "p.key").write_bytes(party.key_pem())
    (tmp / "p.pem").write_bytes(party.cert_pem())
    return cms_decrypt(raw, tmp / "p.pem", tmp / "p.key")


def recipient_serials(raw: bytes) -> set[int]:
    """The serial numbers the envelope's RecipientInfos name: everyone who can open it."""
    der = base64.b64decode(raw.split(b"\r\n\r\n", 1)[1])
    env = a_cms.ContentInfo.load(der)["content"]
    out: set[int] = set()
    for ri in env["recipient_infos"]:
        if ri.name == "ktri":
            out.add(ri.chosen["rid"].chosen["serial_number"].native)
        else:
            for rek in ri.chosen["recipient_encrypted_keys"]:
                out.add(rek["rid"].chosen["serial_number"].native)
    return out


def headers(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


# --- EC recipient certificates ----------------------------------------------------------------


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()], ids=lambda c: c.name)
def test_letter_to_an_ec_certificate_decrypts_with_openssl_and_the_recipients_ec_key(
    pki: TestPKI, tmp: Path, curve: ec.EllipticCurve
) -> None:
    bob = ec_party(pki, "bob@example.org", curve)
    cfg = config(tmp, pki, {"bob": bob}, encrypt="always")
    doc = compose(cfg, letter(tmp, to=("bob@example.org",)))
    assert doc.encrypted and doc.key_sources[0][1].startswith("smime correspondents_dir bob.pem")
    for party in (bob, pki["recipient"]):  # the correspondent, and the authority's archived copy
        inner = decrypt_with(tmp, doc.raw, party)
        assert inner.startswith(b"Content-Type: multipart/signed") and openssl_verify(pki, inner)


def test_poststelle_itself_opens_a_letter_encrypted_to_its_ec_identity(pki: TestPKI, tmp: Path) -> None:
    bob = ec_party(pki, "bob@example.org")
    doc = compose(config(tmp, pki, {"bob": bob}, encrypt="always"), letter(tmp, to=("bob@example.org",)))
    # Bob runs Poststelle too, with his EC certificate as the identity it decrypts with.
    bob_cfg = config(tmp / "bob", pki, {}, identity=bob)
    ctx = UnwrapContext.from_config(bob_cfg, collect_certificates=False, fetch_crls=False)
    try:
        v = analyse(doc.raw, bob_cfg, ctx, at=now()).verdict.to_json()
    finally:
        ctx.close()
    assert v["verdict"] == "verified", v
    assert v["signature"]["signer"] == RECIPIENT  # type: ignore[index]
    assert v["encryption"]["status"] not in ("none", None)  # type: ignore[index]


def test_ec_certificate_without_key_agreement_usage_is_refused(pki: TestPKI, tmp: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Sign only")]))
        .issuer_name(pki.inter.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + 30 * DAY)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("bob@example.org")]), critical=False)
        .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
        .sign(pki.inter.key, pki.inter.cert.signature_hash_algorithm)  # type: ignore[arg-type]
    )
    cfg = config(tmp, pki, {"bob": Party("Sign only", key, cert, "bob@example.org")})
    doc = compose(cfg, letter(tmp, to=("bob@example.org",)))
    assert not doc.encrypted
    assert doc.key_refusals == (
        f"certificate of bob@example.org refused: its key usage allows neither key "
        f"encipherment nor key agreement ({_source('bob', cert)})",
    )


# --- path validation: which certificate is refused, and why ------------------------------------


def _source(name: str, cert: x509.Certificate) -> str:
    return f"smime correspondents_dir {name}.pem sha256={hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()}"


def _wrong_anchor(pki: TestPKI) -> Party:
    return _leaf("Bob", "bob@example.org", _rsa(2048, "bob-rogue"), pki.rogue_root, eku=EMAIL_EKU)


def _wrong_email(pki: TestPKI) -> Party:
    """Bob's address in the subject's emailAddress only; the subjectAltName names someone else."""
    key = _rsa(2048, "bob-wrong")
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "Bob"),
                    x509.NameAttribute(NameOID.EMAIL_ADDRESS, "bob@example.org"),
                ]
            )
        )
        .issuer_name(pki.inter.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + 30 * DAY)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("eve@example.org")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage(EMAIL_EKU), critical=False)
        .sign(pki.inter.key, pki.inter.cert.signature_hash_algorithm)  # type: ignore[arg-type]
    )
    return Party("Bob", key, cert, "bob@example.org")


CASES = {
    # party builder, the recipient's address, the words recorded
    "expired": (lambda pki: pki["expired"], "expired@example.org", "expired"),
    "revoked": (lambda pki: pki["revoked"], "revoked@example.org", "revoked"),
    "wrong-anchor": (_wrong_anchor, "bob@example.org", "does not chain to the configured trust anchors"),
    "wrong-email": (_wrong_email, "bob@example.org", "its subjectAltName does not name the recipient"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_refused_certificate_is_named_with_its_reason_and_auto_sends_signed_only(
    pki: TestPKI, tmp: Path, case: str
) -> None:
    make, address, words = CASES[case]
    party = make(pki)
    doc = compose(config(tmp, pki, {case: party}), letter(tmp, to=(address,)))
    assert not doc.encrypted and doc.signed == "smime" and doc.key_sources == ()
    assert doc.key_refusals == (f"certificate of {address} refused: {words} ({_source(case, party.cert)})",)
    assert openssl_verify(pki, doc.raw)


@pytest.mark.parametrize("case", list(CASES))
def test_a_refused_certificate_with_encrypt_always_is_an_error_naming_recipient_and_reason(
    pki: TestPKI, tmp: Path, case: str
) -> None:
    make, address, words = CASES[case]
    with pytest.raises(ComposeError) as exc:
        compose(config(tmp, pki, {case: make(pki)}, encrypt="always"), letter(tmp, to=(address,)))
    assert exc.value.reason == "recipient-key-unknown"
    assert f"certificate of {address} refused: {words}" in exc.value.detail


def test_a_refused_old_certificate_beside_a_valid_one_is_not_reported(pki: TestPKI, tmp: Path) -> None:
    renewed = rsa_party(pki, "expired@example.org", "expired-renewed")
    doc = compose(config(tmp, pki, {"old": pki["expired"], "new": renewed}), letter(tmp, to=("expired@example.org",)))
    assert doc.encrypted and doc.key_refusals == ()
    assert doc.key_sources[0][1].startswith("smime correspondents_dir new.pem")


def test_without_trust_anchors_no_certificate_is_used(pki: TestPKI, tmp: Path) -> None:
    cfg = config(tmp, pki, {"sender": pki["sender"]}, anchors=False)
    doc = compose(cfg, letter(tmp, to=(SENDER,)))
    assert not doc.encrypted
    assert doc.key_refusals[0].startswith(f"certificate of {SENDER} refused: no [smime] trust_anchors")


def test_an_intermediate_ca_in_the_correspondents_directory_completes_the_path(pki: TestPKI, tmp: Path) -> None:
    without = compose(config(tmp / "a", pki, {"sender": pki["sender"]}, chain=False), letter(tmp, to=(SENDER,)))
    assert not without.encrypted and "does not chain" in without.key_refusals[0]
    with_ca = compose(
        config(tmp / "b", pki, {"sender": pki["sender"], "ca": pki.inter}, chain=False), letter(tmp, to=(SENDER,))
    )
    assert with_ca.encrypted and with_ca.key_refusals == ()


# --- Bcc ---------------------------------------------------------------------------------------


def test_bcc_is_in_no_header_and_gets_its_own_message_encrypted_to_it_and_the_authority_only(
    pki: TestPKI, tmp: Path
) -> None:
    carol = ec_party(pki, "carol@example.org")
    cfg = config(tmp, pki, {"sender": pki["sender"], "carol": carol}, encrypt="always")
    doc = compose(cfg, letter(tmp, to=(SENDER,), bcc=("carol@example.org",)))
    authority = pki["recipient"].cert.serial_number
    assert doc.recipients == (SENDER,) and doc.bcc == ("carol@example.org",)
    assert recipient_serials(doc.raw) == {pki["sender"].cert.serial_number, authority}
    (copy,) = doc.bcc_copies
    assert copy.recipients == ("carol@example.org",) and copy.encrypted and copy.bcc == ("carol@example.org",)
    assert recipient_serials(copy.raw) == {carol.cert.serial_number, authority}
    assert copy.message_id != doc.message_id
    for raw in (doc.raw, copy.raw):
        assert b"bcc:" not in headers(raw).lower() and b"carol" not in headers(raw)
        assert b"\r\nTo: " + SENDER.encode() in headers(raw)
    inner = decrypt_with(tmp, copy.raw, carol)
    assert openssl_verify(pki, inner)
    assert email.message_from_bytes(copy.raw, policy=email.policy.default)["message-id"] == f"<{copy.message_id}>"


def test_bcc_without_certificates_rides_in_the_envelope_of_the_signed_letter(pki: TestPKI, tmp: Path) -> None:
    doc = compose(
        config(tmp, pki, {}),
        letter(tmp, to=("a@example.org",), cc=("b@example.org",), bcc=("c@example.org", "a@example.org")),
    )
    assert doc.recipients == ("a@example.org", "b@example.org", "c@example.org")
    assert doc.bcc == ("c@example.org",) and doc.bcc_copies == () and not doc.encrypted
    assert b"c@example.org" not in doc.raw and b"bcc:" not in headers(doc.raw).lower()


def test_a_bcc_recipient_with_a_certificate_gets_an_encrypted_copy_of_a_letter_sent_signed_only(
    pki: TestPKI, tmp: Path
) -> None:
    doc = compose(
        config(tmp, pki, {"sender": pki["sender"]}),
        letter(tmp, to=("nocert@example.org",), bcc=(SENDER, "other@example.org")),
    )
    assert not doc.encrypted and doc.recipients == ("nocert@example.org", "other@example.org")
    (copy,) = doc.bcc_copies
    assert copy.recipients == (SENDER,) and copy.encrypted
    assert openssl_verify(pki, decrypt_with(tmp, copy.raw, pki["sender"]))


def test_bcc_without_certificate_under_encrypt_always_names_the_bcc_recipient(pki: TestPKI, tmp: Path) -> None:
    with pytest.raises(ComposeError) as exc:
        compose(
            config(tmp, pki, {"sender": pki["sender"]}, encrypt="always"),
            letter(tmp, to=(SENDER,), bcc=("hidden@example.org",)),
        )
    assert exc.value.reason == "recipient-key-unknown" and "hidden@example.org" in exc.value.detail


def test_envelope_recipients_a_mail_program_left_out_of_to_and_cc_are_bcc() -> None:
    d = submitted_draft(
        b"From: a@rathaus.example\r\nTo: Bob <B@example.org>\r\nCc: c@example.org,\r\n d@example.org\r\n"
        b"Subject: x Az. 1 K 1/25\r\n\r\nText\r\n",
        mail_from="a@rathaus.example",
        recipients=("b@example.org", "c@example.org", "d@example.org", "chef@rathaus.example"),
        case="1 K 1/25",
    )
    assert d.bcc == ("chef@rathaus.example",)


# --- what is recorded --------------------------------------------------------------------------


def test_a_refusal_and_the_bcc_are_in_the_outbox_record_and_the_queued_audit_entry(pki: TestPKI, tmp: Path) -> None:
    cfg = config(tmp, pki, {"expired": pki["expired"], "sender": pki["sender"]})
    init_storage(cfg)
    doc = compose(cfg, letter(tmp, to=("expired@example.org",), bcc=(SENDER,)))
    store = open_store(cfg)
    try:
        oid = outbox.enqueue(cfg, store, doc)
        rec = store.outbox_get(oid)
        (copy,) = [r for r in store.outbox_list() if r.id != oid]
        entries = {e.document: e.details for e in store.select(EntryFilter(events=("queued",)))}
    finally:
        store.close()
    refusal = f"certificate of expired@example.org refused: expired ({_source('expired', pki['expired'].cert)})"
    assert rec is not None and rec.key_refusals == [refusal] and rec.bcc == [SENDER] and not rec.encrypted
    assert copy.bcc_copy_of == oid and copy.bcc == [SENDER] and copy.encrypted and copy.key_refusals == []
    assert entries[oid]["key_refusals"] == [refusal] and entries[oid]["bcc"] == [SENDER]
    assert entries[copy.id]["bcc_copy_of"] == oid and entries[copy.id]["key_sources"][0][0] == SENDER


def test_a_failed_commit_queues_neither_the_letter_nor_its_bcc_copies(
    pki: TestPKI, tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(tmp, pki, {"sender": pki["sender"]})
    init_storage(cfg)
    doc = compose(cfg, letter(tmp, to=("nocert@example.org",), bcc=(SENDER,)))
    assert len(doc.bcc_copies) == 1
    store = open_store(cfg)

    def fail(*args: object, **kw: object) -> None:
        raise StoreError("disk full")

    monkeypatch.setattr(store, "outbox_enqueue", fail)
    try:
        with pytest.raises(StoreError):
            outbox.enqueue(cfg, store, doc)
        assert store.outbox_list() == []
    finally:
        store.close()
    assert list(outbox_dir(cfg).iterdir()) == []


@pytest.fixture
def cli_config(pki: TestPKI, tmp: Path) -> Path:
    """A config file with a relay (never reached here) and Alice's and an expired certificate."""
    files = pki.write(tmp / "pki")
    (tmp / "me.pem").write_bytes(pki["recipient"].cert_pem() + pki.inter.cert_pem())
    corr = tmp / "corr"
    corr.mkdir()
    (corr / "alice.pem").write_bytes(pki["sender"].cert_pem())
    (corr / "expired.pem").write_bytes(pki["expired"].cert_pem())
    path = tmp / "poststelle.toml"
    path.write_text(f"""[storage]
state_dir = "{tmp}/state"

[smime]
identities = [{{ key_file = "{files["recipient.key"]}", cert_file = "{tmp / "me.pem"}" }}]
trust_anchors = ["{files["root"]}"]

[outbound]
sign = "smime"
encrypt = "auto"
correspondents_dir = "{corr}"

[smtp]
host = "127.0.0.1"
port = 25
security = "plain"
from = "{RECIPIENT}"
""")
    init_storage(load_config(path))
    return path


def send_args(path: Path, *extra: str) -> list[str]:
    return [
        "send",
        "--config",
        str(path),
        "--case",
        CASE,
        "--to",
        "expired@example.org",
        "--bcc",
        SENDER,
        "--subject",
        "Bescheid",
        *extra,
    ]


def test_send_cli_takes_bcc_and_reports_its_copies_and_the_refusals(cli_config: Path) -> None:
    result = CliRunner().invoke(app, send_args(cli_config, "--dry-run", "--json"))
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["recipients"] == ["expired@example.org"] and out["encrypted"] is False and out["bcc"] == [SENDER]
    assert out["key_refusals"][0].startswith("certificate of expired@example.org refused: expired")
    (copy,) = out["bcc_copies"]
    assert copy["recipients"] == [SENDER] and copy["encrypted"] is True


def test_outbox_show_names_the_bcc_recipients_and_the_refused_certificate(cli_config: Path) -> None:
    sent = CliRunner().invoke(app, send_args(cli_config))
    assert sent.exit_code == 0, sent.output
    assert "certificate of expired@example.org refused: expired" in sent.stderr
    outbox_id = sent.stdout.strip()
    shown = CliRunner().invoke(app, ["outbox", "show", outbox_id, "--config", str(cli_config)])
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert any(line.startswith("bcc ") and line.endswith(SENDER) for line in lines)
    assert any(
        line.startswith("key_refusals ") and "certificate of expired@example.org refused: expired" in line
        for line in lines
    )


# --- properties --------------------------------------------------------------------------------

_FIELD = st.tuples(
    st.sampled_from(["To", "Cc", "Subject", "Message-ID", "Message-Id", "X-Note", "Date"]),
    st.lists(
        st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20), min_size=1, max_size=3
    ),
)


@given(st.lists(_FIELD, max_size=8))
def test_a_bcc_copy_has_exactly_one_message_id_and_every_other_field_unchanged(
    fields: list[tuple[str, list[str]]],
) -> None:
    def folded(name: str, parts: list[str]) -> bytes:  # the first part on the field's line, the rest folded
        return f"{name}: {parts[0]}\r\n".encode() + b"".join(b" " + p.encode() + b"\r\n" for p in parts[1:])

    out = _with_message_id(b"".join(folded(n, p) for n, p in fields), "new@rathaus.example")
    lines = out.split(b"\r\n")[:-1]
    assert [x for x in lines if x.lower().startswith(b"message-id:")] == [b"Message-ID: <new@rathaus.example>"]
    kept = b"".join(folded(n, p) for n, p in fields if n.lower() != "message-id")
    assert out == kept + b"Message-ID: <new@rathaus.example>\r\n"


@settings(max_examples=20, deadline=None)
@given(content=st.binary(max_size=300), curve=st.sampled_from(["secp256r1", "secp384r1", "secp521r1"]))
def test_every_recipient_of_an_enveloped_letter_recovers_the_exact_content(content: bytes, curve: str) -> None:
    ec_key = EC_KEYS[curve]
    der = enveloped_data(content, [ec_key.cert, RSA_KEY.cert])
    for party in (ec_key, RSA_KEY):
        opened = cms_lib.decrypt(der, [cms_lib.RecipientKey(party.key, party.cert)])
        assert opened.content == content


# --- the intake opens what other EC senders produce ----------------------------------------------


@pytest.mark.parametrize(
    ("curve", "options"),
    [
        ("secp256r1", ["-aes256"]),
        ("secp256r1", ["-aes128", "-keyopt", "ecdh_kdf_md:sha256"]),
        ("secp384r1", ["-aes256", "-keyopt", "ecdh_kdf_md:sha384"]),
    ],
)
def test_poststelle_opens_mail_openssl_encrypted_to_its_ec_identity(
    pki: TestPKI, tmp: Path, curve: str, options: list[str]
) -> None:
    bob = EC_KEYS[curve]
    (tmp / "bob.pem").write_bytes(bob.cert_pem())
    inner = body_of(signed_message(pki["sender"]))
    cipher, *keyopt = options  # -keyopt applies to the -recip before it
    res = openssl(
        "cms", "-encrypt", "-binary", "-outform", "DER", cipher, "-recip", str(tmp / "bob.pem"), *keyopt, stdin=inner
    )
    assert res.returncode == 0, res.stderr.decode()
    raw = pkcs7_mime(smime_headers(SENDER), res.stdout, "enveloped-data")
    bob_cfg = config(tmp, pki, {}, identity=bob)
    ctx = UnwrapContext.from_config(bob_cfg, collect_certificates=False, fetch_crls=False)
    try:
        v = analyse(raw, bob_cfg, ctx, at=now()).verdict.to_json()
    finally:
        ctx.close()
    assert v["encryption"]["status"] == "decrypted", v  # type: ignore[index]
    assert v["verdict"] == "verified" and v["signature"]["signer"] == SENDER  # type: ignore[index]
