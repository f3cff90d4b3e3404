"""Unwrap layer: open every cryptographic layer of a message and say what was proven.

The pipeline calls ``unwrap(raw, ctx, at=...)`` once per message. Scheme handlers
(S/MIME here, OpenPGP later) each open one layer; the dispatcher loop below peels layers
in order (signed-then-encrypted, encrypted-then-signed, triple wrap) up to a fixed depth
and then combines the layer outcomes into ONE verdict. The rules that make a message
"verified" live only here, so that every scheme gets the same meaning of the word:

* the deciding signature covers the whole delivered content: it is a layer of the chain
  below the innermost encryption layer (a signature over ciphertext proves nothing
  about who wrote the plaintext, and a signature over a nested part leaves the rest
  unsigned);
* its status is ``valid`` (cryptographically correct, certificate path to a configured
  anchor at ``at``);
* its signer equals the single From address.

``unwrap`` never raises: hostile bytes give a verdict or a clean quarantine result.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from email.policy import default as _default_policy
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from gateway.mime.cut import Entity, MimeError, parse_entity, walk
from gateway.unwrap.verdict import (
    EncryptionInfo,
    EncryptionStatus,
    Scheme,
    SignatureInfo,
    SignatureStatus,
    Verdict,
)

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.unwrap.certstore import CertStore

__all__ = [
    "LayerKind",
    "LayerOutcome",
    "SchemeHandler",
    "SignatureFinding",
    "UnwrapContext",
    "UnwrapEvent",
    "UnwrapResult",
    "unwrap",
]

log = logging.getLogger(__name__)

LayerKind = Literal["signed", "encrypted"]
#: Bound on cryptographic layers (triple wrap needs 3); more is an attack or a loop.
MAX_LAYERS = 8
_RANK: dict[SignatureStatus, int] = {
    "valid": 0, "untrusted": 1, "none": 2, "error": 3, "invalid": 4,
}
#: Tolerance between the signer's signing time and arrival / the Date header.
CLOCK_SKEW = timedelta(hours=1)


@dataclass(frozen=True)
class UnwrapEvent:
    """One audit-trail entry; ``details`` is JSON-able and never holds secrets."""

    type: str  # "decrypted" | "verified" | "key-used" | "decryption-failed"
    details: dict[str, Any]


@dataclass(frozen=True)
class UnwrapResult:
    verdict: Verdict
    content: bytes
    inner_subject: str | None
    quarantine_reason: str | None
    events: tuple[UnwrapEvent, ...]
    #: DER of the signer certificate of a verified message, for the correspondents' store;
    #: the caller stores it after the message is committed (analysis does no I/O).
    signer_certificates: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class SignatureFinding:
    """What one signature layer proved, before the identity and coverage rules."""

    status: SignatureStatus
    reasons: tuple[str, ...] = ()
    signer_emails: tuple[str, ...] = ()
    signer_certificate_sha256: str | None = None
    signer_fingerprint: str | None = None
    signing_time: datetime | None = None
    #: DER of the signer certificate, for the correspondents' store (only when valid).
    signer_certificate: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class LayerOutcome:
    """The result of opening one layer.

    ``inner`` is the opened entity (headers + body, CRLF) or None when the layer could
    not be opened; an encrypted layer with ``inner is None`` must carry ``failure``
    (a reason code) and sends the message to quarantine.

    An encrypted layer may carry a ``signature``: the signature was inside the encryption
    and covers ``inner`` (OpenPGP sign+encrypt in one, RFC 3156 §6.2); it counts like a
    signed layer directly below this one.

    ``partial`` marks a layer that protects only part of the entity (inline PGP with
    unprotected text around the armored block): the dispatcher stops there and treats it
    like a nested part (partially signed / partially encrypted, never merged); ``inner``
    is then None and a partial encrypted layer is not a decryption failure.
    """

    kind: LayerKind
    scheme: Scheme
    inner: bytes | None
    signature: SignatureFinding | None = None
    failure: str | None = None
    events: tuple[UnwrapEvent, ...] = ()
    partial: bool = False


class SchemeHandler(Protocol):
    """One cryptographic message format (S/MIME, OpenPGP)."""

    scheme: Scheme

    def claims(self, entity: Entity) -> LayerKind | None:
        """Which kind of layer ``entity`` is in this scheme, or None (headers only, cheap)."""
        ...

    def open(self, entity: Entity, *, at: datetime) -> LayerOutcome:
        """Open one layer; must not raise for malformed input (return a failure outcome)."""
        ...


class UnwrapContext:
    """Handlers and limits, built once at start-up."""

    def __init__(
        self,
        handlers: Sequence[SchemeHandler] = (),
        *,
        certstore: CertStore | None = None,
        max_depth: int = 20,
        max_parts: int = 500,
    ) -> None:
        self.handlers = tuple(handlers)
        self.certstore = certstore
        self.max_depth = max_depth
        self.max_parts = max_parts

    @classmethod
    def from_config(cls, config: Config, *, collect_certificates: bool = True) -> UnwrapContext:
        """Load keys, anchors and CRLs; raises ConfigError on unusable material.

        ``config.smime`` may be None: S/MIME messages are then still recognised and fail
        closed (no key, no anchor) instead of passing as plain mail.
        ``collect_certificates=False`` is for read-only use such as ``inspect``.
        """
        from gateway.unwrap.certstore import CertStore
        from gateway.unwrap.openpgp.handler import OpenPGPHandler
        from gateway.unwrap.smime.handler import SmimeHandler

        store_dir = config.storage.state_dir / "certstore" / "smime"
        store = CertStore(store_dir) if collect_certificates else None
        return cls(
            [SmimeHandler.from_config(config.smime, config_file=str(config.path)),
             OpenPGPHandler.from_config(config.openpgp, config_file=str(config.path),
                                        max_output=config.limits.max_message_bytes)],
            certstore=store,
            max_depth=config.limits.max_mime_depth,
            max_parts=config.limits.max_mime_parts,
        )

    def close(self) -> None:
        """Release what handlers hold (the OpenPGP handler stops its gpg-agent)."""
        for handler in self.handlers:
            close = getattr(handler, "close", None)
            if callable(close):
                close()

    def handler_for(self, entity: Entity) -> tuple[SchemeHandler, LayerKind] | None:
        for handler in self.handlers:
            kind = handler.claims(entity)
            if kind is not None:
                return handler, kind
        return None


def unwrap(raw: bytes, ctx: UnwrapContext, *, at: datetime) -> UnwrapResult:
    """Open all layers of ``raw`` and return one verdict. Never raises."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    try:
        return _unwrap(raw, ctx, at)
    except Exception as exc:  # last line of defence, the verdict says why
        log.exception("unwrap failed unexpectedly")
        return _quarantine(raw, at, "unwrap-error", None, (), detail=type(exc).__name__)


