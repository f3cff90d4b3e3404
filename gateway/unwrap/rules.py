"""What "verified" means: the facts of a message, and a table of small named rules over them.

"Verified" is a strong word (docs/verdict.md): the whole delivered content is covered by a
valid signature, the signer certificate reaches a configured trust anchor, and the signer
is the single From address. Every scheme gets the same meaning because every scheme ends
up here.

The facts of a message are derived once (:func:`derive_facts`); each rule reads them and
returns the reasons it finds, or nothing. A message is verified when the reported
signature is valid and covers the whole content and no rule found a reason. The order of
:data:`RULES` is the order of the reasons in the verdict, which is part of the contract;
a new requirement is a new row, never a branch inside an existing rule.

:data:`WARNINGS` is a second table of the same shape for what a clerk must see about a
verified message without it being any less proven (a Reply-To naming someone other than
the signer). Warnings never make a message unverified; a route may still refuse them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import cached_property
from typing import Literal

from gateway.unwrap.identity import Identity, matching_signer, read_identity, same_address
from gateway.unwrap.layers import (
    LayerOutcome,
    Peeled,
    SignatureFinding,
    ciphertext_signatures,
    content_signatures,
)
from gateway.unwrap.verdict import EncryptionInfo, Scheme, SignatureStatus, worse

__all__ = ["CLOCK_SKEW", "RULES", "WARNINGS", "Coverage", "Decision", "Facts", "Rule", "decide", "derive_facts"]

#: Tolerance between the signer's signing time and arrival / the Date header.
CLOCK_SKEW = timedelta(hours=1)

#: What the reported signature covers: the whole delivered content, only a part of it,
#: only ciphertext (encrypt-then-sign), or there is no signature at all.
Coverage = Literal["whole", "part", "ciphertext", "none"]


@dataclass(frozen=True, kw_only=True)
class Facts:
    """What one message shows, derived once; rules only read it."""

    #: The moment certificates were validated at (arrival, or ``inspect --at``); aware.
    at: datetime
    coverage: Coverage = "none"
    #: The scheme of the reported signature layer.
    scheme: Scheme | None = None
    #: The reported signature: the outermost one covering the content, else the one over a
    #: part, else the innermost one over ciphertext. None when there is no signature layer
    #: or the layer gave no result (``coverage`` tells which).
    finding: SignatureFinding | None = None
    #: Every other signature covering the whole content, outermost first (None: no result).
    inner_findings: tuple[SignatureFinding | None, ...] = ()
    encryption: EncryptionInfo = field(default_factory=EncryptionInfo)
    #: The content could not be walked for nested parts.
    nested_unreadable: bool = False
    #: The single clear From address of the message.
    from_addr: str | None = None
    #: Why there is no single clear From address (empty exactly when ``from_addr`` is set).
    from_reasons: tuple[str, ...] = ()
    #: The message's Sender and Reply-To addresses (None: a value naming no clear address).
    sender: tuple[str | None, ...] = ()
    reply_to: tuple[str | None, ...] = ()
    #: The identity headers of the opened (protected) entity; None when nothing was opened.
    protected: Identity | None = None
    #: The outer Date header as received.
    date_header: str | None = None

    @property
    def covers_whole(self) -> bool:
        return self.coverage == "whole"

    @cached_property
    def status(self) -> SignatureStatus:
        """The reported status: the worst of all signatures covering the content."""
        return _covering_statuses(self)[0]

    @property
    def proven(self) -> bool:
        """A valid signature covers the whole content: only then do identity and time matter."""
        return self.covers_whole and self.status == "valid"

    @property
    def signer(self) -> str | None:
        """The reported signer's address that is the From address, if any."""
        return matching_signer(self.finding.signer_emails, self.from_addr) if self.finding else None


def derive_facts(peeled: Peeled, at: datetime) -> Facts:
    """The facts of a peeled message; pure (every layer is already open)."""
    coverage, reported, inner = _coverage(peeled)
    outer = read_identity(peeled.top)
    opened = peeled.final is not peeled.top
    return Facts(
        at=at,
        coverage=coverage,
        scheme=reported.scheme if reported is not None else None,
        finding=reported.signature if reported is not None else None,
        inner_findings=tuple(lay.signature for lay in inner),
        encryption=peeled.encryption,
        nested_unreadable=peeled.nested_unreadable,
        from_addr=outer.from_addr,
        from_reasons=outer.from_reasons,
        sender=outer.sender,
        reply_to=outer.reply_to,
        protected=read_identity(peeled.final) if opened else None,
        date_header=peeled.top.header("date"),
    )


