"""CRLs fetched from the signer's HTTP distribution point, against a local server started here.

The server runs in a thread on 127.0.0.1 and serves whatever the test puts in ``routes``;
it counts requests per path. Refreshes the cache would start in the background run
synchronously here (``background=``), and the cache's clock is the test's: nothing
depends on timing.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from support.crl_pki import crl, dp, revoked, signer
from support.smime_pki import (
    DAY,
    DER,
    NOW,
    PEM,
    Party,
    TestPKI,
    headers,
    mime_text,
    multipart_signed,
    sign_detached_as_of,
)

from gateway.service.health import crl_checks
from gateway.unwrap import UnwrapContext, unwrap
from gateway.unwrap.smime.crlfetch import CrlCache
from gateway.unwrap.smime.handler import SmimeHandler, SmimeMaterial
from gateway.unwrap.verdict import Verdict

HOUR = dt.timedelta(hours=1)


class CrlServer:
    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes]] = {}
        self.hits: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] += 1
                status, body = server.routes.get(self.path, (404, b"not here"))
                self.send_response(status)
                self.send_header("Content-Type", "application/pkix-crl")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return self.base + path

    def serve(self, path: str, body: bytes, status: int = 200) -> None:
        self.routes[path] = (status, body)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[CrlServer]:
    srv = CrlServer()
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def _fresh_routes(server: CrlServer) -> None:
    server.routes.clear()
    server.hits.clear()


@pytest.fixture(scope="module")
def fritz(pki: TestPKI, server: CrlServer) -> Party:
    """A signer whose certificate names the local server's /inter.crl."""
    return signer("Fritz", "fritz@example.org", pki.inter, dps=[dp(server.url("/inter.crl"))])


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        return self.now


def cache(tmp_path: Path, clock: Clock | None = None, **kwargs: Any) -> CrlCache:
    return CrlCache(tmp_path / "crls", clock=clock or Clock(), background=lambda run: run(), **kwargs)


def context(pki: TestPKI, crls: CrlCache, *, mode: Any = "if-configured") -> UnwrapContext:
    material = SmimeMaterial(
        anchors=(pki.root.cert,), crls=(pki.root_crl,), revocation=mode, configured=True, crl_cache=crls
    )
    return UnwrapContext([SmimeHandler(material)])


def verify(party: Party, ctx: UnwrapContext, at: dt.datetime = NOW) -> Verdict:
    inner = mime_text()
    raw = multipart_signed(headers(party.email or "", date=NOW), inner, sign_detached_as_of(party, inner))
    return unwrap(raw, ctx, at=at).verdict


def leaf_status(v: Verdict, party: Party) -> dict[str, Any]:
    first: dict[str, Any] = v.signature.to_json()["revocation"]["certificates"][0]
    assert first["subject"] == party.cert.subject.rfc4514_string()
    return first


def der(c: x509.CertificateRevocationList) -> bytes:
    return c.public_bytes(DER)


def test_crl_is_fetched_from_the_distribution_point_cached_and_named_as_evidence(
    pki: TestPKI, server: CrlServer, fritz: Party, tmp_path: Path
) -> None:
    server.serve("/inter.crl", der(crl(pki.inter, number=7)))
    ctx = context(pki, cache(tmp_path))
    v = verify(fritz, ctx)
    assert v.verdict == "verified", v.reasons
    used = leaf_status(v, fritz)["crls"][0]
    assert (used["source"], used["number"]) == (server.url("/inter.crl"), 7)
    assert len(list((tmp_path / "crls").glob("*/*.crl"))) == 1
    verify(fritz, ctx)
    assert server.hits["/inter.crl"] == 1  # the second message used the cache


def test_another_process_uses_the_cached_crl_without_fetching(
    pki: TestPKI, server: CrlServer, fritz: Party, tmp_path: Path
) -> None:
    server.serve("/inter.crl", der(crl(pki.inter, [revoked(fritz.cert)])))
    assert "cert-revoked" in verify(fritz, context(pki, cache(tmp_path))).reasons
    offline = context(pki, cache(tmp_path, fetch=False))
    assert "cert-revoked" in verify(fritz, offline).reasons
    assert server.hits["/inter.crl"] == 1


