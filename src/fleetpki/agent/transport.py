"""HTTPS for the agent, with the standard library only (http.client and ssl).

The device trusts its own roots and nothing else: the context loads `trust/roots.pem`, never
the system store, so a certificate from a public CA cannot stand in for the enrollment server.
The hostname is checked (an IP address against an IP SAN). One connection per request, never
resumed: the server reads the client certificate once per handshake, and a resumed TLS 1.3
session would not carry it (DESIGN.md §3). Every failure to get an HTTP answer becomes a
`TransportFailure`, and the flow's backoff decides what happens next, with one exception: a
TLS alert from the server that refuses the client certificate we presented becomes a
`CertificateRefused`, so that the flow can fall back to another credential instead of
waiting for an outage to end. With TLS 1.2 that alert ends the handshake; with TLS 1.3 the
client finishes its side first, and the alert arrives on the first read after it (RFC 8446
§4.4.2.4). A connection closed or reset without an alert stays a `TransportFailure`: networks
drop connections too.

Bounds: the TCP connection and the TLS handshake take at most `connect_timeout` (for each
address the name resolves to); sending the request and reading the whole answer, status line,
headers and body, at most `read_timeout` overall. A socket timeout alone would not do: it
restarts with every byte received, so a server trickling one byte a second could hold the
agent (and a daemon waiting to stop) for ever. The socket therefore carries a deadline, and
every receive and send waits only for what is left of it.
"""

from __future__ import annotations

import http.client
import ssl
import time
import urllib.parse
from pathlib import Path
from typing import Any, Protocol

from fleetpki import __version__
from fleetpki.agent.messages import (
    CertificateRefused,
    HttpRequest,
    HttpResponse,
    Reply,
    TransportFailure,
)

__all__ = ["CERTIFICATE_ALERTS", "MAX_BODY_BYTES", "HttpsTransport", "Transport",
           "parse_server_url"]

# The largest answer the agent reads: a certs-only chain or a serverkeygen reply is a few
# kilobytes; a /cacerts during a root rollover a few more. Anything far larger is refused.
MAX_BODY_BYTES = 256 * 1024

# The TLS alerts by which a server refuses the client's certificate (RFC 8446 §6.2; RFC 5246
# §7.2.2 for TLS 1.2): it did not chain to the server's anchors, was revoked or expired, or
# was missing. Others (handshake_failure, protocol_version...) say nothing about it.
CERTIFICATE_ALERTS = frozenset({
    "bad_certificate", "unsupported_certificate", "certificate_revoked",
    "certificate_expired", "certificate_unknown", "unknown_ca", "access_denied",
    "certificate_required"})

ClientFiles = tuple[Path, Path]  # (certificate chain PEM, private key PEM)


class Transport(Protocol):
    """What the driver needs: one request, one reply (driver.py; tests fake it)."""

    def send(self, request: HttpRequest, client: ClientFiles | None) -> Reply: ...


