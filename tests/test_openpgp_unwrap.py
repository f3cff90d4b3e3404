"""OpenPGP layers with keys generated in this run: what verifies, what fails, and why."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.pgp_keys import (
    Keys,
    World,
    gateway_context,
    headers,
    inline,
    keys,
    mixed,
    pgp_encrypted,
    pgp_signed,
    text_part,
)

from gateway.unwrap import UnwrapContext, UnwrapResult, unwrap
from gateway.unwrap.openpgp.gpg import GpgHome, short_home
from gateway.unwrap.openpgp.handler import OpenPGPHandler
from gateway.unwrap.smime.handler import SmimeHandler

BOB = "Bob <bob@nachbar.test>"


def _pins(k: Keys) -> list[tuple[str, str]]:
    return [(key.email, key.fingerprint) for key in (k.bob, k.bob2, k.rsa, k.expired, k.revoked, k.sub)] + [
        ("someone-else@nachbar.test", k.other.fingerprint)
    ]


@pytest.fixture(scope="module")
def k() -> Keys:
    return keys()


@pytest.fixture(scope="module")
def gw(k: Keys, tmp_path_factory: pytest.TempPathFactory) -> Any:
    # Expired/revoked material is exported after the signing messages were prepared by
    # the tests, so sign what needs the live key here first.
    w = k.world
    pre = {
        "expired": pgp_signed(
            w,
            k.expired,
            text_part(),
            headers("Erwin <erwin@nachbar.test>"),
            sig=w.sign_detached(k.expired, text_part(), faked="20200101T010000!"),
        ),
        "revoked": pgp_signed(w, k.revoked, text_part(), headers("Rudi <rudi@nachbar.test>")),
    }
    w.revoke(k.revoked)
    ctx, handler = gateway_context(
        tmp_path_factory.mktemp("gw-openpgp-with-a-rather-long-directory-name-for-the-socket-path-check"),
        secrets=[w.secret(k.us), w.secret(k.us_rsa)],
        correspondents=[w.public(k.bob, k.bob2, k.rsa, k.dave, k.expired, k.revoked, k.sub, k.other)],
        pinned=_pins(k),
    )
    yield ctx, handler, pre
    handler.close()


def run(ctx: UnwrapContext, raw: bytes) -> UnwrapResult:
    return unwrap(raw, ctx, at=datetime.now(UTC))


# --- PGP/MIME signed ---------------------------------------------------------------------


def test_pgp_mime_signature_by_pinned_key_verifies(k: Keys, gw: Any) -> None:
    ctx, _, _ = gw
    res = run(ctx, pgp_signed(k.world, k.bob, text_part(), headers(BOB)))
    v = res.verdict
    assert v.verdict == "verified", v.reasons
    assert v.signature.scheme == "openpgp"
    assert v.signature.signer == "bob@nachbar.test"
    assert v.signature.signer_fingerprint == k.bob.fingerprint
    assert v.signature.signer_certificate_sha256 is None
    assert v.to_json()["signature"]["signer_fingerprint"] == k.bob.fingerprint
    verified = [e for e in res.events if e.type == "signature-checked"]
    assert verified and verified[0].details["signer_fingerprint"] == k.bob.fingerprint


def test_rsa_signature_by_pinned_key_verifies(k: Keys, gw: Any) -> None:
    res = run(gw[0], pgp_signed(k.world, k.rsa, text_part(), headers("Renate <renate@nachbar.test>")))
    assert res.verdict.verdict == "verified", res.verdict.reasons


def test_signing_subkey_maps_to_pinned_primary_fingerprint(k: Keys, gw: Any) -> None:
    res = run(gw[0], pgp_signed(k.world, k.sub, text_part(), headers("Susi <susi@nachbar.test>")))
    assert res.verdict.verdict == "verified", res.verdict.reasons
    assert res.verdict.signature.signer_fingerprint == k.sub.fingerprint


def test_signed_part_changed_after_signing_is_invalid(k: Keys, gw: Any) -> None:
    raw = pgp_signed(k.world, k.bob, text_part(), headers(BOB)).replace(b"anbei der Antrag", b"anbei die Absage")
    v = run(gw[0], raw).verdict
    assert v.verdict == "unverified"
    assert v.signature.status == "invalid"
    assert "bad-signature" in v.reasons


def test_lf_only_transport_still_verifies_in_canonical_crlf(k: Keys, gw: Any) -> None:
    raw = pgp_signed(k.world, k.bob, text_part(), headers(BOB)).replace(b"\r\n", b"\n")
    assert run(gw[0], raw).verdict.verdict == "verified"


def test_unknown_signer_key_is_not_verified(k: Keys, gw: Any) -> None:
    v = run(gw[0], pgp_signed(k.world, k.carol, text_part(), headers("Carol <carol@nachbar.test>"))).verdict
    assert v.verdict == "unverified"
    assert v.signature.status == "error"
    assert "openpgp-unknown-key" in v.reasons


def test_key_attached_to_the_message_creates_no_trust(k: Keys, gw: Any) -> None:
    key_part = b'Content-Type: application/pgp-keys; name="carol.asc"\r\n\r\n' + k.world.public(k.carol)
    inner = (
        b'Content-Type: multipart/mixed; boundary="in"\r\n\r\n--in\r\n'
        + text_part()
        + b"\r\n--in\r\n"
        + key_part
        + b"\r\n--in--\r\n"
    )
    ctx, handler, _ = gw
    v = run(ctx, pgp_signed(k.world, k.carol, inner, headers("Carol <carol@nachbar.test>"))).verdict
    assert v.verdict == "unverified"
    assert "openpgp-unknown-key" in v.reasons
    assert handler.home.key(k.carol.fingerprint) is None  # never imported


def test_correspondent_key_without_pin_is_untrusted(k: Keys, gw: Any) -> None:
    v = run(gw[0], pgp_signed(k.world, k.dave, text_part(), headers("Dave <dave@nachbar.test>"))).verdict
    assert v.signature.status == "untrusted"
    assert "openpgp-key-not-pinned" in v.reasons


def test_correspondent_key_verifies_when_correspondents_are_trusted(k: Keys, tmp_path: Path) -> None:
    ctx, handler = gateway_context(
        tmp_path / "g",
        secrets=[k.world.secret(k.us)],
        correspondents=[k.world.public(k.dave)],
        correspondents_trusted=True,
    )
    try:
        raw = pgp_signed(k.world, k.dave, text_part(), headers("Dave <dave@nachbar.test>"))
        assert run(ctx, raw).verdict.verdict == "verified"
        raw = pgp_signed(k.world, k.dave, text_part(), headers("Dave <bob@nachbar.test>"))
        assert "signer-not-from" in run(ctx, raw).verdict.reasons
    finally:
        handler.close()


def test_expired_key_is_untrusted(k: Keys, gw: Any) -> None:
    v = run(gw[0], gw[2]["expired"]).verdict
    assert v.verdict == "unverified"
    assert v.signature.status == "untrusted"
    assert "key-expired" in v.reasons


def test_revoked_key_is_untrusted(k: Keys, gw: Any) -> None:
    v = run(gw[0], gw[2]["revoked"]).verdict
    assert v.signature.status == "untrusted"
    assert "key-revoked" in v.reasons


def test_pin_for_an_address_not_on_the_key_is_untrusted(k: Keys, gw: Any) -> None:
    v = run(gw[0], pgp_signed(k.world, k.other, text_part(), headers("Otto <someone-else@nachbar.test>"))).verdict
    assert v.signature.status == "untrusted"
    assert "pinned-address-not-in-key" in v.reasons


def test_signer_must_be_the_from_address(k: Keys, gw: Any) -> None:
    v = run(gw[0], pgp_signed(k.world, k.bob, text_part(), headers("Bob <chef@rathaus.test>"))).verdict
    assert v.verdict == "unverified"
    assert v.signature.status == "valid"
    assert "signer-not-from" in v.reasons


def test_two_good_signatures_by_the_from_address_verify(k: Keys, gw: Any) -> None:
    sig = k.world.sign_detached_multi([k.bob, k.bob2], text_part())
    res = run(gw[0], pgp_signed(k.world, k.bob, text_part(), headers(BOB), sig=sig))
    assert res.verdict.verdict == "verified", res.verdict.reasons


def test_one_unknown_signature_among_several_is_not_verified(k: Keys, gw: Any) -> None:
    sig = k.world.sign_detached_multi([k.bob, k.carol], text_part())
    v = run(gw[0], pgp_signed(k.world, k.bob, text_part(), headers(BOB), sig=sig)).verdict
    assert v.verdict == "unverified"
    assert "multiple-signers" in v.reasons and "openpgp-unknown-key" in v.reasons


def test_two_valid_signers_with_different_addresses_are_not_from_either(k: Keys, gw: Any) -> None:
    sig = k.world.sign_detached_multi([k.bob, k.rsa], text_part())
    v = run(gw[0], pgp_signed(k.world, k.bob, text_part(), headers(BOB), sig=sig)).verdict
    assert v.verdict == "unverified"
    assert "signers-differ" in v.reasons


def test_signed_part_nested_in_mixed_is_partially_signed(k: Keys, gw: Any) -> None:
    signed_inner = pgp_signed(k.world, k.bob, text_part(), hdrs="")
    raw = mixed(headers(BOB), text_part("Unsigned text added by someone.\r\n"), signed_inner)
    v = run(gw[0], raw).verdict
    assert v.verdict == "unverified"
    assert "partially-signed" in v.reasons
    assert v.signature.covers_whole_message is False


# --- PGP/MIME encrypted --------------------------------------------------------------------


def test_encrypted_to_our_cv25519_key_is_decrypted_but_unsigned(k: Keys, gw: Any) -> None:
    res = run(gw[0], pgp_encrypted(k.world, [k.us], text_part(), headers(BOB)))
    v = res.verdict
    assert v.encryption.status == "decrypted" and v.encryption.scheme == "openpgp"
    assert v.verdict == "unverified" and "no-signature" in v.reasons
    assert b"anbei der Antrag" in res.content
    types = [e.type for e in res.events]
    assert "decrypted" in types and "key-used" in types
    used = next(e for e in res.events if e.type == "key-used")
    assert used.details["fingerprint"] == k.us.fingerprint


def test_encrypted_to_our_rsa_key_is_decrypted(k: Keys, gw: Any) -> None:
    res = run(gw[0], pgp_encrypted(k.world, [k.us_rsa], text_part(), headers(BOB)))
    assert res.verdict.encryption.status == "decrypted"


def test_signed_and_encrypted_in_one_call_verifies(k: Keys, gw: Any) -> None:
    res = run(gw[0], pgp_encrypted(k.world, [k.us], text_part(), headers(BOB), signer=k.bob))
    v = res.verdict
    assert v.verdict == "verified", v.reasons
    assert v.encryption.status == "decrypted"
    assert v.signature.signer_fingerprint == k.bob.fingerprint
    assert v.signature.covers_whole_message
    assert {"decrypted", "key-used", "signature-checked"} <= {e.type for e in res.events}
    for e in res.events:  # fingerprints only, never content
        assert b"anbei" not in repr(e.details).encode()


def test_signed_then_encrypted_pgp_mime_verifies(k: Keys, gw: Any) -> None:
    inner = pgp_signed(k.world, k.bob, text_part(), hdrs="")
    res = run(gw[0], pgp_encrypted(k.world, [k.us], inner, headers(BOB)))
    assert res.verdict.verdict == "verified", res.verdict.reasons


def test_sign_and_encrypt_by_someone_else_than_from_is_not_verified(k: Keys, gw: Any) -> None:
    v = run(
        gw[0], pgp_encrypted(k.world, [k.us], text_part(), headers("Renate <renate@nachbar.test>"), signer=k.bob)
    ).verdict
    assert "signer-not-from" in v.reasons


def test_signature_over_ciphertext_does_not_verify_the_plaintext(k: Keys, gw: Any) -> None:
    enc = pgp_encrypted(k.world, [k.us], text_part(), hdrs="")
    v = run(gw[0], pgp_signed(k.world, k.bob, enc, headers(BOB))).verdict
    assert v.verdict == "unverified"
    assert "signature-over-ciphertext" in v.reasons


def test_encrypted_to_someone_else_is_quarantined(k: Keys, gw: Any) -> None:
    res = run(gw[0], pgp_encrypted(k.world, [k.carol], text_part(), headers(BOB)))
    assert res.verdict.verdict == "quarantined"
    assert res.quarantine_reason == "decryption-failed-no-key"
    assert res.verdict.encryption.status == "failed"


def test_ciphertext_without_mdc_is_refused_and_not_delivered(k: Keys, gw: Any) -> None:
    secret_text = "EFAIL-PROBE-42\r\n"
    armored = k.world.encrypt([k.us], text_part(secret_text), extra=("--rfc2440",))
    raw = pgp_encrypted(k.world, [k.us], b"", headers(BOB), armored=armored)
    res = run(gw[0], raw)
    assert res.verdict.verdict == "quarantined"
    assert res.quarantine_reason == "decryption-failed-no-integrity"
    assert res.content == raw  # the original bytes only, never the decrypted text
    assert b"EFAIL-PROBE" not in repr(res.events).encode()


def test_damaged_ciphertext_is_quarantined(k: Keys, gw: Any) -> None:
    armored = k.world.encrypt([k.us], text_part() * 20)
    lines = armored.split(b"\n")
    mid = len(lines) // 2
    lines[mid] = lines[mid][:10] + (b"A" if lines[mid][10:11] != b"A" else b"B") + lines[mid][11:]
    res = run(gw[0], pgp_encrypted(k.world, [k.us], b"", headers(BOB), armored=b"\n".join(lines)))
    assert res.verdict.verdict == "quarantined"
    assert res.quarantine_reason is not None and res.quarantine_reason.startswith("decryption-failed")


def test_password_encrypted_message_is_not_opened(k: Keys, gw: Any) -> None:
    armored = k.world.gpg("--armor", "--symmetric", "--s2k-count", "1024", "--passphrase", "x", data=text_part())
    res = run(gw[0], pgp_encrypted(k.world, [], b"", headers(BOB), armored=armored))
    assert res.quarantine_reason == "decryption-failed-no-key"


def test_encrypted_part_nested_in_mixed_is_partially_encrypted(k: Keys, gw: Any) -> None:
    enc = pgp_encrypted(k.world, [k.us], text_part("INNER-SECRET\r\n"), hdrs="")
    res = run(gw[0], mixed(headers(BOB), text_part("Bitte beachten Sie:\r\n"), enc))
    assert res.verdict.encryption.status == "partial"
    assert "partially-encrypted" in res.verdict.reasons
    assert b"INNER-SECRET" not in res.content


def test_decompression_bomb_is_bounded(k: Keys, tmp_path: Path) -> None:
    ctx, handler = gateway_context(tmp_path / "g", secrets=[k.world.secret(k.us)])
    handler.home.max_output = 64 * 1024  # type: ignore[union-attr]
    try:
        big = text_part("A" * 2_000_000)
        res = run(ctx, pgp_encrypted(k.world, [k.us], big, headers(BOB)))
        assert res.quarantine_reason == "decryption-failed-too-large"
    finally:
        handler.close()


# --- inline PGP --------------------------------------------------------------------------


def test_inline_clearsigned_whole_body_verifies(k: Keys, gw: Any) -> None:
    body = k.world.clearsign(k.bob, b"Sehr geehrte Damen und Herren,\n- anbei der Antrag.\n")
    res = run(gw[0], inline(body, headers(BOB)))
    assert res.verdict.verdict == "verified", res.verdict.reasons
    assert b"- anbei der Antrag." in res.content and b"BEGIN PGP" not in res.content


def test_inline_clearsigned_in_quoted_printable_verifies(k: Keys, gw: Any) -> None:
    import binascii

    body = k.world.clearsign(k.bob, "Gebühr: 35,00 €\n".encode())
    res = run(gw[0], inline(binascii.b2a_qp(body), headers(BOB), cte="quoted-printable"))
    assert res.verdict.verdict == "verified", res.verdict.reasons


def test_inline_signature_with_footer_is_partially_signed(k: Keys, gw: Any) -> None:
    body = k.world.clearsign(k.bob, b"Termin morgen.\n") + b"\n-- \nListe nachbar-l, abbestellen: ...\n"
    v = run(gw[0], inline(body, headers(BOB))).verdict
    assert v.verdict == "unverified"
    assert "partially-signed" in v.reasons
    assert v.signature.status == "valid" and not v.signature.covers_whole_message


def test_inline_signature_with_prefix_is_partially_signed(k: Keys, gw: Any) -> None:
    body = b"Ueberweisen Sie bitte an IBAN XY.\n\n" + k.world.clearsign(k.bob, b"Termin morgen.\n")
    assert "partially-signed" in run(gw[0], inline(body, headers(BOB))).verdict.reasons


def test_inline_tampered_clearsigned_text_is_invalid(k: Keys, gw: Any) -> None:
    body = k.world.clearsign(k.bob, b"Betrag: 100 EUR\n").replace(b"100 EUR", b"900 EUR")
    v = run(gw[0], inline(body, headers(BOB))).verdict
    assert v.signature.status == "invalid"


def test_inline_encrypted_whole_body_is_decrypted(k: Keys, gw: Any) -> None:
    body = k.world.encrypt([k.us], "Geheim: Grüße\n".encode(), signer=k.bob)
    res = run(gw[0], inline(body, headers(BOB)))
    assert res.verdict.verdict == "verified", res.verdict.reasons
    assert res.verdict.encryption.status == "decrypted"
    assert "Grüße".encode() in res.content


def test_inline_armor_mangled_with_nbsp_and_qp_is_repaired(k: Keys, gw: Any) -> None:
    import binascii

    armored = k.world.encrypt([k.us], b"My real name is not Bob.\n")
    lines = armored.split(b"\n")
    lines.insert(1, "\u00a0".encode())  # the blank line after the header became a NBSP line
    lines = [b"  " + ln if i > 2 and ln else ln for i, ln in enumerate(lines)]
    body = binascii.b2a_qp(b"\n".join(lines))
    res = run(gw[0], inline(body, headers(BOB), cte="quoted-printable"))
    assert res.verdict.encryption.status == "decrypted"
    assert b"My real name is not Bob." in res.content


def test_inline_armored_block_next_to_plaintext_is_never_decrypted(k: Keys, gw: Any) -> None:
    armored = k.world.encrypt([k.us], b"INNER-SECRET\n")
    res = run(gw[0], inline(b"prefix\n\n" + armored + b"\nsuffix\n", headers(BOB)))
    v = res.verdict
    assert v.verdict == "unverified"
    assert v.encryption.status == "partial" and "partially-encrypted" in v.reasons
    assert b"INNER-SECRET" not in res.content
    assert not [e for e in res.events if e.type == "decrypted"]


def test_quoted_armor_in_a_reply_is_not_a_pgp_layer(k: Keys, gw: Any) -> None:
    armored = k.world.encrypt([k.us], b"x\n")
    quoted = b"".join(b"> " + ln + b"\n" for ln in armored.splitlines())
    v = run(gw[0], inline(b"Siehe unten.\n" + quoted, headers(BOB))).verdict
    assert v.encryption.status == "none" and v.reasons == ("no-signature",)


# --- configuration and the home ---------------------------------------------------------------


def test_without_openpgp_config_pgp_fails_closed(k: Keys) -> None:
    ctx = UnwrapContext(
        [SmimeHandler.from_config(None, config_file="t"), OpenPGPHandler.from_config(None, config_file="t")]
    )
    res = run(ctx, pgp_encrypted(k.world, [k.us], text_part(), headers(BOB)))
    assert res.quarantine_reason == "decryption-failed-no-key"
    v = run(ctx, pgp_signed(k.world, k.bob, text_part(), headers(BOB))).verdict
    assert v.signature.status == "error" and "openpgp-not-configured" in v.reasons
    body = k.world.clearsign(k.bob, b"Termin.\n")
    assert "openpgp-not-configured" in run(ctx, inline(body, headers(BOB))).verdict.reasons


def test_passphrase_protected_secret_key_decrypts_with_passphrase_file(tmp_path: Path) -> None:
    w = World(passphrase="geheim")
    try:
        key = w.gen("Rathaus", "pp@rathaus.test")
        ctx, handler = gateway_context(tmp_path / "g", secrets=[w.secret(key)], passphrase="geheim")
        try:
            res = run(ctx, pgp_encrypted(w, [key], text_part(), headers(BOB)))
            assert res.verdict.encryption.status == "decrypted", res.verdict.reasons
        finally:
            handler.close()
    finally:
        w.close()


def test_gnupg_home_is_private_and_long_paths_get_a_short_socket_dir(gw: Any) -> None:
    home: GpgHome = gw[1].home
    assert os.stat(home.real_home).st_mode & 0o777 == 0o700
    assert len(str(home.home)) <= 80
    assert short_home(home.real_home) == home.home


def test_concurrent_threads_share_one_home_safely(k: Keys, gw: Any) -> None:
    ctx = gw[0]
    raw = pgp_encrypted(k.world, [k.us], text_part(), headers(BOB), signer=k.bob)
    results: list[str] = []

    def work() -> None:
        for _ in range(3):
            results.append(run(ctx, raw).verdict.verdict)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["verified"] * 18


def test_close_stops_the_agent(k: Keys, tmp_path: Path) -> None:
    _, handler = gateway_context(tmp_path / "g", secrets=[k.world.secret(k.us)])
    home = handler.home
    assert home is not None
    import subprocess

    def agent_running() -> bool:
        proc = subprocess.run(
            ["gpgconf", "--homedir", str(home.home), "--list-dirs", "agent-socket"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return Path(proc.stdout.strip()).exists()

    assert agent_running()  # started by the secret key import
    handler.close()
    assert not agent_running()


def test_signing_time_far_from_date_header_is_reported(k: Keys, gw: Any) -> None:
    old = datetime.now(UTC) - timedelta(days=3)
    v = run(gw[0], pgp_signed(k.world, k.bob, text_part(), headers(BOB, date=old))).verdict
    assert "signing-time-mismatch" in v.reasons