# --- the dispatcher loop -------------------------------------------------------------


def _quarantine(
    raw: bytes,
    at: datetime,
    reason: str,
    from_addr: str | None,
    events: Sequence[UnwrapEvent],
    *,
    detail: str | None = None,
    encryption: EncryptionStatus = "none",
    scheme: Scheme | None = None,
) -> UnwrapResult:
    verdict = Verdict(
        verdict="quarantined",
        reasons=(reason,),
        from_addr=from_addr,
        signature=SignatureInfo(status="error" if reason == "unwrap-error" else "none"),
        encryption=EncryptionInfo(status=encryption, scheme=scheme),
        validated_at=at,
    )
    if detail:
        log.warning("message quarantined: %s (%s)", reason, detail)
    return UnwrapResult(verdict, raw, None, reason, tuple(events))


def _unwrap(raw: bytes, ctx: UnwrapContext, at: datetime) -> UnwrapResult:
    try:
        top = parse_entity(raw)
    except MimeError:
        return _quarantine(raw, at, "malformed-mime", None, ())
    from_addr, from_reasons = single_from(top)

    layers: list[LayerOutcome] = []
    events: list[UnwrapEvent] = []
    partial: LayerOutcome | None = None
    entity = top
    for _ in range(MAX_LAYERS + 1):
        found = ctx.handler_for(entity)
        if found is None:
            break
        if len(layers) == MAX_LAYERS:
            return _quarantine(raw, at, "too-many-layers", from_addr, events)
        handler, _kind = found
        outcome = handler.open(entity, at=at)
        events.extend(outcome.events)
        if outcome.partial:
            partial = outcome  # like a nested part: reported by _combine, never opened further
            break
        layers.append(outcome)
        if outcome.kind == "encrypted" and outcome.inner is None:
            # Never pass partially decrypted content on: quarantine the original bytes.
            return _quarantine(raw, at, outcome.failure or "decryption-failed", from_addr, events,
                               encryption="failed", scheme=outcome.scheme)
        if outcome.inner is None:
            break
        try:
            entity = parse_entity(outcome.inner, crlf=True)  # inner is CRLF (LayerOutcome)
        except MimeError:
            return _quarantine(raw, at, "malformed-mime", from_addr, events)

    return _combine(raw, top, entity, layers, from_addr, from_reasons, events, ctx, at, partial)


