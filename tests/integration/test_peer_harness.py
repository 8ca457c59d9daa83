"""The real-peer harness works, without an EST server: nginx and strongSwan's pki.

Each peer runs against a small stdlib server that answers with canned replies and records
exactly what arrived (request line, headers in order, body, TLS version, client
certificate). The assertions pin down the peers' behaviour that the EST server must
accept; the module docstrings of support.strongswan and support.nginx summarise it.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import re
import secrets
import socket
import ssl
import subprocess
import threading
import traceback
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from support.lint import require_tool
from support.nginx import NginxProxy
from support.strongswan import (
    PkiError,
    create_csr,
    est_cacerts,
    est_enroll,
    generate_key,
)

_THREAD_JOIN_TIMEOUT = 10.0
_SOCKET_TIMEOUT = 10.0
_BASE64_LINE = re.compile(rb"[A-Za-z0-9+/]+={0,2}")


# -- a small test PKI, made with cryptography ------------------------------------------------


@dataclass(frozen=True)
class Hierarchy:
    """Root -> issuing CA, a TLS server certificate and client certificates, as files."""

    root: x509.Certificate
    issuing: x509.Certificate
    issuing_key: ec.EllipticCurvePrivateKey
    root_pem: Path
    issuing_pem: Path
    client_bundle: Path
    """root + issuing, the client-CA bundle for nginx."""
    server_pem: Path
    server_key: Path
    """TLS server for 127.0.0.1 (IP SAN), issued by the root."""
    device_pem: Path
    device_key: Path
    """A device (client) certificate issued by the issuing CA."""
    stranger_pem: Path
    stranger_key: Path
    """A client certificate from a CA that nothing here trusts."""


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _certificate(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    sans: list[x509.GeneralName] | None = None,
    eku: list[x509.ObjectIdentifier] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=ca,
                crl_sign=ca, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    )  # fmt: skip
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def hierarchy(tmp_path_factory: pytest.TempPathFactory) -> Hierarchy:
    directory = tmp_path_factory.mktemp("peer-harness-pki")
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _certificate(_name("Harness Root"), root_key.public_key(), _name("Harness Root"),
                        root_key, ca=True)
    issuing_key = ec.generate_private_key(ec.SECP256R1())
    issuing = _certificate(_name("Harness Issuing"), issuing_key.public_key(), root.subject,
                           root_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate(
        _name("127.0.0.1"), server_key.public_key(), root.subject, root_key, ca=False,
        sans=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
        eku=[ExtendedKeyUsageOID.SERVER_AUTH],
    )  # fmt: skip
    device_key = ec.generate_private_key(ec.SECP256R1())
    device = _certificate(_name("sensor-0001"), device_key.public_key(), issuing.subject,
                          issuing_key, ca=False, eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    other_root_key = ec.generate_private_key(ec.SECP256R1())
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    stranger = _certificate(_name("stranger"), stranger_key.public_key(), _name("Other Root"),
                            other_root_key, ca=False, eku=[ExtendedKeyUsageOID.CLIENT_AUTH])

    (directory / "root.pem").write_bytes(_pem(root))
    (directory / "issuing.pem").write_bytes(_pem(issuing))
    (directory / "client-ca.pem").write_bytes(_pem(root) + _pem(issuing))
    (directory / "server.pem").write_bytes(_pem(server))
    (directory / "device.pem").write_bytes(_pem(device))
    (directory / "stranger.pem").write_bytes(_pem(stranger))
    return Hierarchy(
        root=root,
        issuing=issuing,
        issuing_key=issuing_key,
        root_pem=directory / "root.pem",
        issuing_pem=directory / "issuing.pem",
        client_bundle=directory / "client-ca.pem",
        server_pem=directory / "server.pem",
        server_key=_write_key(directory / "server.key", server_key),
        device_pem=directory / "device.pem",
        device_key=_write_key(directory / "device.key", device_key),
        stranger_pem=directory / "stranger.pem",
        stranger_key=_write_key(directory / "stranger.key", stranger_key),
    )


def _certs_only_base64(certs: list[x509.Certificate]) -> bytes:
    """An EST certs-only reply body: base64 of PKCS#7 DER on one line (what pki decodes)."""
    der = pkcs7.serialize_certificates(certs, serialization.Encoding.DER)
    return base64.b64encode(der)


