"""Compose benchmark: N letters with a ~100 KB PDF, S/MIME signed and encrypted (RSA-2048).

    .venv/bin/python benchmarks/compose.py [--quick] [-n 300] [--json-out FILE]

Poststelle's path is ``gateway.outbound.protect.compose_document`` (build, sign with the
authority's identity, encrypt to the recipient and to the authority), in process. The naive
baseline builds the same unprotected message and then runs ``openssl cms -sign`` and
``openssl cms -encrypt`` as two subprocesses per document, as a shell script would.
Both use the throwaway demo PKI. Prints documents/s for both, the ratio and peak RSS (this
process, and the largest child).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from contract import add_options, row, write_rows  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402

from gateway.config import parse_config  # noqa: E402
from gateway.demo.pki import RECIPIENT, SENDER, build_demo_pki  # noqa: E402
from gateway.demo.samples import fake_pdf  # noqa: E402
from gateway.outbound.compose import Attachment, Letter, draft  # noqa: E402
from gateway.outbound.protect import OutboundKeys, compose_document  # noqa: E402

PEM = Encoding.PEM


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=300)
    add_options(parser, "N = 40")
    args = parser.parse_args()
    n = 40 if args.quick else args.n
    with tempfile.TemporaryDirectory(prefix="compose-bench-") as tmp_name:
        tmp = Path(tmp_name)
        pki = build_demo_pki(tmp / "pki")
        corr = tmp / "corr"
        corr.mkdir()
        (corr / "sender.pem").write_bytes(pki.sender.cert.public_bytes(PEM))
        cfg = parse_config(
            {
                "storage": {"state_dir": str(tmp / "state")},
                "limits": {"max_message_bytes": 10_000_000},
                "smime": {
                    "identities": [
                        {"key_file": str(pki.recipient_key_file), "cert_file": str(pki.recipient_cert_file)}
                    ],
                    "trust_anchors": [str(pki.root_file)],
                },
                "outbound": {"sign": "smime", "encrypt": "always", "correspondents_dir": str(corr)},
            },
            file=str(tmp / "bench.toml"),
        )
        pdf = tmp / "Bescheid.pdf"
        pdf.write_bytes(fake_pdf(100_000))
        letter = Letter(
            "1 K 1234/25",
            (SENDER,),
            "Bescheid über Ihren Antrag",
            "Guten Tag,\nanbei der Bescheid.\n",
            attachments=(Attachment(pdf),),
        )
        keys = OutboundKeys.from_config(cfg)
        compose_document(letter, mail_from=RECIPIENT, config=cfg, keys=keys, at=datetime.now(UTC))  # warm-up
        start = time.perf_counter()
        size = 0
        for _ in range(n):
            doc = compose_document(letter, mail_from=RECIPIENT, config=cfg, keys=keys, at=datetime.now(UTC))
            size += len(doc.raw)
        ours = time.perf_counter() - start
        keys.close()
        rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        sender_cert = corr / "sender.pem"
        start = time.perf_counter()
        for _ in range(n):
            d = draft(letter, mail_from=RECIPIENT, now=datetime.now(UTC), max_bytes=10_000_000)
            signed = subprocess.run(
                [
                    "openssl",
                    "cms",
                    "-sign",
                    "-signer",
                    str(pki.recipient_cert_file),
                    "-inkey",
                    str(pki.recipient_key_file),
                    "-md",
                    "sha256",
                    "-binary",
                ],
                input=d.entity,
                capture_output=True,
                check=True,
            ).stdout
            subprocess.run(
                ["openssl", "cms", "-encrypt", "-aes256", str(sender_cert), str(pki.recipient_cert_file)],
                input=signed,
                capture_output=True,
                check=True,
            )
        naive = time.perf_counter() - start
        rss_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    print(f"documents: {n}, ~{size // max(n, 1) // 1024} KB each (signed + encrypted, RSA-2048)")
    print(f"{'':>28} {'seconds':>8} {'docs/s':>8}")
    print(f"{'poststelle (in process)':>28} {ours:8.2f} {n / ours:8.1f}")
    print(f"{'openssl cms sign+encrypt':>28} {naive:8.2f} {n / naive:8.1f}")
    print(f"ratio: {naive / ours:.1f}x")
    # A child's peak counts the copy of this process it was forked from, before exec.
    print(f"peak RSS: this process {rss_self:.0f} MB; largest child {rss_child:.0f} MB (includes the fork before exec)")
    write_rows(
        args.json_out,
        [
            row(
                "compose",
                "documents/s",
                n / ours,
                n / naive,
                peak_rss_mb=rss_self,
                target="faster than openssl cms (ratio > 1)",
                met=naive > ours,
                notes=f"N={n}, ~{size // max(n, 1) // 1024} KB signed+encrypted; baseline: openssl cms sign+encrypt",
            )
        ],
    )


if __name__ == "__main__":
    main()
