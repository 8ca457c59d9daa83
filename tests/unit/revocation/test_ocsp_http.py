"""OCSP over HTTP: POST and GET (RFC 6960 Appendix A, RFC 5019 §5), the cache headers of
RFC 5019 §6.2, what is refused and how, in-process through ASGI; then the real `openssl ocsp`
and curl against a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import email.utils
import functools
import hashlib
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetpki.core.clock import Clock, FakeClock, SystemClock
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import RevocationStatus
from fleetpki.revocation.ocsp_http import MAX_REQUEST_BYTES, OcspEndpoint, ocsp_app
from fleetpki.revocation.ocsp_responder import OcspResponder, ResponderKey
from support.tiny_pki import NOW, Issued, issue

DAY = dt.timedelta(days=1)
SHA1 = hashes.SHA1()  # noqa: S303 - RFC 5019 §2.1.1: the CertID hash every client can send


def responder_certificate(ca: Issued) -> Issued:
    """A delegated responder (RFC 6960 §4.2.2.2): OCSPSigning, id-pkix-ocsp-nocheck."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fleet OCSP")]))
            .issuer_name(ca.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - DAY).not_valid_after(NOW + 30 * DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]),
                           critical=False)
            .add_extension(x509.OCSPNoCheck(), critical=False)
            .sign(ca.key, hashes.SHA256()))
    return Issued(cert, key)


@dataclasses.dataclass
class Pki:
    ca: Issued
    responder: Issued
    good: Issued
    revoked: Issued
    statuses: dict[int, RevocationStatus]
    any_serial_good: bool = False

    def certificate_status(self, issuer: str, serial: int) -> RevocationStatus | None:
        if self.any_serial_good:
            return RevocationStatus(serial, NOW + DAY)
        return self.statuses.get(serial)

    def ocsp(self, clock: Clock) -> OcspResponder:
        return OcspResponder(self, [ResponderKey("fleet", self.ca.cert, self.responder.cert,
                                                 self.responder.key)], clock)

    @functools.cached_property
    def issuer_hashes(self) -> tuple[bytes, bytes]:
        probe = ocsp.load_der_ocsp_request(self.request())
        return probe.issuer_name_hash, probe.issuer_key_hash

    def request(self, cert: x509.Certificate | None = None, *, serial: int | None = None,
                nonce: bytes | None = None) -> bytes:
        builder = ocsp.OCSPRequestBuilder()
        if serial is None:
            builder = builder.add_certificate(cert or self.good.cert, self.ca.cert, SHA1)
        else:
            builder = builder.add_certificate_by_hash(*self.issuer_hashes, serial, SHA1)
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        return builder.build().public_bytes(Encoding.DER)


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca = issue("Fleet Issuing CA", ca=True)
    good, revoked = issue("device-good", ca), issue("device-revoked", ca)
    statuses = {
        good.cert.serial_number: RevocationStatus(good.cert.serial_number,
                                                  good.cert.not_valid_after_utc),
        revoked.cert.serial_number: RevocationStatus(
            revoked.cert.serial_number, revoked.cert.not_valid_after_utc,
            revoked_at=NOW - dt.timedelta(hours=2), reason=RevocationReason.key_compromise)}
    return Pki(ca, responder_certificate(ca), good, revoked, statuses)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


# -- a minimal ASGI client -----------------------------------------------------------------


@dataclasses.dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    reads: int  # how many times the app called receive()

    def ocsp(self) -> ocsp.OCSPResponse:
        assert self.status == 200
        assert self.headers["content-type"] == "application/ocsp-response"
        assert int(self.headers["content-length"]) == len(self.body)
        return ocsp.load_der_ocsp_response(self.body)


