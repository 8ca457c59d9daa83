"""Dashboard login: an API token, kept in a cookie, and a CSRF check on every change.

The cookie holds the token itself (HttpOnly, Secure, SameSite=Strict), so a revoked or
expired token ends the session at the next request, and any worker process can check it
with no session table. Forms carry a CSRF value derived from the token: a page on another
site can neither read the cookie nor compute the value, and SameSite=Strict keeps the
browser from sending the cookie with its requests in the first place.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from fastapi import Request
from fastapi.responses import Response

from fleetpki.core.api_tokens import ApiToken, Role
from fleetpki.core.errors import NotAuthenticated, NotAuthorized
from fleetpki.inventory.context import AdminContext

COOKIE = "fleetpki_session"
MAX_SESSION = dt.timedelta(hours=12)


class LoginRequired(Exception):
    """No valid session: the page sends the browser to the login form."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def csrf_value(session_token: str) -> str:
    return hashlib.sha256(b"fleetpki-dashboard-csrf:" + session_token.encode()).hexdigest()[:32]


def session_token(request: Request) -> str | None:
    return request.cookies.get(COOKIE)


def current_user(request: Request) -> ApiToken:
    context: AdminContext = request.app.state.admin
    text = session_token(request)
    if not text:
        raise LoginRequired("")
    try:
        return context.operations.authenticate(text)
    except NotAuthenticated as refused:
        raise LoginRequired(str(refused)) from None


def check_csrf(request: Request, submitted: str | None) -> None:
    text = session_token(request) or ""
    if not submitted or not hmac.compare_digest(submitted, csrf_value(text)):
        raise NotAuthorized("the form was not sent from this dashboard (CSRF check failed); "
                            "reload the page and try again")


def require(user: ApiToken, role: Role, doing: str) -> None:
    if not user.role.includes(role):
        raise NotAuthorized(f"{doing} needs the {role.value} role; you are logged in as "
                            f"{user.name} ({user.role.value})")


def start_session(response: Response, token: ApiToken, text: str, now: dt.datetime) -> None:
    lifetime = min(MAX_SESSION, token.expires_at - now)
    response.set_cookie(COOKIE, text, max_age=max(1, int(lifetime.total_seconds())),
                        httponly=True, secure=True, samesite="strict", path="/")


def end_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
