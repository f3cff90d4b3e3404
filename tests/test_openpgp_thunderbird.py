"""The Thunderbird OpenPGP corpus gets verdicts that match EXPECTED_openpgp.tsv, or stricter.

Read-only from ../shared/interop/thunderbird (skipped when absent). Keyring as the TSV
says: Alice's secret key (we are Alice), Bob's public key pinned for bob@openpgp.example,
Carol not in the keyring. Alice's own key is not pinned, so her signatures are
``untrusted`` (Thunderbird shows some of them as signed by Alice).

EXPECTED maps every file of the TSV to (verdict, signature status, encryption status,
reasons that must be present). STRICTER lists the files where the gateway reports less
than Thunderbird shows, and why that is intended.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support.pgp_keys import gateway_context

from gateway.unwrap import unwrap

INTEROP = Path(__file__).resolve().parents[2] / "shared" / "interop" / "thunderbird"
DATA = INTEROP / "mail" / "test" / "browser" / "openpgp" / "data"
TSV = INTEROP / "EXPECTED_openpgp.tsv"
BOB_FPR = "D1A66E1A23B182C9980F788CFBFCC82A015E7330"

pytestmark = pytest.mark.skipif(not TSV.is_file(), reason="interop corpus not available")

U, V, Q = "unverified", "verified", "quarantined"
BOB_SIGNED_OK = (V, "valid", "none", ())
NOT_SIGNED = (U, "none", "none", ("no-signature",))
DECRYPTED_UNSIGNED = (U, "none", "decrypted", ("no-signature",))
CAROL_UNKNOWN = ("openpgp-unknown-key",)
EXPECTED: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "unsigned-unencrypted-from-bob-to-alice.eml": NOT_SIGNED,
    "signed-by-0xfbfcc82a015e7330-to-0xf231550c4f47e38e-unencrypted.eml": BOB_SIGNED_OK,
    # the attached sender key changes nothing: Bob's key is pinned anyway
    "signed-by-0xfbfcc82a015e7330-to-0xf231550c4f47e38e-unencrypted-with-key.eml": BOB_SIGNED_OK,
    "signed-by-0xfbfcc82a015e7330-to-0xf231550c4f47e38e-unencrypted-in-mixed.eml": (
        U,
        "valid",
        "none",
        ("partially-signed",),
    ),
    "signed-mismatch-email-date.eml": (U, "valid", "none", ("signing-time-mismatch",)),
    "signed-with-mailman-footer.eml": (U, "error", "none", ("partially-signed", "openpgp-unknown-key")),
    "unsigned-encrypted-to-0xf231550c4f47e38e-from-0xfbfcc82a015e7330.eml": DECRYPTED_UNSIGNED,
    "unsigned-encrypted-to-0xf231550c4f47e38e-from-0xfbfcc82a015e7330-with-key.eml": DECRYPTED_UNSIGNED,
    "unsigned-encrypted-to-0xf231550c4f47e38e-from-0x3099ff1238852b9f.eml": DECRYPTED_UNSIGNED,
    "unsigned-encrypted-to-0xf231550c4f47e38e-from-0x3099ff1238852b9f-with-key.eml": DECRYPTED_UNSIGNED,
    "encrypted-to-alice-as-hidden-recipient.eml": DECRYPTED_UNSIGNED,
    "fwd-unsigned-encrypted.eml": NOT_SIGNED,  # the encrypted .eml is an attachment only
    "fwd-signed.eml": NOT_SIGNED,
    "forwarded-eml-signed-by-alice.eml": NOT_SIGNED,
    "signed-by-0xfbfcc82a015e7330-encrypted-to-0xf231550c4f47e38e.eml": (V, "valid", "decrypted", ()),
    "signed-by-0xfbfcc82a015e7330-encrypted-to-0xf231550c4f47e38e-with-key.eml": (V, "valid", "decrypted", ()),
    "signed-by-0xfbfcc82a015e7330-encrypted-to-0xf231550c4f47e38e-multi-from.eml": (
        U,
        "valid",
        "decrypted",
        ("multiple-from",),
    ),
    "signed-by-0x3099ff1238852b9f-to-0xf231550c4f47e38e-unencrypted.eml": (U, "error", "none", CAROL_UNKNOWN),
    # Carol's key attached to the same mail must not create trust (and is never imported)
    "signed-by-0x3099ff1238852b9f-to-0xf231550c4f47e38e-unencrypted-with-key.eml": (U, "error", "none", CAROL_UNKNOWN),
    "unob-signed-by-0x3099ff1238852b9f-to-0xf231550c4f47e38e.eml": NOT_SIGNED,
    "signed-by-0x3099ff1238852b9f-encrypted-to-0xf231550c4f47e38e.eml": (U, "error", "decrypted", CAROL_UNKNOWN),
    "signed-by-0x3099ff1238852b9f-encrypted-to-0xf231550c4f47e38e-with-key.eml": (
        U,
        "error",
        "decrypted",
        CAROL_UNKNOWN,
    ),
    "bob-to-alice-signed-damaged-signature.eml": (U, "invalid", "none", ("malformed-signature",)),
    "dual-signed-uncommon-content-type.eml": (U, "invalid", "none", ()),
    "multiple-signatures.eml": NOT_SIGNED,  # a digest: the signed messages are attachments
    "outer-pgp-sig-inner-pgp-enc.eml": (U, "error", "decrypted", ("signature-over-ciphertext",)),
    "outer-pgp-sig-inner-pgp-enc-sig.eml": (U, "error", "decrypted", CAROL_UNKNOWN),
    "outer-pgp-sig-inner-pgp-enc-with-mixed.eml": (U, "error", "partial", ("partially-encrypted",)),
    "outer-smime-bad-sig-inner-pgp-enc.eml": (U, "invalid", "decrypted", ("signature-over-ciphertext",)),
    "outer-smime-bad-sig-inner-pgp-enc-sig.eml": (U, "error", "decrypted", CAROL_UNKNOWN),
    "outer-smime-bad-sig-inner-pgp-enc-sig-with-mixed.eml": (U, "invalid", "partial", ("partially-encrypted",)),
    "inner-smime-sig-in-pgp-encrypted.eml": (U, "invalid", "decrypted", ("partially-signed",)),
    "encrypted-and-signed-alice-to-bob-nonascii.eml": (U, "untrusted", "decrypted", ("openpgp-key-not-pinned",)),
    "enc-to-carol@pgp.icu-revoked.eml": (Q, "none", "failed", ("decryption-failed-no-key",)),
    "bob-enc-inline-nbsp-qp.eml": DECRYPTED_UNSIGNED,
    "bob-enc-html-nbsp.eml": (U, "none", "partial", ("partially-encrypted",)),
    "alice-signed.eml": (U, "untrusted", "none", ("openpgp-key-not-pinned",)),
    "alice-utf.eml": (U, "untrusted", "none", ("openpgp-key-not-pinned",)),
    "signed-inline-indented.eml": (U, "untrusted", "none", ("openpgp-key-not-pinned",)),
    "inline-signed-latin1.eml": (U, "error", "none", ("openpgp-unknown-key",)),
    "inline-signed-utf8.eml": (U, "error", "none", ("openpgp-unknown-key",)),
    "sigspoof-git-commit.eml": (Q, "none", "failed", ("decryption-failed-corrupt",)),
    "openpgp__stripped_sig.eml": (U, "invalid", "none", ("malformed-signature",)),
    "partial-encrypt-for-alice-plaintext.eml": (U, "none", "partial", ("partially-encrypted",)),
    "partial-encrypt-for-alice-html.eml": (U, "none", "partial", ("partially-encrypted",)),
    "partial-encrypt-for-carol-plaintext.eml": (U, "none", "partial", ("partially-encrypted",)),
    "partial-encrypt-for-carol-html.eml": (U, "none", "partial", ("partially-encrypted",)),
    "alice-broken-exchange.eml": (U, "none", "partial", ("partially-encrypted",)),
    "signed-encrypted-autocrypt-gossip.eml": (V, "valid", "decrypted", ()),
    "eve-duplicate.eml": NOT_SIGNED,
    "unrelated-and-fake-keys-attached.eml": NOT_SIGNED,
    "unsigned-unencrypted-key-0x1f10171bfb881b1c-attached.eml": NOT_SIGNED,
    "unsigned-unencrypted-0x3099ff1238852b9f-autocrypt.eml": NOT_SIGNED,
}

# Where we show less than Thunderbird (allowed: stricter where Thunderbird repairs or only warns).
STRICTER = {
    "bob-enc-html-nbsp.eml": "armor inside HTML is never decrypted: HTML can surround or hide text, "
    "so it is reported partially-encrypted (Thunderbird decrypts it)",
    "alice-broken-exchange.eml": "Exchange turned multipart/encrypted into multipart/mixed; Thunderbird "
    "repairs the structure, we report the encrypted part as partial",
    "sigspoof-git-commit.eml": "multipart/encrypted whose 'ciphertext' is a clearsigned text: not an "
    "encryption layer, quarantined as decryption-failed-corrupt",
    "alice-signed.eml": "Alice's own key is not pinned: untrusted (Thunderbird shows 'signed by Alice')",
    "enc-to-carol@pgp.icu-revoked.eml": "that secret key is not in the assumed keyring (TSV: NO_SECKEY)",
    "inner-smime-sig-in-pgp-encrypted.eml": "the inner S/MIME signature sits in a nested part and S/MIME "
    "is not configured in this test: partially-signed, invalid",
}


def _rows() -> list[dict[str, str]]:
    if not TSV.is_file():
        return []
    with TSV.open(newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Any:
    keys = DATA / "keys"
    context, handler = gateway_context(
        tmp_path_factory.mktemp("tb-openpgp"),
        secrets=[(keys / "alice@openpgp.example-0xf231550c4f47e38e-secret.asc").read_bytes()],
        correspondents=[(keys / "bob@openpgp.example-0xfbfcc82a015e7330-pub.asc").read_bytes()],
        pinned=[("bob@openpgp.example", BOB_FPR)],
    )
    yield context, handler
    handler.close()


def test_every_tsv_row_has_an_expectation() -> None:
    assert {r["file"] for r in _rows()} == set(EXPECTED)


@pytest.mark.parametrize("row", _rows(), ids=lambda r: r["file"])
def test_thunderbird_openpgp_message(row: dict[str, str], ctx: Any) -> None:
    context, handler = ctx
    raw = (DATA / "eml" / row["file"]).read_bytes()
    res = unwrap(raw, context, at=datetime.now(UTC))
    v = res.verdict
    verdict, sig, enc, reasons = EXPECTED[row["file"]]
    got = (v.verdict, v.signature.status, v.encryption.status)
    assert got == (verdict, sig, enc), f"{row['file']}: {got} {v.reasons} (thunderbird: {list(row.values())[1]})"
    for reason in reasons:
        assert reason in v.reasons, (row["file"], v.reasons)
    if v.verified:
        assert v.signature.signer_fingerprint == BOB_FPR and v.signature.scheme == "openpgp"
    if v.verdict == "quarantined":
        assert res.content == raw
    # keys carried by messages are never imported
    assert handler.home.key("B8F2F6F4BD3AD3F82DC446833099FF1238852B9F") is None  # Carol (0x3099FF1238852B9F)
