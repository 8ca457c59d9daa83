"""The enrollment tables: bootstrap credentials, manufacturer CAs, enrollments on hold.

A mixin of SqlStore, so that one store object serves every Protocol of store/api.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from fleetpki.core.enrollment_records import (
    ApprovalState,
    BootstrapCredential,
    ManufacturerCA,
    PendingEnrollment,
)
from fleetpki.core.errors import Conflict, NotFound
from fleetpki.core.serials import serial_hex
from fleetpki.store.api import AuditEvent
from fleetpki.store.sql.audit_append import append_events
from fleetpki.store.sql.bulk import execute_driver, timestamp_converter
from fleetpki.store.sql.engine import translate_errors
from fleetpki.store.sql.group_commit import GroupCommitter
from fleetpki.store.sql.schema import (
    bootstrap_credentials,
    manufacturer_cas,
    manufacturer_devices,
    pending_enrollments,
)

_ALLOW_CHUNK = 500
_REDEEM = ("UPDATE bootstrap_credentials SET uses = uses + 1 WHERE id = ? AND uses < max_uses "
           "AND disabled_at IS NULL AND expires_at > ?")


class EnrollmentTables:
    _writer: sa.Engine
    _reader: sa.Engine
    _commits: GroupCommitter

    # -- bootstrap credentials --------------------------------------------------------------

    def add_credentials(self, credentials: Sequence[BootstrapCredential],
                        events: Sequence[AuditEvent], *, at: dt.datetime) -> None:
        t = bootstrap_credentials
        ids = [c.id for c in credentials]
        if len(set(ids)) != len(ids):
            raise Conflict("the same bootstrap credential id is listed twice")
        with translate_errors(), self._writer.begin() as c:
            for start in range(0, len(ids), _ALLOW_CHUNK):
                taken = c.execute(sa.select(t.c.id).where(
                    t.c.id.in_(ids[start:start + _ALLOW_CHUNK]))).first()
                if taken:
                    raise Conflict(f"a bootstrap credential named '{taken.id}' already exists")
            if credentials:
                c.execute(t.insert(), [{
                    "id": x.id, "secret_hash": x.secret_hash, "profile": x.profile,
                    "device_id": x.device_id, "max_uses": x.max_uses, "uses": x.uses,
                    "expires_at": x.expires_at, "created_at": x.created_at,
                    "created_by": x.created_by, "disabled_at": x.disabled_at,
                } for x in credentials])
            append_events(c, events, at)

    def get_credential(self, credential_id: str) -> BootstrapCredential | None:
        t = bootstrap_credentials
        with translate_errors(), self._reader.connect() as c:
            row = c.execute(sa.select(t).where(t.c.id == credential_id)).first()
        return _credential(row) if row else None

    def list_credentials(self, *, profile: str | None = None, include_disabled: bool = False
                         ) -> list[BootstrapCredential]:
        t = bootstrap_credentials
        query = sa.select(t).order_by(t.c.created_at, t.c.id)
        if profile is not None:
            query = query.where(t.c.profile == profile)
        if not include_disabled:
            query = query.where(t.c.disabled_at.is_(None))
        with translate_errors(), self._reader.connect() as c:
            return [_credential(r) for r in c.execute(query)]

    def redeem_use(self, credential_id: str, *, at: dt.datetime) -> bool:
        # One conditional UPDATE: the database serialises racing redeemers, so the last use
        # goes to exactly one of them.
        def redeem(c: sa.Connection) -> bool:
            done = execute_driver(c, _REDEEM, (credential_id, timestamp_converter(c.dialect)(at)))
            return bool(done.rowcount == 1)

        with translate_errors():
            return self._commits.run(redeem)

    def return_use(self, credential_id: str) -> None:
        t = bootstrap_credentials
        with translate_errors(), self._writer.begin() as c:
            c.execute(t.update().where(t.c.id == credential_id, t.c.uses > 0)
                      .values(uses=t.c.uses - 1))

    def disable_credential(self, credential_id: str, event: AuditEvent, *, at: dt.datetime
                           ) -> None:
        t = bootstrap_credentials
        with translate_errors(), self._writer.begin() as c:
            row = c.execute(sa.select(t.c.disabled_at).where(t.c.id == credential_id)).first()
            if row is None:
                raise NotFound(f"no bootstrap credential named '{credential_id}'")
            if row.disabled_at is not None:
                raise Conflict(f"bootstrap credential '{credential_id}' is already disabled")
            c.execute(t.update().where(t.c.id == credential_id).values(disabled_at=at))
            append_events(c, [event], at)

    # -- manufacturer CAs -------------------------------------------------------------------

    def add_manufacturer(self, manufacturer: ManufacturerCA, event: AuditEvent, *,
                         at: dt.datetime) -> None:
        t = manufacturer_cas
        with translate_errors(), self._writer.begin() as c:
            if c.execute(sa.select(t.c.name).where(t.c.name == manufacturer.name)).first():
                raise Conflict(f"a manufacturer named '{manufacturer.name}' already exists")
            c.execute(t.insert().values(
                name=manufacturer.name, certificate_der=manufacturer.certificate_der,
                profile=manufacturer.profile, device_id_from=manufacturer.device_id_from,
                allow_list=manufacturer.allow_list, created_at=manufacturer.created_at))
            append_events(c, [event], at)

    def list_manufacturers(self) -> list[ManufacturerCA]:
        t = manufacturer_cas
        with translate_errors(), self._reader.connect() as c:
            return [ManufacturerCA(name=r.name, certificate_der=r.certificate_der,
                                   profile=r.profile, device_id_from=r.device_id_from,
                                   allow_list=bool(r.allow_list), created_at=r.created_at)
                    for r in c.execute(sa.select(t).order_by(t.c.name))]

    def allow_devices(self, manufacturer: str, device_ids: Sequence[str], event: AuditEvent, *,
                      at: dt.datetime) -> int:
        t = manufacturer_devices
        added = 0
        with translate_errors(), self._writer.begin() as c:
            if not c.execute(sa.select(manufacturer_cas.c.name)
                             .where(manufacturer_cas.c.name == manufacturer)).first():
                raise NotFound(f"no manufacturer named '{manufacturer}'")
            unique = list(dict.fromkeys(device_ids))
            for start in range(0, len(unique), _ALLOW_CHUNK):
                chunk = unique[start:start + _ALLOW_CHUNK]
                known = set(c.execute(sa.select(t.c.device_id).where(
                    t.c.manufacturer == manufacturer, t.c.device_id.in_(chunk))).scalars())
                fresh = [{"manufacturer": manufacturer, "device_id": d}
                         for d in chunk if d not in known]
                if fresh:
                    c.execute(t.insert(), fresh)
                added += len(fresh)
            append_events(c, [event], at)
        return added

    def is_allowed(self, manufacturer: str, device_id: str) -> bool:
        t = manufacturer_devices
        with translate_errors(), self._reader.connect() as c:
            return c.execute(sa.select(t.c.device_id).where(
                t.c.manufacturer == manufacturer, t.c.device_id == device_id)).first() is not None

    # -- enrollments on hold ----------------------------------------------------------------

    def add_pending(self, pending: PendingEnrollment, event: AuditEvent, *, at: dt.datetime
                    ) -> None:
        with translate_errors(), self._writer.begin() as c:
            c.execute(pending_enrollments.insert().values(
                id=pending.id, profile=pending.profile, device_id=pending.device_id,
                actor=pending.actor, key_fingerprint=pending.key_fingerprint,
                csr_der=pending.csr_der, requested_at=pending.requested_at,
                state=pending.state.value, decided_by=None, decided_at=None, serial=None,
                issuer=None, reason="", csr_altered=pending.csr_altered))
            append_events(c, [event], at)

    def get_pending(self, pending_id: str) -> PendingEnrollment | None:
        t = pending_enrollments
        with translate_errors(), self._reader.connect() as c:
            row = c.execute(sa.select(t).where(t.c.id == pending_id)).first()
        return _pending(row) if row else None

    def find_pending(self, profile: str, key_fingerprint: str) -> PendingEnrollment | None:
        t = pending_enrollments
        query = (sa.select(t).where(t.c.profile == profile, t.c.key_fingerprint == key_fingerprint)
                 .order_by(t.c.requested_at.desc()).limit(1))
        with translate_errors(), self._reader.connect() as c:
            row = c.execute(query).first()
        return _pending(row) if row else None

    def list_pending(self, state: ApprovalState | None = ApprovalState.pending
                     ) -> list[PendingEnrollment]:
        t = pending_enrollments
        query = sa.select(t).order_by(t.c.requested_at, t.c.id)
        if state is not None:
            query = query.where(t.c.state == state.value)
        with translate_errors(), self._reader.connect() as c:
            return [_pending(r) for r in c.execute(query)]

    def decide(self, pending_id: str, state: ApprovalState, *, decided_by: str,
               at: dt.datetime, event: AuditEvent, serial: int | None = None,
               issuer: str | None = None, reason: str = "") -> None:
        t = pending_enrollments
        with translate_errors(), self._writer.begin() as c:
            row = c.execute(sa.select(t.c.state).where(t.c.id == pending_id)).first()
            if row is None:
                raise NotFound(f"no pending enrollment with id '{pending_id}'")
            if row.state != ApprovalState.pending.value:
                raise Conflict(f"enrollment '{pending_id}' was already decided ({row.state})")
            c.execute(t.update().where(t.c.id == pending_id).values(
                state=state.value, decided_by=decided_by, decided_at=at,
                serial=serial_hex(serial) if serial is not None else None, issuer=issuer,
                reason=reason))
            append_events(c, [event], at)


def _credential(row: Any) -> BootstrapCredential:
    return BootstrapCredential(
        id=row.id, secret_hash=row.secret_hash, profile=row.profile, device_id=row.device_id,
        max_uses=row.max_uses, uses=row.uses, expires_at=row.expires_at,
        created_at=row.created_at, created_by=row.created_by, disabled_at=row.disabled_at)


def _pending(row: Any) -> PendingEnrollment:
    return PendingEnrollment(
        id=row.id, profile=row.profile, device_id=row.device_id, actor=row.actor,
        key_fingerprint=row.key_fingerprint, csr_der=row.csr_der, requested_at=row.requested_at,
        state=ApprovalState(row.state), decided_by=row.decided_by, decided_at=row.decided_at,
        serial=int(row.serial, 16) if row.serial else None, issuer=row.issuer, reason=row.reason,
        csr_altered=bool(row.csr_altered))