def _coverage(peeled: Peeled) -> tuple[Coverage, LayerOutcome | None, tuple[LayerOutcome, ...]]:
    """What the reported signature covers, the reported layer, and the other covering layers."""
    covering = content_signatures(peeled.layers)
    if covering:
        return "whole", covering[0], covering[1:]
    if peeled.part_signature is not None:
        return "part", peeled.part_signature, ()
    over_ciphertext = ciphertext_signatures(peeled.layers)
    if over_ciphertext:
        return "ciphertext", over_ciphertext[-1], ()
    return "none", None, ()


def _covering_statuses(facts: Facts) -> tuple[SignatureStatus, tuple[str, ...]]:
    """The worst status of the covering signatures, and a reason for each inner one that made it worse.

    A message signed by two layers is only as good as the weaker one.
    """
    if facts.finding is None:
        return ("none" if facts.coverage == "none" else "error"), ()
    status = facts.finding.status
    reasons: list[str] = []
    for inner in facts.inner_findings:
        inner_status: SignatureStatus = inner.status if inner is not None else "error"
        if worse(status, inner_status) != status:
            status = inner_status
            reasons.append(f"inner-signature-{inner_status}")
    return status, tuple(reasons)


# --- the rules -----------------------------------------------------------------------

Rule = Callable[[Facts], tuple[str, ...]]

_COVERAGE_REASONS: Mapping[Coverage, tuple[str, ...]] = {
    "whole": (),
    "part": ("partially-signed",),
    "ciphertext": ("signature-over-ciphertext",),
    "none": (),
}


def _nested_parts_readable(facts: Facts) -> tuple[str, ...]:
    return ("malformed-mime",) if facts.nested_unreadable else ()


def _not_partially_encrypted(facts: Facts) -> tuple[str, ...]:
    """Encrypted parts next to plaintext: the plaintext around them is nobody's word."""
    return ("partially-encrypted",) if facts.encryption.status == "partial" else ()


def _covers_whole_content(facts: Facts) -> tuple[str, ...]:
    """A signature over a part leaves the rest unsigned; one over ciphertext says nothing
    about who wrote the plaintext."""
    return _COVERAGE_REASONS[facts.coverage]


def _signature_present(facts: Facts) -> tuple[str, ...]:
    if facts.finding is not None:
        return ()
    return ("no-signature",) if facts.coverage == "none" else ("signature-not-evaluated",)


def _signature_valid(facts: Facts) -> tuple[str, ...]:
    """The handler's reasons: why the signature is not valid (or, if valid, nothing)."""
    return facts.finding.reasons if facts.finding is not None else ()


def _every_covering_signature_valid(facts: Facts) -> tuple[str, ...]:
    return _covering_statuses(facts)[1]


def _single_from(facts: Facts) -> tuple[str, ...]:
    """Exactly one clear From address: a message from several people is not from the signer
    alone, and one whose From a mail program may show differently (``from-ambiguous``) is not
    shown to be from the signer."""
    return facts.from_reasons if facts.proven else ()


def _signer_is_from(facts: Facts) -> tuple[str, ...]:
    if not facts.proven or facts.from_addr is None:
        return ()  # no From address: single-from says why
    return () if facts.signer is not None else ("signer-not-from",)


def _every_covering_signer_is_from(facts: Facts) -> tuple[str, ...]:
    """A message signed by two parties is not "from" either of them alone."""
    if not facts.proven or facts.signer is None:
        return ()  # the reported signer is not From: signer-not-from says so
    strangers = [
        inner
        for inner in facts.inner_findings
        if inner is None or matching_signer(inner.signer_emails, facts.from_addr) is None
    ]
    return ("inner-signer-not-from",) if strangers else ()


def _protected_from_is_clear(facts: Facts) -> tuple[str, ...]:
    """A protected From that mail programs may show differently is as misleading as an outer one:
    clients that understand protected headers show it instead of the outer From."""
    if not facts.proven or facts.protected is None:
        return ()
    return ("protected-from-ambiguous",) if "from-ambiguous" in facts.protected.from_reasons else ()


def _protected_from_matches(facts: Facts) -> tuple[str, ...]:
    """The From inside the signed/encrypted entity is what the signer wrote; the outer one may
    have been changed on the way."""
    protected = facts.protected
    if not facts.proven or protected is None or "no-from" in protected.from_reasons or facts.from_addr is None:
        return ()
    if "from-ambiguous" in protected.from_reasons:
        return ()  # protected-from-is-clear says why
    if protected.from_addr is None or not same_address(protected.from_addr, facts.from_addr):
        return ("protected-from-mismatch",)
    return ()


