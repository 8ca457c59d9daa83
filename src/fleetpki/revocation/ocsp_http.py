"""OCSP over HTTP (RFC 6960 Appendix A, RFC 5019 §5 and §6): POST, GET and HEAD on one prefix.

`ocsp_app` puts the endpoint in front of another app (the CRL files) as a bare ASGI app, so that
OCSP requests skip Starlette's middleware and router (measured at about 20 µs a request
in-process, and about 25 % of the server's CPU per answer under load: more than the
responder's cache hit).
The endpoint itself is a bare ASGI app, for the same reason, rather than a Starlette
request/response handler. It reads the wire and writes the wire; every decision is the
responder's.

- POST: the DER OCSPRequest is the body (Content-Type application/ocsp-request; a missing or
  other type is tolerated, an empty body is not). Bodies above 8 KiB are refused without being
  buffered, with an OCSP malformedRequest: RFC 6960 errors travel inside OCSP responses.
- GET: ``{prefix}/{url-encoding of base64 of the DER}`` (Appendix A.1), read from the raw path
  so that nothing in between decodes it first. %2B, %2F and %3D escaped or not, a space where
  a '+' was, missing padding, base64url, and extra slashes before the request are all taken.
- HEAD: the GET answer's status and headers (Content-Length of its body included) without the
  body (RFC 9110 §9.3.2), for caches and monitoring probes that check a URL before fetching.
- Headers per RFC 5019 §6.2: Last-Modified (thisUpdate), Expires (nextUpdate), ETag and
  ``Cache-Control: max-age=…, public, no-transform, must-revalidate`` on cacheable answers;
  ``no-store`` on nonce'd and error answers. A GET whose If-None-Match names the current
  answer gets 304.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import email.utils
import hashlib
import urllib.parse
from collections.abc import Iterable, Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from fleetpki.revocation.http_caching import etag_matches
from fleetpki.revocation.ocsp_responder import MALFORMED_REQUEST, OcspAnswer, OcspResponder

__all__ = [
    "CT_REQUEST", "CT_RESPONSE", "MAX_REQUEST_BYTES", "OcspEndpoint", "WireResponse",
    "ocsp_app"]

CT_REQUEST = "application/ocsp-request"
CT_RESPONSE = "application/ocsp-response"
MAX_REQUEST_BYTES = 8192  # a one-CertID request is about 100 bytes; a signed one a few KiB
# Base64 grows 4/3, URL-encoding up to 3x again: a GET path beyond this cannot be in bounds.
_MAX_GET_TAIL = 4 * MAX_REQUEST_BYTES
_MAX_SLASH_REPAIRS = 16

_CONTENT_TYPE = (b"content-type", CT_RESPONSE.encode("ascii"))
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_NO_STORE = (b"cache-control", b"no-store")
_CLOSE = (b"connection", b"close")
_ALLOW = (b"allow", b"GET, HEAD, POST")
_URLSAFE = bytes.maketrans(b"-_", b"+/")
_DESCRIBED_KEPT = 16_384  # answers whose headers are kept ready (about 0.7 KB each)

# (status, headers with lower-case names, body)
WireResponse = tuple[int, list[tuple[bytes, bytes]], bytes]


def ocsp_app(endpoint: OcspEndpoint, *, fallback: ASGIApp | None = None) -> ASGIApp:
    """The endpoint as a bare ASGI app that answers its prefix and everything under it, and
    hands every other request (and the lifespan) to `fallback`, typically the Starlette app
    of the other protocols; without one, other paths get 404."""
    prefix = endpoint.prefix
    under = prefix + "/"

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root):]
            if path == prefix or path.startswith(under):
                await endpoint(scope, receive, send)
                return
        if fallback is not None:
            await fallback(scope, receive, send)
        elif scope["type"] == "http":
            await _plain(send, 404, b"Not Found\n")
        elif scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})

    return app


def _checked(prefix: str) -> str:
    if not prefix.startswith("/") or prefix.endswith("/"):
        raise ValueError("the OCSP prefix starts with '/' and does not end with one")
    return prefix


class OcspEndpoint:
    """The ASGI app both routes call. Any method but GET, HEAD and POST is answered 405."""

    def __init__(self, responder: OcspResponder, prefix: str = "/ocsp") -> None:
        self._responder = responder
        self.prefix = _checked(prefix)
        self._prefix = prefix.encode("ascii")
        # Headers of the answers served lately, by the answer's bytes: the responder hands out
        # the same bytes object for as long as it keeps an answer, so the lookup is cheap.
        self._described: dict[bytes, _Described] = {}
        self._dates: dict[dt.datetime, bytes] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method == "POST":
            answer, close = await self._post(scope, receive)
            if answer is not None:
                await _send(send, *self._response(answer, None, close))
        elif method in ("GET", "HEAD"):
            answer = self._get(_path_tail(scope, self._prefix))
            status, headers, body = self._response(answer, _if_none_match(scope["headers"]),
                                                   False)
            await _send(send, status, headers, b"" if method == "HEAD" else body)
        else:
            await _plain(send, 405, b"Method Not Allowed\n", _ALLOW)

    def answer_read_request(self, method: bytes, raw_path: bytes,
                            headers: Sequence[tuple[bytes, bytes]], body: bytes, *,
                            body_too_long: bool) -> WireResponse:
        """The answer to a request under the prefix whose body has already been read, or
        `body_too_long` when reading stopped past MAX_REQUEST_BYTES: the same answers, byte
        for byte, as the ASGI app gives, for an HTTP server that calls in directly
        (serving/direct.py)."""
        if method == b"POST":
            if body_too_long or not body:
                return self._response(MALFORMED_REQUEST, None, body_too_long)
            return self._response(self._responder.respond(body), None, False)
        if method in (b"GET", b"HEAD"):
            answer = self._get(raw_path[len(self._prefix):])
            status, answer_headers, der = self._response(answer, _if_none_match(headers), False)
            return status, answer_headers, b"" if method == b"HEAD" else der
        body = b"Method Not Allowed\n"
        return 405, [_TEXT, (b"content-length", b"%d" % len(body)), _ALLOW], body

    # -- reading requests ------------------------------------------------------------------

    async def _post(self, scope: Scope, receive: Receive) -> tuple[OcspAnswer | None, bool]:
        """(the answer, whether to close the connection); no answer if the client left."""
        for name, value in scope["headers"]:
            if name == b"content-length" and (
                    not value.isdigit() or int(value) > MAX_REQUEST_BYTES):
                return MALFORMED_REQUEST, True  # not read: closing discards it
        message = await receive()
        if message["type"] == "http.disconnect":
            return None, True
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        while more and len(body) <= MAX_REQUEST_BYTES:  # chunked: no length was declared
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, True
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if not body or len(body) > MAX_REQUEST_BYTES:
            return MALFORMED_REQUEST, more  # what is left unread goes with the connection
        return self._responder.respond(body), False

    def _get(self, tail: bytes) -> OcspAnswer:
        if len(tail) > _MAX_GET_TAIL:
            return MALFORMED_REQUEST
        text = urllib.parse.unquote_to_bytes(tail.lstrip(b"/")).replace(b" ", b"+")
        answer = self._answer_base64(text)
        if answer is MALFORMED_REQUEST and b"/" in text and b"//" not in text:
            # A proxy that merges slashes (nginx's merge_slashes) turns a '//' inside the
            # base64 into '/'. Put one back at a time; DER's lengths make a false match
            # all but impossible. (Two merged pairs in one request stay malformed.)
            at = text.find(b"/")
            for _ in range(_MAX_SLASH_REPAIRS):
                if at < 0:
                    break
                repaired = self._answer_base64(text[:at] + b"/" + text[at:])
                if repaired is not MALFORMED_REQUEST:
                    return repaired
                at = text.find(b"/", at + 1)
        return answer

    def _answer_base64(self, text: bytes) -> OcspAnswer:
        if b"-" in text or b"_" in text:
            text = text.translate(_URLSAFE)
        text = text.rstrip(b"=")
        try:
            request = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
        except binascii.Error:
            return MALFORMED_REQUEST
        if not request or len(request) > MAX_REQUEST_BYTES:
            return MALFORMED_REQUEST
        return self._responder.respond(request)

    # -- writing answers -------------------------------------------------------------------

    def _response(self, answer: OcspAnswer, if_none_match: bytes | None, close: bool
                  ) -> WireResponse:
        der = answer.der
        if answer.cacheable:
            described = self._described.get(der) or self._describe(answer)
            # RFC 5019 §6.2: HTTP caches may keep the answer until its nextUpdate, no longer.
            max_age = int(described.expires - self._responder.clock.now().timestamp())
            cache_control = (b"cache-control", b"max-age=%d, public, no-transform, "
                             b"must-revalidate" % max(0, max_age))
            if if_none_match is not None and etag_matches(if_none_match, described.etag):
                status, der = 304, b""
                headers = [*described.headers[2:], cache_control]  # no type, no length
            else:
                status, headers = 200, [*described.headers, cache_control]
        else:
            status = 200
            headers = [_CONTENT_TYPE, (b"content-length", b"%d" % len(der)), _NO_STORE]
        if close:
            headers.append(_CLOSE)
        return status, headers, der

    def _describe(self, answer: OcspAnswer) -> _Described:
        """The headers of a cacheable answer that do not change while it is served."""
        assert answer.this_update is not None and answer.next_update is not None
        etag = b'"%s"' % hashlib.sha1(answer.der, usedforsecurity=False).hexdigest().encode()
        described = _Described(
            (_CONTENT_TYPE, (b"content-length", b"%d" % len(answer.der)),
             (b"last-modified", self._http_date(answer.this_update)),
             (b"expires", self._http_date(answer.next_update)), (b"etag", etag)),
            etag, answer.next_update.timestamp())
        if len(self._described) >= _DESCRIBED_KEPT:
            del self._described[next(iter(self._described))]
        self._described[answer.der] = described
        return described

    def _http_date(self, moment: dt.datetime) -> bytes:
        """Shared between answers: those signed in the same second have the same dates."""
        text = self._dates.get(moment)
        if text is None:
            if len(self._dates) >= _DESCRIBED_KEPT:
                self._dates.clear()
            text = email.utils.format_datetime(moment, usegmt=True).encode("ascii")
            self._dates[moment] = text
        return text


@dataclasses.dataclass(frozen=True, slots=True)
class _Described:
    headers: tuple[tuple[bytes, bytes], ...]  # type, length, last-modified, expires, etag
    etag: bytes
    expires: float  # nextUpdate, as a POSIX timestamp


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
                ) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _plain(send: Send, status: int, body: bytes, *extra: tuple[bytes, bytes]) -> None:
    await _send(send, status, [_TEXT, (b"content-length", b"%d" % len(body)), *extra], body)


def _if_none_match(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    found = None
    for name, value in headers:
        if name == b"if-none-match":
            found = value
    return found


def _path_tail(scope: Scope, prefix: bytes) -> bytes:
    """What follows the prefix in the path, as the client sent it (still URL-encoded)."""
    root: str = scope.get("root_path", "")
    raw: bytes | None = scope.get("raw_path")
    start = (root.encode("utf-8") if root else b"") + prefix
    if raw is not None and raw.startswith(start):
        return raw[len(start):]
    path: str = scope["path"]  # already decoded by the server: re-encode what matters
    decoded = path[len(root) + len(prefix):] if path.startswith(root) else path
    return urllib.parse.quote(decoded, safe="/").encode("ascii")