def call(app: ASGIApp, method: str, raw_path: bytes, *, body: bytes = b"",
         chunks: list[bytes] | None = None, headers: dict[str, str] | None = None,
         declare_length: bool = True) -> Reply:
    """One request through the app, as uvicorn would present it."""
    import asyncio

    pieces = chunks if chunks is not None else [body]
    head = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if declare_length and chunks is None and method == "POST":
        head.append((b"content-length", str(len(body)).encode()))
    path = urllib.parse.unquote(raw_path.decode("ascii"))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": raw_path,
             "query_string": b"", "root_path": "", "headers": head,
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80)}
    sent: list[Message] = []
    reads = 0

    async def receive() -> Message:
        nonlocal reads
        reads += 1
        if reads > len(pieces):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": pieces[reads - 1],
                "more_body": reads < len(pieces)}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    start, *bodies = sent
    assert start["type"] == "http.response.start"
    names = [name.decode() for name, _ in start["headers"]]
    assert len(names) == len(set(names)), f"repeated headers: {names}"
    return Reply(start["status"], {k.decode(): v.decode() for k, v in start["headers"]},
                 b"".join(m.get("body", b"") for m in bodies), reads)


def direct_app(endpoint: OcspEndpoint) -> ASGIApp:
    """The entry serving/direct.py calls (OcspEndpoint.answer_read_request), behind a shim
    that reads the body as DirectHttpToolsProtocol does: whole, stopping past the bound."""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body, too_long, more = b"", False, True
        while more and not too_long:
            message = await receive()
            chunk = message.get("body", b"")
            too_long = len(body) + len(chunk) > MAX_REQUEST_BYTES
            body += b"" if too_long else chunk
            more = message.get("more_body", False)
        status, headers, payload = endpoint.answer_read_request(
            scope["method"].encode(), scope["raw_path"], scope["headers"], body,
            body_too_long=too_long)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return app


def apps(pki: Pki, clock: Clock) -> dict[str, ASGIApp]:
    responder = pki.ocsp(clock)
    return {"bare": ocsp_app(OcspEndpoint(responder)),
            "starlette": ocsp_app(OcspEndpoint(responder), fallback=Starlette(routes=[])),
            "direct": direct_app(OcspEndpoint(responder))}


def b64(der: bytes) -> str:
    return base64.b64encode(der).decode("ascii")


def http_date(moment: dt.datetime) -> str:
    return email.utils.format_datetime(moment, usegmt=True)


# -- POST ----------------------------------------------------------------------------------


@pytest.mark.parametrize("wiring", ["bare", "starlette", "direct"])
def test_post_good_answer_with_rfc5019_cache_headers(pki: Pki, clock: FakeClock,
                                                     wiring: str) -> None:
    app = apps(pki, clock)[wiring]
    reply = call(app, "POST", b"/ocsp", body=pki.request(),
                 headers={"Content-Type": "application/ocsp-request"})
    response = reply.ocsp()
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    this_update = NOW.replace(microsecond=0)
    assert reply.headers["last-modified"] == http_date(this_update)
    assert reply.headers["expires"] == http_date(this_update + DAY)
    assert reply.headers["etag"] == f'"{hashlib.sha1(reply.body).hexdigest()}"'  # noqa: S324
    max_age = int((this_update + DAY - NOW).total_seconds())
    assert reply.headers["cache-control"] == (
        f"max-age={max_age}, public, no-transform, must-revalidate")
    clock.advance(dt.timedelta(hours=1))
    later = call(app, "POST", b"/ocsp", body=pki.request())
    assert later.body == reply.body
    assert later.headers["cache-control"].startswith(f"max-age={max_age - 3600}, ")


def test_post_without_content_type_is_answered(pki: Pki, clock: FakeClock) -> None:
    app = apps(pki, clock)["bare"]
    reply = call(app, "POST", b"/ocsp", body=pki.request(pki.revoked.cert),
                 headers={"Content-Type": "application/octet-stream"})
    assert reply.ocsp().certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert call(app, "POST", b"/ocsp", body=pki.request()).ocsp().response_status is (
        ocsp.OCSPResponseStatus.SUCCESSFUL)


