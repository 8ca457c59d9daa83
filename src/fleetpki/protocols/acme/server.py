"""ACME over HTTPS (RFC 8555 §6.1): the Starlette adapter of handler.py, under /acme.

URLs are absolute and built from the origin the client used (scheme and Host), so that the
JWS `url` header can be compared with the URL actually requested (RFC 8555 §6.4).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from fleetpki.core.acme_problems import AcmeProblem
from fleetpki.protocols.acme.errors import problem_json
from fleetpki.protocols.acme.handler import AcmeHandler
from fleetpki.protocols.acme.jws import MAX_BODY_BYTES
from fleetpki.protocols.acme.service_api import AcmeCall, AcmeReply
from fleetpki.protocols.acme.urls import PREFIX, AcmeUrls
from fleetpki.protocols.http_adapter import DelimitedRoute, read_bounded, response
from fleetpki.url_paths import path_as_sent

Operation = Callable[[AcmeCall], Awaitable[AcmeReply]]


async def blocking(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The handler's way to call the RA, which reads and writes the store, off the loop."""
    return await run_in_threadpool(function, *args, **kwargs)


_EVERY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class AcmeServer:
    def __init__(self, handler: AcmeHandler, profiles: tuple[str, ...],
                 default_profile: str | None) -> None:
        """`profiles`: those with enrollment.acme = true; `default_profile`: the one at
        /acme/directory (None: no ACME profile, and every ACME URL answers 404)."""
        self._handler = handler
        self._profiles = profiles
        self._default = default_profile
        self._named: list[Route] = []  # every route but the catch-all, once routes() ran

    def routes(self) -> list[Route]:
        h = self._handler
        posted: Mapping[str, Operation] = {
            "/new-account": h.new_account, "/key-change": h.key_change,
            "/revoke-cert": h.revoke, "/new-order": h.new_order,
            "/p/{profile}/new-order": h.new_order, "/acct/{id}": h.account,
            "/acct/{id}/orders": h.orders, "/order/{id}": h.order,
            "/order/{id}/finalize": h.finalize, "/order/{id}/cert": h.certificate,
            "/authz/{id}": h.authorization, "/chall/{id}": h.challenge}
        # A path with an encoded slash matches none of these (http_adapter.DelimitedRoute).
        routes: list[Route] = [
            DelimitedRoute(PREFIX + path, self._post(operation), methods=["GET", "POST"])
            for path, operation in posted.items()]
        routes += [
            DelimitedRoute(PREFIX + "/directory", self._get(h.directory), methods=["GET"]),
            DelimitedRoute(PREFIX + "/p/{profile}/directory", self._get(h.directory),
                           methods=["GET"]),
            DelimitedRoute(PREFIX + "/renewal-info/{id}", self._get(h.renewal_info),
                           methods=["GET"]),
            DelimitedRoute(PREFIX + "/new-nonce", self._nonce, methods=["GET", "HEAD"]),
            # Last: any other URL under the prefix gets a problem document with a fresh
            # nonce (RFC 8555 §6.5, §6.7), as every ACME error does.
            Route(PREFIX + "/{rest:path}", self._no_such_resource, methods=_EVERY_METHOD),
        ]
        self._named = routes[:-1]
        return routes

    def _call(self, request: Request, body: bytes | None = b"") -> AcmeCall | None:
        profile = request.path_params.get("profile", self._default)
        if profile is None or profile not in self._profiles:
            return None
        origin = f"{request.url.scheme}://{request.url.netloc}"
        url = origin + request.url.path + (f"?{request.url.query}" if request.url.query
                                           else "")
        return AcmeCall(url=url, urls=AcmeUrls(origin, self._default), profile=profile,
                        content_type=request.headers.get("content-type", ""), body=body,
                        resource_id=str(request.path_params.get("id", "")))

    def _unknown(self, request: Request) -> Response:
        profile = request.path_params.get("profile")
        detail = (f"no ACME directory for profile {profile!r}" if profile else
                  "this server has no profile with enrollment.acme = true")
        problem = AcmeProblem("malformed", detail, status=404)
        return response(404, problem_json(problem),
                        [("Content-Type", "application/problem+json")])

    def _post(self, operation: Operation) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            body = await read_bounded(request, MAX_BODY_BYTES) \
                if request.method == "POST" else b""
            call = self._call(request, body)
            if call is None:
                return self._unknown(request)
            if request.method != "POST":
                # RFC 8555 §6.3: resources other than the directory and newNonce are read
                # with POST-as-GET.
                reply = self._handler.problem(call, AcmeProblem(
                    "malformed", "use POST (POST-as-GET to read this resource)", status=405))
                return response(reply.status, reply.body, (*reply.headers, ("Allow", "POST")))
            reply = await self._handler.run(call, operation)
            return response(reply.status, reply.body, reply.headers)

        return endpoint

    def _get(self, operation: Operation) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            call = self._call(request)
            if call is None:
                return self._unknown(request)
            reply = await self._handler.run(call, operation)
            return response(reply.status, reply.body, reply.headers)

        return endpoint

    async def _no_such_resource(self, request: Request) -> Response:
        call = self._call(request)
        if call is None:
            return self._unknown(request)
        allowed = [method for route in self._named
                   if route.matches(request.scope)[0] is Match.PARTIAL
                   for method in sorted(route.methods or ())]
        if allowed:  # a resource that exists, asked with another method
            reply = self._handler.problem(call, AcmeProblem(
                "malformed", f"{request.method} is not allowed here; use "
                             f"{' or '.join(allowed)}", status=405))
            return response(reply.status, reply.body,
                            (*reply.headers, ("Allow", ", ".join(allowed))))
        # The path as sent: `/acme/order%2F<id>` is not the order, and must not read as it.
        path = path_as_sent(request.scope)[:200]
        reply = self._handler.problem(call, AcmeProblem(
            "malformed", f"no ACME resource at {path}; the directory "
                         f"({call.urls.directory(call.profile)}) lists them", status=404))
        return response(reply.status, reply.body, reply.headers)

    async def _nonce(self, request: Request) -> Response:
        call = self._call(request)
        if call is None:
            return self._unknown(request)
        reply = await self._handler.new_nonce(call, get=request.method == "GET")
        return response(reply.status, reply.body, reply.headers)
