"""The verification verdict: what was proven about one message, as stable data.

The JSON form (``Verdict.to_json``) is a documented contract (docs/verdict.md): it is
stored as ``verification.json`` in the case folder and in the ledger, and printed by
``poststelle inspect``. Only ``Verdict.verified`` may be called "verified".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

VerdictName = Literal["verified", "unverified", "quarantined"]
SignatureStatus = Literal["valid", "invalid", "untrusted", "none", "error"]
EncryptionStatus = Literal["decrypted", "none", "failed", "partial"]
Scheme = Literal["smime", "openpgp"]
#: Which moment ``validated_at`` is: the arrival (INTERNALDATE), the fetch (the server gave no
#: INTERNALDATE), a moment a person gave (``inspect --at``, or a caller of ``unwrap``), or now.
TimeSource = Literal["arrival", "fetch", "given", "now"]

#: Signature statuses from best to worst. Where several signatures count (several
#: SignerInfos, several OpenPGP signatures, several layers over the content), the worst wins:
#: a message is no better proven than its weakest signature.
STATUS_RANK: Mapping[SignatureStatus, int] = {
    "valid": 0,
    "untrusted": 1,
    "none": 2,
    "error": 3,
    "invalid": 4,
}


def worse(a: SignatureStatus, b: SignatureStatus) -> SignatureStatus:
    """The worse of two statuses; ``a`` when they are equal."""
    return b if STATUS_RANK[b] > STATUS_RANK[a] else a


@dataclass(frozen=True)
class SignatureInfo:
    """The outcome of the signature check that decides the verdict."""

    status: SignatureStatus = "none"
    scheme: Scheme | None = None
    signer: str | None = None
    signer_certificate_sha256: str | None = None
    signer_fingerprint: str | None = None
    signing_time: str | None = None
    covers_whole_message: bool = False
    #: S/MIME: the revocation mode and each path certificate's status with its CRLs.
    revocation: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "scheme": self.scheme,
            "signer": self.signer,
            "signer_certificate_sha256": self.signer_certificate_sha256,
            "signing_time": self.signing_time,
            "covers_whole_message": self.covers_whole_message,
        }
        if self.signer_fingerprint is not None:
            out["signer_fingerprint"] = self.signer_fingerprint
        if self.revocation is not None:
            out["revocation"] = dict(self.revocation)
        return out


@dataclass(frozen=True)
class EncryptionInfo:
    """Whether the message was encrypted to us and could be opened."""

    status: EncryptionStatus = "none"
    scheme: Scheme | None = None

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "scheme": self.scheme}


@dataclass(frozen=True)
class Verdict:
    """What the gateway can prove about one message, with machine-readable reasons."""

    verdict: VerdictName
    reasons: tuple[str, ...] = ()
    from_addr: str | None = None
    signature: SignatureInfo = field(default_factory=SignatureInfo)
    encryption: EncryptionInfo = field(default_factory=EncryptionInfo)
    validated_at: datetime | None = None
    validation_time_source: TimeSource | None = None
    subject_source: Literal["outer", "protected"] = "outer"
    #: What a clerk must see about a verified message that does not make it less proven
    #: (docs/verdict.md, "Warnings"); empty unless ``verified``.
    warnings: tuple[str, ...] = ()
    #: The De-Mail part (``demail.verdict.DemailVerdict.to_json``) when ``[demail]`` is on
    #: and the message carries De-Mail fields; None otherwise.
    demail: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def verified(self) -> bool:
        return self.verdict == "verified"

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "from": self.from_addr,
            "signature": self.signature.to_json(),
            "encryption": self.encryption.to_json(),
            "validated_at": self.validated_at.isoformat() if self.validated_at else None,
            "validation_time_source": self.validation_time_source if self.validated_at else None,
            "subject_source": self.subject_source,
            "warnings": list(self.warnings),
            **({"demail": self.demail} if self.demail is not None else {}),
        }
