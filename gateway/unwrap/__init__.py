"""Unwrap: open every cryptographic layer of a message and say what was proven.

The pipeline calls ``unwrap(raw, ctx, at=...)`` once per message. :mod:`.layers` opens the
layers with the scheme handlers (S/MIME, OpenPGP), :mod:`.rules` decides what they prove,
and the answer is ONE verdict (:mod:`.verdict`, the documented contract). ``unwrap``
never raises: hostile bytes give a verdict or a clean quarantine result.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from gateway.mime.cut import MimeError, parse_entity
from gateway.mime.headers import decode_header_text
from gateway.unwrap.identity import single_from
from gateway.unwrap.layers import (
    LayerKind,
    LayerOutcome,
    Peeled,
    Refused,
    SchemeHandler,
    SignatureFinding,
    UnwrapContext,
    UnwrapEvent,
    peel,
)
from gateway.unwrap.rules import Decision, Facts, decide, derive_facts
from gateway.unwrap.verdict import (
    EncryptionInfo,
    EncryptionStatus,
    Scheme,
    SignatureInfo,
    TimeSource,
    Verdict,
)

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


def unwrap(raw: bytes, ctx: UnwrapContext, *, at: datetime, at_source: TimeSource = "given") -> UnwrapResult:
    """Open all layers of ``raw`` as of ``at`` and return one verdict. Never raises.

    ``at`` is the moment certificates and keys are judged at: for mail, its arrival, so
    that a certificate that expired while the message waited in the mailbox still
    verifies. ``at_source`` says which moment that is; the verdict records it.
    """
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    try:
        result = _unwrap(raw, ctx, at)
        if ctx.demail is not None and _has_demail_fields(raw):
            result = _with_demail(result, raw, ctx, at)
    except Exception as exc:  # last line of defence, the verdict says why
        log.exception("unwrap failed unexpectedly")
        result = _quarantine(raw, at, "unwrap-error", None, (), detail=type(exc).__name__)
    return replace(result, verdict=replace(result.verdict, validation_time_source=at_source))


def _has_demail_fields(raw: bytes) -> bool:
    end = raw.find(b"\r\n\r\n")
    head = raw[: end if end >= 0 else 65536].lower()
    return head.startswith(b"x-de-mail-") or b"\nx-de-mail-" in head


#: The only gap a proven authoritative De-Mail may close: an unsigned message whose one
#: problem is having no signature of its own.
_UNSIGNED = ("no-signature",)


def _with_demail(result: UnwrapResult, raw: bytes, ctx: UnwrapContext, at: datetime) -> UnwrapResult:
    """Add the De-Mail judgement (``demail.verdict.assess``) to the verdict.

    A claimed "absenderbestätigt" that is not proven makes the message unverified, with the
    reasons, whatever else verified it: the claim itself is then false. A proven one makes an
    unsigned message verified for its sender when ``treat_authoritative_as_verified`` (the
    provider vouches for the sender, §3a VwVfG); a signed message keeps its own verdict.
    """
    from gateway.demail.verdict import assess

    assert ctx.demail is not None
    judged = assess(
        raw,
        validator=ctx.demail.validator,
        at=at,
        treat_authoritative_as_verified=ctx.demail.treat_authoritative_as_verified,
    )
    verdict = replace(result.verdict, demail=judged.to_json())
    if verdict.verdict != "quarantined" and judged.reasons:
        verdict = replace(
            verdict,
            verdict="unverified",
            warnings=(),
            reasons=tuple(dict.fromkeys([*verdict.reasons, *judged.reasons])),
        )
    elif (
        judged.verified_sender is not None
        and verdict.verdict == "unverified"
        and verdict.reasons == _UNSIGNED
        and verdict.from_addr is not None
        and verdict.from_addr.lower() == judged.verified_sender.lower()
    ):
        verdict = replace(verdict, verdict="verified", reasons=())
    event = UnwrapEvent("demail-checked", {k: v for k, v in judged.to_json().items() if k != "steps"})
    return replace(result, verdict=verdict, events=(*result.events, event))


def _unwrap(raw: bytes, ctx: UnwrapContext, at: datetime) -> UnwrapResult:
    try:
        top = parse_entity(raw)
    except MimeError:
        return _quarantine(raw, at, "malformed-mime", None, ())
    peeled = peel(top, ctx, at)
    if isinstance(peeled, Refused):
        return _quarantine(
            raw,
            at,
            peeled.reason,
            single_from(top)[0],
            peeled.events,
            encryption=peeled.encryption,
            scheme=peeled.scheme,
        )
    facts = derive_facts(peeled, at)
    return _result(raw, peeled, facts, decide(facts))


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


def _result(raw: bytes, peeled: Peeled, facts: Facts, decision: Decision) -> UnwrapResult:
    opened = peeled.final is not peeled.top
    subject = peeled.final.header("subject") if opened else None
    verdict = Verdict(
        verdict="verified" if decision.verified else "unverified",
        reasons=decision.reasons,
        from_addr=facts.from_addr,
        signature=_signature_info(facts),
        encryption=facts.encryption,
        validated_at=facts.at,
        subject_source="protected" if subject is not None else "outer",
        warnings=decision.warnings,
    )
    events = peeled.events
    if facts.finding is not None:
        events = (*events, _signature_checked_event(facts, verdict))
    certificate = facts.finding.signer_certificate if facts.finding is not None else None
    return UnwrapResult(
        verdict,
        peeled.final.raw if opened else raw,
        decode_header_text(subject) if subject is not None else None,
        None,
        events,
        (certificate,) if decision.verified and certificate else (),
    )


_NO_FINDING = SignatureFinding("none")


def _signature_info(facts: Facts) -> SignatureInfo:
    finding = facts.finding or _NO_FINDING
    return SignatureInfo(
        status=facts.status,
        scheme=facts.scheme,
        # The signer that is From; otherwise the first one, so the clerk sees who it was. An
        # untrusted certificate's address is anybody's text: it is stored and shown, so clean.
        signer=facts.signer or (_shown(finding.signer_emails[0]) if finding.signer_emails else None),
        signer_certificate_sha256=finding.signer_certificate_sha256,
        signer_fingerprint=finding.signer_fingerprint,
        signing_time=finding.signing_time.isoformat() if finding.signing_time else None,
        covers_whole_message=facts.covers_whole,
        revocation=finding.revocation,
    )


def _shown(text: str) -> str:
    return decode_header_text(text, encoded_words=False)


def _signature_checked_event(facts: Facts, verdict: Verdict) -> UnwrapEvent:
    signature = verdict.signature
    return UnwrapEvent(
        "signature-checked",
        {
            "scheme": facts.scheme,
            "verdict": verdict.verdict,
            "status": signature.status,
            "reasons": list(verdict.reasons),
            "signer": signature.signer,
            "signer_certificate_sha256": signature.signer_certificate_sha256,
            **({"signer_fingerprint": signature.signer_fingerprint} if signature.signer_fingerprint else {}),
            "covers_whole_message": signature.covers_whole_message,
            "warnings": list(verdict.warnings),
        },
    )
