"""DirectRoute over a real loopback socket: which requests take the direct path, and that
HTTP framing, keep-alive and pipelining stay right when they do.

The server is uvicorn with DirectHttpToolsProtocol, as serve() builds it, in a thread; the
client writes raw bytes, so that the tests control exactly what goes on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import socket
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any

import pytest
import uvicorn

from fleetpki.serving.direct import (
    DirectHttpToolsProtocol,
    DirectRequest,
    DirectResponse,
    DirectRoute,
)

MAX_BODY = 64


class Recorder:
    def __init__(self) -> None:
        self.seen: list[DirectRequest] = []

    def handle(self, request: DirectRequest) -> DirectResponse:
        self.seen.append(request)
        if request.raw_path.endswith(b"/boom"):
            raise RuntimeError("secret detail that must not reach the client")
        if request.body_too_long:
            return 200, [(b"content-length", b"8"), (b"connection", b"close")], b"too long"
        body = b"direct " + request.method + b" " + request.raw_path + b" " + request.body
        return 200, [(b"content-type", b"text/plain"),
                     (b"content-length", b"%d" % len(body))], body


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The listener's ordinary app: answers after a short await, so that a pipelined direct
    request behind it would overtake it if the protocol let it."""
    assert scope["type"] == "http"
    await asyncio.sleep(0.05)
    body = f"asgi {scope['method']} {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@pytest.fixture
