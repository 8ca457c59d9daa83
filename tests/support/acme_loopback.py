"""Real servers on the loopback for the challenge validators: HTTP (and HTTPS), a TLS server
answering acme-tls/1, and a DNS server over UDP built with dnspython's message API; and the
certificates the TLS servers present. The validators' tests (their conftest.py) and the ACME
integration tests use them.

Each server runs in daemon threads of the test process, binds port 0 (the kernel picks a free
port, so there is no race), polls its stop flag at least every 0.1 s, and is stopped and
joined, with a bounded wait, when the test ends.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleetpki.protocols.acme.challenges import key_authorization
from fleetpki.protocols.acme.challenges.alpn_certificate import ACME_IDENTIFIER_OID
from fleetpki.protocols.acme.challenges.keyauth import key_authorization_digest

TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
KEY_AUTH = key_authorization(TOKEN, THUMBPRINT)
DIGEST = key_authorization_digest(KEY_AUTH)
_JOIN = 5.0
_POLL = 0.05


# --- HTTP -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Route:
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0  # seconds before answering
    declare_length: bool = True  # False: no Content-Length, the body ends when the socket does


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Host", "")))
        route = self.server.routes.get(self.path, Route(404, b"<h1>nothing here</h1>"))
        if route.delay and self.server.stopping.wait(route.delay):
            return
        self.send_response(route.status)
        for name, value in route.headers:
            self.send_header(name, value)
        if route.declare_length:
            self.send_header("Content-Length", str(len(route.body)))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(route.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str]] = []
        self.stopping = threading.Event()
        super().__init__((host, 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away (timeouts are tested) is not news


class HttpServer:
    """`route(path, ...)` says what a path answers; `requests` lists (path, Host header)."""

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self._server = _HttpServer(host)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port: int = self._server.server_address[1]
        self.routes = self._server.routes
        self.requests = self._server.requests
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": _POLL}, daemon=True)
        self._thread.start()

    def route(self, path: str, **answer: Any) -> None:
        self.routes[path] = Route(**answer)

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(_JOIN)



# --- certificates and TLS ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path


def make_certificate(directory: Path, sans: list[x509.GeneralName], *,
                     acme_value: bytes | None = None, critical: bool = True) -> CertFiles:
    """Self-signed, EC P-256. `acme_value`: the raw extnValue of id-pe-acmeIdentifier
    (None: no such extension)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme validation")])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1)))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if acme_value is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(ACME_IDENTIFIER_OID, acme_value), critical=critical)
    certificate = builder.sign(key, hashes.SHA256())
    directory.mkdir(parents=True, exist_ok=True)
    serial = certificate.serial_number
    files = CertFiles(directory / f"{serial}.crt", directory / f"{serial}.key")
    files.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return files


def server_context(files: CertFiles, alpn: list[str] | None,
                   server_names: list[str] | None = None) -> ssl.SSLContext:
    """A TLS server context; the SNI names it sees are appended to `server_names`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert, files.key)
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    if server_names is not None:
        def record(_socket: Any, name: str | None, _context: Any) -> None:
            server_names.append(name or "")
        context.sni_callback = record
    return context


class AlpnServer:
    """Accepts TCP connections, runs the TLS handshake, then waits for the client to close."""

    def __init__(self, context: ssl.SSLContext, host: str = "127.0.0.1") -> None:
        self._context = context
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.bind((host, 0))
        self._listener.listen(8)
        self._listener.settimeout(_POLL)
        self.port: int = self._listener.getsockname()[1]
        self.handshakes = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with connection:
                connection.settimeout(2.0)
                try:
                    with self._context.wrap_socket(connection, server_side=True) as tls:
                        self.handshakes += 1
                        tls.recv(1)  # the validator sends nothing and closes
                except OSError:
                    pass

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()
        self._thread.join(_JOIN)



# --- DNS --------------------------------------------------------------------------------


class DnsServer:
    """Answers from `records` ((name, type) -> rdata texts) and `cnames`; NXDOMAIN for names
    it has nothing about; says nothing at all while `silent` is set."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.cnames: dict[str, str] = {}
        self.queries: list[tuple[str, str]] = []
        self.silent = False
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(_POLL)
        self.address: tuple[str, int] = ("127.0.0.1", self._socket.getsockname()[1])
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def add(self, name: str, rdtype: str, *values: str) -> None:
        self.records.setdefault((_absolute(name), rdtype), []).extend(values)

    def add_cname(self, name: str, target: str) -> None:
        self.cnames[_absolute(name)] = _absolute(target)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                wire, client = self._socket.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            query = dns.message.from_wire(wire)
            question = query.question[0]
            self.queries.append((question.name.to_text(), dns.rdatatype.to_text(question.rdtype)))
            if not self.silent:
                self._socket.sendto(self._answer(query).to_wire(), client)

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        question = query.question[0]
        rdtype = dns.rdatatype.to_text(question.rdtype)
        owner = question.name.to_text()
        if owner in self.cnames:
            response.answer.append(dns.rrset.from_text(owner, 60, "IN", "CNAME",
                                                       self.cnames[owner]))
            owner = self.cnames[owner]
        values = self.records.get((owner, rdtype))
        if values:
            response.answer.append(dns.rrset.from_text(owner, 60, "IN", rdtype, *values))
        elif not any(name == owner for name, _ in self.records) and owner not in self.cnames:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(_JOIN)
        self._socket.close()


def _absolute(name: str) -> str:
    return dns.name.from_text(name).to_text()



def closed_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (just released by the kernel)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