def _combine(
    raw: bytes,
    top: Entity,
    final: Entity,
    layers: list[LayerOutcome],
    from_addr: str | None,
    from_reasons: tuple[str, ...],
    events: list[UnwrapEvent],
    ctx: UnwrapContext,
    at: datetime,
    partial: LayerOutcome | None = None,
) -> UnwrapResult:
    reasons: list[str] = []

    # Nested S/MIME (or OpenPGP) parts inside the final content: partial encryption or
    # partial signing. Encrypted parts are never opened here (no decryption oracle, never
    # merged with the attacker-controllable surroundings).
    nested_encrypted = False
    nested_signed: list[tuple[SchemeHandler, Entity]] = []
    try:
        for part in walk(final, max_depth=ctx.max_depth, max_parts=ctx.max_parts):
            found = ctx.handler_for(part)
            if found is None:
                continue
            if found[1] == "encrypted":
                nested_encrypted = True
            else:
                nested_signed.append((found[0], part))
    except MimeError:
        reasons.append("malformed-mime")
    if partial is not None and partial.kind == "encrypted":
        nested_encrypted = True
    partial_signed = partial if partial is not None and partial.kind == "signed" else None

    enc_layers = [i for i, lay in enumerate(layers) if lay.kind == "encrypted"]
    last_enc = enc_layers[-1] if enc_layers else -1
    covering = [lay for lay in layers[last_enc + 1 :] if lay.kind == "signed"]
    # A signature inside an encryption layer (OpenPGP sign+encrypt in one) covers that
    # layer's plaintext: for the innermost encryption it covers the content, for an
    # outer one it covers the ciphertext of the next layer.
    if enc_layers and layers[last_enc].signature is not None:
        covering.insert(0, layers[last_enc])
    over_ciphertext = [lay for lay in layers[: last_enc + 1]
                       if lay.kind == "signed" or (lay.signature is not None and lay is not layers[last_enc])]

    enc_scheme: Scheme | None = layers[last_enc].scheme if enc_layers else None
    enc_status: EncryptionStatus = "decrypted" if enc_layers else "none"
    if nested_encrypted:
        enc_status = "partial"
        reasons.append("partially-encrypted")
        if enc_scheme is None:
            enc_scheme = next(h.scheme for h in ctx.handlers)

    covers_whole = False
    decisive: LayerOutcome | None = None
    finding: SignatureFinding | None = None
    if covering:
        # The outermost covering signature is reported; every covering signature must be
        # valid, and (below) every one must be by the From address: a message signed by
        # two parties is not "from" either of them alone.
        decisive = covering[0]
        finding = decisive.signature
        covers_whole = True
        for other in covering[1:]:
            st = other.signature.status if other.signature else "error"
            if finding is not None and _RANK[st] > _RANK[finding.status]:
                finding = replace(finding, status=st, signer_certificate=None,
                                  reasons=(*finding.reasons, "inner-signature-" + st))
    elif nested_signed or partial_signed is not None:
        if partial_signed is not None:
            nested = partial_signed  # inline signature with unsigned text around it
        else:
            handler, part = nested_signed[0]
            nested = handler.open(part, at=at)
            events.extend(nested.events)
        decisive, finding = nested, nested.signature
        reasons.append("partially-signed")
    elif over_ciphertext:
        decisive = over_ciphertext[-1]
        finding = decisive.signature
        reasons.append("signature-over-ciphertext")

    sig_status: SignatureStatus = "none"
    if finding is None:
        if decisive is not None:
            sig_status = "error"
            reasons.append("signature-not-evaluated")
        else:
            reasons.append("no-signature")
    else:
        sig_status = finding.status
        reasons.extend(r for r in finding.reasons if r not in reasons)

    signer = _matching_signer(finding, from_addr) if finding else None
    if sig_status == "valid" and covers_whole:
        if from_reasons:
            reasons.extend(from_reasons)
        elif signer is None:
            reasons.append("signer-not-from")
        elif any(lay.signature is None or _matching_signer(lay.signature, from_addr) is None
                 for lay in covering[1:]):
            reasons.append("inner-signer-not-from")
        inner_from = final.header("from") if final is not top else None
        if inner_from is not None and from_addr is not None:
            inner_addr, inner_reasons = single_from(final)
            if inner_reasons or inner_addr is None or not same_address(inner_addr, from_addr):
                reasons.append("protected-from-mismatch")

    if sig_status == "valid" and covers_whole and finding is not None:
        reasons.extend(_time_problems(finding.signing_time, top, at))

    verified = sig_status == "valid" and covers_whole and not reasons
    if finding is not None and signer is None and finding.signer_emails:
        signer = finding.signer_emails[0]

    inner_subject: str | None = None
    subject_source: Literal["outer", "protected"] = "outer"
    if final is not top:
        subj = final.header("subject")
        if subj is not None:
            inner_subject = decode_text(subj)
            subject_source = "protected"

    signature = SignatureInfo(
        status=sig_status,
        scheme=decisive.scheme if decisive else None,
        signer=signer,
        signer_certificate_sha256=finding.signer_certificate_sha256 if finding else None,
        signer_fingerprint=finding.signer_fingerprint if finding else None,
        signing_time=finding.signing_time.isoformat() if finding and finding.signing_time else None,
        covers_whole_message=covers_whole,
    )
    verdict = Verdict(
        verdict="verified" if verified else "unverified",
        reasons=tuple(dict.fromkeys(reasons)),
        from_addr=from_addr,
        signature=signature,
        encryption=EncryptionInfo(status=enc_status, scheme=enc_scheme),
        validated_at=at,
        subject_source=subject_source,
    )
    if decisive is not None and decisive.signature is not None:
        events.append(UnwrapEvent("verified", {
            "scheme": decisive.scheme,
            "verdict": verdict.verdict,
            "status": sig_status,
            "reasons": list(verdict.reasons),
            "signer": signer,
            "signer_certificate_sha256": signature.signer_certificate_sha256,
            **({"signer_fingerprint": signature.signer_fingerprint} if signature.signer_fingerprint else {}),
            "covers_whole_message": covers_whole,
        }))
    cert_der = finding.signer_certificate if finding is not None else None
    collect = (cert_der,) if verified and cert_der else ()
    content = final.raw if final is not top else raw
    return UnwrapResult(verdict, content, inner_subject, None, tuple(events), collect)