def test_post_body_in_chunks_without_a_length(pki: Pki, clock: FakeClock) -> None:
    request = pki.request()
    reply = call(apps(pki, clock)["bare"], "POST", b"/ocsp",
                 chunks=[request[:10], request[10:50], request[50:]])
    assert reply.ocsp().certificate_status is ocsp.OCSPCertStatus.GOOD


def test_nonce_answer_is_not_cacheable(pki: Pki, clock: FakeClock) -> None:
    nonce = bytes(range(16))
    reply = call(apps(pki, clock)["bare"], "POST", b"/ocsp", body=pki.request(nonce=nonce))
    response = reply.ocsp()
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    assert reply.headers["cache-control"] == "no-store"
    assert not {"etag", "expires", "last-modified"} & set(reply.headers)


def malformed(reply: Reply) -> None:
    assert reply.status == 200  # RFC 6960 errors travel inside the OCSP response
    assert reply.headers["content-type"] == "application/ocsp-response"
    assert reply.headers["cache-control"] == "no-store"
    assert ocsp.load_der_ocsp_response(reply.body).response_status is (
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST)


@pytest.mark.parametrize("body", [b"", b"\x30\x03\x02\x01\x01", b"not DER at all"])
def test_post_of_an_empty_or_bad_body_is_malformed(pki: Pki, clock: FakeClock,
                                                   body: bytes) -> None:
    malformed(call(apps(pki, clock)["bare"], "POST", b"/ocsp", body=body))


def test_oversized_body_is_refused_unread(pki: Pki, clock: FakeClock) -> None:
    app = apps(pki, clock)["bare"]
    big = pki.request() + bytes(MAX_REQUEST_BYTES)
    reply = call(app, "POST", b"/ocsp", body=big)
    malformed(reply)
    assert reply.reads == 0  # the declared length was enough to refuse it
    assert reply.headers["connection"] == "close"  # the unread body is dropped with it


def test_oversized_chunked_body_stops_being_read_at_the_limit(pki: Pki,
                                                              clock: FakeClock) -> None:
    chunks = [bytes(4096)] * 10
    reply = call(apps(pki, clock)["bare"], "POST", b"/ocsp", chunks=chunks)
    malformed(reply)
    assert reply.reads == 3  # 12 KiB read, no more
    assert reply.headers["connection"] == "close"


def test_oversized_body_read_whole_keeps_the_connection(pki: Pki, clock: FakeClock) -> None:
    reply = call(apps(pki, clock)["bare"], "POST", b"/ocsp",
                 chunks=[bytes(MAX_REQUEST_BYTES + 1)])
    malformed(reply)
    assert "connection" not in reply.headers  # nothing is left unread


# -- GET -----------------------------------------------------------------------------------


_FOUND: dict[tuple[int, str], bytes] = {}


def request_with(pki: Pki, what: str, wanted: Callable[[str], bool]) -> bytes:
    """A request (for a serial that is 'good') whose base64 has the characters wanted."""
    if (id(pki), what) not in _FOUND:
        serial = next(s for s in range(1, 200_000) if wanted(b64(pki.request(serial=s))))
        _FOUND[(id(pki), what)] = pki.request(serial=serial)
    return _FOUND[(id(pki), what)]


@pytest.fixture
def lenient(pki: Pki) -> Iterator[Pki]:
    pki.any_serial_good = True
    yield pki
    pki.any_serial_good = False


@pytest.mark.parametrize("wiring", ["bare", "starlette", "direct"])
@pytest.mark.parametrize("encoding", ["escaped", "unescaped", "lower-case escapes",
                                      "space for plus", "no padding", "base64url",
                                      "leading double slash"])
