"""HttpsTransport against a small TLS server on 127.0.0.1: what is trusted, what is presented,
and how each way of not getting an answer is reported."""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from fleetpki.agent.messages import (
    CertificateRefused,
    Credential,
    HttpRequest,
    HttpResponse,
    TransportFailure,
)
from fleetpki.agent.transport import HttpsTransport, parse_server_url
from support.ports import free_port
from support.tiny_pki import Issued, issue


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/pki/slow":
            time.sleep(1.5)
        if self.path == "/pki/big":
            body = b"x" * 300_000
        elif self.path == "/pki/whoami":
            peer = self.connection.getpeercert()
            body = b"anonymous"
            if peer:
                body = dict(pair[0] for pair in peer["subject"])["commonName"].encode()
        else:
            body = f"{self.command} {self.path} {self.headers.get('user-agent')}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("X-Repeated", "a")
        self.send_header("X-Repeated", "b")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up early (the size limit, timeouts) are the point here


@dataclass(frozen=True)
class Tls:
    port: int
    directory: Path
    device: Issued

    def transport(self, roots: str = "root.pem", host: str = "127.0.0.1", *,
                  read_timeout: float = 30.0, max_body: int = 256 * 1024) -> HttpsTransport:
        return HttpsTransport(f"https://{host}:{self.port}/pki/", self.directory / roots,
                              read_timeout=read_timeout, max_body=max_body)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tls]:
    directory = tmp_path_factory.mktemp("tls")
    root, other = issue("Root", ca=True), issue("Other Root", ca=True)
    issue("server", root, ip="127.0.0.1").write(directory, "server")
    device = issue("device-1", root)
    device.write(directory, "device")
    issue("device-1", other).write(directory, "foreign")  # valid, from a CA the server ignores
    for name, ca in (("root", root), ("other", other)):
        (directory / f"{name}.pem").write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "server.pem", directory / "server.key")
    context.load_verify_locations(directory / "root.pem")
    context.verify_mode = ssl.CERT_OPTIONAL
    server = QuietServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield Tls(server.server_address[1], directory, device)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def get(path: str, credential: Credential = Credential.none) -> HttpRequest:
    return HttpRequest("GET", path, credential=credential)


def test_an_answer_from_a_trusted_server(tls: Tls) -> None:
    reply = tls.transport().send(get("/x"), None)
    assert isinstance(reply, HttpResponse) and reply.status == 200
    assert reply.body.startswith(b"GET /pki/x fleetpki-agent/")  # the URL's path prefix kept
    assert reply.header("Content-Type") == "text/plain"
    assert reply.headers["x-repeated"] == "a, b"


def test_the_client_certificate_is_presented_when_asked(tls: Tls) -> None:
    client = (tls.directory / "device.pem", tls.directory / "device.key")
    named = tls.transport().send(get("/whoami", Credential.current), client)
    assert isinstance(named, HttpResponse) and named.body == b"device-1"
    anonymous = tls.transport().send(get("/whoami"), None)
    assert isinstance(anonymous, HttpResponse) and anonymous.body == b"anonymous"


def test_a_server_not_chaining_to_the_roots_is_untrusted(tls: Tls) -> None:
    reply = tls.transport(roots="other.pem").send(get("/x"), None)
    assert isinstance(reply, TransportFailure) and reply.untrusted_server
    assert "not trusted" in reply.reason


def test_a_server_certificate_for_another_name_is_untrusted(tls: Tls) -> None:
    reply = tls.transport(host="localhost").send(get("/x"), None)
    assert isinstance(reply, TransportFailure) and reply.untrusted_server
    assert "localhost" in reply.reason


def test_a_refused_connection_is_a_plain_failure() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: refused
        transport = HttpsTransport(f"https://127.0.0.1:{port}", Path("/nonexistent"))
        reply = transport.send(get("/x"), None)
    assert isinstance(reply, TransportFailure) and not reply.untrusted_server