def test_pem_crl_that_lists_the_signer_revokes_it(
    pki: TestPKI, server: CrlServer, fritz: Party, tmp_path: Path
) -> None:
    server.serve("/inter.crl", crl(pki.inter, [revoked(fritz.cert)]).public_bytes(PEM))
    v = verify(fritz, context(pki, cache(tmp_path)))
    assert "cert-revoked" in v.reasons
    assert leaf_status(v, fritz)["status"] == "revoked"


def test_unreachable_distribution_point_leaves_revocation_unknown(
    pki: TestPKI, server: CrlServer, fritz: Party, tmp_path: Path
) -> None:
    v = verify(fritz, context(pki, cache(tmp_path)))  # the server answers 404
    assert v.verdict == "unverified" and "revocation-unknown" in v.reasons
    assert "crl-fetch-failed" in leaf_status(v, fritz)["problems"]
    status = json.loads(next((tmp_path / "crls").glob("*/status.json")).read_text())
    assert status["last_error"] == "HTTP 404" and status["url"] == server.url("/inter.crl")


def test_a_distribution_point_is_asked_at_most_once_per_retry_interval(
    pki: TestPKI, server: CrlServer, fritz: Party, tmp_path: Path
) -> None:
    clock = Clock()
    ctx = context(pki, cache(tmp_path, clock))  # the server answers 404
    for _ in range(3):
        assert "revocation-unknown" in verify(fritz, ctx).reasons
    assert server.hits["/inter.crl"] == 1
    clock.now = NOW + 6 * dt.timedelta(minutes=1)
    server.serve("/inter.crl", der(crl(pki.inter)))
    assert verify(fritz, ctx, at=clock.now).verdict == "verified"
    assert server.hits["/inter.crl"] == 2


def test_failed_refresh_keeps_the_old_crl_until_it_expires(
    pki: TestPKI, server: CrlServer, fritz: Party, tmp_path: Path
) -> None:
    clock = Clock()
    ctx = context(pki, cache(tmp_path, clock))
    server.serve("/inter.crl", der(crl(pki.inter, this_update=NOW - DAY, next_update=NOW + DAY)))
    assert verify(fritz, ctx).verdict == "verified"
    server.serve("/inter.crl", b"", status=500)
    clock.now = NOW + 12 * HOUR  # in the last quarter of the CRL's validity: refresh
    v = verify(fritz, ctx, at=clock.now)
    assert server.hits["/inter.crl"] == 2
    assert v.verdict == "verified", v.reasons  # the old CRL is still current
    clock.now = NOW + 2 * DAY
    v = verify(fritz, ctx, at=clock.now)
    assert server.hits["/inter.crl"] == 3
    assert {"revocation-unknown", "crl-not-current"} <= set(v.reasons)
    assert "crl-fetch-failed" in leaf_status(v, fritz)["problems"]


def test_refetched_crl_that_revokes_reaches_a_signer_validated_before(
    pki: TestPKI, server: CrlServer, fritz: Party, tmp_path: Path
) -> None:
    clock = Clock()
    ctx = context(pki, cache(tmp_path, clock))
    server.serve("/inter.crl", der(crl(pki.inter, this_update=NOW - DAY, next_update=NOW + DAY)))
    assert verify(fritz, ctx).verdict == "verified"  # the validated path is cached now
    server.serve(
        "/inter.crl",
        der(
            crl(
                pki.inter,
                [revoked(fritz.cert, when=NOW + HOUR)],
                number=2,
                this_update=NOW + 2 * HOUR,
                next_update=NOW + 3 * DAY,
            )
        ),
    )
    clock.now = NOW + 13 * HOUR
    v = verify(fritz, ctx, at=clock.now)
    assert "cert-revoked" in v.reasons
    assert leaf_status(v, fritz)["crls"][0]["number"] == 2