# -- stdlib servers in threads, always stopped ------------------------------------------------


@contextmanager
def _serving(server: ThreadingHTTPServer) -> Iterator[ThreadingHTTPServer]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name=f"test-server-{server.server_address[1]}", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(_THREAD_JOIN_TIMEOUT)
        assert not thread.is_alive(), "test server thread did not stop"


class _EchoHandler(BaseHTTPRequestHandler):
    """Upstream behind nginx: answers with the request it received, as JSON."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._echo()

    def do_POST(self) -> None:
        self._echo()

    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        payload = json.dumps({
            "request_line": self.requestline,
            "headers": [[name, value] for name, value in self.headers.items()],
            "body": body.decode("latin-1"),
        }).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def echo_upstream() -> Iterator[int]:
    """A plain-HTTP upstream on 127.0.0.1; yields its port."""
    with _serving(ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)) as server:
        yield server.server_address[1]


@dataclass(frozen=True)
class Canned:
    """One HTTP reply, sent in a single write (pki reads the header in one go)."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def raw(self) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {self.reason}"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


@dataclass(frozen=True)
class Seen:
    """One request as the stub received it."""

    request_line: str
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    tls_version: str | None
    peer_cert: bytes | None
    client_port: int

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        assert len(values) <= 1, f"header {name} repeated: {values}"
        return values[0] if values else None


Responder = Callable[[Seen], Canned]

_CERTS_ONLY = (("Content-Type", "application/pkcs7-mime; smime-type=certs-only"),
               ("Content-Transfer-Encoding", "base64"))


@dataclass
class EstStub:
    """An HTTP(S) server (stdlib, in a thread) with canned EST routes that records requests.

    Without a TLS context it is a plain-HTTP upstream, for use behind nginx.
    """

    context: ssl.SSLContext | None
    routes: dict[str, Responder]
    requests: list[Seen] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        scheme = "https" if self.context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"


class _StubServer(ThreadingHTTPServer):
    stub: EstStub

    def handle_error(self, request: Any, client_address: Any) -> None:
        with self.stub.lock:
            self.stub.errors.append(traceback.format_exc())


class _StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _StubServer

    def setup(self) -> None:
        # Handshake here, in the connection's own thread, with a timeout.
        self.request.settimeout(_SOCKET_TIMEOUT)
        context = self.server.stub.context
        if context is not None:
            self.request = context.wrap_socket(self.request, server_side=True)
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.request.close()

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        stub = self.server.stub
        length = self.headers.get("Content-Length")
        body = self.rfile.read(int(length)) if length else b""
        tls = self.request if isinstance(self.request, ssl.SSLSocket) else None
        seen = Seen(
            request_line=self.requestline,
            method=self.command,
            path=self.path,
            headers=tuple(self.headers.items()),
            body=body,
            tls_version=tls.version() if tls else None,
            peer_cert=tls.getpeercert(binary_form=True) if tls else None,
            client_port=self.client_address[1],
        )
        with stub.lock:
            stub.requests.append(seen)
        responder = stub.routes.get(self.path)
        reply = responder(seen) if responder else Canned(404, "Not Found")
        self.wfile.write(reply.raw())
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def est_stub(
    hierarchy: Hierarchy,
    routes: dict[str, Responder],
    *,
    require_client_cert: bool = False,
    tls: bool = True,
) -> Iterator[EstStub]:
    """Serve ``routes`` on 127.0.0.1, over TLS with the harness server certificate.

    Client certificates are requested and verified against the root only, so a chain
    from the issuing CA verifies only if the client sends the intermediate itself.
    ``tls=False`` serves plain HTTP (an upstream for nginx).
    """
    context: ssl.SSLContext | None = None
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(hierarchy.server_pem, hierarchy.server_key)
        context.load_verify_locations(hierarchy.root_pem)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    stub = EstStub(context=context, routes=routes)
    server = _StubServer(("127.0.0.1", 0), _StubHandler)
    server.stub = stub
    stub.port = server.server_address[1]
    with _serving(server):
        yield stub


