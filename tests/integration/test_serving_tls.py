"""serve() over real sockets, with real TLS clients (Python ssl, curl), in worker processes.

The server runs in a subprocess: this file executed as a script, serving an app that echoes
the ASGI ``tls`` extension as JSON. It has three listeners: TLS accepting expired client
certificates ("lenient"), TLS refusing them ("strict") and plain HTTP.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

TLS12, TLS13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
REQUEST_SECONDS = 3.0  # the test server's deadline for a request, once begun
WIRE_VERSION = {TLS12: 0x0303, TLS13: 0x0304}


# --- the server side (runs in the subprocess) -------------------------------------------------

async def echo_app(scope: dict[str, Any], receive: Callable[[], Any], send: Callable[..., Any]
                   ) -> None:
    if scope["method"] == "POST":  # read the whole body first, as the protocol servers do
        message = await receive()
        while message["type"] == "http.request" and message.get("more_body"):
            message = await receive()
        if message["type"] == "http.disconnect":
            return
    extensions = scope.get("extensions") or {}
    body = json.dumps({"pid": os.getpid(), "client": scope["client"],
                       "has_tls": "tls" in extensions, "tls": extensions.get("tls")}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def run_server(directory: Path, http: str, mode: str) -> int:
    from fleetpki.serving.direct import DirectRoute
    from fleetpki.serving.tls import server_tls_context
    from fleetpki.serving.workers import Listener, WorkerApps, serve

    def tls(accept_expired: bool) -> Callable[[], ssl.SSLContext]:
        return lambda: server_tls_context(
            directory / "server.pem", directory / "server.key", key_password=None,
            client_trust_pem=(directory / "trust.pem").read_bytes(),
            accept_expired_client_certs=accept_expired)

    def app_factory() -> Any:
        if mode == "crash":
            raise RuntimeError("this app cannot start")
        # /direct on the plain listener is answered without ASGI (httptools only)
        return WorkerApps({name: echo_app for name in ("lenient", "strict", "plain")},
                          direct={"plain": DirectRoute("/direct", 1024, lambda request: (
                              200, [(b"content-length", b"6")], b"direct"))})

    def on_ready(addresses: list[tuple[str, int]]) -> None:
        print(json.dumps(addresses), flush=True)

    listeners = [Listener("lenient", "127.0.0.1", 0, tls(True)),
                 Listener("strict", "127.0.0.1", 0, tls(False)),
                 Listener("plain", "127.0.0.1", 0, None)]
    return serve(app_factory, listeners, workers=2, on_ready=on_ready, graceful_timeout=5.0,
                 http="h11" if http == "h11" else "httptools", request_seconds=REQUEST_SECONDS)


if __name__ == "__main__":
    sys.exit(run_server(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))


# --- test PKI ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root -> issuing -> devices; the server trusts the issuing CA only; an unrelated CA."""
    # Imported here, not at the top: this file also runs as the server script, without tests/
    # on its path.
    from support.tiny_pki import issue

    directory = tmp_path_factory.mktemp("pki")
    root = issue("Root", ca=True)
    issuing = issue("Issuing", root, ca=True)
    root.write(directory, "root")
    issue("server", root, ip="127.0.0.1").write(directory, "server")
    (directory / "trust.pem").write_bytes(issuing.cert.public_bytes(serialization.Encoding.PEM))
    issue("device-1", issuing).write(directory, "device")
    issue("device-old", issuing, days=(-60, -1)).write(directory, "expired")
    issue("intruder", issue("Other Root", ca=True)).write(directory, "intruder")
    return directory


# --- running the server -----------------------------------------------------------------------

@dataclass(frozen=True)
class Server:
    lenient: int
    strict: int
    plain: int


def start(directory: Path, http: str, mode: str = "serve") -> tuple[subprocess.Popen[bytes],
                                                                    list[Any] | None]:
    """Start the server; return it with its addresses, or None if it exited before ready."""
    stderr = (directory / f"server-{http}-{mode}.log").open("wb")
    process = subprocess.Popen([sys.executable, __file__, str(directory), http, mode],
                               stdout=subprocess.PIPE, stderr=stderr)
    stderr.close()
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        if select.select([process.stdout], [], [], 0.1)[0]:
            line = process.stdout.readline()
            return process, json.loads(line) if line else None
    return process, None


