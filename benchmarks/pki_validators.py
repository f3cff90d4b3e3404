"""Measure: cryptography.x509.verification vs pyhanko-certvalidator for S/MIME signer paths.

Both validate the same test PKI (tests/smime_pki.py) and, when present, the Thunderbird/NSS
test certificates. Printed: per-validation time (median of N) and the verdict per case, so
the choice in gateway/unwrap/pki.py can be re-checked on any machine:

    .venv/bin/python benchmarks/pki_validators.py [N] [--quick] [--json-out FILE]

The contract row (benchmarks/contract.py) gives the gateway's validation of the good
signer per second (a new Validator each time, no cache) against plain
pyhanko-certvalidator's on the same path; "met"
means the gateway accepted the good signer and rejected the revoked one.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from asn1crypto import crl as a_crl
from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import verification as v
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.policy_decl import PKIXValidationParams

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from contract import add_options, row, self_peak_mb, write_rows

from tests.support.smime_pki import NOW, build_pki

DER = Encoding.DER
VERBOSE = 40
MODE = "require"


def _eku_ok(_policy: v.Policy, _cert: x509.Certificate, ext: x509.ExtendedKeyUsage | None) -> None:
    if ext is None:
        return
    if ExtendedKeyUsageOID.EMAIL_PROTECTION not in ext and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in ext:
        raise ValueError("EKU without emailProtection")


def crypto_validate(root: x509.Certificate, leaf: x509.Certificate, inters: list[x509.Certificate]) -> str:
    ee = v.ExtensionPolicy.permit_all().may_be_present(x509.ExtendedKeyUsage, v.Criticality.AGNOSTIC, _eku_ok)
    ca = v.ExtensionPolicy.webpki_defaults_ca()
    verifier = (
        v.PolicyBuilder()
        .store(v.Store([root]))
        .time(NOW)
        .extension_policies(ca_policy=ca, ee_policy=ee)
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, inters)
    except v.VerificationError as exc:
        return f"rejected ({str(exc)[: int(VERBOSE)]})"
    return "ok"


def hanko_validate(
    root: x509.Certificate, leaf: x509.Certificate, inters: list[x509.Certificate], crls: list[bytes]
) -> str:
    ctx = ValidationContext(
        trust_roots=[a_x509.Certificate.load(root.public_bytes(DER))],
        other_certs=[a_x509.Certificate.load(c.public_bytes(DER)) for c in inters],
        crls=[a_crl.CertificateList.load(c) for c in crls],
        moment=NOW,
        allow_fetching=False,
        revocation_mode="soft-fail" if not crls else MODE,
        weak_hash_algos={"md2", "md5", "sha1"},
    )
    validator = CertificateValidator(
        a_x509.Certificate.load(leaf.public_bytes(DER)),
        validation_context=ctx,
        pkix_params=PKIXValidationParams(user_initial_policy_set=frozenset(["any_policy"])),
    )
    try:
        asyncio.run(validator.async_validate_usage({"digital_signature"}, {"email_protection"}, extended_optional=True))
    except Exception as exc:  # noqa: BLE001 - report any rejection
        return f"rejected ({type(exc).__name__}: {str(exc)[: int(VERBOSE)]})"
    return "ok"


def timed(fn: Callable[[], str], n: int) -> tuple[str, float]:
    result = fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return result, statistics.median(samples) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int, nargs="?", default=200, help="validations per case (median of N)")
    add_options(ap, "N = 20")
    args = ap.parse_args()
    n = 20 if args.quick else args.n
    sender_hanko_ms = 0.0
    pki = build_pki()
    crls = [pki.crl.public_bytes(DER), pki.root_crl.public_bytes(DER)]
    inters = [pki.inter.cert]
    cases = ["sender", "expired", "wrong_eku", "any_eku", "no_sign", "revoked", "pss", "ec", "weak", "rogue"]
    print(f"{'case':12} {'cryptography':46} {'ms':>6}   {'pyhanko (+CRLs)':52} {'ms':>6}")
    for case in cases:
        leaf = pki[case].cert
        c_res, c_ms = timed(lambda leaf=leaf: crypto_validate(pki.root.cert, leaf, inters), n)
        h_res, h_ms = timed(lambda leaf=leaf: hanko_validate(pki.root.cert, leaf, inters, crls), max(n // 4, 5))
        print(f"{case:12} {c_res:46} {c_ms:6.3f}   {h_res:52} {h_ms:6.3f}")
        if case == "sender":
            sender_hanko_ms = h_ms
    from gateway.unwrap.smime.pki import Validator

    crl_objs = [pki.crl, pki.root_crl]
    leaf = pki["sender"].cert
    cold_res, cold_ms = timed(
        lambda: str(Validator([pki.root.cert], crl_objs).validate(leaf, inters, NOW).reasons), max(n // 4, 5)
    )
    warm = Validator([pki.root.cert], crl_objs)
    _warm_res, warm_ms = timed(lambda: str(warm.validate(leaf, inters, NOW).reasons), n)
    print(
        f"gateway.unwrap.smime.pki.Validator (pyhanko path + own CRL/EKU/KU/key checks): "
        f"cold {cold_ms:.3f} ms, cached {warm_ms:.3f} ms, result {cold_res}"
    )
    revoked = Validator([pki.root.cert], crl_objs).validate(pki["revoked"].cert, inters, NOW)
    print(f"  revoked -> {revoked.reasons}")
    good = not warm.validate(leaf, inters, NOW).reasons
    write_rows(
        args.json_out,
        [
            row(
                "pki-validators",
                "validations/s",
                1000 / cold_ms if cold_ms else None,
                1000 / sender_hanko_ms if sender_hanko_ms else None,
                peak_rss_mb=self_peak_mb(),
                target="good signer valid, revoked rejected",
                met=good and bool(revoked.reasons),
                notes=f"N={n}; rate: a new gateway Validator per validation "
                f"({cold_ms:.3f} ms; cached {warm_ms:.3f} ms); "
                "baseline: pyhanko-certvalidator with CRLs",
            )
        ],
    )
    interop = Path(__file__).resolve().parents[2] / "shared/interop/thunderbird"
    corpus = interop / "mailnews/test/data/smime"
    if corpus.is_dir():
        from cryptography.hazmat.primitives.serialization import pkcs12

        root = x509.load_pem_x509_certificate((corpus / "TestCA.pem").read_bytes())
        bundle = pkcs12.load_pkcs12((corpus / "Alice.p12").read_bytes(), b"nss")
        assert bundle.key is not None
        spki = bundle.key.public_key().public_numbers()  # type: ignore[union-attr]
        every = [*bundle.additional_certs, *([bundle.cert] if bundle.cert else [])]
        leaf = next(c.certificate for c in every if c.certificate.public_key().public_numbers() == spki)  # type: ignore[union-attr]
        c_res, c_ms = timed(lambda: crypto_validate(root, leaf, []), n)
        h_res, h_ms = timed(lambda: hanko_validate(root, leaf, [], []), max(n // 4, 5))
        print(f"{'nss-alice':12} {c_res:46} {c_ms:6.3f}   {h_res:52} {h_ms:6.3f}")


if __name__ == "__main__":
    main()