def parse_server_url(url: str) -> tuple[str, int, str]:
    """(host, port, path prefix) of an https:// URL; ValueError saying what is wrong."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https":
        raise ValueError("must start with https:// (EST runs over TLS, RFC 7030 §3.3)")
    if not parts.hostname:
        raise ValueError("has no host name")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must not carry a query, a fragment or credentials")
    try:
        port = parts.port or 443
    except ValueError:
        raise ValueError("has an invalid port") from None
    return parts.hostname, port, parts.path.rstrip("/")


class HttpsTransport:
    def __init__(self, url: str, roots_file: Path, *, connect_timeout: float = 10.0,
                 read_timeout: float = 30.0, max_body: int = MAX_BODY_BYTES) -> None:
        self.host, self.port, self.prefix = parse_server_url(url)
        self.roots_file = roots_file
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_body = max_body

    def send(self, request: HttpRequest, client: ClientFiles | None) -> Reply:
        where = f"{self.host}:{self.port}"
        try:
            context = self._context(client)
        except _Unusable as error:
            return TransportFailure(str(error))
        connection = http.client.HTTPSConnection(self.host, self.port, context=context,
                                                 timeout=self.connect_timeout)
        try:
            connection.connect()  # TCP and the TLS handshake, under the connect timeout
            assert isinstance(connection.sock, _DeadlineSocket)
            deadline = time.monotonic() + self.read_timeout
            connection.sock.deadline = deadline
            headers = {"User-Agent": f"fleetpki-agent/{__version__}", "Connection": "close",
                       **dict(request.headers)}
            connection.request(request.method, self.prefix + request.path,
                               body=request.body or None, headers=headers)
            response = connection.getresponse()
            body = self._read(response, deadline)
            merged: dict[str, str] = {}
            for name, value in response.getheaders():
                key = name.lower()
                merged[key] = f"{merged[key]}, {value}" if key in merged else value
            return HttpResponse(response.status, merged, body)
        except ssl.SSLCertVerificationError as error:
            return TransportFailure(
                f"the server at {where} is not trusted: {error.verify_message} (its "
                f"certificate must chain to {self.roots_file} and name {self.host})",
                untrusted_server=True)
        except ssl.SSLError as error:
            alert = _alert(error)
            if client is not None and alert in CERTIFICATE_ALERTS:
                return CertificateRefused(
                    f"the server at {where} refused the certificate {client[0]} in the TLS "
                    f"handshake ({alert.replace('_', ' ')})", alert)
            return TransportFailure(f"TLS with {where} failed: {_ssl_reason(error)}")
        except TimeoutError:
            return TransportFailure(f"{where} did not answer in time")
        except ConnectionRefusedError:
            return TransportFailure(f"{where} refused the connection (is the server up?)")
        except _Unusable as error:
            return TransportFailure(str(error))
        except (OSError, http.client.HTTPException) as error:
            return TransportFailure(f"no answer from {where}: {_describe(error)}")
        finally:
            connection.close()

    def _context(self, client: ClientFiles | None) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname
        context.sslsocket_class = _DeadlineSocket
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_verify_locations(cafile=str(self.roots_file))
        except (OSError, ssl.SSLError):
            raise _Unusable(f"no usable trust roots in {self.roots_file}: provision the "
                            "fleet's root CA certificate there (PEM)") from None
        if client is not None:
            try:
                context.load_cert_chain(str(client[0]), str(client[1]))
            except (OSError, ssl.SSLError):
                raise _Unusable(f"cannot load the client certificate {client[0]} with its "
                                "key") from None
        return context

    def _read(self, response: http.client.HTTPResponse, deadline: float) -> bytes:
        """The body, at most `max_body` bytes, within the read deadline overall: read1
        returns what has arrived, the socket's deadline bounds each wait (_DeadlineSocket),
        and the deadline is checked again after every read."""
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = response.read1(min(65536, self.max_body + 1 - size))
            if not chunk:
                return b"".join(chunks)
            if time.monotonic() > deadline:
                raise TimeoutError
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_body:
                raise _Unusable(f"the answer from {self.host}:{self.port} is larger than "
                                f"{self.max_body} bytes; refused")


class _Unusable(Exception):
    pass


class _DeadlineSocket(ssl.SSLSocket):
    """A TLS socket whose receives and sends share one deadline (time.monotonic()): each
    waits at most for what is left of it, and none starts once it has passed. Installed as
    the context's `sslsocket_class`; the deadline is set after the handshake."""

    deadline: float | None = None

    def _arm(self) -> None:
        if self.deadline is None:
            return
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the answer took longer than the read timeout")
        self.settimeout(remaining)

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        self._arm()
        return super().recv(buflen, flags)

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        self._arm()
        return super().recv_into(buffer, nbytes, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        self._arm()
        return super().send(data, flags)


def _alert(error: ssl.SSLError) -> str | None:
    """The name of the TLS alert the peer sent, as RFC 8446 spells it ("unknown_ca"), from
    OpenSSL's reason ("TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE"); None when
    the error is not a received alert."""
    reason = (error.reason or "").upper()
    head, found, name = reason.partition("_ALERT_")
    if not found or not head.startswith(("SSLV3", "TLSV1")):
        return None
    return name.lower()


def _ssl_reason(error: ssl.SSLError) -> str:
    reason = error.reason or str(error)
    if "ALERT" in reason.upper():
        # The server ended the handshake: typically it does not accept the client
        # certificate (unknown CA, expired past what it tolerates) or the TLS version.
        return f"the server refused the connection ({reason.lower()})"
    return reason.lower()


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
