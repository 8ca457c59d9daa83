"""Requests whose header two HTTP parsers could read differently are refused.

httptools (llhttp) is lenient where RFC 9112 asks a server to refuse: it serves an HTTP/1.1
request without a Host header, or with two; it reads ``Transfer-Encoding: gzip, chunked`` as
chunked without decoding the gzip; and where a header that may appear once (Authorization,
Content-Type, the proxy's client-certificate header) comes twice, the application silently
takes the first. Behind a reverse proxy that resolves the same ambiguity the other way, that
is how requests are smuggled or credentials confused, so each of these is answered with
400 (501 for a transfer coding other than chunked, RFC 9112 §6.1) and the connection closed.
The strict h11 parser refuses the first three itself; the duplicate check applies to both.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["StrictFraming", "framing_problem"]

logger = logging.getLogger("fleetpki.serving")

# Fields whose value is a single item (RFC 9110 §5.3: a sender must not repeat them), and
# where two values would mean two answers to "who is this?" or "what is the body?".
_SINGLETONS = (b"authorization", b"content-type", b"content-length", b"host",
               b"x-ssl-client-cert")


def framing_problem(http_version: str, headers: Iterable[tuple[bytes, bytes]]
                    ) -> tuple[int, str] | None:
    """(status, reason) when the request must be refused, else None. Header names in lower
    case, as both uvicorn protocols deliver them."""
    counts: dict[bytes, int] = {}
    codings: list[bytes] = []
    for name, value in headers:
        if name in _SINGLETONS:
            counts[name] = counts.get(name, 0) + 1
        elif name == b"transfer-encoding":
            codings += (part.strip().lower() for part in value.split(b","))
    if codings and http_version == "1.0":
        return 400, "Transfer-Encoding is not allowed in an HTTP/1.0 request (RFC 9112 §6.1)"
    if http_version == "1.1" and b"host" not in counts:
        return 400, "an HTTP/1.1 request needs a Host header (RFC 9112 §3.2)"
    for name in _SINGLETONS:
        if counts.get(name, 0) > 1:
            return 400, f"the request has {counts[name]} {name.decode()} headers; send one"
    if codings and codings != [b"chunked"]:
        shown = ", ".join(c.decode("ascii", "replace") for c in codings)[:80]
        return 501, (f"Transfer-Encoding: {shown} is not supported; send the body with "
                     f"Content-Length or Transfer-Encoding: chunked alone")
    return None


class StrictFraming:
    """Wraps a listener's app: refuses what framing_problem() names before the app sees it."""

    __slots__ = ("_app",)

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = framing_problem(scope.get("http_version", "1.1"), scope["headers"])
            if problem is not None:
                client = scope.get("client")
                logger.info("refused a request from %s: %s",
                            "{}:{}".format(*client) if client else "unknown", problem[1])
                await _refuse(send, *problem)
                return
        await self._app(scope, receive, send)


async def _refuse(send: Send, status: int, reason: str) -> None:
    body = f"{reason}\n".encode()
    headers: Sequence[tuple[bytes, bytes]] = (
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode("ascii")),
        # The body was framed in a way we do not trust: nothing after it on this connection
        # is read as a request.
        (b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})
