"""Published CRLs over HTTP, at the URLs the certificates carry (`/crl/<issuer>.crl`,
`/crl/<issuer>/<profile>-<shard>.crl`, and their `-delta.crl` companions).

The files are the publisher's output and the only source: this endpoint never signs. Each is
served as `application/pkix-crl` (RFC 5280 §4.2.1.13 points at DER; the media type is RFC 2585)
with cache headers that let HTTP caches and CDNs keep it exactly until its nextUpdate, no
longer. A file is read and parsed once per change (size and mtime), not per request.
"""

from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import re
from pathlib import Path

from cryptography import x509
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from fleetpki.core.clock import Clock
from fleetpki.revocation.http_caching import etag_matches
from fleetpki.url_paths import encoded_slash

CT_CRL = "application/pkix-crl"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}(/[A-Za-z0-9_][A-Za-z0-9._-]{0,80})?\.crl$")


@dataclasses.dataclass(frozen=True, slots=True)
class _Published:
    stamp: tuple[int, int]  # (size, mtime_ns) of the file this was read from
    der: bytes
    etag: str
    last_modified: str
    this_update: float  # seconds since 1970, what Last-Modified says
    next_update: float | None


class CrlFiles:
    def __init__(self, directory: Path, clock: Clock) -> None:
        self._directory = directory
        self._clock = clock
        self._cache: dict[str, _Published] = {}

    def routes(self, prefix: str = "/crl") -> list[BaseRoute]:
        return [Route(prefix + "/{name:path}", self._serve, methods=["GET", "HEAD"])]

    def published(self, path: str, prefix: str = "/crl/") -> bytes | None:
        """The DER of the CRL published at this URL path, as HTTP would serve it (SCEP GetCRL
        hands it out in its own envelope)."""
        if not path.startswith(prefix):
            return None
        found = self._named(path.removeprefix(prefix))
        return None if found is None else found.der

    def _named(self, name: str) -> _Published | None:
        return self._load(name) if _NAME.fullmatch(name) and ".." not in name else None

    async def _serve(self, request: Request) -> Response:
        name: str = request.path_params["name"]
        # '/crl%2Fissuing.crl' is one segment, not the CRL that '/crl/issuing.crl' names.
        published = None if encoded_slash(request.scope) else self._named(name)
        if published is None:
            return PlainTextResponse(f"no CRL named {name!r} is published here\n",
                                     status_code=404)
        headers = {"ETag": published.etag, "Last-Modified": published.last_modified}
        now = self._clock.now().timestamp()
        if published.next_update is not None:
            max_age = max(0, int(published.next_update - now))
            headers["Expires"] = email.utils.formatdate(published.next_update, usegmt=True)
            headers["Cache-Control"] = f"max-age={max_age}, public, no-transform, must-revalidate"
        if _not_modified(request, published):
            return Response(status_code=304, headers=headers)
        return Response(published.der, media_type=CT_CRL, headers=headers)

    def _load(self, name: str) -> _Published | None:
        path = self._directory / name
        try:
            info = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        stamp = (info.st_size, info.st_mtime_ns)
        cached = self._cache.get(name)
        if cached is not None and cached.stamp == stamp:
            return cached
        der = path.read_bytes()
        try:
            crl = x509.load_der_x509_crl(der)
        except ValueError:
            return None  # not a CRL: never serve what the publisher did not write
        next_update = crl.next_update_utc
        published = _Published(
            stamp=stamp, der=der,
            etag='"' + hashlib.sha256(der).hexdigest()[:32] + '"',
            last_modified=email.utils.formatdate(crl.last_update_utc.timestamp(), usegmt=True),
            this_update=crl.last_update_utc.timestamp(),
            next_update=next_update.timestamp() if next_update else None)
        self._cache[name] = published
        return published


def _not_modified(request: Request, published: _Published) -> bool:
    """RFC 9110 §13.2.2: If-None-Match decides when present; only without it does
    If-Modified-Since (a date at or after the CRL's thisUpdate) count."""
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        return etag_matches(if_none_match.encode("latin-1"), published.etag.encode("ascii"))
    since = request.headers.get("if-modified-since")
    if since is None:
        return False
    try:
        moment = email.utils.parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False  # an invalid date is ignored (RFC 9110 §13.1.3)
    if moment.tzinfo is None:
        return False
    return moment.timestamp() >= published.this_update