def stop(process: subprocess.Popen[bytes]) -> int:
    try:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        return process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout=5)
    finally:
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture(scope="module", params=["httptools", "h11"])
def server(request: pytest.FixtureRequest, pki: Path) -> Iterator[Server]:
    process, addresses = start(pki, request.param)
    try:
        assert addresses is not None, (pki / f"server-{request.param}-serve.log").read_text()
        yield Server(*(port for _, port in addresses))
    finally:
        stop(process)


def worker_pids(parent: int) -> set[int]:
    pids = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines()
                          if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(parent):
            pids.add(int(status.parent.name))
    return pids


# --- clients ----------------------------------------------------------------------------------

def client_context(pki: Path, client: str | None = None, version: ssl.TLSVersion | None = None
                   ) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki / "root.pem")
    if version is not None:
        context.minimum_version = context.maximum_version = version
    if client is not None:
        context.load_cert_chain(pki / f"{client}.pem", pki / f"{client}.key")
    return context


def get(port: int, context: ssl.SSLContext | None, requests: int = 1) -> list[dict[str, Any]]:
    """GET / ``requests`` times over one connection."""
    connection: http.client.HTTPConnection = (
        http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        if context else http.client.HTTPConnection("127.0.0.1", port, timeout=10))
    try:
        answers = []
        for _ in range(requests):
            connection.request("GET", "/")
            response = connection.getresponse()
            assert response.status == 200
            answers.append(json.loads(response.read()))
        return answers
    finally:
        connection.close()