def _signing_time_not_in_future(facts: Facts) -> tuple[str, ...]:
    """A signing time after arrival is impossible for an honest sender."""
    signed_at = _claimed_signing_time(facts)
    return ("signing-time-in-future",) if signed_at is not None and signed_at > facts.at + CLOCK_SKEW else ()


def _signing_time_fits_date(facts: Facts) -> tuple[str, ...]:
    """A signing time far from the Date header the clerk sees suggests an old signed body
    under a new envelope (Thunderbird rejects these as well)."""
    signed_at = _claimed_signing_time(facts)
    if signed_at is None or not facts.date_header:
        return ()
    try:
        date = parsedate_to_datetime(facts.date_header)
    except (TypeError, ValueError, IndexError):
        return ()
    if date.tzinfo is None or abs(date - signed_at) <= CLOCK_SKEW:
        return ()
    return ("signing-time-mismatch",)


def _claimed_signing_time(facts: Facts) -> datetime | None:
    """The signer's claimed time, when the time rules apply (a proven signature that has one)."""
    if not facts.proven or facts.finding is None or facts.finding.signing_time is None:
        return None
    signed_at = facts.finding.signing_time
    return signed_at if signed_at.tzinfo is not None else signed_at.replace(tzinfo=UTC)


#: The rules, in the order their reasons appear in the verdict.
RULES: tuple[tuple[str, Rule], ...] = (
    ("nested-parts-readable", _nested_parts_readable),
    ("not-partially-encrypted", _not_partially_encrypted),
    ("covers-whole-content", _covers_whole_content),
    ("signature-present", _signature_present),
    ("signature-valid", _signature_valid),
    ("every-covering-signature-valid", _every_covering_signature_valid),
    ("single-from", _single_from),
    ("signer-is-from", _signer_is_from),
    ("every-covering-signer-is-from", _every_covering_signer_is_from),
    ("protected-from-is-clear", _protected_from_is_clear),
    ("protected-from-matches", _protected_from_matches),
    ("signing-time-not-in-future", _signing_time_not_in_future),
    ("signing-time-fits-date", _signing_time_fits_date),
)


# --- the warnings ----------------------------------------------------------------------


def _only_the_signer(facts: Facts, named: tuple[str | None, ...]) -> bool:
    """Every address named is the verified signer's (an unclear value never is)."""
    signer = facts.signer
    if signer is None:
        return True  # no verified signer to compare with: the rules say why
    return all(addr is not None and same_address(addr, signer) for addr in named)


def _sender_is_signer(facts: Facts) -> tuple[str, ...]:
    """A Sender other than the signer is shown by mail programs as "on behalf of": the clerk
    should know that someone else handled the message (the content is still the signer's)."""
    named = (*facts.sender, *(facts.protected.sender if facts.protected else ()))
    return () if _only_the_signer(facts, named) else ("sender-not-signer",)


def _reply_to_is_signer(facts: Facts) -> tuple[str, ...]:
    """A Reply-To other than the signer sends the clerk's answer to somebody else."""
    named = (*facts.reply_to, *(facts.protected.reply_to if facts.protected else ()))
    return () if _only_the_signer(facts, named) else ("reply-to-not-signer",)


#: The warnings about a verified message, in the order they appear in the verdict.
WARNINGS: tuple[tuple[str, Rule], ...] = (
    ("sender-is-signer", _sender_is_signer),
    ("reply-to-is-signer", _reply_to_is_signer),
)


@dataclass(frozen=True)
class Decision:
    verified: bool
    #: Every reason any rule found, in table order, each once.
    reasons: tuple[str, ...]
    #: For a verified message, every warning found, in table order; empty otherwise.
    warnings: tuple[str, ...] = ()


def decide(facts: Facts) -> Decision:
    """Verified: the reported signature is valid and covers the whole content, and no rule objects.

    Warnings are about a verified signer, so only a verified message carries them.
    """
    reasons = tuple(dict.fromkeys(reason for _name, rule in RULES for reason in rule(facts)))
    verified = facts.proven and not reasons
    warnings = tuple(dict.fromkeys(w for _name, rule in WARNINGS for w in rule(facts))) if verified else ()
    return Decision(verified=verified, reasons=reasons, warnings=warnings)
