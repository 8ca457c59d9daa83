"""EST without I/O: one call in, one reply out (RFC 7030 §3.2.2: /.well-known/est/[<label>/]<op>).

Everything EST decides about a request that a server framework does not have to know lives
here: routing, methods, media types, the body size limit, HTTP Basic, labels, the RA's
outcome as a status and body, and domain errors as HTTP errors. server.py only moves bytes
between uvicorn and `EstHandler.handle`; a fleet simulator calls `handle` directly, in
process, and gets the exact bytes and headers a device would have received.

`handle` is synchronous and may block on the RA (the store, a signer): an asynchronous caller
runs the `authenticated` operations off its event loop.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Protocol

from cryptography import x509

from fleetpki.core.errors import BadInput, FleetPKIError, NotAuthenticated, Unsupported
from fleetpki.core.profile import Profile
from fleetpki.core.serials import serial_hex
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
from fleetpki.protocols.est.key_encryption import key_recipient
from fleetpki.protocols.est.renewal_info import CT_JSON, RenewalInfo, encode_renewal_info
from fleetpki.protocols.key_delivery import (
    KeyGenerationAuthority,
    content_info,
    for_certificate,
    signed_key_package,
)
from fleetpki.ra.api import (
    BasicCredentials,
    Enrolled,
    EnrollmentKind,
    EnrollmentPending,
    EnrollmentRequest,
    RenewalAdvice,
)

__all__ = ["OPERATIONS", "PREFIX", "EstAuthority", "EstCall", "EstHandler", "EstOperation",
           "EstReply", "error_reply", "not_found"]

log = logging.getLogger(__name__)

PREFIX = "/.well-known/est"
_LABEL = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_TEXT = "text/plain; charset=utf-8"
# RFC 8951 §3.2 keeps the header for senders that always sent it; receivers ignore it.
_BASE64 = ("content-transfer-encoding", "base64")


class EstAuthority(Protocol):
    """What the EST front end asks of the RA (DESIGN.md §1: declared on the consumer's side)."""

    def profile_for(self, label: str | None) -> Profile: ...

    def ca_certificates(self, label: str | None) -> list[x509.Certificate]: ...

    def enroll(self, request: EnrollmentRequest) -> Enrolled | EnrollmentPending: ...

    def renewal_advice(self, client_certificate: bytes, label: str | None = None
                       ) -> RenewalAdvice: ...


@dataclasses.dataclass(frozen=True, slots=True)
class EstCall:
    """One request as the transport saw it. The transport has already decided who the client
    is (TLS, or a trusted proxy's headers) and read the body, stopping a little past
    MAX_BODY_BYTES: `handle` answers 413 to anything longer than that."""

    method: str
    path: str  # percent-decoded, without the query string
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    client_address: str
    client_certificate: bytes | None  # DER leaf of the TLS client certificate


@dataclasses.dataclass(frozen=True, slots=True)
class EstReply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]  # lower-case names, content-type included

    def header(self, name: str) -> str | None:
        """The first value of a header, by case-insensitive name."""
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)


@dataclasses.dataclass(frozen=True, slots=True)
class EstOperation:
    name: str
    method: str
    # Identifies the client (Basic or TLS certificate) and so reads the store: an
    # asynchronous server runs it off its event loop and extracts the client certificate.
    authenticated: bool


OPERATIONS: tuple[EstOperation, ...] = (
    EstOperation("cacerts", "GET", authenticated=False),  # RFC 7030 §4.1
    EstOperation("csrattrs", "GET", authenticated=False),  # RFC 7030 §4.5
    EstOperation("simpleenroll", "POST", authenticated=True),  # RFC 7030 §4.2.1
    EstOperation("simplereenroll", "POST", authenticated=True),  # RFC 7030 §4.2.2
    EstOperation("serverkeygen", "POST", authenticated=True),  # RFC 7030 §4.4
    EstOperation("renewalinfo", "GET", authenticated=True),  # fleetpki: renewal_info.py
)
_BY_NAME = {operation.name: operation for operation in OPERATIONS}


