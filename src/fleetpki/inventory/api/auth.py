"""Who is calling the admin API, and may they do this.

Tokens travel as `Authorization: Bearer fpk_...` only: the API takes no cookies, so a page
on another site cannot make a logged-in browser call it (the dashboard has its own login
and CSRF check, inventory/dashboard/session.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fleetpki.core.api_tokens import ApiToken, Role
from fleetpki.core.errors import BadInput, NotAuthenticated, NotAuthorized
from fleetpki.inventory.context import AdminContext

bearer = HTTPBearer(auto_error=False, scheme_name="token",
                    description="An API token, as `fleetpki admin token create` prints it.")


def admin_context(request: Request) -> AdminContext:
    context: AdminContext = request.app.state.admin
    return context


def caller(request: Request,
           credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
           context: Annotated[AdminContext, Depends(admin_context)]) -> ApiToken:
    """A bearer token if one is sent, else a registered operator's TLS client certificate."""
    if credentials is not None:
        return context.operations.authenticate(credentials.credentials)
    client_certificate = _client_certificate(request)
    if client_certificate is not None:
        return context.operations.authenticate_certificate(client_certificate)
    raise NotAuthenticated("send an API token as 'Authorization: Bearer fpk_...' (create one "
                           "with `fleetpki admin token create`) or a registered operator "
                           "client certificate")


def _client_certificate(request: Request) -> bytes | None:
    """The DER leaf the TLS layer verified (ASGI TLS extension, serving/client_certs.py)."""
    tls = request.scope.get("extensions", {}).get("tls")
    chain = tls.get("client_cert_chain") if tls else None
    if not chain:
        return None
    return x509.load_pem_x509_certificate(chain[0].encode("ascii")).public_bytes(
        serialization.Encoding.DER)


def needs(role: Role) -> Callable[[ApiToken], ApiToken]:
    """A dependency admitting callers whose role includes `role`."""

    def check(token: Annotated[ApiToken, Depends(caller)]) -> ApiToken:
        if not token.role.includes(role):
            raise NotAuthorized(f"this needs the {role.value} role; token {token.id} has "
                                f"{token.role.value}")
        return token

    return check


Caller = Annotated[ApiToken, Depends(caller)]
Auditor = Annotated[ApiToken, Depends(needs(Role.auditor))]
Operator = Annotated[ApiToken, Depends(needs(Role.operator))]
Admin = Annotated[ApiToken, Depends(needs(Role.admin))]


def known_query_only(request: Request) -> None:
    """Refuse query parameters the operation does not take: `?profil=sensor` must not return
    the whole unfiltered list as if it had worked."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = {p.alias for p in _all_query_params(dependant)}
    unknown = sorted(set(request.query_params.keys()) - known)
    if unknown:
        raise BadInput(f"unknown query parameter(s) {', '.join(unknown)}; this operation "
                       f"takes {', '.join(sorted(known)) or 'none'}")


def _all_query_params(dependant: Any) -> list[Any]:
    found = list(dependant.query_params)
    for sub in dependant.dependencies:
        found += _all_query_params(sub)
    return found
