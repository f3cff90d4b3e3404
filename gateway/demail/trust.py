"""The path validator for provider signing certificates: the S/MIME one, with De-Mail's anchors.

The provider's certificate comes from the message (``X-de-mail-signature-certificate``),
so it is only ever a candidate: it counts when it chains to one of the configured provider
anchors at the message's arrival time. That is exactly what the S/MIME signer validation
does (pyhanko path building, the algorithm policy, validity, key usage), so the same
``Validator`` is used, with its own anchors: a provider CA is not trusted for S/MIME
signers, and an S/MIME root is not trusted for De-Mail.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from gateway.demail.anchors import load_provider_anchors
from gateway.unwrap.smime.pki import Validator

__all__ = ["load_provider_anchors", "provider_validator", "validator_from_files"]


def provider_validator(anchors: Sequence[x509.Certificate]) -> Validator:
    """A validator trusting only ``anchors`` (no CRLs configured: revocation is not checked)."""
    return Validator(anchors, revocation="if-configured")


def validator_from_files(paths: Sequence[Path], file: str) -> Validator:
    """``provider_validator`` over the anchors of ``[demail] provider_trust_anchors``."""
    return provider_validator(load_provider_anchors(paths, file))
