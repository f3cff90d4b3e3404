"""CRLs fetched from the certificates' HTTP distribution points, cached under the state dir.

Only ``http://``: a CRL is signed, so TLS would add nothing its signature does not give,
and would add a second trust configuration that can fail; https and LDAP points are not
fetched. Only distribution points of a path that already validated to a configured anchor
are fetched (their CA signed the URL), so a message cannot make the gateway fetch
arbitrary URLs. Each response is bounded by ``max_bytes`` and, in total, by ``timeout``;
redirects stay on http.

When: the validator calls :meth:`CrlCache.prepare` with the URLs of a path it has just
validated. A URL without a CRL, or whose newest CRL has expired, is fetched right there,
because otherwise the message would be decided without it (a URL is tried at most once
per ``retry``, so that an unreachable server delays at most one message per interval). A CRL
that is still current but in the last quarter of its validity is refreshed in a
background thread, so no message waits for that. This needs no scheduler in the daemon
and works the same in the analysis worker processes (which are the ones that see the
URLs): they share the cache through its files, a lock file per URL keeps them from
fetching the same CRL twice, and a ``.generation`` file tells the others to re-read.
:meth:`CrlCache.refresh_due` refreshes everything due at once (start-up, ``poststelle
check``).

A failed fetch keeps the cached CRL in use until it expires (then the certificates it
covered become ``revocation-unknown``). A server that answers with an older CRL than the
cached one is treated as a failure: the older one is not stored (replay over plain HTTP).
The newest :data:`KEEP` CRLs per URL are kept, so a message that arrived just before a
refresh still finds the CRL that was current at its arrival time.

Layout: ``<state_dir>/crls/<sha256(url)[:32]>/`` with ``url``, ``status.json``, ``.lock``
and ``<thisUpdate>-<sha256[:12]>.crl`` (DER).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.clock import iso, utcnow
from gateway.filing.durable import atomic_write, makedirs_durable
from gateway.unwrap.smime.revocation import CrlInfo

log = logging.getLogger(__name__)

KEEP = 2
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_RETRY = timedelta(minutes=5)
_GENERATION = ".generation"
_CHUNK = 64 * 1024


class FetchError(Exception):
    """Why a CRL could not be fetched (the message goes into ``status.json``)."""


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    max_redirections = 5

    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if not newurl.lower().startswith("http://"):
            raise FetchError(f"redirect to a non-http URL refused: {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects)


def download(url: str, *, timeout: float, max_bytes: int) -> bytes:
    """The body at ``url``; FetchError when it fails, is too big or takes too long."""
    if not url.lower().startswith("http://"):
        raise FetchError("only http:// URLs are fetched")
    deadline = time.monotonic() + timeout
    # http:// only, checked above; redirects are held to http by _HttpOnlyRedirects.
    request = urllib.request.Request(url, headers={"User-Agent": "poststelle-crl-fetch"})  # noqa: S310
    try:
        with _OPENER.open(request, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise FetchError(f"larger than {max_bytes} bytes")
            chunks: list[bytes] = []
            size = 0
            while chunk := resp.read(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(f"larger than {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise FetchError(f"took longer than {timeout:g} s")
                chunks.append(chunk)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"HTTP {exc.code}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        raise FetchError(str(getattr(exc, "reason", exc)) or type(exc).__name__) from None
    return b"".join(chunks)


def parse_crl(data: bytes) -> x509.CertificateRevocationList:
    try:
        if b"-----BEGIN" in data[:4096]:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError:
        raise FetchError("not a PEM or DER CRL") from None


def url_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:32]


@dataclass
class UrlState:
    """One distribution point: its cached CRLs (newest first) and the last fetch outcome."""

    url: str
    infos: list[CrlInfo] = field(default_factory=list)
    last_attempt: datetime | None = None
    last_success: datetime | None = None
    last_error: str | None = None

    @property
    def newest(self) -> CrlInfo | None:
        return self.infos[0] if self.infos else None


class CrlCache:
    """The fetched CRLs of one state directory, shared by every process of the gateway."""

    def __init__(
        self,
        directory: Path,
        *,
        fetch: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        grace: timedelta = timedelta(0),
        retry: timedelta = DEFAULT_RETRY,
        clock: Callable[[], datetime] = utcnow,
        background: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self.directory = directory
        self.fetch = fetch
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.grace = grace
        self.retry = retry
        self.clock = clock
        self._background = background or _thread
        self._lock = threading.Lock()
        self._gen_lock = threading.Lock()
        self._states: dict[str, UrlState] = {}
        self._parsed: dict[Path, CrlInfo] = {}
        self._infos: tuple[CrlInfo, ...] = ()
        self._generation: tuple[int, int] | None = None
        self._loaded = False
        self._in_flight: set[str] = set()
        self._reload()

    # --- reading ------------------------------------------------------------------------

    def snapshot(self) -> tuple[CrlInfo, ...]:
        """Every cached CRL; the same tuple object as long as nothing changed."""
        self._reload()
        return self._infos

    def states(self) -> list[UrlState]:
        self._reload()
        with self._lock:
            return list(self._states.values())

    def state(self, url: str) -> UrlState | None:
        with self._lock:
            return self._states.get(url)

    def _generation_id(self) -> tuple[int, int] | None:
        try:
            st = (self.directory / _GENERATION).stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns)

    def _reload(self, *, force: bool = False) -> None:
        gen = self._generation_id()
        if not force and self._loaded and gen == self._generation:
            return
        states: dict[str, UrlState] = {}
        parsed: dict[Path, CrlInfo] = {}
        for sub in self._url_dirs():
            state = self._read_dir(sub, parsed)
            if state is not None:
                states[state.url] = state
        with self._lock:
            # Keep what was fetched in this process but could not be written (no cache dir).
            for url, st in self._states.items():
                states.setdefault(url, st)
            infos = tuple(info for st in states.values() for info in st.infos)
            self._states = states
            self._parsed = parsed
            if [id(i) for i in infos] != [id(i) for i in self._infos]:
                self._infos = infos
            self._generation = gen
            self._loaded = True

    def _url_dirs(self) -> Iterator[Path]:
        try:
            entries = sorted(self.directory.iterdir())
        except OSError:
            return
        for sub in entries:
            if sub.is_dir() and not sub.name.startswith("."):
                yield sub

    def _read_dir(self, sub: Path, parsed: dict[Path, CrlInfo]) -> UrlState | None:
        try:
            url = (sub / "url").read_text().strip()
        except OSError:
            return None
        state = UrlState(url)
        try:
            status = json.loads((sub / "status.json").read_text())
            state.last_attempt = _when(status.get("last_attempt"))
            state.last_success = _when(status.get("last_success"))
            state.last_error = status.get("last_error")
        except (OSError, ValueError, AttributeError):
            pass
        for path in sorted(sub.glob("*.crl"), reverse=True):
            info = self._parsed.get(path)
            if info is None:
                try:
                    info = CrlInfo(x509.load_der_x509_crl(path.read_bytes()), url)
                except (OSError, ValueError):
                    continue
            parsed[path] = info
            state.infos.append(info)
        state.infos.sort(key=lambda i: i.this_update, reverse=True)
        return state

    # --- deciding what to fetch ----------------------------------------------------------

    def prepare(self, urls: Iterable[str]) -> None:
        """Called per validated path: fetch what is missing or expired, refresh what is due.

        Costs one ``stat`` when nothing is due.
        """
        if not self.fetch:
            return
        self._reload()
        now = self.clock()
        for url in urls:
            with self._lock:
                state = self._states.get(url)
            due = self._due(state, now)
            if due == "now":
                self._fetch_locked(url)
            elif due == "soon":
                self._spawn(url)

    def _due(self, state: UrlState | None, now: datetime) -> str | None:
        """``now`` (nothing usable: fetch before deciding), ``soon`` (refresh) or None.

        At most one attempt per ``retry`` whatever its outcome: a server that is down, or
        that keeps serving the same CRL, is not asked again for every message.
        """
        if state is None:
            return "now"
        if state.last_attempt is not None and now < state.last_attempt + self.retry:
            return None
        newest = state.newest
        if newest is None or newest.next_update is None:
            return "now"
        if now > newest.next_update + self.grace:
            return "now"
        refresh_at = newest.next_update - (newest.next_update - newest.this_update) / 4
        return "soon" if now >= refresh_at else None

    def refresh_due(self) -> list[UrlState]:
        """Fetch every known URL that is due (missing, expired or near expiry); synchronous."""
        if self.fetch:
            now = self.clock()
            for state in self.states():
                if self._due(state, now) is not None:
                    self._fetch_locked(state.url)
        return self.states()

    def refresh_in_background(self) -> None:
        """At start-up: refresh what is due without delaying the start."""
        if not self.fetch:
            return
        now = self.clock()
        if any(self._due(state, now) is not None for state in self.states()):
            self._background(self._refresh_quietly)

    def _refresh_quietly(self) -> None:
        self.refresh_due()

    def _spawn(self, url: str) -> None:
        with self._lock:
            if url in self._in_flight:
                return
            self._in_flight.add(url)

        def run() -> None:
            try:
                self._fetch_locked(url)
            finally:
                with self._lock:
                    self._in_flight.discard(url)

        self._background(run)

    # --- fetching -------------------------------------------------------------------------

    def _fetch_locked(self, url: str) -> None:
        """Fetch ``url`` unless another process just did; never raises."""
        sub = self.directory / url_key(url)
        try:
            makedirs_durable(sub)
            with _flock(sub / ".lock"):
                fresh = self._read_dir(sub, dict(self._parsed))
                if fresh is not None and self._due(fresh, self.clock()) is None:
                    self._reload(force=True)
                    return
                self._fetch(url, sub, fresh or UrlState(url))
        except OSError as exc:
            # No writable cache (e.g. ``inspect`` as another user): keep it in memory only.
            log.warning("CRL cache %s not writable (%s); using %s in memory", sub, exc, url)
            self._fetch_in_memory(url)
            return
        self._bump_generation()
        self._reload(force=True)

    def _fetch(self, url: str, sub: Path, state: UrlState) -> None:
        now = self.clock()
        error: str | None = None
        if not (sub / "url").exists():
            atomic_write(sub / "url", url.encode(), overwrite=True)
        try:
            crl = parse_crl(download(url, timeout=self.timeout, max_bytes=self.max_bytes))
            info = CrlInfo(crl, url)
            self._store(sub, url, info, state)
        except FetchError as exc:
            error = str(exc)
            log.warning("CRL fetch failed: %s: %s", url, error)
        status = {
            "url": url,
            "last_attempt": iso(now),
            "last_success": iso(now) if error is None else (iso(state.last_success) if state.last_success else None),
            "last_error": error,
        }
        atomic_write(sub / "status.json", json.dumps(status).encode(), overwrite=True)

    def _store(self, sub: Path, url: str, info: CrlInfo, state: UrlState) -> None:
        newest = state.newest
        if newest is not None:
            if info.sha256 == newest.sha256:
                return
            if (info.this_update, info.number or -1) <= (newest.this_update, newest.number or -1):
                raise FetchError("the server sent an older CRL than the cached one")
        name = f"{info.this_update:%Y%m%dT%H%M%SZ}-{info.sha256[:12]}.crl"
        atomic_write(sub / name, info.crl.public_bytes(Encoding.DER), overwrite=True)
        for old in sorted(sub.glob("*.crl"), reverse=True)[KEEP:]:
            with contextlib.suppress(OSError):
                old.unlink()

    def _fetch_in_memory(self, url: str) -> None:
        now = self.clock()
        with self._lock:
            state = self._states.setdefault(url, UrlState(url))
        state.last_attempt = now
        try:
            info = CrlInfo(parse_crl(download(url, timeout=self.timeout, max_bytes=self.max_bytes)), url)
        except FetchError as exc:
            state.last_error = str(exc)
            return
        state.last_error, state.last_success = None, now
        with self._lock:
            state.infos = sorted([info, *state.infos], key=lambda i: i.this_update, reverse=True)[:KEEP]
            self._infos = tuple(i for st in self._states.values() for i in st.infos)

    def _bump_generation(self) -> None:
        with self._gen_lock:
            atomic_write(self.directory / _GENERATION, str(time.time_ns()).encode(), overwrite=True)


def _when(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _thread(target: Callable[[], None]) -> None:
    threading.Thread(target=target, name="crl-refresh", daemon=True).start()
