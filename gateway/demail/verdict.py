"""What a De-Mail proves: the metadata, the integrity result and the "absenderbestätigt" rule.

A De-Mail sent "absenderbestätigt" (``X-de-mail-authoritative: yes``) has its sender
confirmed by the provider, so with ``treat_authoritative_as_verified`` it counts as
verified for that sender's address even without S/MIME. The claim is only a header
anyone can write, so it counts only when everything it rests on is proven: the integrity
value is ``valid`` (provider signature, certificate chaining to a provider anchor), the
signature covers ``X-de-mail-authoritative`` and ``From``, there is exactly one ``From``
with exactly one address, and a covered ``X-de-mail-sender`` names the same address.
Anything less leaves the message unverified with reasons that say which part is missing.
Kept apart from the S/MIME/OpenPGP verdict so that each scheme reports its own proof.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import getaddresses
from typing import Any

from gateway.demail.headers import DemailMeta, parse_demail_headers
from gateway.demail.integrity import IntegrityResult, PathValidator, verify_integrity

__all__ = ["AUTHORITATIVE_NOT_COVERED", "AUTHORITATIVE_UNPROVEN", "DemailVerdict", "assess"]

AUTHORITATIVE_UNPROVEN = "demail-authoritative-unproven"
AUTHORITATIVE_NOT_COVERED = "demail-authoritative-not-covered"
FROM_NOT_SINGLE = "demail-from-not-single"
SENDER_MISMATCH = "demail-sender-mismatch"


@dataclass(frozen=True)
class DemailVerdict:
    """The De-Mail part of a message's verdict.

    ``verified_sender`` is the address the provider vouches for, set only when the
    authoritative claim is proven and the policy lets it count as verified. ``reasons``
    say why a claimed authoritative De-Mail is not proven (empty when nothing was claimed
    or all of it is proven).
    """

    meta: DemailMeta
    integrity: IntegrityResult
    authoritative_proven: bool
    verified_sender: str | None
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """``{"integrity": ..., "authoritative": ..., "provider_certificate_sha256": ..., ...}``."""
        shaped = self.integrity.to_json()
        integrity_reasons = shaped.pop("reasons")
        return {
            **shaped,
            "integrity_reasons": integrity_reasons,
            "authoritative": self.meta.authoritative,
            "authoritative_proven": self.authoritative_proven,
            "verified_sender": self.verified_sender,
            "reasons": list(self.reasons),
            "meta": self.meta.to_json(),
        }


def _single_address(text: str | None) -> str | None:
    if not text:
        return None
    pairs = [a for _, a in getaddresses([text]) if a]
    return pairs[0].lower() if len(pairs) == 1 else None


def assess(
    raw: bytes, *, validator: PathValidator | None, at: datetime, treat_authoritative_as_verified: bool = True
) -> DemailVerdict:
    """Read, check and judge one message's De-Mail part; never raises."""
    meta = parse_demail_headers(raw)
    result = verify_integrity(raw, validator=validator, at=at)
    if meta.authoritative is not True:
        return DemailVerdict(meta, result, False, None, ())
    reasons: list[str] = []
    if result.status != "valid":
        reasons.append(AUTHORITATIVE_UNPROVEN)
        reasons.extend(result.reasons or (f"integrity-{result.status}",))
    elif "x-de-mail-authoritative" not in result.covered_headers:
        reasons.append(AUTHORITATIVE_NOT_COVERED)
    address = _single_address(meta.from_)
    if address is None or "duplicate-header:from" in meta.flags:
        reasons.append(FROM_NOT_SINGLE)
    if (
        meta.sender is not None
        and "x-de-mail-sender" in result.covered_headers
        and _single_address(meta.sender) != address
    ):
        reasons.append(SENDER_MISMATCH)
    proven = not reasons
    sender = address if proven and treat_authoritative_as_verified else None
    return DemailVerdict(meta, result, proven, sender, tuple(dict.fromkeys(reasons)))
