"""Verify ``X-de-mail-integrity``: DKIM's syntax and hashing, the key from the message's certificate.

TR 01201 borrows DKIM (RFC 6376) for the provider's integrity value and changes three
things, all of which this module follows rather than DKIM: the public key is the X.509
certificate in ``X-de-mail-signature-certificate`` (never DNS), which must chain to a
configured provider anchor at the message's arrival time; the canonicalisation is always
``simple/simple`` (``l=`` is forbidden, so it is ignored, never honoured: honouring it
would let anyone append unsigned text); and a field that occurs twice counts by its FIRST
occurrence, so the n-th listing of a name in ``h=`` hashes the n-th occurrence counted
from the top (a name listed more often than it occurs hashes nothing, which is how a
signer locks out a field added later). ``a=`` with a hash only (``sha256``) makes ``b=``
the hash of the header data: that proves nothing about who wrote it and is reported as
``hash-only``.

Everything the check does is written into ``steps``, one line each, so an auditor can
redo it by hand: the canonical bytes that were hashed appear as JSON strings in which
each character stands for one byte (Latin-1), so ``json.loads(s).encode("latin-1")`` gives
them back. Hostile input never raises: a malformed tag list, bad base64, an unreadable
certificate or a key of the wrong type make the result ``invalid`` with a reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.demail.headers import RawField, duplicate_flags, first_fields, split_fields
from gateway.mime.cut import canonical_crlf
from gateway.unwrap.smime.pki import PathResult

__all__ = [
    "CERTIFICATE_FIELD",
    "INTEGRITY_FIELD",
    "IntegrityResult",
    "IntegrityStatus",
    "PathValidator",
    "canonical_body",
    "parse_tag_list",
    "verify_integrity",
]

INTEGRITY_FIELD = "x-de-mail-integrity"
CERTIFICATE_FIELD = "x-de-mail-signature-certificate"
QUERY_METHOD = "x-header/x-de-mail-signature-certificate"
MAX_COVERED = 64
HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
SIGNATURES = ("rsa", "ec-dsa", "rsassa-pss")
#: Fields a reader relies on; listed in ``uncovered_headers`` when present but not in ``h=``.
_RELIED_ON = ("from", "sender", "to", "cc", "date", "subject", "reply-to", "message-id")

IntegrityStatus = Literal["valid", "invalid", "hash-only", "none"]

_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_TAG_VALUE = re.compile(r"(?:[\x21-\x3a\x3c-\x7e]+(?:[ \t]+[\x21-\x3a\x3c-\x7e]+)*)?")
_FWS = re.compile(r"\r\n(?=[ \t])")
_B_TAG = re.compile(rb"((?:^|;)[ \t\r\n]*b[ \t\r\n]*=)[^;]*")
_WSP = re.compile(r"[ \t\r\n]+")
_TRAILING_EMPTY_LINES = re.compile(rb"(?:\r\n)+\Z")


class PathValidator(Protocol):
    """What ``gateway.unwrap.smime.pki.Validator`` offers: path validation at a time."""

    def validate(self, leaf: x509.Certificate, candidates: Sequence[x509.Certificate], at: datetime) -> PathResult: ...


@dataclass(frozen=True)
class IntegrityResult:
    """The outcome of the integrity check; ``reasons`` is empty exactly when valid or hash-only.

    ``covered_headers`` are the names in ``h=`` (lower case, in order); ``uncovered_headers``
    the De-Mail fields and reader-relevant fields present in the message but not covered,
    so a caller knows which values the provider does not vouch for. ``flags`` are
    observations that do not by themselves fail the check (duplicate fields, ``l=``).
    """

    status: IntegrityStatus
    reasons: tuple[str, ...] = ()
    provider_certificate_sha256: str | None = None
    covered_headers: tuple[str, ...] = ()
    uncovered_headers: tuple[str, ...] = ()
    hash_algorithm: str | None = None
    signature_algorithm: str | None = None
    flags: tuple[str, ...] = ()
    steps: tuple[str, ...] = field(default=(), repr=False)

    def to_json(self) -> dict[str, Any]:
        """The record's shape (``steps`` included: it is the explanation ``inspect`` prints)."""
        return {
            "integrity": self.status,
            "reasons": list(self.reasons),
            "provider_certificate_sha256": self.provider_certificate_sha256,
            "covered_headers": list(self.covered_headers),
            "uncovered_headers": list(self.uncovered_headers),
            "hash_algorithm": self.hash_algorithm,
            "signature_algorithm": self.signature_algorithm,
            "flags": list(self.flags),
            "steps": list(self.steps),
        }


