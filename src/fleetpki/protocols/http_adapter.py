"""What every protocol's Starlette adapter does alike: read a bounded body, send a reply that a
sans-I/O handler made (status, body, headers as it chose them)."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import Response


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
