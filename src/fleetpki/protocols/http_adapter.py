"""What every protocol's Starlette adapter does alike: route on the path as the client wrote
it, read a bounded body, send a reply that a sans-I/O handler made (status, body, headers as
it chose them)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from fleetpki.url_paths import encoded_slash

log = logging.getLogger("fleetpki.protocols")


class DelimitedRoute(Route):
    """A Route that a path with an encoded slash (%2F) never matches.

    Starlette matches the path the server has already percent-decoded, so
    `/.well-known/est/sensor%2Fcacerts` would be label `sensor`, operation `cacerts`. RFC 3986
    §2.2: an encoded reserved character is data, not a delimiter, so that path is one segment
    `sensor/cacerts`, a resource of its own; and no segment of a protocol route (a label, a
    profile, an operation, an ACME object id) may hold a '/'. Such a request matches none of
    them and gets the router's 404, or the protocol's own catch-all."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and encoded_slash(scope):
            return Match.NONE, {}
        return super().matches(scope)


def response(status: int, body: bytes, headers: Iterable[tuple[str, str]]) -> Response:
    """The handler's headers exactly, content-type included (Starlette sets content-length)."""
    made = Response(body, status_code=status)
    made.raw_headers += [(name.encode("latin-1"), value.encode("latin-1"))
                         for name, value in headers]
    return made


async def read_bounded(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than `limit` bytes: a larger Content-Length is not
    read at all, and a streamed body is read no further than one chunk past the limit."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def client_gone_quietly(app: ASGIApp) -> ASGIApp:
    """A client that leaves while its request body is read (or is cut off for being too slow,
    serving/request_limits.py) is no failure of the server: no traceback at error level, which
    would page whoever watches the logs, only a line at info."""
    async def quiet(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await app(scope, receive, send)
        except ClientDisconnect:
            log.info("the client left before sending its whole request",
                     extra={"path": scope.get("path", "")[:200]})
    return quiet
