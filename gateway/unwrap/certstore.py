"""Correspondents' certificate store: signer certificates of verified messages.

Kept so that replies to these senders can be encrypted. Certificates are stored by the SHA-256 of their DER so the
same certificate is stored once, written atomically so a crash never leaves half a file.
Nothing in here is ever a trust anchor: the store is filled from message content, and
path validation only ever starts from the configured anchors.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from cryptography import x509

from gateway.filemodes import dir_mode, file_mode


class CertStore:
    """A directory of ``<sha256>.der`` files; created on first write."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, sha256_hex: str) -> Path:
        return self.directory / f"{sha256_hex}.der"

    def add(self, der: bytes) -> str:
        """Store a certificate (DER); returns its sha256. Idempotent."""
        x509.load_der_x509_certificate(der)  # refuse to store garbage
        digest = hashlib.sha256(der).hexdigest()
        target = self.path_for(digest)
        if target.exists():
            return digest
        self.directory.mkdir(parents=True, exist_ok=True, mode=dir_mode())
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".der")
        try:
            os.fchmod(fd, file_mode())  # mkstemp makes 0600; the gateway's files share one mode
            with os.fdopen(fd, "wb") as fh:
                fh.write(der)
                fh.flush()
                os.fsync(fh.fileno())
            Path(tmp).replace(target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def get(self, sha256_hex: str) -> x509.Certificate | None:
        try:
            return x509.load_der_x509_certificate(self.path_for(sha256_hex).read_bytes())
        except (FileNotFoundError, ValueError):
            return None

    def for_address(self, address: str) -> list[x509.Certificate]:
        """Stored certificates with ``address`` as rfc822Name (domain case-insensitive)."""
        local, _, domain = address.rpartition("@")
        out: list[x509.Certificate] = []
        if not self.directory.is_dir():
            return out
        for path in sorted(self.directory.glob("*.der")):
            try:
                cert = x509.load_der_x509_certificate(path.read_bytes())
                san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            except (ValueError, x509.ExtensionNotFound, OSError):
                continue
            for email in san.get_values_for_type(x509.RFC822Name):
                el, _, ed = email.rpartition("@")
                if el == local and ed.lower() == domain.lower():
                    out.append(cert)
                    break
        return out
