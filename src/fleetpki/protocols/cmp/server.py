"""CMP over HTTP (RFC 6712): the Starlette/ASGI adapter of handler.py.

CMP protects its messages itself (MAC or signature), so it is served on the plain-HTTP
listener as well as on HTTPS, at `/.well-known/cmp` (the default profile) and
`/.well-known/cmp/p/<label>` (RFC 9483 §6.1).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fleetpki.protocols.cmp.handler import MAX_MESSAGE_BYTES, PREFIX, CmpCall, CmpHandler
from fleetpki.protocols.http_adapter import DelimitedRoute, read_bounded, response

__all__ = ["PREFIX", "CmpServer"]


class CmpServer:
    def __init__(self, handler: CmpHandler) -> None:
        self._handler = handler

    def routes(self) -> list[Route]:
        methods = ["GET", "POST"]
        return [DelimitedRoute(PREFIX, self._endpoint, methods=methods),
                DelimitedRoute(PREFIX + "/p/{label}", self._endpoint, methods=methods)]

    async def _endpoint(self, request: Request) -> Response:
        body = await read_bounded(request, MAX_MESSAGE_BYTES) if request.method == "POST" \
            else b""
        call = CmpCall(method=request.method, label=request.path_params.get("label"),
                       content_type=request.headers.get("content-type", ""), body=body,
                       client_address=request.client.host if request.client else "unknown")
        # The RA reads the store and signs: keep the event loop free meanwhile.
        reply = await run_in_threadpool(self._handler.handle, call)
        return response(reply.status, reply.body, reply.headers)