def _sign_csr(hierarchy: Hierarchy, csr_der: bytes) -> x509.Certificate:
    csr = x509.load_der_x509_csr(csr_der)
    assert csr.is_signature_valid
    public_key = csr.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    return _certificate(csr.subject, public_key, hierarchy.issuing.subject,
                        hierarchy.issuing_key, ca=False,
                        eku=[ExtendedKeyUsageOID.CLIENT_AUTH])


def _enroll_responder(hierarchy: Hierarchy, issued: list[x509.Certificate]) -> Responder:
    """/simpleenroll: sign the base64 PKCS#10 with the issuing CA, reply certs-only."""

    def respond(seen: Seen) -> Canned:
        cert = _sign_csr(hierarchy, base64.b64decode(seen.body, validate=True))
        issued.append(cert)
        return Canned(200, "OK", _CERTS_ONLY, _certs_only_base64([cert]))

    return respond


# -- nginx --------------------------------------------------------------------------------------


def _curl(url: str, hierarchy: Hierarchy, *args: str) -> tuple[int, bytes]:
    """GET ``url`` trusting the harness root; returns (HTTP status, body)."""
    argv = [require_tool("curl"), "-sS", "--max-time", "15", "--cacert", str(hierarchy.root_pem),
            "-o", "-", "-w", "\n%{http_code}", *args, url]
    proc = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    body, _, status = proc.stdout.rpartition(b"\n")
    return int(status), body


def _echoed_headers(body: bytes) -> dict[str, str]:
    echoed = json.loads(body)
    names = [name.lower() for name, _ in echoed["headers"]]
    assert len(names) == len(set(names)), f"duplicate headers: {echoed['headers']}"
    return {name.lower(): value for name, value in echoed["headers"]}


def test_nginx_forwards_the_client_leaf_as_escaped_pem(hierarchy: Hierarchy) -> None:
    with echo_upstream() as upstream_port, NginxProxy(
        upstream_port=upstream_port, server_cert=hierarchy.server_pem,
        server_key=hierarchy.server_key, client_ca=hierarchy.client_bundle,
    ) as proxy:  # fmt: skip
        status, body = _curl(
            f"{proxy.url}/.well-known/est/simplereenroll", hierarchy,
            "--cert", str(hierarchy.device_pem), "--key", str(hierarchy.device_key),
            "-H", "X-Forwarded-For: 203.0.113.9",
        )  # fmt: skip
        config, port = proxy.config_text, proxy.port
    assert status == 200
    headers = _echoed_headers(body)
    escaped = headers["x-ssl-client-cert"]
    # nginx percent-encodes the PEM: spaces, newlines and base64's '+', '/', '='.
    assert escaped.startswith("-----BEGIN%20CERTIFICATE-----%0A")
    assert escaped.endswith("-----END%20CERTIFICATE-----%0A")
    assert not set(escaped) & set(" \n+/=")
    assert urllib.parse.unquote(escaped).encode() == hierarchy.device_pem.read_bytes()
    # Only the leaf: nginx exposes no variable with the chain the client sent.
    assert urllib.parse.unquote(escaped).count("BEGIN CERTIFICATE") == 1
    assert headers["x-ssl-client-verify"] == "SUCCESS"
    assert headers["x-forwarded-for"] == "127.0.0.1"  # the client's own value is replaced
    assert headers["x-forwarded-proto"] == "https"
    assert headers["host"] == f"127.0.0.1:{port}"
    assert "ssl_verify_client optional_no_ca;" in config
    assert "proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;" in config


def test_nginx_without_client_cert_sends_no_header_and_drops_a_forged_one(
    hierarchy: Hierarchy,
) -> None:
    with echo_upstream() as upstream_port, NginxProxy(
        upstream_port=upstream_port, server_cert=hierarchy.server_pem,
        server_key=hierarchy.server_key, client_ca=hierarchy.client_bundle,
    ) as proxy:  # fmt: skip
        _, plain = _curl(f"{proxy.url}/.well-known/est/cacerts", hierarchy)
        _, forged = _curl(f"{proxy.url}/.well-known/est/cacerts", hierarchy,
                          "-H", "X-SSL-Client-Cert: forged", "-H", "x-ssl-client-cert: forged2")
    for body in (plain, forged):
        headers = _echoed_headers(body)
        assert "x-ssl-client-cert" not in headers, headers
        assert headers["x-ssl-client-verify"] == "NONE"


