"""The TLS context of the gateway's own listeners: TLS 1.2 or newer, the operator's key pair.

One place, so that the configuration loader can prove at start-up that the certificate
and key load and match, with the very code the listener later uses.
"""

from __future__ import annotations

import ssl
from pathlib import Path


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A server-side context; raises ``ssl.SSLError`` or ``OSError`` when the pair is unusable."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    return context
