"""uvicorn HTTP protocols that put the TLS client certificate into every ASGI scope.

The contract apps rely on is the ASGI TLS extension, version 0.2 (asgiref ``specs/tls.rst``).
On a TLS connection every HTTP scope carries ``scope["extensions"]["tls"]``, a fresh dict::

    server_cert        None (not reported)
    client_cert_chain  [PEM str of the client's leaf certificate], or [] when it sent none.
                       Never more: Python 3.11's ssl gives only the peer's leaf, neither the
                       chain it sent nor the chain OpenSSL verified.
    client_cert_name   the leaf's subject as an RFC 4514 string, or None
    client_cert_error  None: a certificate that fails verification fails the handshake, so an
                       app never sees one. Verification skips validity dates when the context
                       was built with accept_expired_client_certs (tls.py): apps check them.
    tls_version        0x0303 (TLS 1.2) or 0x0304 (TLS 1.3)
    cipher_suite       the IANA code point, e.g. 0x1301 for TLS_AES_128_GCM_SHA256

On a plain HTTP connection there is no ``tls`` key: the spec forbids it.

The certificate is read once, when the connection is made (the handshake is complete by then),
and serves every request on that keep-alive connection; renegotiation is disabled (tls.py), so
it cannot change underneath. A resumed session (TLS 1.2 or a TLS 1.3 ticket) reports the leaf
from the original full handshake, which OpenSSL keeps in the session; the chain is not
re-verified on resumption, one more reason apps check the leaf themselves.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11
from cryptography import x509
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fleetpki.serving.http10_keep_alive import keep_http10_alive
from fleetpki.serving.request_limits import (
    MAX_HEADER_BYTES,
    REQUEST_SECONDS,
    ReadDeadline,
    refuse_and_close,
)

__all__ = ["ClientCertH11Protocol", "ClientCertHttpToolsProtocol"]

# Protocol version numbers as they appear on the wire (RFC 5246 §6.2.1, RFC 8446 §5.1).
_TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


@functools.cache
def _cipher_suite_ids() -> dict[str, int]:
    """OpenSSL cipher name -> IANA code point, for every suite this OpenSSL knows.

    OpenSSL numbers TLS suites 0x0300XXXX, XXXX being the two code-point octets.
    """
    every = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    every.set_ciphers("ALL:@SECLEVEL=0")
    return {suite["name"]: suite["id"] & 0xFFFF for suite in every.get_ciphers()}


@dataclass(frozen=True, slots=True)
class _ConnectionTLS:
    leaf_pem: str | None
    leaf_name: str | None
    tls_version: int | None
    cipher_suite: int | None

    def extension(self) -> dict[str, Any]:
        # A new dict and list per request: an app may mutate its scope.
        return {
            "server_cert": None,
            "client_cert_chain": [self.leaf_pem] if self.leaf_pem is not None else [],
            "client_cert_name": self.leaf_name,
            "client_cert_error": None,
            "tls_version": self.tls_version,
            "cipher_suite": self.cipher_suite,
        }


def _read_connection_tls(ssl_object: ssl.SSLObject) -> _ConnectionTLS:
    der = ssl_object.getpeercert(binary_form=True)
    leaf_pem = leaf_name = None
    if der:
        leaf_pem = ssl.DER_cert_to_PEM_cert(der)
        try:
            leaf_name = x509.load_der_x509_certificate(der).subject.rfc4514_string()
        except ValueError:
            leaf_name = None  # OpenSSL accepted what cryptography cannot parse; the PEM stays
    cipher = ssl_object.cipher()
    version = ssl_object.version()
    return _ConnectionTLS(
        leaf_pem=leaf_pem,
        leaf_name=leaf_name,
        tls_version=_TLS_VERSIONS.get(version) if version else None,
        cipher_suite=_cipher_suite_ids().get(cipher[0]) if cipher else None,
    )


class _WithTLSExtension:
    """Wraps the app for one connection: adds that connection's TLS extension to each scope."""

    __slots__ = ("_app", "_tls")

    def __init__(self, app: ASGIApp, tls: _ConnectionTLS) -> None:
        self._app = app
        self._tls = tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["extensions"] = {**(scope.get("extensions") or {}), "tls": self._tls.extension()}
        await self._app(scope, receive, send)