def test_get_with_base64_in_the_path(lenient: Pki, clock: FakeClock, wiring: str,
                                     encoding: str) -> None:
    request = request_with(
        lenient, "+/=", lambda t: "+" in t and "/" in t and t.endswith("="))
    text = b64(request)
    path = {
        "escaped": urllib.parse.quote(text, safe=""),
        "unescaped": text,
        "lower-case escapes": urllib.parse.quote(text, safe="").replace("%2F", "%2f"),
        "space for plus": text.replace("+", "%20"),
        "no padding": text.rstrip("="),
        "base64url": base64.urlsafe_b64encode(request).decode(),
        "leading double slash": "/" + text,
    }[encoding]
    reply = call(apps(lenient, clock)[wiring], "GET", f"/ocsp/{path}".encode())
    response = reply.ocsp()
    assert response.serial_number == ocsp.load_der_ocsp_request(request).serial_number
    assert reply.headers["cache-control"].endswith(", public, no-transform, must-revalidate")


def test_get_survives_a_proxy_merging_slashes_in_the_base64(lenient: Pki,
                                                            clock: FakeClock) -> None:
    request = request_with(
        lenient, "//", lambda t: t.count("//") == 1 and "///" not in t)
    merged = b64(request).replace("//", "/")
    reply = call(apps(lenient, clock)["bare"], "GET", f"/ocsp/{merged}".encode())
    assert reply.ocsp().serial_number == ocsp.load_der_ocsp_request(request).serial_number


@pytest.mark.parametrize("path", [b"/ocsp", b"/ocsp/", b"/ocsp/%%%", b"/ocsp/bm90IERFUg==",
                                  b"/ocsp/" + b"A" * (5 * MAX_REQUEST_BYTES)])
def test_get_without_a_decodable_request_is_malformed(pki: Pki, clock: FakeClock,
                                                      path: bytes) -> None:
    malformed(call(apps(pki, clock)["bare"], "GET", path))


def test_get_if_none_match_gives_304(pki: Pki, clock: FakeClock) -> None:
    app = apps(pki, clock)["bare"]
    path = f"/ocsp/{urllib.parse.quote(b64(pki.request()), safe='')}".encode()
    first = call(app, "GET", path)
    etag = first.headers["etag"]
    for header in (etag, f'"other", W/{etag}', "*"):
        reply = call(app, "GET", path, headers={"If-None-Match": header})
        assert (reply.status, reply.body) == (304, b"")
        assert reply.headers["etag"] == etag
        assert {"cache-control", "expires", "last-modified"} <= set(reply.headers)
        assert "content-length" not in reply.headers
    changed = call(app, "GET", path, headers={"If-None-Match": '"something else"'})
    assert changed.status == 200 and changed.body == first.body


@pytest.mark.parametrize("wiring", ["bare", "starlette", "direct"])
@pytest.mark.parametrize("what", ["good", "not modified", "malformed"])
def test_head_answers_as_get_without_the_body(pki: Pki, clock: FakeClock, wiring: str,
                                              what: str) -> None:
    """RFC 9110 §9.3.2: the status and headers of the GET, Content-Length included."""
    app = apps(pki, clock)[wiring]
    path = f"/ocsp/{urllib.parse.quote(b64(pki.request()), safe='')}".encode()
    headers: dict[str, str] = {}
    if what == "not modified":
        headers["If-None-Match"] = call(app, "GET", path).headers["etag"]
    elif what == "malformed":
        path = b"/ocsp/bm90IERFUg=="
    got, head = call(app, "GET", path, headers=headers), call(app, "HEAD", path, headers=headers)
    assert (head.status, head.headers) == (got.status, got.headers)
    assert head.body == b""
    assert got.status == (304 if what == "not modified" else 200)
    if got.status == 200:
        assert int(head.headers["content-length"]) == len(got.body) > 0


@pytest.mark.parametrize("wiring", ["bare", "starlette", "direct"])
@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_405_with_allow(pki: Pki, clock: FakeClock, wiring: str,
                                          method: str) -> None:
    reply = call(apps(pki, clock)[wiring], method, b"/ocsp")
    assert reply.status == 405
    assert reply.headers["allow"] == "GET, HEAD, POST"