def test_missing_roots_say_where_to_put_them(tls: Tls) -> None:
    reply = tls.transport(roots="missing.pem").send(get("/x"), None)
    assert isinstance(reply, TransportFailure) and "no usable trust roots" in reply.reason


def test_an_oversized_answer_is_refused(tls: Tls) -> None:
    reply = tls.transport(max_body=100_000).send(get("/big"), None)
    assert isinstance(reply, TransportFailure) and "larger than 100000 bytes" in reply.reason


def test_a_slow_server_times_out(tls: Tls) -> None:
    started = time.monotonic()
    reply = tls.transport(read_timeout=0.3).send(get("/slow"), None)
    assert isinstance(reply, TransportFailure) and "in time" in reply.reason
    assert time.monotonic() - started < 1.4


def _serve_once(serve: Callable[[socket.socket], None]
                ) -> tuple[socket.socket, int, threading.Thread]:
    """A listener on a free loopback port (accept bounded to 5 s) and the thread serving it,
    which is handed the listener (the caller's attributes are not set yet when it starts)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    thread = threading.Thread(target=serve, args=(listener,), daemon=True)
    thread.start()
    return listener, listener.getsockname()[1], thread


class Refuser:
    """A one-connection TLS server on 127.0.0.1 that requires a client certificate chaining to
    root.pem and refuses others with a TLS alert, as OpenSSL-based servers do; `drop` instead
    completes the handshake and hangs up without a word (as a network might, or a server that
    sends no alert: asyncio's and uvloop's TLS transports drop it, CPython gh-98078)."""

    def __init__(self, tls: Tls, version: ssl.TLSVersion, *, drop: bool = False) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(tls.directory / "server.pem", tls.directory / "server.key")
        self.context.maximum_version = version
        if not drop:
            self.context.load_verify_locations(tls.directory / "root.pem")
            self.context.verify_mode = ssl.CERT_REQUIRED
        self.listener, self.port, self.thread = _serve_once(self._serve)

    def _serve(self, listener: socket.socket) -> None:
        try:
            raw, _ = listener.accept()
            raw.settimeout(5)
            with self.context.wrap_socket(raw, server_side=True,
                                          do_handshake_on_connect=False) as connection:
                try:
                    connection.do_handshake()
                except ssl.SSLError:
                    # OpenSSL has sent its alert. Close as careful servers do (a "lingering
                    # close"): FIN first, then read what the client already sent until it
                    # hangs up. Closing with unread data would send a reset, which may
                    # overtake the alert and discard it from the client's receive queue.
                    connection.shutdown(socket.SHUT_WR)
                    unread = connection.recv(4096)
                    while unread:
                        unread = connection.recv(4096)
        except OSError:
            return  # drop: the handshake is done; close at once

    def send(self, tls: Tls, client: tuple[Path, Path] | None) -> object:
        try:
            return HttpsTransport(f"https://127.0.0.1:{self.port}", tls.directory / "root.pem",
                                  connect_timeout=5, read_timeout=5).send(
                get("/x", Credential.current if client else Credential.none), client)
        finally:
            self.thread.join(timeout=10)
            self.listener.close()
            assert not self.thread.is_alive()


VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]


@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.2", "tls1.3"])
def test_a_client_certificate_the_server_refuses_is_reported_as_refused(
        tls: Tls, version: ssl.TLSVersion) -> None:
    # TLS 1.2 ends the handshake with the alert; TLS 1.3 sends it after the client's
    # Finished, so it arrives on the first read: both are the same refusal.
    foreign = (tls.directory / "foreign.pem", tls.directory / "foreign.key")
    reply = Refuser(tls, version).send(tls, foreign)
    assert isinstance(reply, CertificateRefused), reply
    assert reply.alert in ("unknown_ca", "bad_certificate", "certificate_unknown")
    assert "refused the certificate" in reply.reason and str(foreign[0]) in reply.reason


@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.2", "tls1.3"])
def test_an_alert_without_a_client_certificate_is_a_plain_failure(
        tls: Tls, version: ssl.TLSVersion) -> None:
    reply = Refuser(tls, version).send(tls, None)  # no certificate presented: nothing refused
    assert isinstance(reply, TransportFailure) and not reply.untrusted_server


@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.2", "tls1.3"])
def test_a_connection_dropped_without_an_alert_is_a_plain_failure(
        tls: Tls, version: ssl.TLSVersion) -> None:
    device = (tls.directory / "device.pem", tls.directory / "device.key")
    reply = Refuser(tls, version, drop=True).send(tls, device)
    assert isinstance(reply, TransportFailure) and not reply.untrusted_server


def test_an_untrusted_server_stays_untrusted_whatever_certificate_we_hold(tls: Tls) -> None:
    foreign = (tls.directory / "foreign.pem", tls.directory / "foreign.key")
    reply = tls.transport(roots="other.pem").send(get("/x", Credential.current), foreign)
    assert isinstance(reply, TransportFailure) and reply.untrusted_server


class Trickler:
    """A TLS server on 127.0.0.1 that sends its answer one byte every `interval` seconds,
    for at most `limit` seconds, then hangs up. Every wait is bounded; stop() ends it."""

    def __init__(self, tls: Tls, answer: bytes, *, head: int = 0, interval: float = 0.1,
                 limit: float = 8.0) -> None:
        self.answer, self.head, self.interval, self.limit = answer, head, interval, limit
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(tls.directory / "server.pem", tls.directory / "server.key")
        self.stopped = threading.Event()
        self.listener, self.port, self.thread = _serve_once(self._serve)

    def _serve(self, listener: socket.socket) -> None:
        try:
            raw, _ = listener.accept()
            raw.settimeout(5)
            with self.context.wrap_socket(raw, server_side=True) as connection:
                request = b""
                while b"\r\n\r\n" not in request:
                    data = connection.recv(4096)
                    if not data:
                        return
                    request += data
                connection.sendall(self.answer[:self.head])  # e.g. the headers at once
                ends = time.monotonic() + self.limit
                for offset in range(self.head, len(self.answer)):
                    if self.stopped.wait(self.interval) or time.monotonic() > ends:
                        return
                    connection.sendall(self.answer[offset:offset + 1])
        except OSError:
            return  # the client gave up: the point of the test

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


@pytest.mark.parametrize("trickled", ["status line", "body"])
def test_a_server_trickling_its_answer_is_cut_off_at_the_read_timeout(
        tls: Tls, trickled: str) -> None:
    headers = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n"
    server = Trickler(tls, headers + b"x" * 1000,
                      head=len(headers) if trickled == "body" else 0)
    try:
        started = time.monotonic()
        reply = HttpsTransport(f"https://127.0.0.1:{server.port}", tls.directory / "root.pem",
                               read_timeout=1.0).send(get("/x"), None)
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert isinstance(reply, TransportFailure) and "in time" in reply.reason
    assert elapsed < 2.5  # the read timeout bounds the whole answer, not each byte


def test_connect_timeout_is_bounded(tls: Tls) -> None:
    # A listening socket that never accepts: the TLS handshake cannot complete.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", free_port()))
        silent.listen(0)
        port = silent.getsockname()[1]
        started = time.monotonic()
        reply = HttpsTransport(f"https://127.0.0.1:{port}", tls.directory / "root.pem",
                               connect_timeout=0.3).send(get("/x"), None)
    assert isinstance(reply, TransportFailure)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(("url", "message"), [
    ("http://est.example.com", "https://"), ("https:///x", "no host"),
    ("https://est.example.com/?a=1", "query"), ("https://u:p@est.example.com", "credentials"),
    ("https://est.example.com:99999", "port"),
])
def test_server_urls_are_checked(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_server_url(url)
