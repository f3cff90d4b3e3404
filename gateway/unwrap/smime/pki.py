"""Certificate path validation for S/MIME signers (RFC 5280 + RFC 8550 usage rules).

Why pyhanko (compared in benchmarks/pki_validators.py): pyhanko-certvalidator does RFC 5280
path validation including certificate-policy processing and accepts the Thunderbird/NSS test
hierarchy; ``cryptography.x509.verification`` is faster but has no revocation and no
policy processing, and its Web PKI profile rejects real S/MIME CAs (non-critical
basicConstraints in the NSS test CA). So pyhanko builds and validates the path, and this
module adds what neither does the way S/MIME needs it:

* configured CRLs are consulted for *every* certificate of the path (pyhanko consults
  CRLs only for certificates that declare a distribution point: a revoked certificate
  without one passes even in "hard-fail" mode);
* EKU: absent, emailProtection or anyExtendedKeyUsage (RFC 8550 §4.4.4); key usage, when
  present, allows digitalSignature or nonRepudiation; minimum RSA size / known EC curves;
* a validity-window cache: a successful validation holds for any ``at`` inside the
  intersection of the path's validity periods and CRL update windows, because anchors and
  CRLs are fixed at start-up, so known senders skip path building, the costly part.

Certificates from messages are only ever path candidates; anchors come from config.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import itertools
import threading
from collections import OrderedDict
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator import errors as hv_errors

T = TypeVar("T")
_DER = Encoding.DER
_SIGNING_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1, ec.BrainpoolP256R1,
                   ec.BrainpoolP384R1, ec.BrainpoolP512R1)
CACHE_SIZE = 4096


@dataclass(frozen=True)
class PathResult:
    """``ok`` or the reasons why the signer certificate is not trusted at that time."""

    ok: bool
    reasons: tuple[str, ...]
    chain: tuple[x509.Certificate, ...] = ()


def _utc(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@functools.lru_cache(maxsize=1024)
def _sha256(cert: x509.Certificate) -> bytes:
    return hashlib.sha256(cert.public_bytes(_DER)).digest()


def usage_problems(cert: x509.Certificate) -> list[str]:
    """RFC 8550 usage rules for a signer certificate."""
    problems: list[str] = []
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is not None and not (
        ExtendedKeyUsageOID.EMAIL_PROTECTION in eku
        or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku
    ):
        problems.append("wrong-eku")
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    if ku is not None and not (ku.digital_signature or ku.content_commitment):
        problems.append("wrong-key-usage")
    return problems


def key_problems(cert: x509.Certificate, min_rsa_bits: int) -> list[str]:
    try:
        key = cert.public_key()
    except (ValueError, TypeError):
        return ["unsupported-key"]
    if isinstance(key, rsa.RSAPublicKey):
        return ["weak-key"] if key.key_size < min_rsa_bits else []
    if isinstance(key, ec.EllipticCurvePublicKey):
        return [] if isinstance(key.curve, _SIGNING_CURVES) else ["weak-key"]
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return []
    return ["unsupported-key"]


def _drive(factory: Any) -> Any:
    """Run a pyhanko coroutine that does no I/O without an event loop.

    With fetching disabled, pyhanko's coroutines never suspend, so one ``send`` runs them
    to completion (cheaper than an event loop, and it works when the caller is
    itself inside a running loop). Should one ever suspend, it is re-run from scratch in
    a helper thread with its own loop.
    """
    coro: Coroutine[Any, Any, Any] = factory()
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


class Validator:
    """Validates signer certificates against fixed anchors and CRLs."""

    def __init__(
        self,
        anchors: Sequence[x509.Certificate],
        crls: Sequence[x509.CertificateRevocationList] = (),
        *,
        min_rsa_bits: int = 2048,
        allow_sha1: bool = False,
    ) -> None:
        self.anchors = tuple(anchors)
        self.crls = tuple(crls)
        self.min_rsa_bits = min_rsa_bits
        self.allow_sha1 = allow_sha1
        self._anchor_asn1 = [a_x509.Certificate.load(c.public_bytes(_DER)) for c in self.anchors]
        self._anchor_ids = {_sha256(c) for c in self.anchors}
        self._weak = {"md2", "md5"} | (set() if allow_sha1 else {"sha1"})
        self._cache: OrderedDict[tuple[bytes, ...], tuple[datetime, datetime, PathResult]] = (
            OrderedDict())
        self._lock = threading.Lock()

    def validate(
        self, leaf: x509.Certificate, candidates: Sequence[x509.Certificate], at: datetime
    ) -> PathResult:
        """Is ``leaf`` a usable S/MIME signer certificate at ``at``?"""
        at = _utc(at)
        static = usage_problems(leaf) + key_problems(leaf, self.min_rsa_bits)
        if static:
            return PathResult(False, tuple(static))
        if not self.anchors:
            return PathResult(False, ("untrusted-chain", "no-trust-anchors"))
        key = (_sha256(leaf), *sorted(_sha256(c) for c in candidates))
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] <= at <= hit[1]:
                self._cache.move_to_end(key)
                return hit[2]
        result, window = self._validate(leaf, candidates, at)
        if result.ok and window is not None:
            with self._lock:
                self._cache[key] = (window[0], window[1], result)
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return result

    def _validate(
        self, leaf: x509.Certificate, candidates: Sequence[x509.Certificate], at: datetime
    ) -> tuple[PathResult, tuple[datetime, datetime] | None]:
        context = ValidationContext(
            trust_roots=self._anchor_asn1,
            other_certs=[a_x509.Certificate.load(c.public_bytes(_DER)) for c in candidates],
            moment=at,
            allow_fetching=False,
            revocation_mode="soft-fail",
            weak_hash_algos=self._weak,
        )
        validator = CertificateValidator(
            a_x509.Certificate.load(leaf.public_bytes(_DER)), validation_context=context
        )
        try:
            path = _drive(validator.async_validate_path)
        except hv_errors.ExpiredError:
            return PathResult(False, ("cert-expired",)), None
        except hv_errors.NotYetValidError:
            return PathResult(False, ("cert-not-yet-valid",)), None
        except hv_errors.RevokedError:
            return PathResult(False, ("cert-revoked",)), None
        except hv_errors.DisallowedAlgorithmError as exc:
            weak = "sha1-rejected" if "sha1" in str(exc).lower() else "weak-algorithm"
            return PathResult(False, (weak,)), None
        except hv_errors.PathBuildingError:
            return PathResult(False, ("untrusted-chain",)), None
        except (hv_errors.PathValidationError, hv_errors.ValidationError):
            return PathResult(False, ("untrusted-chain",)), None
        certs = [
            x509.load_der_x509_certificate(c.dump()) for c in path.iter_certs(include_root=True)
        ]
        # iter_certs yields anchor first, leaf last.
        chain = tuple(reversed(certs))
        problems: list[str] = []
        for cert in chain[1:]:
            if _sha256(cert) not in self._anchor_ids:
                problems += key_problems(cert, self.min_rsa_bits)
        revoked, crl_window = self._crl_check(chain, at)
        problems += revoked
        if problems:
            return PathResult(False, tuple(dict.fromkeys(problems)), chain), None
        start = max(c.not_valid_before_utc for c in chain)
        end = min(c.not_valid_after_utc for c in chain)
        if crl_window is not None:
            start, end = max(start, crl_window[0]), min(end, crl_window[1])
        return PathResult(True, (), chain), (start, end)

    def _crl_check(
        self, chain: tuple[x509.Certificate, ...], at: datetime
    ) -> tuple[list[str], tuple[datetime, datetime] | None]:
        """Configured CRLs for every non-anchor certificate of the path (leaf first).

        A CRL issued after ``at`` still answers "was it revoked at ``at``?" through the
        revocation dates (auditors re-check old messages with today's CRLs); a CRL whose
        nextUpdate lies before ``at`` is stale and makes the path untrusted.
        """
        problems: list[str] = []
        start: datetime | None = None
        end: datetime | None = None
        for cert, issuer in itertools.pairwise(chain):
            for crl in self.crls:
                if crl.issuer != cert.issuer or not _crl_signed_by(crl, issuer):
                    continue
                nxt = crl.next_update_utc
                if nxt is not None and nxt < at:
                    problems.append("crl-not-current")
                    continue
                start = datetime.min.replace(tzinfo=UTC)
                if nxt is not None:
                    end = nxt if end is None else min(end, nxt)
                entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
                if entry is not None:
                    if entry.revocation_date_utc <= at:
                        problems.append("cert-revoked")
                    else:
                        # Revoked later than ``at``: fine at ``at``, but not cacheable past it.
                        end = entry.revocation_date_utc if end is None else min(
                            end, entry.revocation_date_utc)
        if start is None:
            return problems, None
        far = datetime.max.replace(tzinfo=UTC)
        return problems, (start, end or far)


def _crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    try:
        return crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (InvalidSignature, TypeError, ValueError):
        return False