# --- identity ------------------------------------------------------------------------


def single_from(entity: Entity) -> tuple[str | None, tuple[str, ...]]:
    """The one From address (addr-spec), or None with reasons; display names are ignored."""
    values = entity.header_all("from")
    if not values:
        return None, ("no-from",)
    if len(values) > 1:
        return None, ("multiple-from",)
    return _from_value(values[0])


@functools.lru_cache(maxsize=1024)
def _from_value(value: str) -> tuple[str | None, tuple[str, ...]]:
    """One From header value, parsed by ``email`` (RFC 5322 address lists, groups, comments).

    Cached by the value: correspondents write again and again, and the parse is a tenth
    of opening a signed message. A pure function of the string, so a hit is exact.
    """
    try:
        header = _default_policy.header_factory("From", value)
        addresses = header.addresses
    except Exception:  # noqa: BLE001 - the email parser has no single error type
        return None, ("from-unparseable",)
    if len(addresses) > 1:
        return None, ("multiple-from",)
    if not addresses:
        return None, ("from-unparseable",)
    addr = str(addresses[0].addr_spec)
    local, at_sign, domain = addr.rpartition("@")
    if not at_sign or not local or not domain or any(c.isspace() for c in addr):
        return None, ("from-unparseable",)
    return addr, ()


def same_address(a: str, b: str) -> bool:
    """Local parts compared exactly, domains case-insensitively (RFC 5321 §2.4)."""
    la, _, da = a.rpartition("@")
    lb, _, db = b.rpartition("@")
    return la == lb and da.lower() == db.lower()


def _matching_signer(finding: SignatureFinding, from_addr: str | None) -> str | None:
    if from_addr is None:
        return None
    for email in finding.signer_emails:
        if same_address(email, from_addr):
            return email
    return None


def _time_problems(signing_time: datetime | None, top: Entity, at: datetime) -> list[str]:
    """The signer's claimed time must fit the arrival time and the message Date.

    A signing time after arrival is impossible for an honest sender; one far from the
    Date header the clerk sees suggests an old signed body under a new envelope
    (Thunderbird rejects these as well).
    """
    if signing_time is None:
        return []
    if signing_time.tzinfo is None:
        signing_time = signing_time.replace(tzinfo=UTC)
    problems = []
    if signing_time > at + CLOCK_SKEW:
        problems.append("signing-time-in-future")
    date_value = top.header("date")
    if date_value:
        try:
            date = parsedate_to_datetime(date_value)
        except (TypeError, ValueError, IndexError):
            date = None
        if date is not None and date.tzinfo is not None and abs(date - signing_time) > CLOCK_SKEW:
            problems.append("signing-time-mismatch")
    return problems


def decode_text(value: str) -> str:
    """RFC 2047 decoding of a header value; undecodable input is returned as is."""
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # noqa: BLE001 - email.header raises several unrelated types
        return value
