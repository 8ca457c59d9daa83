"""How long a client may take to send a request, and how large its header may be.

uvicorn closes a connection that stays idle (before its first byte, and between requests),
but once a request has begun it waits for the rest for ever, and httptools buffers a header
of any size. A client that sends half a request and stops therefore holds its connection,
and a few thousand of them fill every worker's connection limit: each new client is then
answered 503 (the "slowloris" attack). So every request must be complete, header and body,
within REQUEST_SECONDS of its first byte, else it is answered 408 and its connection closed;
and a header larger than MAX_HEADER_BYTES is answered 431.

30 seconds is ample for the few kilobytes of an enrollment, even over a slow cellular link,
and nginx's own defaults (client_header_timeout, client_body_timeout) are 60 seconds per read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

__all__ = ["MAX_HEADER_BYTES", "REQUEST_SECONDS", "ReadDeadline", "refuse_and_close"]

logger = logging.getLogger("fleetpki.serving")

REQUEST_SECONDS = 30.0
MAX_HEADER_BYTES = 64 * 1024


class ReadDeadline:
    """One per connection: armed when a request begins, disarmed when it has been read."""

    __slots__ = ("_expired", "_loop", "_seconds", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float,
                 expired: Callable[[], None]) -> None:
        self._loop = loop
        self._seconds = seconds
        self._expired = expired
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._timer is None:
            self._timer = self._loop.call_later(self._seconds, self._fire)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        self._expired()


def refuse_and_close(protocol: Any, status: int, message: str, *, in_header: bool) -> None:
    """Answer `status` and close; only close when an answer could be mistaken for another
    request's. `in_header`: the late request has not finished its header, so the protocol's
    cycle (if any) is its predecessor's, which may still be answering (pipelining); after the
    header the cycle is the late request's own, whose app may have answered already."""
    transport: asyncio.Transport = protocol.transport
    if transport.is_closing():
        return
    cycle = protocol.cycle
    if in_header:
        may_answer = cycle is None or cycle.response_complete
    else:
        may_answer = cycle is None or not getattr(cycle, "response_started", False)
    client = "{}:{}".format(*protocol.client) if protocol.client else "unknown"
    logger.info("closing a connection from %s: %s", client, message)
    if may_answer:
        body = f"{message}\n".encode()
        parts = [STATUS_LINE[status]]
        for name, value in protocol.server_state.default_headers:
            parts += (name, b": ", value, b"\r\n")
        parts += (b"content-type: text/plain; charset=utf-8\r\n",
                  b"content-length: ", str(len(body)).encode("ascii"), b"\r\n",
                  b"connection: close\r\n\r\n", body)
        transport.write(b"".join(parts))
    # An app still waiting for the body hears http.disconnect when the loss is reported.
    transport.close()