class EstHandler:
    """`key_authority` signs server-generated keys that a device asks to have encrypted
    (key_encryption.py); without one, such requests are refused with 501."""

    def __init__(self, authority: EstAuthority,
                 key_authority: KeyGenerationAuthority | None = None) -> None:
        self._authority = authority
        self._key_authority = key_authority
        self._run: dict[str, Callable[[EstCall, str | None], EstReply]] = {
            "cacerts": self._cacerts, "csrattrs": self._csrattrs,
            "simpleenroll": self._simpleenroll, "simplereenroll": self._simplereenroll,
            "serverkeygen": self._serverkeygen, "renewalinfo": self._renewalinfo,
        }
        assert set(self._run) == set(_BY_NAME)

    def handle(self, call: EstCall) -> EstReply:
        """The reply to `call`; never raises. Errors become EST error replies (error_reply)."""
        try:
            routed = _route(call)
            if isinstance(routed, EstReply):
                return routed
            operation, label = routed
            return self._run[operation.name](call, label)
        except Exception as error:  # noqa: BLE001 - error_reply logs what is not ours
            return error_reply(error, call.path)

    # -- RFC 7030 §4.1: CA certificates ----------------------------------------------------

    def _cacerts(self, call: EstCall, label: str | None) -> EstReply:
        certs = self._authority.ca_certificates(label)
        return _reply(200, encode_base64_body(certs_only(certs)), CT_PKCS7, _BASE64)

    # -- RFC 7030 §4.5: CSR attributes -----------------------------------------------------

    def _csrattrs(self, call: EstCall, label: str | None) -> EstReply:
        der = encode_csr_attributes(csr_attributes_for(self._authority.profile_for(label)))
        return _reply(200, encode_base64_body(der), CT_CSRATTRS, _BASE64)

    # -- RFC 7030 §4.2 and §4.4: enrollment ------------------------------------------------

    def _simpleenroll(self, call: EstCall, label: str | None) -> EstReply:
        return self._enroll(call, label, EnrollmentKind.enroll)

    def _simplereenroll(self, call: EstCall, label: str | None) -> EstReply:
        return self._enroll(call, label, EnrollmentKind.reenroll)

    def _serverkeygen(self, call: EstCall, label: str | None) -> EstReply:
        return self._enroll(call, label, EnrollmentKind.server_keygen)

    def _enroll(self, call: EstCall, label: str | None, kind: EnrollmentKind) -> EstReply:
        if label is not None:
            self._authority.profile_for(label)  # 404 for an unknown label before the body
        _check_size(call)
        content_type = call.headers.get("content-type")
        if media_type(content_type) != CT_PKCS10:
            return _error(HttpError(415, f"{call.path} takes '{CT_PKCS10}' (a base64 PKCS#10 "
                                         f"request, RFC 7030 §4.2.1); got "
                                         f"'{content_type or 'none'}'"))
        try:
            csr, undecodable = decode_base64_body(call.body), None
        except BadInput as error:
            csr, undecodable = b"", str(error)
        recipient, refusal = None, None
        if kind is EnrollmentKind.server_keygen:
            try:
                recipient = key_recipient(csr, call.client_certificate,
                                          can_sign=self._key_authority is not None)
            except (BadInput, Unsupported) as refused:
                refusal = refused  # the RA audits it once it knows who asked
        outcome = self._authority.enroll(EnrollmentRequest(
            csr=csr, kind=kind, client_address=call.client_address, label=label,
            basic=_basic_credentials(call.headers), client_certificate=call.client_certificate,
            undecodable=undecodable, refusal=refusal))
        if isinstance(outcome, EnrollmentPending):
            # RFC 7030 §4.2.3: 202 and Retry-After; the client repeats the same request.
            return _reply(202, f"enrollment {outcome.request_id} is waiting for approval; "
                               f"retry after {outcome.retry_after} s\n".encode(), _TEXT,
                          ("retry-after", str(outcome.retry_after)))
        certificate = x509.load_der_x509_certificate(outcome.certificate.der)
        if outcome.private_key_pkcs8 is None:
            return _reply(200, encode_base64_body(certs_only([certificate])), CT_CERTS_ONLY,
                          _BASE64)
        key_part = outcome.private_key_pkcs8
        if recipient is not None and self._key_authority is not None:
            package = signed_key_package(key_part, self._key_authority.certificate,
                                         self._key_authority.key)
            key_part = content_info(for_certificate(package, recipient))
        content_type, multipart = encode_serverkeygen(
            key_part, [certificate], f"fleetpki-{secrets.token_hex(12)}",
            encrypted=recipient is not None)
        return _reply(200, multipart, content_type, ("cache-control", "no-store"))

    # -- fleetpki: renewal information (renewal_info.py, docs/protocols.md) ---------------

    def _renewalinfo(self, call: EstCall, label: str | None) -> EstReply:
        if call.client_certificate is None:
            raise NotAuthenticated("renewalinfo answers for the certificate the device "
                                   "presents: present the current certificate (even expired) "
                                   "as the TLS client certificate")
        advice = self._authority.renewal_advice(call.client_certificate, label)
        window, certificate = advice.window, advice.certificate
        body = encode_renewal_info(RenewalInfo(
            start=window.start, end=window.end, status=advice.status.value,
            serial=serial_hex(certificate.serial), not_after=certificate.not_after,
            explanation=window.explanation))
        # RFC 9773 §4.3: Retry-After says when to ask again. The answer depends on who asks
        # (the client certificate), so shared caches must not keep it (RFC 9111 §5.2.2.7).
        return _reply(200, body, CT_JSON, ("retry-after", str(advice.retry_after)),
                      ("cache-control", "private, no-cache"))