def test_bare_app_hands_other_paths_to_its_fallback(pki: Pki, clock: FakeClock) -> None:
    async def fallback(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b"teapot"})

    responder = pki.ocsp(clock)
    app = ocsp_app(OcspEndpoint(responder, "/status/ocsp"), fallback=fallback)
    assert call(app, "GET", b"/.well-known/est/cacerts").status == 418
    assert call(app, "GET", b"/status/ocspx").status == 418
    assert call(app, "POST", b"/status/ocsp", body=pki.request()).ocsp().response_status is (
        ocsp.OCSPResponseStatus.SUCCESSFUL)
    assert call(ocsp_app(OcspEndpoint(responder)), "GET", b"/elsewhere").status == 404
    with pytest.raises(ValueError, match="prefix"):
        OcspEndpoint(responder, "/ocsp/")


# -- the real thing: uvicorn on 127.0.0.1, openssl ocsp and curl as clients ----------------


@contextlib.contextmanager
def uvicorn_server(app: ASGIApp) -> Iterator[int]:
    """uvicorn (httptools) in a thread on 127.0.0.1 and a free port; stopped afterwards."""
    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(app, http="httptools", lifespan="off", log_level="warning",
                            access_log=False, ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def test_openssl_ocsp_and_curl_against_uvicorn(pki: Pki, tmp_path: Path) -> None:
    for tool in ("openssl", "curl"):
        if shutil.which(tool) is None:
            pytest.fail(f"'{tool}' is not installed (Debian package '{tool}'); this test "
                        "needs the real client", pytrace=False)
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "good", "revoked", "stranger")}
    stranger = issue("device-never-issued", pki.ca)
    for name, issued in {"ca": pki.ca, "good": pki.good, "revoked": pki.revoked,
                         "stranger": stranger}.items():
        files[name].write_bytes(issued.cert.public_bytes(Encoding.PEM))
    app = ocsp_app(OcspEndpoint(pki.ocsp(SystemClock())), fallback=Starlette(routes=[]))
    with uvicorn_server(app) as port:
        url = f"http://127.0.0.1:{port}/ocsp"

        def ask(name: str, *flags: str) -> str:
            result = run("openssl", "ocsp", "-url", url, "-issuer", str(files["ca"]),
                         "-cert", str(files[name]), "-CAfile", str(files["ca"]), *flags)
            assert result.returncode == 0, result.stderr
            assert "Response verify OK" in result.stderr, result.stderr
            return result.stdout

        assert f"{files['good']}: good" in ask("good", "-no_nonce")
        revoked = ask("revoked", "-no_nonce")
        assert f"{files['revoked']}: revoked" in revoked
        assert "Reason: keyCompromise" in revoked
        assert f"{files['stranger']}: unknown" in ask("stranger", "-no_nonce")
        nonce = run("openssl", "ocsp", "-url", url, "-issuer", str(files["ca"]),
                    "-cert", str(files["good"]), "-CAfile", str(files["ca"]), "-nonce")
        assert nonce.returncode == 0 and "WARNING" not in nonce.stderr, nonce.stderr
        assert f"{files['good']}: good" in nonce.stdout

        # RFC 6960 Appendix A.1 GET (openssl 3.0's client only POSTs): curl, then openssl
        # checks the answer it fetched.
        encoded = urllib.parse.quote(b64(pki.request(pki.revoked.cert)), safe="")
        fetched = tmp_path / "get.der"
        result = run("curl", "-sS", "--max-time", "10", "-D", "-", "-o", str(fetched),
                     f"{url}/{encoded}")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("HTTP/1.1 200"), result.stdout
        assert "cache-control: max-age=" in result.stdout.lower()
        checked = run("openssl", "ocsp", "-respin", str(fetched), "-issuer", str(files["ca"]),
                      "-cert", str(files["revoked"]), "-CAfile", str(files["ca"]))
        assert checked.returncode == 0 and "Response verify OK" in checked.stderr, (
            checked.stderr)
        assert f"{files['revoked']}: revoked" in checked.stdout
