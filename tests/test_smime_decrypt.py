"""Decryption: EnvelopedData / AuthEnvelopedData from cryptography and openssl, layering, keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.smime_pki import (
    RECIPIENT,
    SENDER,
    TestPKI,
    body_of,
    build_pki,
    encrypt_der,
    encrypted_message,
    headers,
    make_context,
    mime_text,
    openssl,
    pkcs7_mime,
    sign_opaque_der,
    signed_message,
)
from support.smime_pki import (
    run_unwrap as run,
)

from gateway.errors import ConfigError
from gateway.unwrap import UnwrapContext


@pytest.fixture(scope="module")
def ctx(pki: TestPKI) -> Any:
    return make_context(pki, identities=("recipient2", "recipient"))


def _openssl_encrypt(pki: TestPKI, tmp: Path, inner: bytes, *opts: str) -> bytes:
    files = pki.write(tmp)
    (tmp / "in.txt").write_bytes(inner)
    cipher = [o for o in opts if o.startswith("-") and o != "-keyopt"]
    keyopts = [o for o in opts if o not in cipher]
    res = openssl(
        "cms",
        "-encrypt",
        "-in",
        str(tmp / "in.txt"),
        "-binary",
        *cipher,
        "-recip",
        str(files["recipient.pem"]),
        *keyopts,
    )
    assert res.returncode == 0, res.stderr
    return headers() + res.stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_enveloped_message_is_decrypted_with_audit_events(pki: TestPKI, ctx: Any) -> None:
    inner = mime_text(subject="Aktenzeichen 4711")
    res = run(encrypted_message([pki["recipient"].cert], inner), ctx)
    v = res.verdict
    assert v.encryption.status == "decrypted" and v.encryption.scheme == "smime"
    assert v.verdict == "unverified" and v.reasons == ("no-signature",)
    assert res.content == inner
    assert res.inner_subject == "Aktenzeichen 4711" and v.subject_source == "protected"
    types = [e.type for e in res.events]
    assert types == ["key-used", "decrypted"]
    dumped = json.dumps([e.details for e in res.events])
    assert "PRIVATE" not in dumped
    key_pem = pki["recipient"].key_pem().decode()
    assert key_pem.splitlines()[1][:20] not in dumped


@pytest.mark.parametrize(
    "opts",
    [
        ("-aes128",),
        ("-aes192",),
        ("-aes256",),
        ("-aes256", "-keyopt", "rsa_padding_mode:oaep"),
        ("-aes256", "-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256"),
        ("-aes-256-gcm",),
        ("-aes-128-gcm", "-keyopt", "rsa_padding_mode:oaep"),
    ],
    ids=lambda o: " ".join(o),
)
def test_openssl_encrypted_message_is_decrypted(pki: TestPKI, ctx: Any, tmp_path: Path, opts: tuple[str, ...]) -> None:
    inner = mime_text()
    res = run(_openssl_encrypt(pki, tmp_path, inner, *opts), ctx)
    assert res.verdict.encryption.status == "decrypted", res.verdict.reasons
    assert res.content == inner
    decrypted = next(e for e in res.events if e.type == "decrypted").details
    if "gcm" in opts[0]:
        assert decrypted["cms_type"] == "authenticated_enveloped_data"


def test_message_for_someone_else_is_quarantined_without_content(pki: TestPKI, ctx: Any) -> None:
    raw = encrypted_message([pki["sender"].cert], mime_text())
    res = run(raw, ctx)
    assert res.verdict.verdict == "quarantined"
    assert res.quarantine_reason == "decryption-failed-no-key"
    assert res.verdict.encryption.status == "failed"
    assert res.content == raw
    assert [e.type for e in res.events] == ["decryption-failed"]


def test_truncated_envelope_is_quarantined(pki: TestPKI, ctx: Any) -> None:
    """AES-CBC has no integrity: only structural damage is detectable (GCM below)."""
    der = encrypt_der([pki["recipient"].cert], mime_text() * 20)
    res = run(pkcs7_mime(headers(), der[: len(der) - 37], "enveloped-data"), ctx)
    assert res.verdict.verdict == "quarantined"
    assert res.quarantine_reason == "decryption-failed-corrupt"


def test_gcm_tag_mismatch_is_quarantined(pki: TestPKI, ctx: Any, tmp_path: Path) -> None:
    raw = _openssl_encrypt(pki, tmp_path, mime_text() * 5, "-aes-256-gcm")
    head, _, body = raw.partition(b"\r\n\r\n")
    import base64

    der = bytearray(base64.b64decode(body))
    der[-20] ^= 1  # inside the MAC
    res = run(head + b"\r\n\r\n" + base64.encodebytes(bytes(der)), ctx)
    assert res.quarantine_reason == "decryption-failed-corrupt"


def test_unsupported_content_cipher_is_quarantined(pki: TestPKI, ctx: Any, tmp_path: Path) -> None:
    res = run(_openssl_encrypt(pki, tmp_path, mime_text(), "-camellia256"), ctx)
    assert res.quarantine_reason == "decryption-failed-unsupported-algorithm"


def test_without_smime_config_encrypted_mail_is_quarantined(pki: TestPKI) -> None:
    from gateway.unwrap.smime.handler import SmimeHandler

    ctx = UnwrapContext([SmimeHandler.from_config(None, config_file="x.toml")])
    res = run(encrypted_message([pki["recipient"].cert], mime_text()), ctx)
    assert res.verdict.verdict == "quarantined"
    assert res.quarantine_reason == "decryption-failed-no-key"


def test_signed_then_encrypted_is_decrypted_and_verified(pki: TestPKI, ctx: Any) -> None:
    inner = mime_text(subject="Geschützt")
    signed = body_of(signed_message(pki["sender"], inner))
    res = run(encrypted_message([pki["recipient"].cert], signed), ctx)
    v = res.verdict
    assert v.verdict == "verified", v.reasons
    assert v.encryption.status == "decrypted"
    assert res.content == inner
    assert res.inner_subject == "Geschützt"
    assert [e.type for e in res.events] == ["key-used", "decrypted", "signature-checked"]


def test_encrypted_then_signed_covers_only_ciphertext(pki: TestPKI, ctx: Any) -> None:
    enveloped = body_of(encrypted_message([pki["recipient"].cert], mime_text()))
    raw = signed_message(pki["sender"], enveloped)
    res = run(raw, ctx)
    assert res.verdict.encryption.status == "decrypted"
    assert res.verdict.signature.status == "valid"
    assert not res.verdict.signature.covers_whole_message
    assert res.verdict.verdict == "unverified"
    assert "signature-over-ciphertext" in res.verdict.reasons


def test_triple_wrapped_message_is_verified_by_inner_signature(pki: TestPKI, ctx: Any) -> None:
    inner = mime_text()
    signed = body_of(signed_message(pki["sender"], inner))
    enveloped = body_of(encrypted_message([pki["recipient"].cert], signed))
    outer = pkcs7_mime(headers(), sign_opaque_der(pki["sender"], enveloped), "signed-data")
    res = run(outer, ctx)
    assert res.verdict.verdict == "verified", res.verdict.reasons
    assert res.content == inner


def test_second_identity_decrypts_after_key_rollover(pki: TestPKI) -> None:
    ctx = make_context(pki, identities=("recipient2", "recipient"))
    for party in ("recipient", "recipient2"):
        res = run(encrypted_message([pki[party].cert], mime_text()), ctx)
        assert res.verdict.encryption.status == "decrypted"
        used = next(e for e in res.events if e.type == "key-used").details
        from gateway.unwrap.smime.handler import cert_sha256

        assert used["certificate_sha256"] == cert_sha256(pki[party].cert)


# --- configuration ---------------------------------------------------------------------


def _config(tmp: Path, smime: dict[str, Any] | None) -> Any:
    from gateway.config import parse_config

    data: dict[str, Any] = {"storage": {"state_dir": str(tmp / "state")}}
    if smime is not None:
        data["smime"] = smime
    return parse_config(data, file="poststelle.toml")


def test_context_from_config_loads_pem_pkcs12_anchor_dirs_and_crls(pki: TestPKI, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

    files = pki.write(tmp_path / "pki")
    p12 = tmp_path / "old.p12"
    p12.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"old",
            pki["recipient2"].key,
            pki["recipient2"].cert,  # type: ignore[arg-type]
            [pki.root.cert],
            BestAvailableEncryption(b"geheim"),
        )
    )
    (tmp_path / "old.pass").write_text("geheim\n")
    for private in (p12, tmp_path / "old.pass"):
        private.chmod(0o600)
    anchors = tmp_path / "anchors"
    anchors.mkdir()
    (anchors / "root.pem").write_bytes(pki.root.cert_pem())
    cfg = _config(
        tmp_path,
        {
            "identities": [
                {"key_file": str(files["recipient.key"]), "cert_file": str(files["recipient.pem"])},
                {"pkcs12_file": str(p12), "password_file": str(tmp_path / "old.pass")},
            ],
            "trust_anchors": [str(anchors)],
            "crl_files": [str(files["crl"]), str(files["root_crl"])],
        },
    )
    ctx = UnwrapContext.from_config(cfg, collect_certificates=False)
    signed = body_of(signed_message(pki["sender"]))
    for party in ("recipient", "recipient2"):
        res = run(encrypted_message([pki[party].cert], signed), ctx)
        assert res.verdict.verdict == "verified", res.verdict.reasons
    revoked = run(signed_message(pki["revoked"]), ctx)
    assert "cert-revoked" in revoked.verdict.reasons


def test_config_without_smime_section_builds_a_fail_closed_context(tmp_path: Path) -> None:
    ctx = UnwrapContext.from_config(_config(tmp_path, None))
    pki = build_pki()
    res = run(encrypted_message([pki["recipient"].cert], mime_text()), ctx)
    assert res.verdict.verdict == "quarantined"


@pytest.mark.parametrize("problem", ["mismatched-key", "not-a-cert", "empty-anchor-dir", "bad-p12"])
def test_unusable_key_material_is_a_config_error(pki: TestPKI, tmp_path: Path, problem: str) -> None:
    files = pki.write(tmp_path / "pki")
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"not a certificate")
    ident: dict[str, str] = {"key_file": str(files["sender.key"]), "cert_file": str(files["recipient.pem"])}
    anchors = [str(files["root"])]
    expected_key = "smime.identities[0].cert_file"
    if problem == "not-a-cert":
        ident["cert_file"] = str(junk)
    elif problem == "empty-anchor-dir":
        ident["key_file"] = str(files["recipient.key"])
        anchors = [str(empty)]
        expected_key = "smime.trust_anchors[0]"
    elif problem == "bad-p12":
        ident = {"pkcs12_file": str(junk)}
        expected_key = "smime.identities[0].pkcs12_file"
    with pytest.raises(ConfigError) as info:
        UnwrapContext.from_config(_config(tmp_path, {"identities": [ident], "trust_anchors": anchors}))
    assert info.value.key == expected_key
    assert info.value.file == "poststelle.toml"


def test_recipient_and_sender_addresses_in_fixture_are_distinct() -> None:
    assert RECIPIENT != SENDER
