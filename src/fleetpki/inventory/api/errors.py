"""Domain errors and bad requests as JSON problems: a status and a message a person can act
on, never a stack trace (DESIGN.md §2)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from fleetpki.core.errors import (
    AuditChainBroken,
    BadInput,
    Conflict,
    FleetPKIError,
    NotAuthenticated,
    NotAuthorized,
    NotFound,
    PolicyViolation,
    RateLimited,
)

log = logging.getLogger(__name__)

# Most specific first: NotAuthenticated is a NotAuthorized.
_STATUS: list[tuple[type[FleetPKIError], int, str]] = [
    (NotAuthenticated, 401, "not_authenticated"),
    (NotAuthorized, 403, "forbidden"),
    (BadInput, 400, "bad_input"),
    (PolicyViolation, 422, "policy_violation"),
    (NotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (RateLimited, 429, "rate_limited"),
    (AuditChainBroken, 409, "audit_chain_broken"),
]


def problem(status: int, code: str, message: str, **extra: object) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="fleetpki"'} if status == 401 else None
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status,
                        headers=headers)


def domain_problem(error: FleetPKIError) -> JSONResponse:
    for kind, status, code in _STATUS:
        if isinstance(error, kind):
            return problem(status, code, str(error))
    log.error("unexpected domain error in the admin API: %s", error)
    return problem(500, "internal", "the server could not complete the request; its log says "
                   "why")


def _location(parts: tuple[object, ...]) -> str:
    return ".".join(str(p) for p in parts if p != "body") or "request"


HtmlProblem = Callable[[Request, int, str], Response]


def install(app: FastAPI, *, api_prefix: str, html_problem: HtmlProblem) -> None:
    """JSON problems under `api_prefix`; elsewhere (the dashboard) `html_problem` renders
    the same status and message as a page."""

    def respond(request: Request, reply: JSONResponse, message: str) -> Response:
        if request.url.path.startswith(api_prefix):
            return reply
        return html_problem(request, reply.status_code, message)

    @app.exception_handler(FleetPKIError)
    async def on_domain_error(request: Request, error: FleetPKIError) -> Response:
        reply = domain_problem(error)
        return respond(request, reply, str(error) if reply.status_code < 500 else
                       "the server could not complete the request; its log says why")

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, error: RequestValidationError) -> Response:
        if request.url.path.startswith(api_prefix) and _body_not_json(request):
            # FastAPI reads any other type as "no JSON" and names a field; say what is wrong.
            return problem(415, "unsupported_media_type",
                           "send the request body as JSON, with Content-Type: "
                           "application/json")
        details = [{"field": _location(tuple(e.get("loc", ()))), "problem": e.get("msg", "")}
                   for e in error.errors()]
        message = "; ".join(f"{d['field']}: {d['problem']}" for d in details)
        return respond(request, problem(422, "invalid_request", message, details=details),
                       message)

    @app.exception_handler(HTTPException)
    async def on_http(request: Request, error: HTTPException) -> Response:
        reply = problem(error.status_code, "http_error", str(error.detail))
        reply.headers.update(error.headers or {})  # e.g. Allow on a 405 (RFC 9110 §15.5.6)
        return respond(request, reply, str(error.detail))

    @app.exception_handler(Exception)
    async def on_bug(request: Request, error: Exception) -> Response:
        log.exception("admin request failed: %s %s", request.method, request.url.path)
        message = "the server could not complete the request; its log says why"
        return respond(request, problem(500, "internal", message), message)


def _body_not_json(request: Request) -> bool:
    if request.method not in ("POST", "PUT", "PATCH"):
        return False
    has_body = request.headers.get("content-length", "0") != "0" \
        or "transfer-encoding" in request.headers
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    return has_body and media != "application/json" and not media.endswith("+json")
