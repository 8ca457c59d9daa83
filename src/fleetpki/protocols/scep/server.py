"""SCEP over HTTP: the Starlette/ASGI adapter of handler.py (RFC 8894 §4.1).

SCEP protects its messages itself (signed and encrypted CMS), so it is served on the plain
HTTP listener, where routers and MDM agents expect it, as well as on HTTPS.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fleetpki.protocols.http_adapter import DelimitedRoute, read_bounded, response
from fleetpki.protocols.scep.handler import (
    MAX_MESSAGE_BYTES,
    PREFIX,
    ScepCall,
    ScepHandler,
    ScepReply,
)

__all__ = ["PREFIX", "ScepServer"]

# Cisco IOS and clients modelled on it append /pkiclient.exe (and /cgi-bin) to the URL.
_CISCO = "/pkiclient.exe"


class ScepServer:
    def __init__(self, handler: ScepHandler) -> None:
        self._handler = handler

    def routes(self) -> list[Route]:
        methods = ["GET", "POST"]
        return [DelimitedRoute(path, self._endpoint, methods=methods) for path in (
            PREFIX, PREFIX + _CISCO, "/cgi-bin" + _CISCO,
            PREFIX + "/{label}", PREFIX + "/{label}" + _CISCO)]

    async def _endpoint(self, request: Request) -> Response:
        label = request.path_params.get("label")
        query = {name: value for name, value in request.query_params.items()}
        body = await read_bounded(request, MAX_MESSAGE_BYTES) if request.method == "POST" \
            else b""
        call = ScepCall(method=request.method, label=label, query=query, body=body,
                        client_address=request.client.host if request.client else "unknown")
        if query.get("operation") == "PKIOperation":
            # The RA reads the store and signs: keep the event loop free meanwhile.
            reply = await run_in_threadpool(self._handler.handle, call)
        else:
            reply = self._handler.handle(call)  # GetCACaps, GetCACert: from memory
        return _response(reply)


def _response(reply: ScepReply) -> Response:
    return response(reply.status, reply.body, reply.headers)
