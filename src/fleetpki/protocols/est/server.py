"""EST over HTTPS: the Starlette/ASGI adapter of handler.py (RFC 7030 §3.2.2 routes).

The adapter does what needs the connection: it reads the body (bounded), says who the client
is (the TLS client certificate, or a trusted proxy's headers) and runs the operation, off the
event loop when it reads the store. Every EST rule is in handler.py, so that a simulator
driving `EstHandler` in process sees exactly what a device sees over HTTPS.
"""

from __future__ import annotations

import dataclasses
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import URLPath
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from fleetpki.core.errors import NotAuthenticated
from fleetpki.protocols.est.codec import MAX_BODY_BYTES
from fleetpki.protocols.est.handler import (
    OPERATIONS,
    PREFIX,
    EstAuthority,
    EstCall,
    EstHandler,
    EstOperation,
    EstReply,
    error_reply,
    not_found,
)
from fleetpki.protocols.http_adapter import DelimitedRoute, read_bounded, response
from fleetpki.protocols.key_delivery import KeyGenerationAuthority
from fleetpki.url_paths import encoded_slash, path_as_sent

__all__ = ["PREFIX", "EstAuthority", "EstServer", "ProxyTrust"]


@dataclasses.dataclass(frozen=True, slots=True)
class ProxyTrust:
    """Behind a TLS-terminating proxy (nginx `ssl_verify_client optional_no_ca`), the client
    certificate arrives URL-encoded in a header. Only connections from these addresses may set
    it: from anywhere else the header is ignored, or anyone could claim any certificate."""

    proxies: tuple[IPv4Network | IPv6Network, ...]
    certificate_header: str = "x-ssl-client-cert"

    def trusts(self, address: str | None) -> bool:
        if address is None:
            return False
        try:
            peer = ip_address(address)
        except ValueError:
            return False
        return any(peer in network for network in self.proxies)


Endpoint = Callable[[Request], Awaitable[Response]]


class EstServer:
    def __init__(self, authority: EstAuthority, proxy: ProxyTrust | None = None,
                 key_authority: KeyGenerationAuthority | None = None) -> None:
        self._handler = EstHandler(authority, key_authority)
        self._proxy = proxy

    def routes(self) -> list[BaseRoute]:
        """Starlette answers unknown paths (404) and wrong methods (405) itself; EstHandler
        does the same for callers that reach it without a router. A path with an encoded
        slash matches no operation (http_adapter.DelimitedRoute) and gets EST's 404."""
        routes: list[BaseRoute] = []
        for operation in OPERATIONS:
            endpoint = self._endpoint(operation)
            methods = [operation.method]
            routes.append(DelimitedRoute(f"{PREFIX}/{operation.name}", endpoint,
                                         methods=methods))
            routes.append(DelimitedRoute(f"{PREFIX}/{{label}}/{operation.name}", endpoint,
                                         methods=methods))
        routes.append(_EncodedSlashes())
        return routes

    def _endpoint(self, operation: EstOperation) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            # The route's own path (under any ASGI root_path), which EstHandler routes again.
            label = request.path_params.get("label")
            path = f"{PREFIX}/{operation.name}" if label is None else \
                f"{PREFIX}/{label}/{operation.name}"
            try:
                call = await self._call(request, operation, path)
            except ClientDisconnect:
                raise  # nobody to answer: client_gone_quietly notes it
            except Exception as error:  # noqa: BLE001 - error_reply logs it (body, proxy header)
                return _response(error_reply(error, path))
            if operation.authenticated:
                # The RA reads the store and signs: keep the event loop free meanwhile.
                reply = await run_in_threadpool(self._handler.handle, call)
            else:
                reply = self._handler.handle(call)  # cacerts, csrattrs: cached, cheap
            return _response(reply)
        return endpoint

    async def _call(self, request: Request, operation: EstOperation, path: str) -> EstCall:
        headers: dict[str, str] = {}
        for name, value in request.headers.items():  # lower-case names already
            headers.setdefault(name, value)  # a repeated header: its first value, as .get()
        return EstCall(
            method=request.method, path=path, headers=headers,
            body=await _read_body(request) if operation.method == "POST" else b"",
            client_address=self._client_address(request),
            client_certificate=(self._client_certificate(request) if operation.authenticated
                                else None))

    # -- who is asking ---------------------------------------------------------------------

    def _via_proxy(self, request: Request) -> bool:
        """The proxy headers count only on a plain-HTTP connection from a configured proxy:
        on the HTTPS listener the TLS layer itself says who the client is."""
        if self._proxy is None or _tls(request) is not None:
            return False
        return self._proxy.trusts(request.client.host if request.client else None)

    def _client_address(self, request: Request) -> str:
        peer = request.client.host if request.client else "unknown"
        if self._via_proxy(request):
            last_hop = request.headers.get("x-forwarded-for", "").split(",")[-1].strip()
            if last_hop:
                return last_hop
        return peer

    def _client_certificate(self, request: Request) -> bytes | None:
        if self._via_proxy(request):
            assert self._proxy is not None
            # nginx's $ssl_client_escaped_cert: the PEM, URL-encoded.
            header = request.headers.get(self._proxy.certificate_header, "")
            return _der(urllib.parse.unquote(header)) if header else None
        tls = _tls(request)
        chain = tls.get("client_cert_chain") if tls else None
        return _der(chain[0]) if chain else None


class _EncodedSlashes(BaseRoute):
    """Requests that decoding would have put under the EST prefix but that the operations'
    routes do not match for an encoded slash in their path (`sensor%2Fcacerts` is one
    segment, RFC 3986 §2.2): EST's readable 404, whatever the method, since the resource
    does not exist."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and encoded_slash(scope):
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root):]
            if path.startswith(PREFIX + "/"):
                return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _response(not_found(path_as_sent(scope)))(scope, receive, send)


def _tls(request: Request) -> dict[str, Any] | None:
    """The ASGI TLS extension (serving/client_certs.py fills it), None on plain HTTP."""
    tls: dict[str, Any] | None = request.scope.get("extensions", {}).get("tls")
    return tls


def _response(reply: EstReply) -> Response:
    return response(reply.status, reply.body, reply.headers)


async def _read_body(request: Request) -> bytes:
    """The body; one too large stands in as MAX_BODY_BYTES + 1 bytes, which EstHandler
    answers with 413 like any other oversized body."""
    body = await read_bounded(request, MAX_BODY_BYTES)
    return b"\0" * (MAX_BODY_BYTES + 1) if body is None else body


def _der(pem: str) -> bytes:
    """PEM to DER without parsing the certificate: the RA parses it once, and refuses it
    (401) if it cannot."""
    try:
        return ssl.PEM_cert_to_DER_cert(pem)
    except ValueError:  # also binascii.Error
        raise NotAuthenticated("the client certificate is not a PEM certificate") from None