def test_server_sending_an_older_crl_does_not_replace_the_cached_one(
    pki: TestPKI, server: CrlServer, fritz: Party, tmp_path: Path
) -> None:
    clock = Clock()
    ctx = context(pki, cache(tmp_path, clock))
    server.serve("/inter.crl", der(crl(pki.inter, number=5, this_update=NOW - DAY, next_update=NOW + DAY)))
    assert verify(fritz, ctx).verdict == "verified"
    server.serve(
        "/inter.crl",
        der(
            crl(
                pki.inter,
                [revoked(fritz.cert, when=NOW - 3 * DAY)],
                number=4,
                this_update=NOW - 2 * DAY,
                next_update=NOW + DAY,
            )
        ),
    )
    clock.now = NOW + 13 * HOUR
    v = verify(fritz, ctx, at=clock.now)
    assert server.hits["/inter.crl"] == 2
    assert v.verdict == "verified", v.reasons
    assert [f.name.split("-")[0] for f in (tmp_path / "crls").glob("*/*.crl")] == [f"{NOW - DAY:%Y%m%dT%H%M%SZ}"]
    status = json.loads(next((tmp_path / "crls").glob("*/status.json")).read_text())
    assert "older CRL" in status["last_error"]


def test_crl_larger_than_the_limit_is_refused(pki: TestPKI, server: CrlServer, fritz: Party, tmp_path: Path) -> None:
    many = [revoked(pki[name].cert) for name in ("expired", "wrong_eku", "any_eku", "no_sign", "pss", "ec")]
    big = der(crl(pki.inter, many))
    server.serve("/inter.crl", big)
    v = verify(fritz, context(pki, cache(tmp_path, max_bytes=len(big) - 1)))
    assert "revocation-unknown" in v.reasons
    status = json.loads(next((tmp_path / "crls").glob("*/status.json")).read_text())
    assert "larger than" in status["last_error"]


def test_require_mode_with_fetching_verifies_once_every_crl_is_fetched(
    pki: TestPKI, server: CrlServer, tmp_path: Path
) -> None:
    """The intermediate's CRL comes from crl_files, the signer's from its distribution point."""
    fritz2 = signer("Fritz", "fritz@example.org", pki.inter, dps=[dp(server.url("/inter.crl"))])
    server.serve("/inter.crl", der(crl(pki.inter)))
    v = verify(fritz2, context(pki, cache(tmp_path), mode="require"))
    assert v.verdict == "verified", v.reasons
    assert [c["status"] for c in v.signature.to_json()["revocation"]["certificates"]] == ["good", "good"]


def test_check_reports_each_anchors_crl_and_each_fetched_point(
    pki: TestPKI, server: CrlServer, fritz: Party, tmp_path: Path
) -> None:
    server.serve("/inter.crl", der(crl(pki.inter, number=3)))
    crls = cache(tmp_path)
    verify(fritz, context(pki, crls))
    results = {r.target: r for r in crl_checks(context(pki, crls))}
    root = results[pki.root.cert.subject.rfc4514_string()]
    assert root.ok and root.check == "crl"
    assert root.detail.startswith("CRL #1 from crl_files")
    point = results[server.url("/inter.crl")]
    assert point.ok and point.detail.startswith("CRL #3 from " + server.url("/inter.crl"))
    stale = SmimeMaterial(
        anchors=(pki.root.cert,),
        configured=True,
        crls=(crl(pki.root, this_update=NOW - 3 * DAY, next_update=NOW - DAY),),
    )
    [line] = crl_checks(UnwrapContext([SmimeHandler(stale)]))
    assert not line.ok and "expired" in line.detail


def test_config_puts_the_cache_under_the_state_dir_and_inspect_never_fetches(pki: TestPKI, tmp_path: Path) -> None:
    from gateway.config import load_config
    from gateway.statedir import crl_cache_dir

    files = pki.write(tmp_path / "pki")
    path = tmp_path / "poststelle.toml"
    path.write_text(
        f'[storage]\nstate_dir = "{tmp_path}/state"\n\n[smime]\n'
        f'trust_anchors = ["{files["root"]}"]\nfetch_crls = true\n'
    )
    cfg = load_config(path)

    def crl_cache(ctx: UnwrapContext) -> CrlCache:
        handler = ctx.handlers[0]
        assert isinstance(handler, SmimeHandler) and handler.material.crl_cache is not None
        return handler.material.crl_cache

    daemon = crl_cache(UnwrapContext.from_config(cfg, collect_certificates=False))
    assert daemon.directory == crl_cache_dir(cfg) == tmp_path / "state" / "crls"
    assert daemon.fetch
    assert not crl_cache(UnwrapContext.from_config(cfg, collect_certificates=False, fetch_crls=False)).fetch