def served() -> Iterator[tuple[int, Recorder]]:
    recorder = Recorder()
    route = DirectRoute("/ocsp", MAX_BODY, recorder.handle)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        asgi_app, http=functools.partial(DirectHttpToolsProtocol, route=route),  # type: ignore[arg-type]
        ws="none", lifespan="off", log_config=None, access_log=False, timeout_keep_alive=5)
    server = _Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start within 10 s"
    try:
        yield sock.getsockname()[1], recorder
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def exchange(port: int, data: bytes, responses: int = 1) -> tuple[list[bytes], bool]:
    """Send `data`, read `responses` Content-Length-framed responses; and whether the server
    then closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(data)
        buffer = b""
        found: list[bytes] = []
        while len(found) < responses:
            while b"\r\n\r\n" not in buffer:
                chunk = conn.recv(65536)
                assert chunk, f"closed early after {found!r} + {buffer!r}"
                buffer += chunk
            head, _, rest = buffer.partition(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:")))
            while len(rest) < length:
                rest += conn.recv(65536)
            found.append(head + b"\r\n\r\n" + rest[:length])
            buffer = rest[length:]
        conn.settimeout(0.5)
        try:
            closed = conn.recv(1) == b""
        except TimeoutError:
            closed = False
        return found, closed


def test_get_and_post_under_the_prefix_are_answered_directly(
        served: tuple[int, Recorder]) -> None:
    port, recorder = served
    (get, post), closed = exchange(
        port, b"GET /ocsp/MEUw%2Fabc?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"
              b"POST /ocsp HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", 2)
    assert get.startswith(b"HTTP/1.1 200 OK\r\n")
    assert get.endswith(b"direct GET /ocsp/MEUw%2Fabc ")  # raw path, no query
    assert b"\r\ndate: " in get.lower()
    assert post.endswith(b"direct POST /ocsp hello")
    assert not closed  # HTTP/1.1 keeps the connection
    assert [r.method for r in recorder.seen] == [b"GET", b"POST"]


def test_head_is_answered_directly_with_the_headers_and_no_body(
        served: tuple[int, Recorder]) -> None:
    """RFC 9110 §9.3.2: the handler's status and headers, Content-Length of its body
    included, and nothing after them: the next answer on the connection follows at once."""
    port, recorder = served
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"HEAD /ocsp/x HTTP/1.1\r\nHost: a\r\n\r\n" + get(b"/ocsp/y"))
        received = b""
        while not received.endswith(b"direct GET /ocsp/y "):
            chunk = conn.recv(65536)
            assert chunk, f"closed early after {received!r}"
            received += chunk
    head, after = received.split(b"\r\n\r\n", 1)
    status, *lines = head.split(b"\r\n")
    fields = dict(line.split(b": ", 1) for line in lines)
    assert status == b"HTTP/1.1 200 OK"
    assert fields[b"content-length"] == b"%d" % len(b"direct HEAD /ocsp/x ")
    assert b"date" in fields
    assert after.startswith(b"HTTP/1.1 200 OK\r\n")  # no body in between
    assert [r.method for r in recorder.seen] == [b"HEAD", b"GET"]


def test_the_date_is_current_and_said_once(served: tuple[int, Recorder]) -> None:
    """Not uvicorn's once-a-second copy: an answer signed just now must not look newer than
    its Date (RFC 9110 §8.8.2.1)."""
    port, _ = served
    before = int(time.time())
    (reply,), _ = exchange(port, get(b"/ocsp/x"))
    dates = [line for line in reply.split(b"\r\n") if line.lower().startswith(b"date:")]
    assert len(dates) == 1
    sent = email.utils.parsedate_to_datetime(dates[0].split(b":", 1)[1].strip().decode())
    assert before <= sent.timestamp() <= time.time()


def test_a_chunked_body_is_reassembled(served: tuple[int, Recorder]) -> None:
    port, _ = served
    (reply,), _ = exchange(port, b"POST /ocsp HTTP/1.1\r\nHost: a\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n"
                                 b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert reply.endswith(b"direct POST /ocsp abcde")


def get(path: bytes) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path


def bodies(port: int, *requests: bytes) -> list[bytes]:
    """The bodies of the answers to `requests`, sent pipelined on one connection."""
    replies, _ = exchange(port, b"".join(requests), len(requests))
    return [reply.rpartition(b"\r\n\r\n")[2] for reply in replies]


def test_other_paths_and_methods_go_to_the_app(served: tuple[int, Recorder]) -> None:
    port, recorder = served
    put = b"PUT /ocsp HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
    assert bodies(port, get(b"/ocspx"), put, get(b"/crl/a.crl")) == [
        b"asgi GET /ocspx", b"asgi PUT /ocsp", b"asgi GET /crl/a.crl"]
    assert recorder.seen == []


def test_pipelined_answers_keep_their_order(served: tuple[int, Recorder]) -> None:
    """Requests queued behind one the app is still answering wait their turn in uvicorn's
    pipeline (and are answered by the app); a direct answer never overtakes."""
    port, recorder = served
    assert bodies(port, get(b"/slow"), get(b"/ocsp/x"), get(b"/ocsp/y")) == [
        b"asgi GET /slow", b"asgi GET /ocsp/x", b"asgi GET /ocsp/y"]
    assert recorder.seen == []
    assert bodies(port, get(b"/ocsp/x"), get(b"/ocsp/y"), get(b"/slow")) == [
        b"direct GET /ocsp/x ", b"direct GET /ocsp/y ", b"asgi GET /slow"]


@pytest.mark.parametrize(("request_head", "closes", "says_keep_alive"), [
    (b"GET /ocsp/a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", True, False),
    (b"GET /ocsp/a HTTP/1.0\r\n\r\n", True, False),
    (b"GET /ocsp/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", False, True),
])
def test_connection_persistence_follows_the_request(
        served: tuple[int, Recorder], request_head: bytes, closes: bool,
        says_keep_alive: bool) -> None:
    port, _ = served
    (reply,), closed = exchange(port, request_head)
    assert closed is closes
    assert (b"\r\nconnection: close\r\n" in reply) is closes
    assert (b"\r\nconnection: keep-alive\r\n" in reply) is says_keep_alive


def test_an_oversized_body_is_answered_at_the_bound_and_the_connection_closed(
        served: tuple[int, Recorder]) -> None:
    port, recorder = served
    body = b"x" * (MAX_BODY + 1)
    (reply,), closed = exchange(port, b"POST /ocsp HTTP/1.1\r\nHost: a\r\nContent-Length: %d"
                                      b"\r\n\r\n%s" % (len(body), body))
    assert reply.endswith(b"too long")
    assert closed
    assert recorder.seen[0].body_too_long
    assert len(recorder.seen[0].body) <= MAX_BODY


def test_a_client_leaving_mid_body_leaves_the_server_serving(
        served: tuple[int, Recorder]) -> None:
    port, recorder = served
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"POST /ocsp HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    time.sleep(0.1)
    (reply,), _ = exchange(port, get(b"/ocsp/after"))
    assert reply.endswith(b"direct GET /ocsp/after ")
    assert [r.raw_path for r in recorder.seen] == [b"/ocsp/after"]  # the half request: never


def test_a_failing_handler_gets_a_bare_500_and_a_closed_connection(
        served: tuple[int, Recorder], caplog: pytest.LogCaptureFixture) -> None:
    port, _ = served
    (reply,), closed = exchange(port, b"GET /ocsp/boom HTTP/1.1\r\nHost: a\r\n\r\n"
                                      b"GET /ocsp/after HTTP/1.1\r\nHost: a\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 500 ")
    assert b"secret" not in reply
    assert closed
    assert "answering GET /ocsp failed" in caplog.text
