"""What every protocol's Starlette adapter does alike: read a bounded body, send a reply that a
sans-I/O handler made (status, body, headers as it chose them)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("fleetpki.protocols")


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
