"""Bootstrap credentials and enrollments held for approval."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, status

from fleetpki.core.enrollment_records import ApprovalState
from fleetpki.core.errors import NotFound
from fleetpki.inventory.api.auth import Auditor, Operator, admin_context
from fleetpki.inventory.api.schemas import (
    CertificateOut,
    CredentialCreated,
    CredentialIn,
    CredentialOut,
    PendingOut,
    RejectIn,
)
from fleetpki.inventory.context import AdminContext

router = APIRouter()
Context = Annotated[AdminContext, Depends(admin_context)]
CredentialId = Annotated[str, Path(min_length=1, max_length=128)]
PendingId = Annotated[str, Path(min_length=1, max_length=32)]


@router.get("/credentials", response_model=list[CredentialOut], tags=["credentials"])
def list_credentials(context: Context, token: Auditor,
                     profile: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
                     include_disabled: bool = False) -> list[CredentialOut]:
    """Bootstrap credentials (never their secrets: only hashes are stored)."""
    return [CredentialOut.of(c) for c in context.reader.list_credentials(
        profile=profile, include_disabled=include_disabled)]


@router.post("/credentials", response_model=CredentialCreated,
             status_code=status.HTTP_201_CREATED, tags=["credentials"])
def create_credential(context: Context, body: CredentialIn, token: Operator
                      ) -> CredentialCreated:
    """A new bootstrap credential; its secret is in this response and nowhere else."""
    credential, secret = context.operations.create_credential(
        token.actor, body.profile, lifetime=dt.timedelta(hours=body.lifetime_hours),
        max_uses=body.max_uses, device_id=body.device_id, credential_id=body.id)
    return CredentialCreated(**CredentialOut.of(credential).model_dump(), secret=secret)


@router.post("/credentials/{credential_id}/disable", response_model=CredentialOut,
             tags=["credentials"])
def disable_credential(context: Context, credential_id: CredentialId,
                       token: Operator) -> CredentialOut:
    context.operations.disable_credential(token.actor, credential_id)
    found = context.reader.get_credential(credential_id)
    if found is None:  # disabled a moment ago; only a concurrent purge could do this
        raise NotFound(f"no bootstrap credential '{credential_id}'")
    return CredentialOut.of(found)


@router.get("/approvals", response_model=list[PendingOut], tags=["approvals"])
def list_approvals(context: Context, token: Auditor,
                   state: Literal["pending", "issued", "rejected", "all"] = "pending"
                   ) -> list[PendingOut]:
    """Enrollments held for an operator's decision (profiles with manual approval)."""
    wanted = None if state == "all" else ApprovalState(state)
    return [PendingOut.of(p) for p in context.reader.list_pending(wanted)]


@router.post("/approvals/{pending_id}/approve", response_model=CertificateOut,
             tags=["approvals"])
def approve(context: Context, pending_id: PendingId, token: Operator
            ) -> CertificateOut:
    """Issue the held certificate now; the device collects it on its next retry."""
    issued = context.operations.approve(token.actor, pending_id)
    return CertificateOut.of(issued, context.clock.now())


@router.post("/approvals/{pending_id}/reject", response_model=PendingOut, tags=["approvals"])
def reject(context: Context, pending_id: PendingId, body: RejectIn,
           token: Operator) -> PendingOut:
    context.operations.reject(token.actor, pending_id, body.reason)
    found = context.reader.get_pending(pending_id)
    if found is None:
        raise NotFound(f"no pending enrollment '{pending_id}'")
    return PendingOut.of(found)
