"""One algorithm policy: ``allow_sha1`` and ``min_rsa_bits`` mean the same for the CMS signature,
every certificate of the path and every CRL.

The old hierarchy is what an authority may still meet: a root, an intermediate and a signer
from 2006, RSA-1024, everything signed with SHA-1 (re-signed through asn1crypto, since
``cryptography`` no longer signs with SHA-1), the message signed by ``openssl cms -md sha1``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from support.crl_pki import certificate, crl, sha1_certificate, sha1_crl
from support.smime_pki import PEM, Party, _rsa, headers, mime_text, openssl

from gateway.unwrap import UnwrapContext, unwrap
from gateway.unwrap.smime.handler import SmimeHandler, SmimeMaterial
from gateway.unwrap.verdict import Verdict

ISSUED = dt.datetime(2006, 3, 1, tzinfo=dt.UTC)
ENDS = dt.datetime(2036, 3, 1, tzinfo=dt.UTC)
OTTO = "otto@example.org"


@dataclass
class OldHierarchy:
    root: Party
    inter: Party
    leaf: Party
    crls: tuple[x509.CertificateRevocationList, ...]


def _resigned(party: Party, issuer_key: object, chain: list[x509.Certificate]) -> Party:
    cert = sha1_certificate(party.cert, issuer_key)  # type: ignore[arg-type]
    return Party(party.name, party.key, cert, party.email, chain)


@pytest.fixture(scope="module")
def old() -> OldHierarchy:
    root_key, inter_key, leaf_key = _rsa(1024, "2006-root"), _rsa(1024, "2006-inter"), _rsa(1024, "2006-leaf")
    dates = {"not_before": ISSUED, "not_after": ENDS}
    root = _resigned(certificate("Behoerden-CA 2006", root_key, None, ca=True, **dates), root_key, [])
    inter = _resigned(certificate("Zwischen-CA 2006", inter_key, root, ca=True, **dates), root_key, [])
    leaf = _resigned(certificate("Otto", leaf_key, inter, email=OTTO, **dates), inter_key, [inter.cert])
    crls = (sha1_crl(crl(inter), inter_key), sha1_crl(crl(root), root_key))
    return OldHierarchy(root, inter, leaf, crls)


@pytest.fixture(scope="module")
def sha1_message(old: OldHierarchy, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    tmp: Path = tmp_path_factory.mktemp("sha1")
    (tmp / "leaf.pem").write_bytes(old.leaf.cert.public_bytes(PEM))
    (tmp / "leaf.key").write_bytes(old.leaf.key_pem())
    (tmp / "inter.pem").write_bytes(old.inter.cert.public_bytes(PEM))
    (tmp / "in.txt").write_bytes(mime_text())
    res = openssl(
        "cms",
        "-sign",
        "-md",
        "sha1",
        "-signer",
        str(tmp / "leaf.pem"),
        "-inkey",
        str(tmp / "leaf.key"),
        "-certfile",
        str(tmp / "inter.pem"),
        "-in",
        str(tmp / "in.txt"),
        "-binary",
    )
    assert res.returncode == 0, res.stderr
    return headers(OTTO) + res.stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def verdict(old: OldHierarchy, raw: bytes, *, allow_sha1: bool, min_rsa_bits: int) -> Verdict:
    material = SmimeMaterial(
        anchors=(old.root.cert,),
        crls=old.crls,
        allow_sha1=allow_sha1,
        min_rsa_bits=min_rsa_bits,
        revocation="require",
        configured=True,
    )
    return unwrap(raw, UnwrapContext([SmimeHandler(material)]), at=dt.datetime.now(dt.UTC)).verdict


def test_sha1_rsa1024_hierarchy_from_2006_verifies_when_the_policy_allows_both(
    old: OldHierarchy, sha1_message: bytes
) -> None:
    v = verdict(old, sha1_message, allow_sha1=True, min_rsa_bits=1024)
    assert v.verdict == "verified", v.reasons
    # The SHA-1 CRLs of RSA-1024 CAs were usable under the same policy.
    statuses = [c["status"] for c in v.signature.to_json()["revocation"]["certificates"]]
    assert statuses == ["good", "good"]


@pytest.mark.parametrize(
    ("allow_sha1", "min_rsa_bits", "reason"),
    [(False, 1024, "sha1-rejected"), (True, 2048, "weak-key")],
)
def test_the_same_hierarchy_is_refused_when_the_policy_does_not_allow_it(
    old: OldHierarchy, sha1_message: bytes, allow_sha1: bool, min_rsa_bits: int, reason: str
) -> None:
    v = verdict(old, sha1_message, allow_sha1=allow_sha1, min_rsa_bits=min_rsa_bits)
    assert v.signature.status == "untrusted"
    assert reason in v.reasons
    assert "weak-algorithm" not in v.reasons  # SHA-1 and key size have their own reasons