def error_reply(error: Exception, path: str) -> EstReply:
    """Domain errors become EST replies (errors.py); anything else is logged and answered 500
    without details (DESIGN.md §2: no stack trace reaches a client). Also used by transports
    for their own failures (reading the body, a proxy's certificate header)."""
    if isinstance(error, _TooLarge):
        return _error(HttpError(413, str(error)))
    if isinstance(error, FleetPKIError):
        http = to_http(error)
        if http.status >= 500:
            log.error("EST request failed on the server side",
                      extra={"path": path, "error": str(error)})
        return _error(http)
    log.error("EST request failed", extra={"path": path}, exc_info=error)
    return _error(HttpError(500, "internal error; the server log has the details"))


def not_found(path: str) -> EstReply:
    """The 404 of a path that names no EST operation; also used by transports for paths they
    do not route (an encoded slash, server.py)."""
    return _error(HttpError(404, f"no EST operation at {path[:200]} (operations: "
                                 f"{', '.join(_BY_NAME)}, under {PREFIX}/[<label>/])"))


def _route(call: EstCall) -> tuple[EstOperation, str | None] | EstReply:
    """The operation and label of a path, or a 404/405 reply; BadInput for a bad label."""
    rest = call.path.removeprefix(PREFIX + "/") if call.path.startswith(PREFIX + "/") else None
    parts = rest.split("/") if rest else []
    operation = _BY_NAME.get(parts[-1]) if 1 <= len(parts) <= 2 and all(parts) else None
    if operation is None:
        return not_found(call.path)
    # RFC 9110 §9.3.2: HEAD is GET without content; the transport drops the content.
    allowed = (operation.method, "HEAD") if operation.method == "GET" else (operation.method,)
    if call.method.upper() not in allowed:
        return _error(HttpError(405, f"{operation.name} takes {operation.method}",
                                {"Allow": ", ".join(allowed)}))
    label = parts[0] if len(parts) == 2 else None
    if label is not None and not _LABEL.match(label):
        raise BadInput(f"'{label[:64]}' is not a valid label (lower-case letters, digits, - and _)")
    return operation, label


def _check_size(call: EstCall) -> None:
    """413 above MAX_BODY_BYTES, whether the transport read the body or only its declared
    Content-Length (it need not read a body it knows is too large)."""
    declared = call.headers.get("content-length")
    if len(call.body) > MAX_BODY_BYTES or (
            declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES):
        raise _TooLarge()


class _TooLarge(BadInput):
    def __init__(self) -> None:
        super().__init__(f"the request body is larger than {MAX_BODY_BYTES} bytes; an EST "
                         "request is a single CSR of a few kilobytes")


def _basic_credentials(headers: Mapping[str, str]) -> BasicCredentials | None:
    header = headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise NotAuthenticated(f"unsupported HTTP authentication scheme '{scheme[:20]}'; use "
                               "Basic with a bootstrap credential")
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):  # ValueError: characters beyond ASCII
        raise NotAuthenticated("the Basic credentials are not base64 of 'user:secret'") from None
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:  # RFC 7617 §2.1: charset="UTF-8", as WWW-Authenticate says
        raise NotAuthenticated("the Basic credentials are base64, but not of UTF-8 text; "
                               "encode 'user:secret' as UTF-8") from None
    username, colon, password = decoded.partition(":")
    if not colon:
        raise NotAuthenticated("the Basic credentials lack the ':' between user and secret")
    return BasicCredentials(username, password)


def _reply(status: int, body: bytes, content_type: str, *headers: tuple[str, str]) -> EstReply:
    return EstReply(status, body, (("content-type", content_type), *headers))


def _error(error: HttpError) -> EstReply:
    return _reply(error.status, (error.message.rstrip() + "\n").encode(), _TEXT,
                  *((name.lower(), value) for name, value in error.headers.items()))
