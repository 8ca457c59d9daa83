"""Requests under one path prefix answered inside the HTTP protocol, without ASGI.

Around each request, uvicorn's ASGI path builds a request-response cycle with its event, a
task and a coroutine, and checks every response header. For an OCSP answer from a pre-signed
cache that came to 35-40 µs of the 150-190 µs of server CPU it cost in all (docs/benchmarks.md,
"OCSP responses over HTTP"), and OCSP is the busiest thing a PKI serves. A `DirectRoute` takes
such requests off that path: uvicorn's httptools protocol still
parses them (the same parser, limits and keep-alive timer), but the body is collected into a
bounded buffer and the route's synchronous handler answers as soon as the message is complete.

Only GET, HEAD and POST without `Expect: 100-continue` take the direct path, and only when no
other request of the connection is in flight (so pipelined answers stay in order) and the
worker is under its connection limit; every other request goes to the listener's ASGI app as
before. What the direct path keeps of HTTP/1.1 (RFC 9112 §9.3): persistent connections unless
the client or the handler says `Connection: close`, and HTTP/1.0 clients that ask for
keep-alive get it, since every direct answer has a Content-Length. The answer to a HEAD is the
handler's status and headers without its body (RFC 9110 §9.3.2), whatever body it returns.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.flow_control import CLOSE_HEADER
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from fleetpki.serving.client_certs import ClientCertHttpToolsProtocol
from fleetpki.serving.framing import framing_problem

__all__ = ["DirectHttpToolsProtocol", "DirectRequest", "DirectResponse", "DirectRoute"]

logger = logging.getLogger("fleetpki.serving")

# (status, headers with lower-case names and no Connection header unless it is "close", body)
DirectResponse = tuple[int, Sequence[tuple[bytes, bytes]], bytes]

_DIRECT_METHODS = (b"GET", b"HEAD", b"POST")
_FAILED = (b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; charset=utf-8\r\n"
           b"content-length: 22\r\nconnection: close\r\n\r\nInternal Server Error\n")


@dataclass(frozen=True, slots=True)
class DirectRequest:
    method: bytes  # b"GET", b"HEAD" or b"POST"
    raw_path: bytes  # as sent, still URL-encoded, without the query
    headers: Sequence[tuple[bytes, bytes]]  # names lower-case
    body: bytes  # at most the route's max_body bytes
    body_too_long: bool  # the body went on past max_body; reading stopped there


@dataclass(frozen=True)
class DirectRoute:
    """`prefix` and every path under it. `handle` runs on the event loop: it must not block
    for more than a point read."""

    prefix: str
    max_body: int
    handle: Callable[[DirectRequest], DirectResponse]

    @functools.cached_property
    def _raw_prefixes(self) -> tuple[bytes, bytes]:
        raw = self.prefix.encode("ascii")
        return raw, raw + b"/"

    def covers(self, path: bytes) -> bool:
        prefix, under = self._raw_prefixes
        return path == prefix or path.startswith(under)


_date_cache: list[tuple[int, bytes]] = [(0, b"")]


def _http_date() -> bytes:
    """Now, to the second. uvicorn's own Date header is refreshed once a second by its main
    loop and may lag by more than that; an answer signed just now would then carry a
    Last-Modified later than its Date, which RFC 9110 §8.8.2.1 forbids."""
    now = int(time.time())
    second, text = _date_cache[0]
    if second != now:
        text = email.utils.formatdate(now, usegmt=True).encode("ascii")
        _date_cache[0] = (now, text)
    return text


class _NobodyWaits:
    """The `message_event` of a direct request: uvicorn only ever sets it, and no app task
    waits on it (the handler has the whole body before it runs)."""

    def set(self) -> None:
        return None


_NOBODY_WAITS = _NobodyWaits()


class _DirectCycle:
    """What uvicorn's protocol reads of a request in flight (`self.cycle`), for a direct one:
    connection_lost, shutdown and the next request's pipelining check look at these."""

    __slots__ = ("body", "body_too_long", "disconnected", "keep_alive", "message_event",
                 "raw_path", "response_complete")

    def __init__(self, raw_path: bytes, keep_alive: bool) -> None:
        self.raw_path = raw_path
        self.keep_alive = keep_alive
        self.body = bytearray()
        self.body_too_long = False
        self.disconnected = False
        self.response_complete = False
        self.message_event = _NOBODY_WAITS  # uvicorn sets it when the client leaves


