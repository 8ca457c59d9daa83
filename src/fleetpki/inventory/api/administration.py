"""CAs and profiles (read), the audit log, API tokens, the fleet summary."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from fleetpki.core.audit_chain import verify_chain
from fleetpki.core.errors import AuditChainBroken, NotFound
from fleetpki.inventory.api.auth import Admin, Auditor, Caller, Operator, admin_context
from fleetpki.inventory.api.schemas import (
    AuditEntryOut,
    AuditVerification,
    CAOut,
    DiscoveredOut,
    ProfileOut,
    SummaryOut,
    TokenCreated,
    TokenIn,
    TokenOut,
    WhoAmI,
)
from fleetpki.inventory.context import AdminContext
from fleetpki.store.api import AuditQuery

router = APIRouter()
Context = Annotated[AdminContext, Depends(admin_context)]
Name = Annotated[str, Path(min_length=1, max_length=64)]
Filter = Annotated[str | None, Query(min_length=1, max_length=256)]


@router.get("/whoami", response_model=WhoAmI, tags=["tokens"])
def whoami(token: Caller) -> WhoAmI:
    return WhoAmI(actor=token.actor, role=token.role, token_id=token.id,
                  expires_at=token.expires_at)


@router.get("/cas", response_model=list[CAOut], tags=["cas"])
def list_cas(context: Context, token: Auditor) -> list[CAOut]:
    return [CAOut.of(r) for r in context.reader.list_cas()]


@router.get("/cas/{name}", response_model=CAOut, tags=["cas"])
def get_ca(context: Context, name: Name, token: Auditor) -> CAOut:
    record = context.reader.get_ca(name)
    if record is None:
        raise NotFound(f"no CA named '{name}'")
    return CAOut.of(record)


@router.get("/profiles", response_model=list[ProfileOut], tags=["profiles"])
def list_profiles(context: Context, token: Auditor) -> list[ProfileOut]:
    return [ProfileOut.of(p) for _, p in sorted(context.profiles.items())]


@router.get("/profiles/{name}", response_model=ProfileOut, tags=["profiles"])
def get_profile(context: Context, name: Name, token: Auditor) -> ProfileOut:
    profile = context.profiles.get(name)
    if profile is None:
        raise NotFound(f"no profile named '{name}' (profiles: "
                       f"{', '.join(sorted(context.profiles))})")
    return ProfileOut.of(profile)


@router.get("/audit", response_model=list[AuditEntryOut], tags=["audit"])
def list_audit(context: Context, token: Auditor, actor: Filter = None,
               action: Filter = None, subject: Filter = None,
               before: Annotated[int | None, Query(ge=1, le=2**62,
                                                   description="Entries before this seq.")
                                 ] = None,
               limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[AuditEntryOut]:
    """The audit log, newest first."""
    entries = context.reader.audit_page(AuditQuery(actor=actor, action=action,
                                                   subject=subject, before_seq=before,
                                                   limit=limit))
    return [AuditEntryOut.of(e) for e in entries]


@router.get("/audit/verify", response_model=AuditVerification, tags=["audit"])
def verify_audit(context: Context, token: Auditor) -> AuditVerification:
    """Walk the whole hash chain; says where it breaks, if it does."""
    head = context.reader.audit_head()
    try:
        report = verify_chain(context.reader.audit_entries(), expected_head=head)
    except AuditChainBroken as broken:
        return AuditVerification(intact=False, entries=0, head_seq=head[0],
                                 problem=str(broken))
    return AuditVerification(intact=True, entries=report.entries, head_seq=report.head_seq)


@router.get("/tokens", response_model=list[TokenOut], tags=["tokens"])
def list_tokens(context: Context, token: Admin, include_revoked: bool = False
                ) -> list[TokenOut]:
    return [TokenOut.of(t) for t in context.reader.list_tokens(
        include_revoked=include_revoked)]


@router.post("/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED,
             tags=["tokens"])
def create_token(context: Context, body: TokenIn, token: Admin) -> TokenCreated:
    """A new API token; its text is in this response and nowhere else."""
    created, text = context.operations.create_token(
        token.actor, body.name, body.role, lifetime=dt.timedelta(days=body.lifetime_days))
    return TokenCreated(**TokenOut.of(created).model_dump(), token=text)


@router.post("/tokens/{token_id}/revoke", response_model=TokenOut, tags=["tokens"])
def revoke_token(context: Context, token_id: Annotated[str, Path(max_length=32)],
                 token: Admin) -> TokenOut:
    return TokenOut.of(context.operations.revoke_token(token.actor, token_id))


@router.get("/summary", response_model=SummaryOut, tags=["summary"])
def get_summary(context: Context, token: Auditor) -> SummaryOut:
    """The latest fleet summary: counts by status, expiry per week, algorithms, compliance."""
    stored = context.reader.latest_summary()
    if stored is None:
        return SummaryOut(computed_at=None, seconds=None, summary=None)
    return SummaryOut(computed_at=stored.computed_at, seconds=stored.seconds,
                      summary=json.loads(stored.document))


@router.post("/summary/refresh", response_model=SummaryOut, tags=["summary"])
def refresh_summary(context: Context, token: Operator) -> SummaryOut:
    """Compute the summary now (seconds per million certificates) rather than wait for the
    server's next pass."""
    stored = context.operations.refresh_summary()
    return SummaryOut(computed_at=stored.computed_at, seconds=stored.seconds,
                      summary=json.loads(stored.document))


@router.get("/discovered", response_model=list[DiscoveredOut], tags=["discovery"])
def list_discovered(context: Context, token: Auditor,
                    host: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 100,
                    offset: Annotated[int, Query(ge=0, le=100_000)] = 0) -> list[DiscoveredOut]:
    """Certificates `fleetpki discover` found at TLS endpoints, soonest to expire first."""
    return [DiscoveredOut.of(d) for d in context.reader.list_discovered(
        host=host, limit=limit, offset=offset)]