class _Invalid(Exception):
    """Stops the check with one reason (internal: always turned into a result)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def shown(data: bytes) -> str:
    """Bytes as a JSON string, one character per byte (Latin-1): exact and reversible."""
    return json.dumps(data.decode("latin-1"))


def parse_tag_list(value: bytes) -> dict[str, str]:
    """RFC 6376 §3.2 tag list; raises ``_Invalid("malformed-tag-list")`` on any violation.

    Folding white space is allowed around names, ``=`` and values and inside values;
    a tag that occurs twice makes the whole list invalid (RFC 6376 §3.2).
    """
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        raise _Invalid("malformed-tag-list") from None
    text = _FWS.sub("", text)
    if "\r" in text or "\n" in text:
        raise _Invalid("malformed-tag-list")
    specs = text.split(";")
    if specs and not specs[-1].strip(" \t"):
        specs.pop()  # a trailing ";" is allowed
    tags: dict[str, str] = {}
    for spec in specs:
        name, sep, val = spec.partition("=")
        name = name.strip(" \t")
        val = val.strip(" \t")
        if not sep or not _TAG_NAME.fullmatch(name) or not _TAG_VALUE.fullmatch(val):
            raise _Invalid("malformed-tag-list")
        if name in tags:
            raise _Invalid("malformed-tag-list")
        tags[name] = val
    return tags


def canonical_body(body: bytes | None) -> bytes:
    """RFC 6376 §3.4.3 "simple": trailing empty lines removed; an empty body is one CRLF."""
    data = body or b""
    data = _TRAILING_EMPTY_LINES.sub(b"", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def _b64(value: str, tag: str) -> bytes:
    try:
        return base64.b64decode(_WSP.sub("", value), validate=True)
    except (binascii.Error, ValueError):
        raise _Invalid(f"bad-base64:{tag}") from None


def _algorithm(value: str) -> tuple[str, str | None]:
    hash_name, _, sig = value.lower().partition("/")
    if hash_name not in HASHES or (sig and sig not in SIGNATURES) or (not sig and "/" in value):
        raise _Invalid("unsupported-algorithm")
    return hash_name, sig or None


def _covered(h: str) -> tuple[str, ...]:
    names = tuple(_WSP.sub("", n).lower() for n in h.split(":"))
    if not names or any(not n for n in names):
        raise _Invalid("malformed-tag-list")
    if len(names) > MAX_COVERED:
        raise _Invalid("too-many-covered-headers")
    return names


def _without_b(f: RawField) -> bytes:
    """The integrity field as hashed: ``b=`` emptied, no final line end (RFC 6376 §3.7)."""
    raw = f.raw[:-2] if f.raw.endswith(b"\r\n") else f.raw
    name, colon, value = raw.partition(b":")
    return name + colon + _B_TAG.sub(lambda m: m.group(1), value, count=1)


def _header_data(fields: tuple[RawField, ...], covered: tuple[str, ...], own: RawField, steps: list[str]) -> bytes:
    used: dict[str, int] = {}
    parts: list[bytes] = []
    for name in covered:
        n = used.get(name, 0)
        used[name] = n + 1
        matches = [f for f in fields if f.lower == name]
        if n < len(matches):
            parts.append(matches[n].raw)
            steps.append(f"hashed header {name} (occurrence {n + 1} from the top): {shown(matches[n].raw)}")
        else:
            steps.append(f"hashed header {name}: absent, contributes nothing")
    tail = _without_b(own)
    parts.append(tail)
    steps.append(f"hashed integrity field with b= emptied, no final CRLF: {shown(tail)}")
    return b"".join(parts)


def _certificate(first: dict[str, RawField], steps: list[str]) -> tuple[x509.Certificate, str]:
    f = first.get(CERTIFICATE_FIELD)
    if f is None:
        raise _Invalid("certificate-missing")
    try:
        der = base64.b64decode(_WSP.sub("", f.value_bytes.decode("ascii")), validate=True)
        cert = x509.load_der_x509_certificate(der)
        cert.public_key()
    except (UnicodeDecodeError, binascii.Error, ValueError, UnsupportedAlgorithm):
        raise _Invalid("certificate-unreadable") from None
    fingerprint = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
    steps.append(
        f"provider certificate: {cert.subject.rfc4514_string()}, "
        f"issuer {cert.issuer.rfc4514_string()}, sha256 {fingerprint}"
    )
    return cert, fingerprint


def _verify_signature(
    cert: x509.Certificate, sig_name: str, hash_name: str, signature: bytes, data: bytes, steps: list[str]
) -> None:
    algorithm = HASHES[hash_name]()
    key = cert.public_key()
    try:
        if sig_name in ("rsa", "rsassa-pss"):
            if not isinstance(key, rsa.RSAPublicKey):
                raise _Invalid("key-type-mismatch")
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15()
                if sig_name == "rsa"
                else padding.PSS(mgf=padding.MGF1(HASHES[hash_name]()), salt_length=padding.PSS.AUTO)
            )
            scheme = "RSASSA-PKCS1-v1_5" if sig_name == "rsa" else "RSASSA-PSS (MGF1 with the same hash)"
            steps.append(f"signature scheme: {scheme} with {hash_name} over the hashed header data")
            key.verify(signature, data, pad, algorithm)
        else:
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise _Invalid("key-type-mismatch")
            size = (key.curve.key_size + 7) // 8
            try:
                key.verify(signature, data, ec.ECDSA(algorithm))
                steps.append(f"signature scheme: ECDSA ({key.curve.name}) with {hash_name}, DER-encoded")
            except InvalidSignature:
                if len(signature) != 2 * size:
                    raise
                r = int.from_bytes(signature[:size], "big")
                s = int.from_bytes(signature[size:], "big")
                steps.append(f"signature scheme: ECDSA ({key.curve.name}) with {hash_name}, raw r||s")
                key.verify(encode_dss_signature(r, s), data, ec.ECDSA(algorithm))
    except InvalidSignature:
        steps.append("signature: does NOT verify with the certificate's public key")
        raise _Invalid("bad-signature") from None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        steps.append("signature: unusable with the certificate's public key")
        raise _Invalid("bad-signature") from None
    steps.append("signature: verifies with the certificate's public key")


def _uncovered(first: dict[str, RawField], covered: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(
        name
        for name in first
        if name not in covered
        and name not in (INTEGRITY_FIELD, CERTIFICATE_FIELD)
        and (name.startswith("x-de-mail-") or name in _RELIED_ON)
    )


@dataclass
class _State:
    steps: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    fingerprint: str | None = None
    covered: tuple[str, ...] = ()
    uncovered: tuple[str, ...] = ()
    hash_name: str | None = None
    sig_name: str | None = None

    def result(self, status: IntegrityStatus, reasons: Sequence[str] = ()) -> IntegrityResult:
        if reasons:
            self.steps.append("result: invalid (" + ", ".join(reasons) + ")")
        else:
            self.steps.append(f"result: {status}")
        return IntegrityResult(
            status=status,
            reasons=tuple(reasons),
            provider_certificate_sha256=self.fingerprint,
            covered_headers=self.covered,
            uncovered_headers=self.uncovered,
            hash_algorithm=self.hash_name,
            signature_algorithm=self.sig_name,
            flags=tuple(dict.fromkeys(self.flags)),
            steps=tuple(self.steps),
        )


def verify_integrity(raw: bytes, *, validator: PathValidator | None, at: datetime) -> IntegrityResult:
    """Check the integrity value of the message ``raw`` as fetched; never raises.

    ``validator`` judges the provider certificate (``trust.provider_validator``; ``None``
    when no anchors are configured, which makes every signed value invalid with
    ``no-trust-anchors``); ``at`` is the message's arrival time, at which the certificate
    path must be valid.
    """
    state = _State()
    try:
        return _verify(raw, validator, at, state)
    except _Invalid as exc:
        return state.result("invalid", (exc.reason,))
    except Exception as exc:  # noqa: BLE001 - hostile input must never stop the intake
        state.steps.append(f"check failed unexpectedly: {type(exc).__name__}")
        return state.result("invalid", ("integrity-check-failed",))


def _verify(raw: bytes, validator: PathValidator | None, at: datetime, state: _State) -> IntegrityResult:
    steps = state.steps
    data = canonical_crlf(raw)
    if data is not raw:
        steps.append("line ends: bare LF converted to CRLF before hashing (the form sent over SMTP)")
    fields, body, problems = split_fields(data)
    state.flags.extend(problems)
    state.flags.extend(d for d in duplicate_flags(fields))
    first = first_fields(fields)
    own = first.get(INTEGRITY_FIELD)
    if own is None:
        steps.append("no X-de-mail-integrity field: nothing to check")
        return state.result("none")
    count = sum(1 for f in fields if f.lower == INTEGRITY_FIELD)
    steps.append(f"integrity field: the first of {count} X-de-mail-integrity field(s): {shown(own.raw)}")
    tags = parse_tag_list(own.value_bytes)
    steps.append("tags: " + "; ".join(f"{k}={v}" for k, v in tags.items() if k not in ("b", "bh")))
    for tag in ("a", "bh", "h", "b"):
        if not tags.get(tag):
            raise _Invalid(f"missing-tag:{tag}")
    if "v" in tags and tags["v"] != "1":
        raise _Invalid("unsupported-version")
    if tags.get("c", "simple/simple").lower() not in ("simple", "simple/simple"):
        raise _Invalid("unsupported-canonicalization")
    if "l" in tags:
        state.flags.append("body-length-ignored")
        steps.append("l= present: ignored (TR 01201 forbids it); the whole body is hashed")
    state.hash_name, state.sig_name = _algorithm(tags["a"])
    state.covered = _covered(tags["h"])
    state.uncovered = _uncovered(first, state.covered)
    steps.append("covered headers (h=): " + ", ".join(state.covered))
    if state.uncovered:
        steps.append("present but NOT covered: " + ", ".join(state.uncovered))
    hash_cls = HASHES[state.hash_name]
    reasons: list[str] = []
    if "from" not in state.covered:
        reasons.append("from-not-covered")

    body_c = canonical_body(body)
    digest = hashes.Hash(hash_cls())
    digest.update(body_c)
    computed_bh = digest.finalize()
    given_bh = _b64(tags["bh"], "bh")
    steps.append(
        f"body: {len(body_c)} bytes after simple canonicalisation (trailing empty lines removed, one CRLF at the end)"
    )
    match = computed_bh == given_bh
    steps.append(
        f"body hash {state.hash_name}: computed {base64.b64encode(computed_bh).decode()}, "
        f"given {base64.b64encode(given_bh).decode()}: {'match' if match else 'MISMATCH'}"
    )
    if not match:
        reasons.append("body-hash-mismatch")

    header_data = _header_data(fields, state.covered, own, steps)
    digest = hashes.Hash(hash_cls())
    digest.update(header_data)
    header_hash = digest.finalize()
    steps.append(f"header data: {len(header_data)} bytes, {state.hash_name} {header_hash.hex()}")
    signature = _b64(tags["b"], "b")

    if state.sig_name is None:
        ok = signature == header_hash
        steps.append(
            f"hash only: b= {signature.hex()} {'equals' if ok else 'DIFFERS FROM'} the header hash "
            f"(proves no sender: anyone can compute it)"
        )
        if not ok:
            reasons.append("header-hash-mismatch")
        return state.result("invalid" if reasons else "hash-only", reasons)

    if "q" in tags and tags["q"].lower() != QUERY_METHOD:
        raise _Invalid("unsupported-query-method")
    cert, state.fingerprint = _certificate(first, steps)
    try:
        _verify_signature(cert, state.sig_name, state.hash_name, signature, header_data, steps)
    except _Invalid as exc:
        reasons.append(exc.reason)
    if validator is None:
        steps.append("certificate path: no provider trust anchors configured")
        reasons.append("no-trust-anchors")
    else:
        path = validator.validate(cert, (), at)
        path_reasons = path.reasons
        if path.ok and not path_reasons:
            names = " -> ".join(c.subject.rfc4514_string() for c in path.chain)
            steps.append(f"certificate path at {at.isoformat()}: valid ({names})")
        else:
            steps.append(f"certificate path at {at.isoformat()}: NOT valid ({', '.join(path_reasons)})")
            reasons.extend(path_reasons or ("untrusted-chain",))
    return state.result("invalid" if reasons else "valid", tuple(dict.fromkeys(reasons)))