def test_nginx_verify_modes_with_an_untrusted_client_certificate(hierarchy: Hierarchy) -> None:
    stranger = ("--cert", str(hierarchy.stranger_pem), "--key", str(hierarchy.stranger_key))
    with echo_upstream() as upstream_port:
        with NginxProxy(upstream_port=upstream_port, server_cert=hierarchy.server_pem,
                        server_key=hierarchy.server_key,
                        client_ca=hierarchy.client_bundle) as proxy:
            status, body = _curl(f"{proxy.url}/x", hierarchy, *stranger)
        # optional_no_ca: forwarded; the application sees the failed verdict and the leaf.
        assert status == 200
        headers = _echoed_headers(body)
        assert headers["x-ssl-client-verify"].startswith("FAILED:")
        assert urllib.parse.unquote(headers["x-ssl-client-cert"]).encode() == (
            hierarchy.stranger_pem.read_bytes()
        )
        with NginxProxy(upstream_port=upstream_port, server_cert=hierarchy.server_pem,
                        server_key=hierarchy.server_key, client_ca=hierarchy.client_bundle,
                        verify_client="optional") as proxy:
            status, body = _curl(f"{proxy.url}/x", hierarchy, *stranger)
            trusted, _ = _curl(f"{proxy.url}/x", hierarchy, "--cert", str(hierarchy.device_pem),
                               "--key", str(hierarchy.device_key))
    # optional: nginx answers 400 itself; the upstream never sees the request.
    assert status == 400
    assert b"SSL certificate error" in body
    assert trusted == 200


def test_nginx_start_failure_reports_the_error_log(hierarchy: Hierarchy, tmp_path: Path) -> None:
    proxy = NginxProxy(upstream_port=9, server_cert=tmp_path / "missing.pem",
                       server_key=hierarchy.server_key, directory=tmp_path / "nginx")
    with pytest.raises(RuntimeError, match=r"missing\.pem") as raised:
        proxy.start()
    assert "did not start" in str(raised.value)
    proxy.stop()


def test_nginx_stops_the_process_it_started(hierarchy: Hierarchy) -> None:
    with echo_upstream() as upstream_port:
        proxy = NginxProxy(upstream_port=upstream_port, server_cert=hierarchy.server_pem,
                           server_key=hierarchy.server_key)
        with proxy:
            pid, port, directory = proxy.pid, proxy.port, proxy.directory
            assert (directory / "nginx.pid").read_text().strip() == str(pid)
        assert not directory.exists()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        with socket.socket() as sock, pytest.raises(OSError):
            sock.settimeout(2)
            sock.connect(("127.0.0.1", port))


# -- strongSwan pki --estca -------------------------------------------------------------------


def test_pki_estca_request_and_reply(hierarchy: Hierarchy) -> None:
    body = _certs_only_base64([hierarchy.issuing, hierarchy.root])
    routes = {"/.well-known/est/cacerts": lambda _: Canned(200, "OK", _CERTS_ONLY, body)}
    with est_stub(hierarchy, routes) as stub:
        result = est_cacerts(stub.url, tls_trust=[hierarchy.root_pem])
    assert stub.errors == []
    # Root first, then the others, whatever the order in the reply.
    assert [x509.load_pem_x509_certificate(pem) for pem in result.certificates] == [
        hierarchy.root, hierarchy.issuing]
    (seen,) = stub.requests
    assert seen.request_line == "GET /.well-known/est/cacerts HTTP/1.1"
    assert seen.headers == (("Host", f"127.0.0.1:{stub.port}"),)
    assert seen.body == b""
    assert seen.tls_version == "TLSv1.2"  # pki's libtls stops at 1.2 unless configured
    assert seen.peer_cert is None


