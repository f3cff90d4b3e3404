"""Certificate path validation for S/MIME signers (RFC 5280 + RFC 8550 usage rules).

Why pyhanko (compared in benchmarks/pki_validators.py): pyhanko-certvalidator does RFC 5280
path validation including certificate-policy processing and accepts the Thunderbird/NSS test
hierarchy; ``cryptography.x509.verification`` is faster but has no revocation and no
policy processing, and its Web PKI profile rejects real S/MIME CAs (non-critical
basicConstraints in the NSS test CA). So pyhanko builds and validates the path, and this
module adds what neither does the way S/MIME needs it:

* the one algorithm policy (policy.py) is handed to pyhanko, so certificate signatures
  and CA keys are judged by ``min_rsa_bits`` / ``allow_sha1`` like the CMS signature;
* revocation is decided by revocation.py for every non-anchor certificate of the path
  (pyhanko is given no CRLs: it would consult them only for certificates that declare a
  distribution point, and in soft-fail mode it lets a certificate pass when a CRL is
  unusable); CRLs come from ``crl_files`` and, with ``fetch_crls``, crlfetch.py;
* EKU: absent, emailProtection or anyExtendedKeyUsage (RFC 8550 §4.4.4); key usage, when
  present, allows digitalSignature or nonRepudiation;
* a validity-window cache of built paths: a path holds for any ``at`` inside the
  intersection of its certificates' validity periods (anchors are fixed at start-up), so
  known senders skip path building, the costly part. Revocation decisions are cached
  apart, on the set of CRLs they were made with (a refetch makes a new set, so a
  refetch that revokes is seen at once) and only for the times in which none of those
  CRLs starts, expires or revokes (revocation.stable_window), so a cached "good" never
  outlives a CRL's nextUpdate (+ grace).

Certificates from messages are only ever path candidates; anchors come from config.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator import errors as hv_errors

from gateway.unwrap.smime.crlfetch import CrlCache
from gateway.unwrap.smime.policy import AlgorithmPolicy
from gateway.unwrap.smime.revocation import (
    CertRevocation,
    Context,
    CrlInfo,
    CrlSet,
    RevocationMode,
    check_path,
    http_urls,
    path_reasons,
    stable_window,
)

T = TypeVar("T")
_DER = Encoding.DER
CACHE_SIZE = 4096


@dataclass(frozen=True)
class PathResult:
    """``ok`` or the reasons why the signer certificate is not trusted at that time.

    ``revocation`` holds the status of each non-anchor certificate of ``chain`` (leaf
    first) once a path was built.
    """

    ok: bool
    reasons: tuple[str, ...]
    chain: tuple[x509.Certificate, ...] = ()
    revocation: tuple[CertRevocation, ...] = ()


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
        ExtendedKeyUsageOID.EMAIL_PROTECTION in eku or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku
    ):
        problems.append("wrong-eku")
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    if ku is not None and not (ku.digital_signature or ku.content_commitment):
        problems.append("wrong-key-usage")
    return problems


def encryption_usage_problems(cert: x509.Certificate) -> list[str]:
    """RFC 8550 usage rules for a recipient certificate: EKU as for signers; key usage, when
    present, allows keyEncipherment (RSA key transport) or keyAgreement (EC key agreement)."""
    problems = [p for p in usage_problems(cert) if p == "wrong-eku"]
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return problems
    if isinstance(cert.public_key(), ec.EllipticCurvePublicKey):
        if not ku.key_agreement:
            problems.append("wrong-key-usage")
    elif not ku.key_encipherment:
        problems.append("wrong-key-usage")
    return problems


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


@dataclass(frozen=True)
class _Path:
    """A validated path (leaf first) and the times it holds for."""

    chain: tuple[x509.Certificate, ...]
    start: datetime
    end: datetime
    ids: tuple[bytes, ...]  # sha256 of each certificate: the revocation cache's key


class Validator:
    """Validates signer certificates against fixed anchors, the algorithm policy and CRLs."""

    def __init__(
        self,
        anchors: Sequence[x509.Certificate],
        crls: Sequence[x509.CertificateRevocationList | CrlInfo] = (),
        *,
        min_rsa_bits: int = 2048,
        allow_sha1: bool = False,
        revocation: RevocationMode = "if-configured",
        crl_grace: timedelta = timedelta(0),
        crl_cache: CrlCache | None = None,
    ) -> None:
        self.anchors = tuple(anchors)
        self.policy = AlgorithmPolicy(min_rsa_bits=min_rsa_bits, allow_sha1=allow_sha1)
        self.revocation: RevocationMode = revocation
        self.crl_grace = crl_grace
        self.crl_cache = crl_cache
        self._static = tuple(c if isinstance(c, CrlInfo) else CrlInfo(c, "crl_files") for c in crls)
        self._anchor_asn1 = [a_x509.Certificate.load(c.public_bytes(_DER)) for c in self.anchors]
        self._cache: OrderedDict[tuple[bytes, ...], _Path] = OrderedDict()
        self._lock = threading.Lock()
        self._fetched: tuple[CrlInfo, ...] = ()
        self._crl_set = CrlSet(self._static)

    @property
    def min_rsa_bits(self) -> int:
        return self.policy.min_rsa_bits

    @property
    def allow_sha1(self) -> bool:
        return self.policy.allow_sha1

    def validate(
        self,
        leaf: x509.Certificate,
        candidates: Sequence[x509.Certificate],
        at: datetime,
        *,
        purpose: Literal["signing", "encryption"] = "signing",
    ) -> PathResult:
        """Is ``leaf`` a usable S/MIME signer (or, ``purpose="encryption"``, recipient) certificate at ``at``?

        The path, validity and revocation are judged alike; only the key usage differs.
        """
        at = _utc(at)
        usage = usage_problems(leaf) if purpose == "signing" else encryption_usage_problems(leaf)
        static = usage + self.policy.certificate_key_problems(leaf)
        if static:
            return PathResult(False, tuple(static))
        if not self.anchors:
            return PathResult(False, ("untrusted-chain", "no-trust-anchors"))
        key = (_sha256(leaf), *sorted(_sha256(c) for c in candidates))
        with self._lock:
            path = self._cache.get(key)
            if path is not None and path.start <= at <= path.end:
                self._cache.move_to_end(key)
            else:
                path = None
        if path is None:
            built = self._build(leaf, candidates, at)
            if isinstance(built, PathResult):
                return built
            path = built
            with self._lock:
                self._cache[key] = path
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        revocation = self.check_revocation(path.chain, candidates, at, ids=path.ids)
        reasons = path_reasons(revocation)
        return PathResult(not reasons, tuple(reasons), path.chain, revocation)

    def _build(
        self, leaf: x509.Certificate, candidates: Sequence[x509.Certificate], at: datetime
    ) -> _Path | PathResult:
        """Build and validate a path with pyhanko (no revocation); the failure reasons else."""
        algorithms = self.policy.for_pyhanko()
        context = ValidationContext(
            trust_roots=self._anchor_asn1,
            other_certs=[a_x509.Certificate.load(c.public_bytes(_DER)) for c in candidates],
            moment=at,
            allow_fetching=False,
            revocation_mode="soft-fail",
            algorithm_usage_policy=algorithms,
        )
        validator = CertificateValidator(a_x509.Certificate.load(leaf.public_bytes(_DER)), validation_context=context)
        try:
            validated = _drive(validator.async_validate_path)
        except hv_errors.ExpiredError:
            return PathResult(False, ("cert-expired",))
        except hv_errors.NotYetValidError:
            return PathResult(False, ("cert-not-yet-valid",))
        except hv_errors.RevokedError:
            return PathResult(False, ("cert-revoked",))
        except hv_errors.DisallowedAlgorithmError:
            return PathResult(False, tuple(dict.fromkeys(algorithms.refusals)) or ("weak-algorithm",))
        except (hv_errors.PathBuildingError, hv_errors.PathValidationError, hv_errors.ValidationError):
            return PathResult(False, ("untrusted-chain",))
        certs = [x509.load_der_x509_certificate(c.dump()) for c in validated.iter_certs(include_root=True)]
        # iter_certs yields anchor first, leaf last.
        chain = tuple(reversed(certs))
        return _Path(
            chain,
            max(c.not_valid_before_utc for c in chain),
            min(c.not_valid_after_utc for c in chain),
            tuple(_sha256(c) for c in chain),
        )

    # --- revocation ----------------------------------------------------------------------

    def check_revocation(
        self,
        chain: tuple[x509.Certificate, ...],
        candidates: Sequence[x509.Certificate],
        at: datetime,
        *,
        ids: tuple[bytes, ...] | None = None,
    ) -> tuple[CertRevocation, ...]:
        """The revocation status of every non-anchor certificate of ``chain`` at ``at``.

        ``ids``: the certificates' sha256, when the caller has them already.
        """
        fetching = self.crl_cache is not None and self.crl_cache.fetch
        if fetching and self.revocation != "off":
            assert self.crl_cache is not None
            urls = [u for cert in chain[:-1] for u in http_urls(cert)]
            if urls:
                self.crl_cache.prepare(urls)
        ctx = Context(at, self.policy, self.crl_grace, chain, (*candidates, *self.anchors))

        def expects_crl(cert: x509.Certificate) -> bool:
            return fetching and bool(http_urls(cert))

        crls = self.crl_set()
        key = ids if ids is not None else tuple(_sha256(c) for c in chain)
        hit = crls.memo.get(key)
        if hit is not None and hit[0] <= at < hit[1]:
            results: tuple[CertRevocation, ...] = hit[2]
        else:
            results = check_path(chain, crls, ctx, mode=self.revocation, expects_crl=expects_crl)
            window = stable_window(chain, crls, at, self.crl_grace)
            if window is not None:
                if len(crls.memo) >= CACHE_SIZE:
                    crls.memo.clear()
                crls.memo[key] = (*window, results)
        return tuple(self._with_fetch_problems(r, c) for r, c in zip(results, chain, strict=False))

    def crl_set(self) -> CrlSet:
        """Configured and fetched CRLs as of now (rebuilt only when the cache changed)."""
        if self.crl_cache is None:
            return self._crl_set
        fetched = self.crl_cache.snapshot()
        with self._lock:
            if fetched is not self._fetched:
                self._crl_set = CrlSet((*self._static, *fetched))
                self._fetched = fetched
            return self._crl_set

    def _with_fetch_problems(self, result: CertRevocation, cert: x509.Certificate) -> CertRevocation:
        if result.status != "unknown" or self.crl_cache is None:
            return result
        failed = []
        for url in http_urls(cert):
            state = self.crl_cache.state(url)
            if state is not None and state.last_error is not None:
                failed.append("crl-fetch-failed")
        if not failed:
            return result
        return dataclasses.replace(result, problems=tuple(dict.fromkeys((*result.problems, *failed))))

    # --- reporting (``poststelle check``) ------------------------------------------------

    def crl_report(self, now: datetime) -> list[CrlReport]:
        """Each anchor's CRL state, then each fetched distribution point's, as of ``now``.

        Fetches what is due first (when fetching is on), so the report shows what the
        next message would be checked against.
        """
        if self.revocation == "off":
            return [CrlReport("revocation", True, "revocation = off: certificates are not checked")]
        states = self.crl_cache.refresh_due() if self.crl_cache is not None else []
        crls = self.crl_set()
        out = [self._anchor_report(anchor, crls, now) for anchor in self.anchors]
        for state in states:
            newest = state.newest
            if newest is None:
                out.append(CrlReport(state.url, False, f"no CRL fetched: {state.last_error}"))
                continue
            ok = _current(newest, now, self.crl_grace)
            detail = _describe(newest) + ("" if ok else " (expired)")
            if state.last_error:
                detail += f"; last fetch failed: {state.last_error}"
            out.append(CrlReport(state.url, ok, detail))
        return out

    def _anchor_report(self, anchor: x509.Certificate, crls: CrlSet, now: datetime) -> CrlReport:
        name = anchor.subject.rfc4514_string()
        own = [i for i in crls.for_issuer(anchor.subject) if i.delta_base is None]
        if not own:
            required = self.revocation == "require"
            detail = (
                "no CRL: certificates it issues are revocation-unknown"
                if required
                else "no CRL: certificates it issues are not checked"
            )
            return CrlReport(name, not required, detail)
        usable = [i for i in own if not i.problem and not i.signer_problems(anchor, self.policy)]
        if not usable:
            problems = {p for i in own for p in (i.problem, *i.signer_problems(anchor, self.policy)) if p}
            return CrlReport(name, False, "no usable CRL: " + ", ".join(sorted(problems)))
        newest = max(usable, key=lambda i: (i.this_update, i.number or -1))
        if _current(newest, now, self.crl_grace):
            return CrlReport(name, True, _describe(newest))
        return CrlReport(name, False, _describe(newest) + " (expired)")


@dataclass(frozen=True)
class CrlReport:
    """One line of ``poststelle check``: an anchor's (or a fetched URL's) CRL state."""

    target: str
    ok: bool
    detail: str


def _current(info: CrlInfo, now: datetime, grace: timedelta) -> bool:
    return info.this_update <= now and info.next_update is not None and now <= info.next_update + grace


def _describe(info: CrlInfo) -> str:
    number = f"CRL #{info.number}" if info.number is not None else "CRL"
    nxt = info.next_update.isoformat() if info.next_update else "none"
    return f"{number} from {info.source}, thisUpdate {info.this_update.isoformat()}, nextUpdate {nxt}"
