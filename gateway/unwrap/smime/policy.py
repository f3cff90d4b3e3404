"""One algorithm policy for everything S/MIME verifies: CMS signature, certificates, CRLs.

``min_rsa_bits`` and ``allow_sha1`` mean the same wherever a signature is checked, so an
operator who allows an old SHA-1 / RSA-1024 hierarchy gets it accepted end to end instead
of refused by a library default somewhere in the path (pyhanko's own policy refuses RSA
keys below 2048 bits whatever the configuration says). Hence pyhanko is given
:meth:`AlgorithmPolicy.for_pyhanko`, which asks this policy, and the same checks run on the
CMS signer and on every CRL.

Reason codes: ``sha1-rejected`` (SHA-1 while not allowed), ``weak-algorithm`` (MD2/MD5),
``weak-key`` (RSA below ``min_rsa_bits``, an EC curve outside the signing curves),
``unsupported-key`` / ``unsupported-algorithm`` (DSA and anything else unknown: DSA is
not supported, its keys are rare in S/MIME and its signatures fail with a bad nonce).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from asn1crypto import algos as a_algos
from asn1crypto import keys as a_keys
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pyhanko_certvalidator.policy_decl import AlgorithmUsageConstraint, AlgorithmUsagePolicy

_SIGNING_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1, ec.BrainpoolP256R1, ec.BrainpoolP384R1, ec.BrainpoolP512R1)
_BROKEN_DIGESTS = frozenset({"md2", "md4", "md5"})
_GOOD_DIGESTS = frozenset(
    {
        "sha224",
        "sha256",
        "sha384",
        "sha512",
        "sha512_224",
        "sha512_256",
        "sha3_224",
        "sha3_256",
        "sha3_384",
        "sha3_512",
        "shake256",
    }
)
#: Signature mechanisms (asn1crypto names) the gateway can verify.
_SIGNATURE_ALGOS = frozenset({"rsassa_pkcs1v15", "rsassa_pss", "ecdsa", "ed25519", "ed448"})

PublicKey = Any  # whatever cryptography's public_key() returns


@dataclass(frozen=True)
class AlgorithmPolicy:
    """The configured algorithm policy; every method returns reason codes (empty = allowed)."""

    min_rsa_bits: int = 2048
    allow_sha1: bool = False

    def digest_problems(self, name: str | None) -> list[str]:
        """A digest by asn1crypto / hashlib name (``sha1``, ``sha256``, ``md5``...)."""
        name = (name or "").lower().replace("-", "")
        if name == "sha1":
            return [] if self.allow_sha1 else ["sha1-rejected"]
        if name in _BROKEN_DIGESTS:
            return ["weak-algorithm"]
        return [] if name in _GOOD_DIGESTS else ["unsupported-algorithm"]

    def key_problems(self, key: PublicKey) -> list[str]:
        """A key that signs something: the CMS signer, a CA, a CRL issuer."""
        if isinstance(key, rsa.RSAPublicKey):
            return ["weak-key"] if key.key_size < self.min_rsa_bits else []
        if isinstance(key, ec.EllipticCurvePublicKey):
            return [] if isinstance(key.curve, _SIGNING_CURVES) else ["weak-key"]
        if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            return []
        return ["unsupported-key"]  # DSA, DH, X25519, ...

    def certificate_key_problems(self, cert: x509.Certificate) -> list[str]:
        try:
            return self.key_problems(cert.public_key())
        except (ValueError, UnsupportedAlgorithm):
            return ["unsupported-key"]

    def signed_object_problems(
        self, obj: x509.Certificate | x509.CertificateRevocationList, signer_key: PublicKey
    ) -> list[str]:
        """A certificate or CRL: its signature mechanism and digest, and the key that signed it."""
        problems = list(_mechanism_problems(obj.signature_algorithm_oid))
        if not problems:
            try:
                digest = obj.signature_hash_algorithm
            except UnsupportedAlgorithm:
                digest = None
                problems.append("unsupported-algorithm")
            if digest is not None:
                problems += self.digest_problems(_hash_name(digest))
        return problems + self.key_problems(signer_key)

    def for_pyhanko(self) -> PyhankoPolicy:
        """A fresh adapter for one path validation (it remembers why it refused)."""
        return PyhankoPolicy(self)


def _hash_name(digest: hashes.HashAlgorithm) -> str:
    return digest.name.replace("-", "_")


@functools.lru_cache(maxsize=64)
def _mechanism_problems(oid: x509.ObjectIdentifier) -> tuple[str, ...]:
    name = a_algos.SignedDigestAlgorithmId.map(oid.dotted_string)
    try:
        mechanism = a_algos.SignedDigestAlgorithm({"algorithm": name}).signature_algo
    except ValueError:
        return ("unsupported-algorithm",)
    return () if mechanism in _SIGNATURE_ALGOS else ("unsupported-algorithm",)


@functools.lru_cache(maxsize=256)
def _load_key(spki_der: bytes) -> PublicKey:
    return load_der_public_key(spki_der)


@dataclass
class PyhankoPolicy(AlgorithmUsagePolicy):
    """pyhanko's view of :class:`AlgorithmPolicy`; ``refusals`` lists the reasons it gave."""

    policy: AlgorithmPolicy
    refusals: list[str] = field(default_factory=list)

    def digest_algorithm_allowed(
        self, algo: a_algos.DigestAlgorithm, moment: datetime | None
    ) -> AlgorithmUsageConstraint:
        return self._judge(self.policy.digest_problems(str(algo["algorithm"].native)))

    def signature_algorithm_allowed(
        self,
        algo: a_algos.SignedDigestAlgorithm,
        moment: datetime | None,
        public_key: a_keys.PublicKeyInfo | None,
    ) -> AlgorithmUsageConstraint:
        try:
            mechanism = algo.signature_algo
        except ValueError:
            return self._judge(["unsupported-algorithm"])
        if mechanism not in _SIGNATURE_ALGOS:
            return self._judge(["unsupported-algorithm"])
        problems: list[str] = []
        if mechanism not in ("ed25519", "ed448"):
            try:
                problems += self.policy.digest_problems(algo.hash_algo)
            except ValueError:
                problems.append("unsupported-algorithm")
        if public_key is not None:
            try:
                problems += self.policy.key_problems(_load_key(public_key.dump()))
            except (ValueError, UnsupportedAlgorithm):
                problems.append("unsupported-key")
        return self._judge(problems)

    def _judge(self, problems: list[str]) -> AlgorithmUsageConstraint:
        if not problems:
            return AlgorithmUsageConstraint(allowed=True)
        self.refusals.extend(problems)
        return AlgorithmUsageConstraint(allowed=False, failure_reason=", ".join(problems))