def leaf(pki: Path, client: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((pki / f"{client}.pem").read_bytes())


def assert_sees(tls: dict[str, Any], pki: Path, client: str) -> None:
    [pem] = tls["client_cert_chain"]
    assert x509.load_pem_x509_certificate(pem.encode()) == leaf(pki, client)
    assert tls["client_cert_name"] == leaf(pki, client).subject.rfc4514_string()
    assert tls["client_cert_error"] is None and tls["server_cert"] is None


def read_to_end(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
    return reply


# --- tests ------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [TLS12, TLS13])
def test_client_certificate_reaches_the_app(server: Server, pki: Path,
                                            version: ssl.TLSVersion) -> None:
    context = client_context(pki, "device", version)
    with socket.create_connection(("127.0.0.1", server.lenient), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = read_to_end(tls)
        name, _, _ = tls.cipher() or ("", "", 0)
        suite = next(s["id"] & 0xFFFF for s in context.get_ciphers() if s["name"] == name)
    answer = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert answer["has_tls"]
    assert_sees(answer["tls"], pki, "device")
    assert answer["tls"]["tls_version"] == WIRE_VERSION[version]
    assert answer["tls"]["cipher_suite"] == suite


@pytest.mark.parametrize("version", [TLS12, TLS13])
def test_without_client_certificate_the_chain_is_empty(server: Server, pki: Path,
                                                       version: ssl.TLSVersion) -> None:
    [answer] = get(server.lenient, client_context(pki, None, version))
    assert answer["tls"]["client_cert_chain"] == []
    assert answer["tls"]["client_cert_name"] is None
    assert answer["tls"]["tls_version"] == WIRE_VERSION[version]


def test_plain_http_has_no_tls_extension(server: Server) -> None:
    [answer] = get(server.plain, None)
    assert not answer["has_tls"]


def test_curl_presents_its_certificate(server: Server, pki: Path) -> None:
    result = subprocess.run(
        ["curl", "--silent", "--show-error", "--fail", "--max-time", "10",
         "--cacert", str(pki / "root.pem"), "--cert", str(pki / "device.pem"),
         "--key", str(pki / "device.key"), f"https://127.0.0.1:{server.lenient}/"],
        capture_output=True, timeout=20, check=False)
    assert result.returncode == 0, result.stderr
    assert_sees(json.loads(result.stdout)["tls"], pki, "device")


def test_every_request_on_a_keep_alive_connection_sees_the_certificate(
        server: Server, pki: Path) -> None:
    first, second = get(server.lenient, client_context(pki, "device"), requests=2)
    assert first["client"] == second["client"] and first["pid"] == second["pid"]
    assert_sees(first["tls"], pki, "device")
    assert_sees(second["tls"], pki, "device")


def test_resumed_session_still_carries_the_leaf(server: Server, pki: Path) -> None:
    context = client_context(pki, "device", TLS13)
    session, reused = None, []
    for _ in range(4):  # tickets are shared by the workers, whichever one accepts
        with socket.create_connection(("127.0.0.1", server.lenient), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = read_to_end(tls)
            reused.append(tls.session_reused)
            session = session or tls.session
        assert_sees(json.loads(reply.split(b"\r\n\r\n", 1)[1])["tls"], pki, "device")
    assert reused == [False, True, True, True]


@pytest.mark.parametrize("version", [TLS12, TLS13])
def test_expired_certificate_is_seen_by_the_app_only_when_accepted(
        server: Server, pki: Path, version: ssl.TLSVersion) -> None:
    [answer] = get(server.lenient, client_context(pki, "expired", version))
    assert_sees(answer["tls"], pki, "expired")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        get(server.strict, client_context(pki, "expired", version))


@pytest.mark.parametrize("version", [TLS12, TLS13])
@pytest.mark.parametrize("listener", ["lenient", "strict"])
def test_certificate_from_untrusted_ca_fails_the_handshake(
        server: Server, pki: Path, version: ssl.TLSVersion, listener: str) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError)):
        get(getattr(server, listener), client_context(pki, "intruder", version))


@pytest.mark.slow
def test_connection_idle_after_handshake_is_closed(server: Server, pki: Path) -> None:
    context = client_context(pki, "device")
    with socket.create_connection(("127.0.0.1", server.lenient), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        started = time.monotonic()
        assert tls.recv(1) == b""  # end of stream, well before the 10 s socket timeout
        assert 4 < time.monotonic() - started < 8


def exchange_raw(port: int, parts: list[bytes], pause: float = 0.0) -> tuple[bytes, float]:
    """Send `parts` on a plain connection, `pause` seconds apart; return everything read until
    the server closes, and how long after the last part that was."""
    with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_SECONDS + 10) as raw:
        for index, part in enumerate(parts):
            if index and pause:
                time.sleep(pause)
            raw.sendall(part)
        sent = time.monotonic()
        reply = read_to_end(raw)
        return reply, time.monotonic() - sent


@pytest.mark.parametrize("stalled", [
    b"GET / HTTP/1.1\r\nHost: x\r\n",  # the header never ends
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",  # nor the body
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
])
def test_request_not_complete_in_time_is_answered_408_and_closed(
        server: Server, stalled: bytes) -> None:
    reply, waited = exchange_raw(server.plain, [stalled])
    assert reply.startswith(b"HTTP/1.1 408 "), reply
    assert b"connection: close" in reply.lower()
    assert REQUEST_SECONDS - 0.5 < waited < REQUEST_SECONDS + 5


def test_stalled_request_on_a_direct_route_is_answered_408(server: Server) -> None:
    reply, _ = exchange_raw(server.plain, [
        b"POST /direct HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab", b"cd",
        b"POST /direct HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab"], pause=0.5)
    # (with h11, which has no direct routes, the app answers the first request)
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.count(b"HTTP/1.1 ") == 2, reply
    assert reply.index(b"HTTP/1.1 408 ") > 0


def test_stalled_request_after_an_answered_one_still_gets_408(server: Server) -> None:
    reply, _ = exchange_raw(server.plain, [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n"], pause=0.5)
    first, _, rest = reply.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 ")
    assert b"HTTP/1.1 408 " in rest


def test_slow_request_within_the_deadline_is_served(server: Server) -> None:
    reply, _ = exchange_raw(server.plain, [
        b"POST / HTTP/1.1\r\nHost: x\r\n", b"Content-Length: 4\r\n\r\nab", b"cd",
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"], pause=0.7)
    assert reply.count(b"HTTP/1.1 200 ") == 2, reply


def test_header_beyond_the_limit_is_refused(server: Server, request: pytest.FixtureRequest
                                             ) -> None:
    huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * (70 * 1024)
    reply, waited = exchange_raw(server.plain, [huge])
    # h11 has its own limit (16 KiB of an unfinished event), and answers 400
    expected = b"HTTP/1.1 400 " if "h11" in request.node.callspec.id else b"HTTP/1.1 431 "
    assert reply.startswith(expected), reply[:200]
    assert waited < REQUEST_SECONDS


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(("path", "head", "status", "says"), [
    (b"/", b"", b"400", b"host"),
    (b"/", b"Host: x\r\nHost: y\r\n", b"400", b"host"),
    (b"/", b"Host: x\r\nAuthorization: Basic YTpi\r\nAuthorization: Basic Yzpk\r\n",
     b"400", b"2 authorization headers"),
    (b"/", b"Host: x\r\nX-SSL-Client-Cert: a\r\nX-SSL-Client-Cert: b\r\n", b"400",
     b"x-ssl-client-cert"),
    (b"/direct", b"Host: x\r\nAuthorization: a\r\nAuthorization: b\r\n", b"400",
     b"authorization"),
])
def test_ambiguous_header_is_refused_and_the_connection_closed(
        server: Server, path: bytes, head: bytes, status: bytes, says: bytes) -> None:
    reply, _ = exchange_raw(server.plain, [b"GET " + path + b" HTTP/1.1\r\n" + head + b"\r\n"
                                           + SMUGGLED])
    assert reply.startswith(b"HTTP/1.1 " + status + b" "), reply
    if b"Invalid HTTP request received." not in reply:  # h11 refuses Host problems itself
        assert says in reply.lower()
    # The request after it on the same connection is never served.
    assert b" 200 " not in reply, reply


@pytest.mark.parametrize("path", [b"/", b"/direct"])
def test_transfer_coding_other_than_chunked_is_refused(server: Server, path: bytes,
                                                      request: pytest.FixtureRequest) -> None:
    """gzip, chunked: httptools would read the body as chunked and hand the app gzip bytes
    it never decodes, while a proxy may frame it another way."""
    reply, _ = exchange_raw(server.plain, [
        b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        b"4\r\nabcd\r\n0\r\n\r\n" + SMUGGLED])
    # h11 refuses it itself, and uvicorn answers that with 400
    expected = b"HTTP/1.1 400 " if "h11" in request.node.callspec.id else b"HTTP/1.1 501 "
    assert reply.startswith(expected), reply
    assert b" 200 " not in reply, reply


def test_http10_request_without_host_is_served(server: Server) -> None:
    reply, _ = exchange_raw(server.plain, [b"GET / HTTP/1.0\r\n\r\n"])
    assert reply.startswith(b"HTTP/1.1 200 "), reply


def test_stalled_request_on_tls_is_answered_408(server: Server, pki: Path) -> None:
    context = client_context(pki, "device")
    with socket.create_connection(("127.0.0.1", server.lenient), timeout=15) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        reply = read_to_end(tls)
    assert reply.startswith(b"HTTP/1.1 408 "), reply


@pytest.mark.slow
def test_killed_worker_is_replaced_and_sigterm_stops_every_process(pki: Path) -> None:
    process, addresses = start(pki, "httptools")
    try:
        assert addresses is not None
        port = addresses[0][1]
        first = worker_pids(process.pid)
        assert len(first) == 2
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        now = worker_pids(process.pid)  # one snapshot per look: the victim is reaped meanwhile
        while time.monotonic() < deadline and (len(now) != 2 or victim in now):
            time.sleep(0.05)
            now = worker_pids(process.pid)
        assert len(now) == 2 and victim not in now, now
        answers = [get(port, client_context(pki, "device"))[0] for _ in range(6)]
        assert {a["pid"] for a in answers} <= now
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
        assert not [pid for pid in first | now if Path(f"/proc/{pid}").exists()]
    finally:
        stop(process)


def test_serve_gives_up_when_workers_keep_dying(pki: Path) -> None:
    process, addresses = start(pki, "httptools", mode="crash")
    try:
        assert addresses is None  # never ready
        assert process.wait(timeout=20) == 1
    finally:
        stop(process)