def test_pki_estca_files_tls13_and_url_prefix(hierarchy: Hierarchy, tmp_path: Path) -> None:
    body = _certs_only_base64([hierarchy.root, hierarchy.issuing])
    routes = {"/fleet/.well-known/est/cacerts": lambda _: Canned(200, "OK", _CERTS_ONLY, body)}
    with est_stub(hierarchy, routes) as stub:
        result = est_cacerts(f"{stub.url}/fleet", tls_trust=[hierarchy.root_pem],
                             caout=tmp_path / "ca.der", outform="der", tls_version_max="1.3")
    assert result.files == (tmp_path / "ca.der", tmp_path / "ca-1.der")
    assert [x509.load_der_x509_certificate(der) for der in result.certificates] == [
        hierarchy.root, hierarchy.issuing]
    (seen,) = stub.requests
    # A path in the URL is a prefix *before* /.well-known/est: no CA label is possible.
    assert seen.path == "/fleet/.well-known/est/cacerts"
    assert seen.tls_version == "TLSv1.3"


def test_pki_estca_needs_a_self_signed_root_in_the_reply(hierarchy: Hierarchy) -> None:
    body = _certs_only_base64([hierarchy.issuing])
    routes = {"/.well-known/est/cacerts": lambda _: Canned(200, "OK", _CERTS_ONLY, body)}
    with est_stub(hierarchy, routes) as stub, pytest.raises(PkiError):
        est_cacerts(stub.url, tls_trust=[hierarchy.root_pem])


# -- strongSwan pki --est ---------------------------------------------------------------------


@pytest.fixture
def device_csr(tmp_path: Path) -> Path:
    key = generate_key(tmp_path / "device.key")
    return create_csr(key, tmp_path / "device.csr", dn="CN=sensor-0042")


def test_pki_est_enroll_with_basic_auth(
    hierarchy: Hierarchy, device_csr: Path, tmp_path: Path
) -> None:
    issued: list[x509.Certificate] = []
    routes = {"/.well-known/est/simpleenroll": _enroll_responder(hierarchy, issued)}
    password = "pa:ss " + secrets.token_hex(4)
    with est_stub(hierarchy, routes) as stub:
        result = est_enroll(stub.url, device_csr, userpass=("device-7", password),
                            tls_trust=[hierarchy.root_pem, hierarchy.issuing_pem],
                            out=tmp_path / "issued.pem")
    assert stub.errors == []
    (cert,) = issued
    assert result.certificate == _pem(cert)
    assert (tmp_path / "issued.pem").read_bytes() == _pem(cert)
    assert password not in " ".join(result.run.argv)
    (seen,) = stub.requests
    assert seen.request_line == "POST /.well-known/est/simpleenroll HTTP/1.1"
    expected_auth = base64.b64encode(f"device-7:{password}".encode()).decode()
    assert [name for name, _ in seen.headers] == [
        "Host", "Authorization", "Content-Type", "Content-Length"]
    assert seen.header("Authorization") == f"Basic {expected_auth}"  # sent pre-emptively
    assert seen.header("Content-Type") == "application/pkcs10"
    assert seen.header("Content-Length") == str(len(seen.body))
    assert seen.header("Transfer-Encoding") is None
    # Single-line base64 of the DER request, no trailing newline.
    assert _BASE64_LINE.fullmatch(seen.body), seen.body
    csr = x509.load_pem_x509_csr(device_csr.read_bytes())
    assert base64.b64decode(seen.body) == csr.public_bytes(serialization.Encoding.DER)
    assert seen.peer_cert is None


def test_pki_est_reenroll_sends_client_cert_and_chain(
    hierarchy: Hierarchy, device_csr: Path
) -> None:
    issued: list[x509.Certificate] = []
    routes = {"/.well-known/est/simplereenroll": _enroll_responder(hierarchy, issued)}
    # The stub trusts only the root: the handshake succeeds only if pki sends the issuing CA.
    with est_stub(hierarchy, routes, require_client_cert=True) as stub:
        result = est_enroll(stub.url, device_csr, client_cert=hierarchy.device_pem,
                            client_key=hierarchy.device_key, outform="der",
                            tls_trust=[hierarchy.root_pem, hierarchy.issuing_pem])
    assert stub.errors == []
    assert result.certificate == issued[0].public_bytes(serialization.Encoding.DER)
    (seen,) = stub.requests
    assert seen.request_line == "POST /.well-known/est/simplereenroll HTTP/1.1"
    assert seen.header("Authorization") is None
    device = x509.load_pem_x509_certificate(hierarchy.device_pem.read_bytes())
    assert seen.peer_cert == device.public_bytes(serialization.Encoding.DER)


