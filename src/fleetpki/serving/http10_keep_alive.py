"""HTTP/1.0 persistent connections (RFC 7230 §6.3, RFC 1945 practice): a request that says
`Connection: keep-alive` keeps its connection when the response can be framed without closing
it, i.e. it has a Content-Length. uvicorn closes every HTTP/1.0 connection after one response.

Why it matters: OpenSSL's HTTP client (its `cmp` and `ocsp` commands, and devices using
libcrypto's OSSL_CMP API) speaks HTTP/1.0 with keep-alive, and OpenSSL 3.0 fails the next
message of a CMP transaction (certConf, pollReq) when the server closes the connection instead
of reopening it.

The wrapper goes around one request's ASGI `send`: uvicorn's cycle reads `self.send` when its
task starts, which is after `on_headers_complete` returns, so replacing it there is seen.
tests/integration/test_cmp.py runs OpenSSL with its default keep-alive and fails if an upgrade
breaks this.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Message


def keep_http10_alive(protocol: Any) -> None:
    """After `HttpToolsProtocol.on_headers_complete`: let an HTTP/1.0 keep-alive request keep
    its connection when its response carries a Content-Length, and say so in the response."""
    cycle = protocol.cycle
    if cycle is None or cycle.keep_alive or protocol.scope.get("http_version") != "1.0":
        return
    if not any(name.lower() == b"connection" and b"keep-alive" in value.lower()
               for name, value in protocol.headers):
        return
    send = cycle.send

    async def send_keeping_alive(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            names = {name.lower() for name, _ in headers}
            if b"content-length" in names and b"connection" not in names:
                cycle.keep_alive = True
                message = {**message, "headers": [*headers, (b"connection", b"keep-alive")]}
        await send(message)

    cycle.send = send_keeping_alive
