"""The dashboard's pages. Each reads one summary row or one indexed page of the store, so a
page renders in the same few milliseconds with a million certificates as with ten; changes
go through the same Operations as the REST API, audited under the logged-in token."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from fleetpki.core.api_tokens import ApiToken, Role
from fleetpki.core.audit_chain import verify_chain
from fleetpki.core.enrollment_records import ApprovalState
from fleetpki.core.errors import AuditChainBroken, BadInput, NotAuthenticated, NotFound
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import CertificateStatus
from fleetpki.core.serials import serial_hex
from fleetpki.inventory import cursors, inputs
from fleetpki.inventory.context import AdminContext
from fleetpki.inventory.dashboard import session
from fleetpki.store.api import AuditQuery, CertificateQuery

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
router = APIRouter(include_in_schema=False)
PAGE = 50
FormText = Annotated[str, Form(max_length=4096)]
OptionalForm = Annotated[str | None, Form(max_length=4096)]


def _context(request: Request) -> AdminContext:
    context: AdminContext = request.app.state.admin
    return context


def render(request: Request, template: str, user: ApiToken | None, status: int = 200,
           **values: Any) -> HTMLResponse:
    text = session.session_token(request) or ""
    return templates.TemplateResponse(request, template, {
        "user": user, "csrf": session.csrf_value(text) if user else "",
        "now": _context(request).clock.now(), "hex": serial_hex, **values},
        status_code=status)


def _htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


# -- login ----------------------------------------------------------------------------------

@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    return render(request, "login.html", None, reason=request.query_params.get("reason", ""))


@router.post("/login")
def login(request: Request, token: FormText) -> Response:
    context = _context(request)
    try:
        holder = context.operations.authenticate(token)
    except NotAuthenticated as refused:
        return render(request, "login.html", None, status=401, reason=str(refused))
    response = RedirectResponse("/", status_code=303)
    session.start_session(response, holder, token.strip(), context.clock.now())
    return response


@router.post("/logout")
def logout(request: Request, csrf: OptionalForm = None) -> Response:
    session.check_csrf(request, csrf)
    response = RedirectResponse("/login", status_code=303)
    session.end_session(response)
    return response


# -- overview -------------------------------------------------------------------------------

@router.get("/", response_class=HTMLResponse)
def overview(request: Request) -> HTMLResponse:
    user = session.current_user(request)
    stored = _context(request).reader.latest_summary()
    summary = json.loads(stored.document) if stored else None
    # After "Recompute now": until a summary newer than the request exists, say so and
    # reload every few seconds.
    since = request.query_params.get("since")
    waiting = False
    if since:
        asked = inputs.moment(since, "since")
        waiting = stored is None or stored.computed_at < asked
    return render(request, "overview.html", user, stored=stored, summary=summary,
                  waiting=waiting, since=since or "")


@router.post("/summary/refresh")
def refresh(request: Request, csrf: OptionalForm = None) -> Response:
    user = session.current_user(request)
    session.check_csrf(request, csrf)
    session.require(user, Role.operator, "recomputing the summary")
    context = _context(request)
    asked = context.clock.now()
    context.operations.start_summary_refresh()  # or one already running will do
    return RedirectResponse(f"/?since={quote(asked.isoformat())}", status_code=303)


# -- certificates and devices ---------------------------------------------------------------

@router.get("/certificates", response_class=HTMLResponse)
def certificates(request: Request) -> HTMLResponse:
    user = session.current_user(request)
    context = _context(request)
    params = request.query_params
    filters = {name: params.get(name, "").strip() for name in
               ("device_id", "serial", "subject", "san", "profile", "status", "key_spec",
                "expires_before")}
    query = _certificate_query(filters, params.get("cursor"))
    found = context.reader.find_certificates(query, now=context.clock.now())
    page = found[:PAGE]
    next_cursor = (cursors.certificate_cursor(page[-1].not_after, serial_hex(page[-1].serial))
                   if len(found) > PAGE else None)
    values: dict[str, Any] = {"certificates": page, "filters": filters, "next_cursor": next_cursor,
              "profiles": sorted(context.profiles),
              "statuses": [s.value for s in CertificateStatus]}
    template = "_certificate_rows.html" if _htmx(request) else "certificates.html"
    return render(request, template, user, **values)


def _certificate_query(filters: dict[str, str], cursor: str | None) -> CertificateQuery:
    """Device id, serial prefix, profile, status, key and expiry are index lookups; subject
    and SAN text are substring matches, which scan (in expiry order, stopping at a page)."""
    expires_before = (inputs.moment(filters["expires_before"], "expires before")
                      if filters["expires_before"] else None)
    status = filters["status"]
    if status and status not in {s.value for s in CertificateStatus}:
        raise BadInput(f"unknown status '{status}'")
    return CertificateQuery(
        device_id=filters["device_id"] or None,
        serial_prefix=inputs.serial_prefix(filters["serial"]) if filters["serial"] else None,
        subject_contains=filters["subject"] or None, san_contains=filters["san"] or None,
        profile=filters["profile"] or None, key_spec=filters["key_spec"] or None,
        status=CertificateStatus(status) if status else None,
        expiring_before=expires_before, limit=PAGE + 1,
        after=cursors.parse_certificate_cursor(cursor) if cursor else None)


@router.get("/certificates/{serial}", response_class=HTMLResponse)
def certificate(request: Request, serial: str) -> HTMLResponse:
    user = session.current_user(request)
    context = _context(request)
    found = context.reader.get_certificate(inputs.serial(serial),
                                           request.query_params.get("issuer"))
    if found is None:
        raise NotFound(f"no certificate with serial {serial}")
    return render(request, "certificate.html", user, cert=found,
                  reasons=[r.value for r in RevocationReason])


@router.post("/certificates/{serial}/revoke", response_class=HTMLResponse)
def revoke(request: Request, serial: str, reason: FormText, issuer: FormText,
           csrf: OptionalForm = None) -> Response:
    user = session.current_user(request)
    session.check_csrf(request, csrf)
    session.require(user, Role.operator, "revoking a certificate")
    try:
        why = RevocationReason.parse(reason)
    except ValueError as error:
        raise BadInput(str(error)) from None
    revoked = _context(request).operations.revoke(user.actor, inputs.serial(serial), why,
                                                  issuer=issuer, invalidity_date=None)
    if _htmx(request):
        return render(request, "_status.html", user, cert=revoked)
    return RedirectResponse(f"/certificates/{serial_hex(revoked.serial)}?issuer="
                            f"{revoked.issuer}", status_code=303)


@router.get("/devices", response_class=HTMLResponse)
def devices(request: Request) -> HTMLResponse:
    user = session.current_user(request)
    context = _context(request)
    prefix = request.query_params.get("prefix", "").strip() or None
    cursor = request.query_params.get("cursor")
    found = context.reader.list_devices(prefix=prefix, limit=PAGE + 1, now=context.clock.now(),
                                        after=cursors.decode(cursor) if cursor else None)
    page = found[:PAGE]
    next_cursor = cursors.encode(page[-1].device_id) if len(found) > PAGE else None
    return render(request, "devices.html", user, devices=page, prefix=prefix or "",
                  next_cursor=next_cursor)


@router.get("/devices/{device_id}", response_class=HTMLResponse)
def device(request: Request, device_id: str) -> HTMLResponse:
    user = session.current_user(request)
    context = _context(request)
    now = context.clock.now()
    summary = context.reader.get_device(device_id, now=now)
    if summary is None:
        raise NotFound(f"no device '{device_id}': no certificate names it")
    history = context.reader.find_certificates(CertificateQuery(device_id=device_id,
                                                                limit=1000), now=now)
    history.sort(key=lambda c: c.issued_at, reverse=True)
    return render(request, "device.html", user, device=summary, history=history,
                  reasons=[r.value for r in RevocationReason])


# -- approvals, credentials -----------------------------------------------------------------

@router.get("/approvals", response_class=HTMLResponse)
def approvals(request: Request) -> HTMLResponse:
    user = session.current_user(request)
    pending = _context(request).reader.list_pending(ApprovalState.pending)
    return render(request, "approvals.html", user, pending=pending)


@router.post("/approvals/{pending_id}/{decision}")
def decide(request: Request, pending_id: str, decision: str, csrf: OptionalForm = None,
           reason: OptionalForm = None) -> Response:
    user = session.current_user(request)
    session.check_csrf(request, csrf)
    session.require(user, Role.operator, "deciding on an enrollment")
    operations = _context(request).operations
    if decision == "approve":
        operations.approve(user.actor, pending_id)
    elif decision == "reject":
        operations.reject(user.actor, pending_id, reason or "rejected in the dashboard")
    else:
        raise NotFound(f"no decision '{decision}': approve or reject")
    return RedirectResponse("/approvals", status_code=303)


@router.get("/credentials", response_class=HTMLResponse)
def credentials(request: Request) -> HTMLResponse:
    user = session.current_user(request)
    context = _context(request)
    return render(request, "credentials.html", user,
                  credentials=context.reader.list_credentials(include_disabled=True),
                  profiles=sorted(context.profiles), created=None)


@router.post("/credentials", response_class=HTMLResponse)
def create_credential(request: Request, profile: FormText, uses: FormText,
                      hours: FormText, csrf: OptionalForm = None,
                      device_id: OptionalForm = None) -> HTMLResponse:
    user = session.current_user(request)
    session.check_csrf(request, csrf)
    session.require(user, Role.operator, "creating a bootstrap credential")
    context = _context(request)
    try:
        max_uses, lifetime = int(uses), dt.timedelta(hours=float(hours))
    except ValueError:
        raise BadInput("uses must be a whole number and hours a number") from None
    created, secret = context.operations.create_credential(
        user.actor, profile, lifetime=lifetime, max_uses=max_uses,
        device_id=device_id or None, credential_id=None)
    return render(request, "credentials.html", user,
                  credentials=context.reader.list_credentials(include_disabled=True),
                  profiles=sorted(context.profiles), created=(created, secret))


@router.post("/credentials/{credential_id}/disable")
def disable_credential(request: Request, credential_id: str, csrf: OptionalForm = None
                       ) -> Response:
    user = session.current_user(request)
    session.check_csrf(request, csrf)
    session.require(user, Role.operator, "disabling a bootstrap credential")
    _context(request).operations.disable_credential(user.actor, credential_id)
    return RedirectResponse("/credentials", status_code=303)


@router.get("/discovered", response_class=HTMLResponse)
def discovered(request: Request) -> HTMLResponse:
    user = session.current_user(request)
    host = request.query_params.get("host", "").strip() or None
    found = _context(request).reader.list_discovered(host=host, limit=500)
    return render(request, "discovered.html", user, found=found, host=host or "")


# -- audit ----------------------------------------------------------------------------------

@router.get("/audit", response_class=HTMLResponse)
def audit(request: Request) -> HTMLResponse:
    user = session.current_user(request)
    params = request.query_params
    before = params.get("before")
    if before is not None and not before.isdigit():
        raise BadInput("before: give an entry number")
    filters = {name: params.get(name, "").strip() for name in ("actor", "action", "subject")}
    entries = _context(request).reader.audit_page(AuditQuery(
        actor=filters["actor"] or None, action=filters["action"] or None,
        subject=filters["subject"] or None, before_seq=int(before) if before else None,
        limit=PAGE))
    return render(request, "audit.html", user, entries=entries, filters=filters)


@router.get("/audit/verify", response_class=HTMLResponse)
def audit_verify(request: Request) -> HTMLResponse:
    """A fragment, loaded by htmx after the page: walking the whole chain takes a while on
    a long log, and the page should not wait for it."""
    user = session.current_user(request)
    reader = _context(request).reader
    head = reader.audit_head()
    try:
        report = verify_chain(reader.audit_entries(), expected_head=head)
    except AuditChainBroken as broken:
        return render(request, "_audit_verification.html", user, intact=False,
                      problem=str(broken), entries=0)
    return render(request, "_audit_verification.html", user, intact=True, problem=None,
                  entries=report.entries)