def test_pki_est_polls_after_202_with_retry_after(
    hierarchy: Hierarchy, device_csr: Path
) -> None:
    issued: list[x509.Certificate] = []
    enroll = _enroll_responder(hierarchy, issued)
    calls: list[int] = []

    def respond(seen: Seen) -> Canned:
        calls.append(1)
        if len(calls) == 1:
            return Canned(202, "Accepted", (("Retry-After", "2"),))
        return enroll(seen)

    with est_stub(hierarchy, {"/.well-known/est/simpleenroll": respond}) as stub:
        result = est_enroll(stub.url, device_csr, userpass=("u", "p"), interval=1,
                            max_poll_time=20, tls_trust=[hierarchy.root_pem])
    assert len(issued) == 1
    first, second = stub.requests
    assert first.body == second.body  # the same request, again
    assert first.client_port != second.client_port  # on a new connection
    assert result.run.elapsed >= 2.0  # Retry-After beat the shorter --interval
    assert "polling every 2 seconds" in result.run.stderr


def test_pki_est_fails_on_401_without_retrying(hierarchy: Hierarchy, device_csr: Path) -> None:
    def deny(_: Seen) -> Canned:
        return Canned(401, "Unauthorized", (("WWW-Authenticate", 'Basic realm="est"'),))

    with (
        est_stub(hierarchy, {"/.well-known/est/simpleenroll": deny}) as stub,
        pytest.raises(PkiError, match="HTTP 401"),
    ):
        est_enroll(stub.url, device_csr, userpass=("u", "wrong"), tls_trust=[hierarchy.root_pem])
    (seen,) = stub.requests
    assert seen.header("Authorization") == "Basic " + base64.b64encode(b"u:wrong").decode()


def test_pki_est_rejects_line_wrapped_base64(hierarchy: Hierarchy, device_csr: Path) -> None:
    def wrapped(seen: Seen) -> Canned:
        cert = _sign_csr(hierarchy, base64.b64decode(seen.body))
        der = pkcs7.serialize_certificates([cert], serialization.Encoding.DER)
        return Canned(200, "OK", _CERTS_ONLY, base64.encodebytes(der))  # 76-column lines

    with (
        est_stub(hierarchy, {"/.well-known/est/simpleenroll": wrapped}) as stub,
        pytest.raises(PkiError, match="could not parse pkcs7"),
    ):
        est_enroll(stub.url, device_csr, userpass=("u", "p"), tls_trust=[hierarchy.root_pem])


# -- pki through nginx: the deployment topology -----------------------------------------------


def test_pki_est_through_nginx_reaches_the_upstream_with_the_client_leaf(
    hierarchy: Hierarchy, device_csr: Path
) -> None:
    issued: list[x509.Certificate] = []
    routes = {"/.well-known/est/simplereenroll": _enroll_responder(hierarchy, issued)}
    with est_stub(hierarchy, routes, tls=False) as upstream, NginxProxy(
        upstream_port=upstream.port, server_cert=hierarchy.server_pem,
        server_key=hierarchy.server_key, client_ca=hierarchy.client_bundle,
    ) as proxy:  # fmt: skip
        result = est_enroll(proxy.url, device_csr, client_cert=hierarchy.device_pem,
                            client_key=hierarchy.device_key, tls_version_max="1.3",
                            tls_trust=[hierarchy.root_pem, hierarchy.issuing_pem])
        access_log = proxy.access_log
    assert upstream.errors == []
    assert result.certificate == _pem(issued[0])
    (seen,) = upstream.requests
    assert seen.request_line == "POST /.well-known/est/simplereenroll HTTP/1.1"
    assert seen.header("Content-Length") == str(len(seen.body))
    assert _BASE64_LINE.fullmatch(seen.body)
    escaped = seen.header("X-SSL-Client-Cert")
    assert escaped is not None
    assert urllib.parse.unquote(escaped).encode() == hierarchy.device_pem.read_bytes()
    assert seen.header("X-SSL-Client-Verify") == "SUCCESS"
    assert seen.header("X-Forwarded-For") == "127.0.0.1"
    assert '"POST /.well-known/est/simplereenroll HTTP/1.1" 200' in access_log
