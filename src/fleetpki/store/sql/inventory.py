"""The inventory's tables and reads: API tokens, device lists, the audit log newest first, and
the fleet summary's pass over every certificate.

A mixin of SqlStore, so that one store object serves every Protocol of store/api.py. Every list
here is an index range with a limit, so a page costs the same with ten certificates or ten
million; the one full pass (certificate_facts) runs in the background, never per request.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from fleetpki.core.api_tokens import ApiToken, OperatorCertificate, Role
from fleetpki.core.errors import Conflict, NotFound
from fleetpki.core.inventory_records import CertificateFact, DeviceSummary, StoredSummary
from fleetpki.core.records import AuditEntry
from fleetpki.store.api import AuditEvent, AuditQuery
from fleetpki.store.sql.audit_append import append_events
from fleetpki.store.sql.engine import translate_errors
from fleetpki.store.sql.rows import audit_record, utc
from fleetpki.store.sql.schema import (
    api_tokens,
    audit_log,
    certificates,
    inventory_summaries,
    operator_certificates,
)

_FACTS_BATCH = 5000


class InventoryTables:
    _writer: sa.Engine
    _reader: sa.Engine

    # -- API tokens -------------------------------------------------------------------------

    def add_token(self, token: ApiToken, event: AuditEvent, *, at: dt.datetime) -> None:
        t = api_tokens
        with translate_errors(), self._writer.begin() as c:
            if c.execute(sa.select(t.c.id).where(t.c.id == token.id)).first():
                raise Conflict(f"an API token with id '{token.id}' already exists")
            c.execute(t.insert().values(
                id=token.id, name=token.name, role=token.role.value,
                secret_hash=token.secret_hash, created_at=token.created_at,
                created_by=token.created_by, expires_at=token.expires_at,
                revoked_at=token.revoked_at))
            append_events(c, [event], at)

    def get_token(self, token_id: str) -> ApiToken | None:
        with translate_errors(), self._reader.connect() as c:
            row = c.execute(sa.select(api_tokens).where(api_tokens.c.id == token_id)).first()
        return _token(row) if row else None

    def list_tokens(self, *, include_revoked: bool = False) -> list[ApiToken]:
        select = sa.select(api_tokens).order_by(api_tokens.c.created_at, api_tokens.c.id)
        if not include_revoked:
            select = select.where(api_tokens.c.revoked_at.is_(None))
        with translate_errors(), self._reader.connect() as c:
            return [_token(r) for r in c.execute(select)]

    def revoke_token(self, token_id: str, event: AuditEvent, *, at: dt.datetime) -> ApiToken:
        row = self._mark_revoked(api_tokens.c.id, token_id, event, at,
                                 missing=f"no API token with id '{token_id}'",
                                 again=f"API token '{token_id}' was revoked already")
        return _token(row)

    # -- operator certificates --------------------------------------------------------------

    def add_operator_certificate(self, record: OperatorCertificate, event: AuditEvent, *,
                                 at: dt.datetime) -> None:
        t = operator_certificates
        with translate_errors(), self._writer.begin() as c:
            if c.execute(sa.select(t.c.fingerprint)
                         .where(t.c.fingerprint == record.fingerprint)).first():
                raise Conflict(f"certificate {record.fingerprint[:16]}... is registered "
                               "already")
            c.execute(t.insert().values(
                fingerprint=record.fingerprint, name=record.name, role=record.role.value,
                subject=record.subject, not_after=record.not_after,
                created_at=record.created_at, created_by=record.created_by,
                revoked_at=record.revoked_at))
            append_events(c, [event], at)

    def get_operator_certificate(self, fingerprint: str) -> OperatorCertificate | None:
        t = operator_certificates
        with translate_errors(), self._reader.connect() as c:
            row = c.execute(sa.select(t).where(t.c.fingerprint == fingerprint)).first()
        return _operator(row) if row else None

    def list_operator_certificates(self, *, include_revoked: bool = False
                                   ) -> list[OperatorCertificate]:
        t = operator_certificates
        select = sa.select(t).order_by(t.c.created_at, t.c.fingerprint)
        if not include_revoked:
            select = select.where(t.c.revoked_at.is_(None))
        with translate_errors(), self._reader.connect() as c:
            return [_operator(r) for r in c.execute(select)]

    def revoke_operator_certificate(self, fingerprint: str, event: AuditEvent, *,
                                    at: dt.datetime) -> OperatorCertificate:
        row = self._mark_revoked(
            operator_certificates.c.fingerprint, fingerprint, event, at,
            missing=f"no operator certificate with fingerprint {fingerprint}",
            again=f"operator certificate {fingerprint[:16]}... was revoked already")
        return _operator(row)

    def _mark_revoked(self, key: sa.Column[str], value: str, event: AuditEvent,
                      at: dt.datetime, *, missing: str, again: str) -> Any:
        """Set revoked_at of the row whose `key` is `value`, once, with its audit entry;
        returns the row as it is now."""
        table = key.table
        with translate_errors(), self._writer.begin() as c:
            row = c.execute(sa.select(table).where(key == value)).first()
            if row is None:
                raise NotFound(missing)
            if row.revoked_at is not None:
                raise Conflict(again)
            c.execute(sa.update(table).where(key == value).values(revoked_at=at))
            append_events(c, [event], at)
            return c.execute(sa.select(table).where(key == value)).one()

    # -- devices ----------------------------------------------------------------------------

    def list_devices(self, *, prefix: str | None = None, after: str | None = None,
                     limit: int = 50, now: dt.datetime) -> list[DeviceSummary]:
        t = certificates.c
        select = _device_select(now).group_by(t.device_id).order_by(t.device_id).limit(limit)
        if prefix:
            # A range on the (device_id, profile) index, not LIKE: LIKE's case folding keeps
            # SQLite from using the index.
            select = select.where(t.device_id >= prefix, t.device_id < prefix + "\U0010ffff")
        if after is not None:
            select = select.where(t.device_id > after)
        with translate_errors(), self._reader.connect() as c:
            return [_device(r) for r in c.execute(select)]

    def get_device(self, device_id: str, *, now: dt.datetime) -> DeviceSummary | None:
        t = certificates.c
        select = _device_select(now).where(t.device_id == device_id).group_by(t.device_id)
        with translate_errors(), self._reader.connect() as c:
            row = c.execute(select).first()
        return _device(row) if row else None

    # -- audit, newest first ----------------------------------------------------------------

    def audit_page(self, query: AuditQuery) -> list[AuditEntry]:
        t = audit_log.c
        select = sa.select(audit_log).order_by(t.seq.desc()).limit(query.limit)
        if query.before_seq is not None:
            select = select.where(t.seq < query.before_seq)
        if query.actor:
            select = select.where(t.actor == query.actor)
        if query.action:
            select = select.where(t.action == query.action)
        if query.subject:
            select = select.where(t.subject == query.subject)
        with translate_errors(), self._reader.connect() as c:
            return [audit_record(r) for r in c.execute(select)]

    # -- the fleet summary ------------------------------------------------------------------

    def certificate_facts(self, *, with_der: bool = False) -> Iterator[CertificateFact]:
        t = certificates.c
        columns = [t.serial, t.issuer, t.device_id, t.profile, t.key_spec, t.not_before,
                   t.not_after, t.issued_at, t.revoked_at]
        if with_der:
            columns.append(t.der)
        select = sa.select(*columns).order_by(t.device_id, t.profile, t.issued_at)
        with translate_errors(), self._reader.connect() as c:
            result = c.execution_options(stream_results=True, yield_per=_FACTS_BATCH)
            for row in result.execute(select):
                yield CertificateFact(
                    serial=int(row.serial, 16), issuer=row.issuer, device_id=row.device_id,
                    profile=row.profile, key_spec=row.key_spec, not_before=utc(row.not_before),
                    not_after=utc(row.not_after), issued_at=utc(row.issued_at),
                    revoked_at=utc(row.revoked_at) if row.revoked_at is not None else None,
                    der=bytes(row.der) if with_der else None)

    def save_summary(self, summary: StoredSummary, *, keep: int = 48) -> None:
        t = inventory_summaries
        with translate_errors(), self._writer.begin() as c:
            c.execute(t.insert().values(computed_at=summary.computed_at,
                                        seconds=summary.seconds, summary=summary.document))
            kept = [r.id for r in c.execute(sa.select(t.c.id).order_by(t.c.id.desc())
                                            .limit(keep))]
            c.execute(t.delete().where(t.c.id < min(kept)))

    def latest_summary(self) -> StoredSummary | None:
        t = inventory_summaries
        with translate_errors(), self._reader.connect() as c:
            row = c.execute(sa.select(t).order_by(t.c.id.desc()).limit(1)).first()
        if row is None:
            return None
        return StoredSummary(computed_at=utc(row.computed_at), seconds=row.seconds,
                             document=row.summary)


def _device_select(now: dt.datetime) -> sa.Select[Any]:
    t = certificates.c
    valid = sa.case((sa.and_(t.revoked_at.is_(None), t.not_after > now), 1), else_=0)
    return sa.select(
        t.device_id, sa.func.count().label("certificates"), sa.func.sum(valid).label("valid"),
        sa.func.min(t.issued_at).label("first_issued"),
        sa.func.max(t.issued_at).label("last_issued"),
        sa.func.max(t.not_after).label("latest_not_after"),
        _group_concat(t.profile).label("profiles"))


def _group_concat(column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """The distinct profiles of a device, comma-separated; aggregate names differ by dialect."""
    return sa.func.aggregate_strings(column, ",")


def _device(row: Any) -> DeviceSummary:
    profiles = tuple(sorted(set(row.profiles.split(",")))) if row.profiles else ()
    return DeviceSummary(
        device_id=row.device_id, certificates=int(row.certificates), valid=int(row.valid or 0),
        profiles=profiles, first_issued=_moment(row.first_issued),
        last_issued=_moment(row.last_issued), latest_not_after=_moment(row.latest_not_after))


def _moment(value: Any) -> dt.datetime:
    """Aggregates (min/max) come back as text on SQLite: the column type is lost."""
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    return utc(value)


def _operator(row: Any) -> OperatorCertificate:
    return OperatorCertificate(
        fingerprint=row.fingerprint, name=row.name, role=Role(row.role), subject=row.subject,
        not_after=utc(row.not_after), created_at=utc(row.created_at),
        created_by=row.created_by,
        revoked_at=utc(row.revoked_at) if row.revoked_at is not None else None)


def _token(row: Any) -> ApiToken:
    return ApiToken(
        id=row.id, name=row.name, role=Role(row.role), secret_hash=row.secret_hash,
        created_at=utc(row.created_at), created_by=row.created_by,
        expires_at=utc(row.expires_at),
        revoked_at=utc(row.revoked_at) if row.revoked_at is not None else None)