class DirectHttpToolsProtocol(ClientCertHttpToolsProtocol):
    """ClientCertHttpToolsProtocol with a DirectRoute (see the module docstring). serve()
    builds it with functools.partial(..., route=route)."""

    def __init__(self, *args: Any, route: DirectRoute, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._route = route
        self._direct: _DirectCycle | None = None

    def on_headers_complete(self) -> None:
        method = self.parser.get_method()
        if method not in _DIRECT_METHODS or self.expect_100_continue or self.pipeline \
                or (self.cycle is not None and not self.cycle.response_complete) \
                or (self.limit_concurrency is not None
                    and len(self.connections) >= self.limit_concurrency) \
                or framing_problem(self.parser.get_http_version(), self.headers) is not None:
            self._direct = None
            super().on_headers_complete()
            return
        raw_path = httptools.parse_url(self.url).path
        if not self._route.covers(raw_path):
            self._direct = None
            super().on_headers_complete()
            return
        version = self.parser.get_http_version()
        if version == "1.1":
            keep_alive = CLOSE_HEADER not in self.headers
        else:  # HTTP/1.0: only when asked (RFC 9112 §9.3, compatibility with HTTP/1.0)
            keep_alive = any(name == b"connection" and b"keep-alive" in value.lower()
                             for name, value in self.headers)
        self.end_of_header()
        self._direct = _DirectCycle(raw_path, keep_alive)
        self.cycle = self._direct  # type: ignore[assignment]

    def on_body(self, body: bytes) -> None:
        direct = self._direct
        if direct is None:
            super().on_body(body)
            return
        if len(direct.body) + len(body) > self._route.max_body:
            # Answered now, and the connection closed: the rest is never read.
            direct.body_too_long = True
            direct.keep_alive = False
            self._answer(direct)
            return
        direct.body += body

    def on_message_complete(self) -> None:
        direct = self._direct
        if direct is None:
            super().on_message_complete()
            return
        self.end_of_message()
        self._answer(direct)

    def _answer(self, direct: _DirectCycle) -> None:
        # From here on the message's remaining callbacks reach uvicorn's own handlers, which
        # ignore them once the cycle's response is complete.
        self._direct = None
        request = DirectRequest(self.parser.get_method(), direct.raw_path, self.headers,
                                bytes(direct.body), direct.body_too_long)
        try:
            status, headers, body = self._route.handle(request)
        except Exception:
            logger.exception("answering %s %s failed", request.method.decode(),
                             self._route.prefix)
            direct.response_complete = True
            self.transport.write(_FAILED)
            self.transport.close()
            return
        closing = CLOSE_HEADER in headers
        keep_alive = direct.keep_alive and not closing
        parts = [STATUS_LINE[status], b"date: ", _http_date(), b"\r\n"]
        for name, value in (*self.server_state.default_headers, *headers):
            if name != b"date":
                parts += (name, b": ", value, b"\r\n")
        if not keep_alive and not closing:
            parts.append(b"connection: close\r\n")
        elif keep_alive and self.parser.get_http_version() == "1.0":
            parts.append(b"connection: keep-alive\r\n")
        parts += (b"\r\n", b"" if request.method == b"HEAD" else body)
        self.transport.write(b"".join(parts))
        direct.response_complete = True
        if not keep_alive:
            self.transport.close()
        self.on_response_complete()  # counts it, resumes reading, arms the keep-alive timer