def _on_connection(protocol: HttpToolsProtocol | H11Protocol, transport: asyncio.Transport) -> None:
    # Why this hook, in uvicorn 0.38.0 (pinned with == in pyproject.toml for this reason):
    #  - connection_made runs once per connection, after the TLS handshake (the asyncio and
    #    uvloop SSL protocols call it when the handshake completes), so "ssl_object" is there;
    #  - each request reads ``self.app`` afresh (HttpToolsProtocol.on_headers_complete and
    #    H11Protocol.handle_events: ``app = self.app``) and calls it with the scope it built,
    #    so a per-connection wrapper sees every HTTP scope without copying uvicorn's scope code;
    #  - the keep-alive timer (timeout_keep_alive_task / timeout_keep_alive_handler, cancelled
    #    by data_received) is otherwise armed only after a response: arming it here also closes
    #    a connection that sends nothing at all after its handshake.
    # tests/integration/test_serving_tls.py fails if an upgrade breaks any of this.
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is not None:
        protocol.app = _WithTLSExtension(protocol.app, _read_connection_tls(ssl_object))
    protocol.timeout_keep_alive_task = protocol.loop.call_later(
        protocol.timeout_keep_alive, protocol.timeout_keep_alive_handler)


def _too_slow(protocol: HttpToolsProtocol | H11Protocol, seconds: float,
              in_header: Callable[[], bool]) -> Callable[[], None]:
    return lambda: refuse_and_close(
        protocol, 408, f"the request was not complete {seconds:g} s after it began",
        in_header=in_header())


class ClientCertHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus the ASGI ``tls`` extension (the default), HTTP/1.0
    keep-alive (http10_keep_alive.py) and the request limits of request_limits.py."""

    _header_bytes: int | None = None  # counted from a request's first byte to its header's end

    def __init__(self, *args: Any, request_seconds: float = REQUEST_SECONDS,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._request_seconds = request_seconds

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _on_connection(self, transport)
        self._read_deadline = ReadDeadline(self.loop, self._request_seconds, _too_slow(
            self, self._request_seconds, lambda: self._header_bytes is not None))

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # the parser callbacks below run in here
        if self._header_bytes is not None:
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._header_bytes = None
                refuse_and_close(self, 431, f"the request header is larger than "
                                            f"{MAX_HEADER_BYTES // 1024} KiB", in_header=True)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._read_deadline.start()

    def on_headers_complete(self) -> None:
        self.end_of_header()
        super().on_headers_complete()
        keep_http10_alive(self)

    def on_message_complete(self) -> None:
        self.end_of_message()
        super().on_message_complete()

    # Subclasses that answer some requests without these two callbacks call these themselves.

    def end_of_header(self) -> None:
        self._header_bytes = None

    def end_of_message(self) -> None:
        self._read_deadline.stop()

    def connection_lost(self, exc: Exception | None) -> None:
        self._read_deadline.stop()
        super().connection_lost(exc)


class ClientCertH11Protocol(H11Protocol):
    """uvicorn's h11 protocol (pure Python, stricter parser), plus the ASGI ``tls`` extension
    and the request deadline of request_limits.py (h11 limits the header size itself)."""

    def __init__(self, *args: Any, request_seconds: float = REQUEST_SECONDS,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._request_seconds = request_seconds

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _on_connection(self, transport)
        self._read_deadline = ReadDeadline(self.loop, self._request_seconds, _too_slow(
            self, self._request_seconds, lambda: self.conn.their_state is h11.IDLE))

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:  # the first bytes of a request
            self._read_deadline.start()
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):  # read, or failed
            self._read_deadline.stop()

    def connection_lost(self, exc: Exception | None) -> None:
        self._read_deadline.stop()
        super().connection_lost(exc)
