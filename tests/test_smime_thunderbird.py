"""The Thunderbird/NSS S/MIME corpus gets the verdicts EXPECTED_smime_decrypt.tsv implies.

Read-only from ../shared/interop/thunderbird (skipped when absent). Decrypted with Bob.p12
(and Fran's keys for the smime-interop files), anchor TestCA.pem, at the corpus date.

Where we are stricter than Thunderbird (allowed: "stricter is fine"), STRICTER lists the
files and why; where we report more than Thunderbird shows, MORE_LAYERS_OPENED does.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.config import SmimeConfig, SmimeIdentityConfig
from gateway.unwrap import UnwrapContext, unwrap
from gateway.unwrap.smime.handler import SmimeHandler, load_material

INTEROP = Path(__file__).resolve().parents[2] / "shared" / "interop" / "thunderbird"
DATA = INTEROP / "mailnews" / "test" / "data" / "smime"
TSV = INTEROP / "EXPECTED_smime_decrypt.tsv"
AT = datetime(2026, 1, 26, 15, 0, tzinfo=UTC)  # shortly after the corpus was signed
TEXTS = {"gTextAliceBob": b"This is a test message from Alice to Bob.", "gTextFran": b"This is a test message to Fran."}

pytestmark = pytest.mark.skipif(not TSV.is_file(), reason="interop corpus not available")

# Thunderbird shows these as good: Dave (the From) signed over a message Alice had signed.
# We require every signature that covers the content to be by the From address
# (reason inner-signer-not-from), so a message carrying two signers' signatures is not
# "from" either one alone.
STRICTER = {
    f"alice.plain.sig.{h}.opaque.dave.sig.{h}.opaque.eml": "inner-signer-not-from"
    for h in ("SHA256", "SHA384", "SHA512")
}
# Thunderbird shows Dave's good signature and does not open the envelope below it. Dave
# signed ciphertext only: anyone can sign someone else's ciphertext, so a signature over
# an envelope says nothing about who wrote the plaintext (signature-over-ciphertext).
STRICTER |= {
    f"alice.env.sig.{h}.opaque.dave.sig.{h}.opaque.eml": "signature-over-ciphertext"
    for h in ("SHA256", "SHA384", "SHA512")
}
# Thunderbird shows only the outer signatures here and leaves the envelope below them
# closed (enc=false); we open every whole-message layer, so encryption is "decrypted".
# The signatures above the envelope cover ciphertext only and never make it verified.
MORE_LAYERS_OPENED = {
    f"alice.env.{kind}.{h}.{form}.dave.sig.{h}.opaque.eml"
    for kind, form in (("sig", "opaque"), ("dsig", "multipart"))
    for h in ("SHA1", "SHA256", "SHA384", "SHA512")
}


def _rows() -> list[dict[str, str]]:
    if not TSV.is_file():
        return []
    with TSV.open(newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("tb")
    (tmp / "pass").write_text("nss\n")
    p12s = [DATA / "Bob.p12", DATA.parent / "smime-interop" / "Fran.p12", DATA.parent / "smime-interop" / "Fran-ec.p12"]
    cfg = SmimeConfig(
        identities=tuple(SmimeIdentityConfig(pkcs12_file=p, password_file=tmp / "pass") for p in p12s),
        trust_anchors=(DATA / "TestCA.pem",),
    )
    with _nowarn():
        material = load_material(cfg, "thunderbird.toml")
    return UnwrapContext([SmimeHandler(material)])


class _nowarn:
    def __enter__(self) -> None:
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore")  # NSS's PKCS#12 files are BER: cryptography warns

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)


@pytest.mark.parametrize("row", _rows(), ids=lambda r: r["filename"])
def test_corpus_message_gets_the_expected_verdict(ctx: Any, row: dict[str, str]) -> None:
    name = row["filename"]
    raw = (DATA / name).read_bytes()
    res = unwrap(raw, ctx, at=AT)
    v = res.verdict
    base = Path(name).name
    assert v.verdict != "quarantined", v.reasons

    if row["enc"] == "true":
        assert v.encryption.status == "decrypted"
    elif base not in MORE_LAYERS_OPENED:
        assert v.encryption.status != "decrypted"

    if row["sig"] == "true":
        assert v.signature.status != "none"
    if row["sig_good"] == "true" and base not in STRICTER:
        assert v.verdict == "verified", v.reasons
        assert v.signature.status == "valid"
    else:
        assert v.verdict != "verified"
    if base in STRICTER:
        assert STRICTER[base] in v.reasons
    if row["check_text"]:
        assert TEXTS[row["check_text"]] in res.content.replace(b"\r\n", b"\n").replace(b"=\n", b""), res.content[:200]


def test_sha1_corpus_signatures_are_rejected_by_policy(ctx: Any) -> None:
    res = unwrap((DATA / "alice.sig.SHA1.opaque.eml").read_bytes(), ctx, at=AT)
    assert res.verdict.signature.status == "untrusted"
    assert "sha1-rejected" in res.verdict.reasons


def test_future_signing_time_fails_like_thunderbird(ctx: Any) -> None:
    res = unwrap((DATA / "alice.future.dsig.SHA256.multipart.eml").read_bytes(), ctx, at=AT)
    assert res.verdict.verdict == "unverified"
    assert "signing-time-mismatch" in res.verdict.reasons
