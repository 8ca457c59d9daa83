"""EST routes (RFC 7030 §3.2.2): /.well-known/est/[<label>/]<operation>.

The front end reads the wire and writes the wire; every decision is the RA's. It sees the RA
through `EstAuthority`, declared here with the three calls it needs (DESIGN.md §1).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import re
import secrets
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any, Protocol

from cryptography import x509
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fleetpki.core.errors import BadInput, FleetPKIError, NotAuthenticated
from fleetpki.core.profile import Profile
from fleetpki.protocols.est.codec import (
    CT_CERTS_ONLY,
    CT_CSRATTRS,
    CT_PKCS7,
    CT_PKCS10,
    MAX_BODY_BYTES,
    certs_only,
    decode_base64_body,
    encode_base64_body,
    encode_serverkeygen,
    media_type,
)
from fleetpki.protocols.est.csrattrs import csr_attributes_for, encode_csr_attributes
from fleetpki.protocols.est.errors import HttpError, to_http
from fleetpki.ra.api import (
    BasicCredentials,
    Enrolled,
    EnrollmentKind,
    EnrollmentPending,
    EnrollmentRequest,
)

log = logging.getLogger(__name__)

PREFIX = "/.well-known/est"
_LABEL = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
# RFC 8951 §3.2 keeps the header for senders that always sent it; receivers ignore it.
_BASE64_HEADERS = {"Content-Transfer-Encoding": "base64"}


class EstAuthority(Protocol):
    def profile_for(self, label: str | None) -> Profile: ...

    def ca_certificates(self, label: str | None) -> list[x509.Certificate]: ...

    def enroll(self, request: EnrollmentRequest) -> Enrolled | EnrollmentPending: ...


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


Handler = Callable[[Request], Awaitable[Response]]


class EstServer:
    def __init__(self, authority: EstAuthority, proxy: ProxyTrust | None = None) -> None:
        self._authority = authority
        self._proxy = proxy

    def routes(self) -> list[Route]:
        operations: list[tuple[str, Handler, list[str]]] = [
            ("cacerts", self.cacerts, ["GET"]),
            ("csrattrs", self.csrattrs, ["GET"]),
            ("simpleenroll", self.simpleenroll, ["POST"]),
            ("simplereenroll", self.simplereenroll, ["POST"]),
            ("serverkeygen", self.serverkeygen, ["POST"]),
        ]
        routes = []
        for name, handler, methods in operations:
            guarded = _guarded(handler)
            routes.append(Route(f"{PREFIX}/{name}", guarded, methods=methods))
            routes.append(Route(f"{PREFIX}/{{label}}/{name}", guarded, methods=methods))
        return routes

    # -- RFC 7030 §4.1: CA certificates ----------------------------------------------------

    async def cacerts(self, request: Request) -> Response:
        certs = self._authority.ca_certificates(_label(request))
        return Response(encode_base64_body(certs_only(certs)), media_type=CT_PKCS7,
                        headers=_BASE64_HEADERS)

    # -- RFC 7030 §4.5: CSR attributes -----------------------------------------------------

    async def csrattrs(self, request: Request) -> Response:
        profile = self._authority.profile_for(_label(request))
        der = encode_csr_attributes(csr_attributes_for(profile))
        return Response(encode_base64_body(der), media_type=CT_CSRATTRS,
                        headers=_BASE64_HEADERS)

    # -- RFC 7030 §4.2 and §4.4: enrollment ------------------------------------------------

    async def simpleenroll(self, request: Request) -> Response:
        return await self._enroll(request, EnrollmentKind.enroll)

    async def simplereenroll(self, request: Request) -> Response:
        return await self._enroll(request, EnrollmentKind.reenroll)

    async def serverkeygen(self, request: Request) -> Response:
        return await self._enroll(request, EnrollmentKind.server_keygen)

    async def _enroll(self, request: Request, kind: EnrollmentKind) -> Response:
        label = _label(request)
        if label is not None:
            self._authority.profile_for(label)  # 404 for an unknown label before reading
        body = await _read_body(request)
        if media_type(request.headers.get("content-type")) != CT_PKCS10:
            return _error(HttpError(415, f"{request.url.path} takes '{CT_PKCS10}' (a base64 "
                                         "PKCS#10 request, RFC 7030 §4.2.1); got "
                                         f"'{request.headers.get('content-type', 'none')}'"))
        try:
            csr, undecodable = decode_base64_body(body), None
        except BadInput as error:
            csr, undecodable = b"", str(error)
        enrollment = EnrollmentRequest(
            csr=csr, kind=kind, client_address=self._client_address(request), label=label,
            basic=_basic_credentials(request), client_certificate=self._client_certificate(request),
            undecodable=undecodable)
        outcome = await run_in_threadpool(self._authority.enroll, enrollment)
        if isinstance(outcome, EnrollmentPending):
            # RFC 7030 §4.2.3: 202 and Retry-After; the client repeats the same request.
            return Response(f"enrollment {outcome.request_id} is waiting for approval; retry "
                            f"after {outcome.retry_after} s\n", status_code=202,
                            media_type="text/plain",
                            headers={"Retry-After": str(outcome.retry_after)})
        certificate = x509.load_der_x509_certificate(outcome.certificate.der)
        if outcome.private_key_pkcs8 is None:
            return Response(encode_base64_body(certs_only([certificate])),
                            media_type=CT_CERTS_ONLY, headers=_BASE64_HEADERS)
        content_type, multipart = encode_serverkeygen(
            outcome.private_key_pkcs8, [certificate], f"fleetpki-{secrets.token_hex(12)}")
        return Response(multipart, headers={"Content-Type": content_type,
                                            "Cache-Control": "no-store"})

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


def _tls(request: Request) -> dict[str, Any] | None:
    """The ASGI TLS extension (serving/client_certs.py fills it), None on plain HTTP."""
    tls: dict[str, Any] | None = request.scope.get("extensions", {}).get("tls")
    return tls


def _guarded(handler: Handler) -> Handler:
    """Domain errors become EST responses; anything else is logged and answered 500 without
    details (DESIGN.md §2: no stack trace reaches a client)."""
    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except _TooLarge as error:
            return _error(HttpError(413, str(error)))
        except FleetPKIError as error:
            http = to_http(error)
            if http.status >= 500:
                log.error("EST request failed on the server side",
                          extra={"path": request.url.path, "error": str(error)})
            return _error(http)
        except Exception:
            log.exception("EST request failed", extra={"path": request.url.path})
            return _error(HttpError(500, "internal error; the server log has the details"))
    return guarded


def _error(error: HttpError) -> Response:
    return Response(error.message.rstrip() + "\n", status_code=error.status,
                    media_type="text/plain", headers=error.headers)


def _label(request: Request) -> str | None:
    label = request.path_params.get("label")
    if label is None:
        return None
    if not _LABEL.match(label):
        raise BadInput(f"'{label[:64]}' is not a valid label (lower-case letters, digits, - and _)")
    return str(label)


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _TooLarge()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _TooLarge()
    return bytes(body)


class _TooLarge(BadInput):
    def __init__(self) -> None:
        super().__init__(f"the request body is larger than {MAX_BODY_BYTES} bytes; an EST "
                         "request is a single CSR of a few kilobytes")


def _basic_credentials(request: Request) -> BasicCredentials | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise NotAuthenticated(f"unsupported HTTP authentication scheme '{scheme[:20]}'; use "
                               "Basic with a bootstrap credential")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise NotAuthenticated("the Basic credentials are not base64 of 'user:secret'") from None
    username, colon, password = decoded.partition(":")
    if not colon:
        raise NotAuthenticated("the Basic credentials lack the ':' between user and secret")
    return BasicCredentials(username, password)


def _der(pem: str) -> bytes:
    """PEM to DER without parsing the certificate: the RA parses it once, and refuses it
    (401) if it cannot."""
    try:
        return ssl.PEM_cert_to_DER_cert(pem)
    except ValueError:  # also binascii.Error
        raise NotAuthenticated("the client certificate is not a PEM certificate") from None
