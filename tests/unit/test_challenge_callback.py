"""HttpChallengeCallback (challenge_callback.py) against a small HTTP server on 127.0.0.1: what
it sends, and that every answer but a clear "allow" refuses (a status, other JSON, a redirect,
a timeout)."""

from __future__ import annotations

import base64
import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from fleetpki.challenge_callback import HttpChallengeCallback
from fleetpki.ra.challenges import ChallengeQuery, ChallengeVerdict

CSR = b"\x30\x03\x02\x01\x00 not really a csr"
QUERY = ChallengeQuery("dynamic-secret-1", "router", CSR, "192.0.2.9", "tx-1")
TIMEOUT = 0.3


@dataclass
class Seen:
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


# path -> (status, headers, body)
ANSWERS: dict[str, tuple[int, dict[str, str], bytes]] = {
    "/allow": (200, {}, b'{"allow": true, "device_id": "router-0042"}'),
    "/allow-anyone": (200, {}, b'{"allow": true}'),
    "/deny": (403, {}, b'{"allow": true}'),
    "/refuse": (200, {}, b'{"allow": false, "device_id": "router-0042"}'),
    "/truthy": (200, {}, b'{"allow": "true"}'),
    "/list": (200, {}, b'[{"allow": true}]'),
    "/not-json": (200, {}, b"<html>allow</html>"),
    "/bad-device": (200, {}, b'{"allow": true, "device_id": 42}'),
    "/empty-device": (200, {}, b'{"allow": true, "device_id": ""}'),
    "/huge": (200, {}, b'{"allow": true, "pad": "' + b"x" * 20_000 + b'"}'),
    "/accepted": (202, {}, b'{"allow": true}'),
    "/redirect": (302, {"Location": "/allow"}, b""),
    "/redirect-307": (307, {"Location": "/allow"}, b""),
}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.server.seen.requests.append(  # type: ignore[attr-defined]
            (self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        if self.path == "/slow":
            self.server.seen.release.wait(5)  # type: ignore[attr-defined]
        status, headers, reply = ANSWERS.get(self.path, (200, {}, b'{"allow": true}'))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    seen: Seen

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the client that timed out hung up: that is the point


@pytest.fixture
def service() -> Iterator[tuple[str, Seen]]:
    server = QuietServer(("127.0.0.1", 0), Handler)
    server.seen = Seen()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.seen
    finally:
        server.seen.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def ask(service: tuple[str, Seen], path: str) -> ChallengeVerdict:
    return HttpChallengeCallback(TIMEOUT).verify(service[0] + path, QUERY)


def test_allow_with_a_device_id(service: tuple[str, Seen]) -> None:
    assert ask(service, "/allow") == ChallengeVerdict(True, device_id="router-0042")


def test_allow_without_a_device_id(service: tuple[str, Seen]) -> None:
    assert ask(service, "/allow-anyone") == ChallengeVerdict(True)


def test_the_request_is_a_json_post_of_the_challenge_and_the_csr(
        service: tuple[str, Seen]) -> None:
    ask(service, "/allow")
    [(method, path, headers, body)] = service[1].requests
    assert (method, path) == ("POST", "/allow")
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "fleetpki-scep"
    assert json.loads(body) == {"challenge": "dynamic-secret-1", "profile": "router",
                                "csr": base64.b64encode(CSR).decode(),
                                "client_address": "192.0.2.9"}


@pytest.mark.parametrize(("path", "reason"), [
    ("/deny", "answered 403"),
    ("/accepted", "answered 202"),
    ("/refuse", "refused"),
    ("/truthy", "refused"),
    ("/list", "refused"),
    ("/not-json", "no JSON"),
    ("/bad-device", "invalid device_id"),
    ("/empty-device", "invalid device_id"),
    ("/huge", "answered 200"),
])
def test_anything_but_a_clear_allow_refuses(service: tuple[str, Seen], path: str,
                                            reason: str) -> None:
    verdict = ask(service, path)
    assert verdict.allowed is False and verdict.device_id is None
    assert reason in verdict.reason


@pytest.mark.parametrize("path", ["/redirect", "/redirect-307"])
def test_a_redirect_is_not_followed(service: tuple[str, Seen], path: str) -> None:
    verdict = ask(service, path)
    assert verdict.allowed is False and "answered 30" in verdict.reason
    assert [p for _, p, _, _ in service[1].requests] == [path]  # /allow never asked


def test_a_timeout_refuses(service: tuple[str, Seen]) -> None:
    verdict = ask(service, "/slow")
    assert verdict.allowed is False and "unreachable" in verdict.reason


def test_a_closed_port_refuses() -> None:
    server = QuietServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    server.server_close()  # nothing listens there now
    verdict = HttpChallengeCallback(TIMEOUT).verify(f"http://127.0.0.1:{port}/allow", QUERY)
    assert verdict.allowed is False and "unreachable" in verdict.reason
