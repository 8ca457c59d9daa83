"""The dashboard's edges: the login redirect, error pages, and the headers every page
carries (a Content-Security-Policy that admits our own scripts only, no framing)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetpki.inventory.dashboard import views
from fleetpki.inventory.dashboard.session import LoginRequired

STATIC = Path(__file__).parent.parent / "static"
_TITLES = {400: "Bad request", 401: "Not logged in", 403: "Not allowed", 404: "Not found",
           409: "Conflict", 413: "Too large", 422: "Not accepted", 429: "Too many requests",
           500: "Server error"}
_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; "
                                 b"img-src 'self' data:; frame-ancestors 'none'; "
                                 b"form-action 'self'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


def html_problem(request: Request, status: int, message: str) -> Response:
    """A domain error on a dashboard page: the message, as an htmx fragment or a page."""
    if request.headers.get("hx-request") == "true":
        # htmx swaps only 2xx answers by default; an error shows where the result would.
        response: Response = views.templates.TemplateResponse(
            request, "_error.html", {"message": message}, status_code=200)
        response.headers["HX-Retarget"] = "main"
        response.headers["HX-Reswap"] = "afterbegin"
        return response
    return views.templates.TemplateResponse(
        request, "error.html", {"user": None, "title": _TITLES.get(status, "Error"),
                                "message": message}, status_code=status)


def install(app: FastAPI) -> None:
    app.include_router(views.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(LoginRequired)
    async def on_login_required(request: Request, error: LoginRequired) -> Response:
        target = "/login" + (f"?reason={quote(error.reason)}" if error.reason else "")
        if request.headers.get("hx-request") == "true":
            return HTMLResponse("", headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)


class PageHeaders:
    """Adds the security headers to everything outside the REST API."""

    def __init__(self, app: ASGIApp, api_prefix: str) -> None:
        self.app = app
        self.api_prefix = api_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.api_prefix):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)
