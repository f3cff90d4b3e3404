"""The De-Mail providers' trust anchors: PEM files named in ``[demail] provider_trust_anchors``.

Read when the configuration is loaded, so a missing, unreadable or wrong file stops the
gateway at start-up with the file, the key and the problem, instead of turning every
De-Mail of the day into an "untrusted" one. Only CA certificates are accepted: an anchor
that is a provider's signing certificate itself would be trusted without a path, and a
renewal would silently stop every verification.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from gateway.errors import ConfigError

__all__ = ["load_provider_anchors"]


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def load_provider_anchors(paths: Sequence[Path], file: str) -> tuple[x509.Certificate, ...]:
    """Every certificate of every PEM file; ConfigError naming ``file``, the key and the problem."""
    out: list[x509.Certificate] = []
    for i, path in enumerate(paths):
        key = f"demail.provider_trust_anchors[{i}]"
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(file, key, f"cannot read {path}: {exc.strerror}") from None
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError:
            raise ConfigError(file, key, f"{path}: not a PEM certificate file") from None
        for cert in certs:
            if not _is_ca(cert):
                subject = cert.subject.rfc4514_string()
                raise ConfigError(file, key, f"{path}: {subject} is not a CA certificate (basicConstraints)")
        out.extend(certs)
    return tuple(out)
