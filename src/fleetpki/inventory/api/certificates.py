"""Certificates, devices and revocations."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from fleetpki.core.errors import NotFound
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import CertificateStatus
from fleetpki.core.serials import serial_hex
from fleetpki.inventory import cursors, inputs
from fleetpki.inventory.api.auth import Auditor, Operator, admin_context
from fleetpki.inventory.api.schemas import (
    CertificateDetail,
    CertificateOut,
    DeviceDetail,
    DeviceOut,
    Page,
    RevokeDeviceIn,
    RevokeIn,
)
from fleetpki.inventory.context import AdminContext
from fleetpki.store.api import CertificateQuery

router = APIRouter()
Context = Annotated[AdminContext, Depends(admin_context)]
SerialPath = Annotated[str, Path(pattern=r"^[0-9A-Fa-f]{1,40}$",
                                 description="Hexadecimal, as listed.")]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size.")]
Cursor = Annotated[str | None, Query(max_length=512)]
Text = Annotated[str | None, Query(min_length=1, max_length=256)]
# A string, parsed here: pydantic would also take a number as seconds since 1970, which no
# one writing an expiry filter means.
Moment = Annotated[str | None, Query(
    pattern=r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?)?$",
    description="ISO 8601 date or date-time; UTC unless it has an offset.")]
_HISTORY = 1000


@router.get("/certificates", response_model=Page[CertificateOut], tags=["certificates"])
def list_certificates(
        context: Context, token: Auditor,
        device_id: Text = None, profile: Text = None, issuer: Text = None,
        status: Literal["valid", "expired", "revoked"] | None = None,
        key_spec: Annotated[str | None, Query(max_length=16)] = None,
        subject: Annotated[str | None, Query(min_length=1, max_length=256,
                                             description="Part of the subject DN.")] = None,
        san: Annotated[str | None, Query(min_length=1, max_length=256,
                                         description="Part of a subjectAltName.")] = None,
        serial: Annotated[str | None, Query(pattern=r"^[0-9A-Fa-f]{1,40}$",
                                            description="Leading hex digits.")] = None,
        expires_after: Moment = None, expires_before: Moment = None,
        limit: Limit = 50, cursor: Cursor = None) -> Page[CertificateOut]:
    """Certificates in expiry order, filtered; every filter narrows."""
    now = context.clock.now()
    query = CertificateQuery(
        device_id=device_id, profile=profile, issuer=issuer,
        status=CertificateStatus(status) if status else None, key_spec=key_spec,
        subject_contains=subject, san_contains=san,
        serial_prefix=inputs.serial_prefix(serial) if serial else None,
        expiring_after=(inputs.moment(expires_after, "expires_after")
                        if expires_after else None),
        expiring_before=(inputs.moment(expires_before, "expires_before")
                         if expires_before else None),
        limit=limit + 1,
        after=cursors.parse_certificate_cursor(cursor) if cursor else None)
    found = context.reader.find_certificates(query, now=now)
    page = found[:limit]
    next_cursor = (cursors.certificate_cursor(page[-1].not_after, serial_hex(page[-1].serial))
                   if len(found) > limit else None)
    return Page[CertificateOut](items=[CertificateOut.of(c, now) for c in page],
                                next_cursor=next_cursor)


@router.get("/certificates/{serial}", response_model=CertificateDetail, tags=["certificates"])
def get_certificate(context: Context, serial: SerialPath, token: Auditor,
                    issuer: Text = None) -> CertificateDetail:
    found = context.reader.get_certificate(inputs.serial(serial), issuer)
    if found is None:
        raise NotFound(f"no certificate with serial {serial.lower()}"
                       + (f" issued by {issuer}" if issuer else ""))
    return CertificateDetail.of(found, context.clock.now())


@router.post("/certificates/{serial}/revoke", response_model=CertificateOut,
             tags=["certificates"])
def revoke_certificate(context: Context, serial: SerialPath, body: RevokeIn,
                       token: Operator, issuer: Text = None) -> CertificateOut:
    """Revoke one certificate (audited under the token's name)."""
    revoked = context.operations.revoke(
        token.actor, inputs.serial(serial), RevocationReason(body.reason), issuer=issuer,
        invalidity_date=(inputs.utc(body.invalidity_date)
                         if body.invalidity_date else None))
    return CertificateOut.of(revoked, context.clock.now())


@router.get("/revocations", response_model=Page[CertificateOut], tags=["certificates"])
def list_revocations(context: Context, token: Auditor, issuer: Text = None,
                     profile: Text = None, limit: Limit = 50, cursor: Cursor = None
                     ) -> Page[CertificateOut]:
    """Revoked certificates, in expiry order."""
    return list_certificates(context, token, issuer=issuer, profile=profile, status="revoked",
                             limit=limit, cursor=cursor)


@router.get("/devices", response_model=Page[DeviceOut], tags=["devices"])
def list_devices(context: Context, token: Auditor,
                 prefix: Annotated[str | None, Query(min_length=1, max_length=256,
                                                     description="Start of the id.")] = None,
                 limit: Limit = 50, cursor: Cursor = None) -> Page[DeviceOut]:
    """Devices in id order, with their certificate counts."""
    after = cursors.decode(cursor) if cursor else None
    found = context.reader.list_devices(prefix=prefix, after=after, limit=limit + 1,
                                        now=context.clock.now())
    page = found[:limit]
    next_cursor = cursors.encode(page[-1].device_id) if len(found) > limit else None
    return Page[DeviceOut](items=[DeviceOut.of(d) for d in page], next_cursor=next_cursor)


@router.get("/devices/{device_id}", response_model=DeviceDetail, tags=["devices"])
def get_device(context: Context, device_id: Annotated[str, Path(max_length=256)],
               token: Auditor) -> DeviceDetail:
    """A device and its certificate history, newest first."""
    now = context.clock.now()
    device = context.reader.get_device(device_id, now=now)
    if device is None:
        raise NotFound(f"no device '{device_id}': no certificate names it")
    history = context.reader.find_certificates(
        CertificateQuery(device_id=device_id, limit=_HISTORY), now=now)
    history.sort(key=lambda c: c.issued_at, reverse=True)
    return DeviceDetail(**DeviceOut.of(device).model_dump(),
                        history=[CertificateOut.of(c, now) for c in history])


@router.post("/devices/{device_id}/revoke", response_model=list[CertificateOut],
             tags=["devices"])
def revoke_device(context: Context, device_id: Annotated[str, Path(max_length=256)],
                  body: RevokeDeviceIn, token: Operator) -> list[CertificateOut]:
    """Revoke every valid certificate of the device."""
    revoked = context.operations.revoke_device(token.actor, device_id,
                                               RevocationReason(body.reason))
    now = context.clock.now()
    return [CertificateOut.of(c, now) for c in revoked]
