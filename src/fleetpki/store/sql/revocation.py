"""Revocation in the store: revoking and lifting holds, streaming CRL entries, the state of the
published CRL series, and the one-row status lookups of the OCSP responder.

A mixin of SqlStore, so that one store object serves every Protocol of store/api.py.

Every change of a certificate's revocation state draws the next value of its issuer's
`revocation_seq` and writes it on the row. A CRL records the value it reflects (its watermark);
a delta CRL lists exactly the rows changed after its base CRL's watermark, with no reliance on
clocks agreeing between nodes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from fleetpki.core.errors import Conflict, NotFound
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import IssuedCertificate, RevocationStatus, RevokedEntry
from fleetpki.core.serials import serial_hex
from fleetpki.store.api import AuditEvent, CrlPublication, RevokedQuery
from fleetpki.store.sql.audit_append import append_events
from fleetpki.store.sql.bulk import PointReads, stream_driver, timestamp_converter
from fleetpki.store.sql.engine import translate_errors
from fleetpki.store.sql.rows import certificate_record, stored_moment, utc
from fleetpki.store.sql.schema import cas, certificates, crl_publications

_STREAM_BATCH = 20_000
_REASONS = {reason.value: reason for reason in RevocationReason}
# Every OCSP request runs this: the primary key, nothing else.
_STATUS = ("SELECT not_after, revoked_at, revocation_reason, invalidity_date FROM certificates "
           "WHERE issuer = ? AND serial = ?")


class RevocationTables:
    _writer: sa.Engine
    _reader: sa.Engine
    _point_reads: PointReads

    def revoke(self, issuer: str, serial: int, reason: RevocationReason, *, at: dt.datetime,
               event: AuditEvent, invalidity_date: dt.datetime | None = None
               ) -> IssuedCertificate:
        t = certificates.c
        key = (t.issuer == issuer, t.serial == serial_hex(serial))
        hold = RevocationReason.certificate_hold.value
        with translate_errors(), self._writer.begin() as c:
            row = c.execute(sa.select(t.revoked_at, t.revocation_reason).where(*key)).first()
            if row is None:
                raise NotFound(f"no certificate with serial {serial_hex(serial)} from '{issuer}'")
            # A hold may become a revocation for good (RFC 5280 §5.3.1), without the
            # certificate passing through "valid" in between; nothing else is revoked twice.
            if row.revoked_at is not None and (row.revocation_reason != hold
                                               or reason.value == hold):
                raise Conflict(f"certificate {serial_hex(serial)} was already revoked on "
                               f"{utc(row.revoked_at):%Y-%m-%d %H:%M} UTC "
                               f"({row.revocation_reason}); nothing changed")
            still = sa.or_(t.revoked_at.is_(None), t.revocation_reason == hold)
            done = c.execute(certificates.update().where(*key, still).values(
                revoked_at=at, revocation_reason=reason.value, invalidity_date=invalidity_date,
                revocation_seq=_next_seq(c, issuer)))
            if done.rowcount != 1:  # a concurrent revocation won between our read and write
                raise Conflict(f"certificate {serial_hex(serial)} was revoked meanwhile; "
                               "nothing changed")
            append_events(c, [event], at)
            return certificate_record(c.execute(sa.select(certificates).where(*key)).one())

    def release_hold(self, issuer: str, serial: int, *, at: dt.datetime, event: AuditEvent
                     ) -> IssuedCertificate:
        t = certificates.c
        key = (t.issuer == issuer, t.serial == serial_hex(serial))
        with translate_errors(), self._writer.begin() as c:
            row = c.execute(sa.select(t.revocation_reason).where(*key)).first()
            if row is None:
                raise NotFound(f"no certificate with serial {serial_hex(serial)} from '{issuer}'")
            if row.revocation_reason != RevocationReason.certificate_hold.value:
                state = row.revocation_reason or "not revoked"
                raise Conflict(f"certificate {serial_hex(serial)} is not on hold ({state}); "
                               "only a certificateHold can be lifted")
            c.execute(certificates.update().where(*key).values(
                revoked_at=None, revocation_reason=None, invalidity_date=None,
                revocation_seq=_next_seq(c, issuer)))
            append_events(c, [event], at)
            return certificate_record(c.execute(sa.select(certificates).where(*key)).one())

    def revocation_seq(self, issuer: str) -> int:
        with translate_errors(), self._reader.connect() as c:
            value = c.execute(sa.select(cas.c.revocation_seq).where(cas.c.name == issuer)
                              ).scalar()
        if value is None:
            raise NotFound(f"no CA named '{issuer}'")
        return int(value)

    def revoked_entries(self, query: RevokedQuery) -> Iterator[RevokedEntry]:
        # Plain SQL on the driver's cursor: SQLAlchemy's row objects and its SQLite timestamp
        # parsing (a regular expression per value) cost more than the database itself for a
        # million entries. Timestamps come as the driver gives them and are converted here.
        where: list[str] = ["issuer = ?"]
        parameters: list[object] = [query.issuer]
        if query.profile is not None:
            where.append("profile = ?")
            parameters.append(query.profile)
        if query.shard is not None:
            where.append("crl_shard = ?")
            parameters.append(query.shard)
        if query.changed_after is not None:
            where.append("revocation_seq > ?")
            parameters.append(query.changed_after)
        else:
            where.append("revoked_at IS NOT NULL")
        kept = sorted(query.keep_expired)
        keep_clause = f" OR profile IN ({', '.join('?' * len(kept))})" if kept else ""
        valid_at = query.valid_at
        with translate_errors(), self._reader.connect() as c:
            # SQLite's unary plus keeps it from choosing the (profile, not_after) index for
            # this range, which would walk a whole profile instead of its revoked rows.
            column = "+not_after" if c.dialect.name == "sqlite" else "not_after"
            where.append(f"({column} >= ?{keep_clause})")
            parameters += [timestamp_converter(c.dialect)(query.expired_cutoff), *kept]
            # The conditions are fixed strings of ours; values travel as parameters.
            sql = ("SELECT serial, revocation_reason, revoked_at, invalidity_date "  # noqa: S608
                   f"FROM certificates WHERE {' AND '.join(where)}")
            reasons = _REASONS
            for serial, reason, revoked_at, invalidity in stream_driver(
                    c, sql, tuple(parameters), batch=_STREAM_BATCH):
                if revoked_at is None:  # changed, yet not revoked: a lifted hold
                    yield RevokedEntry(int(serial, 16), valid_at, removed=True)
                else:
                    yield RevokedEntry(int(serial, 16), stored_moment(revoked_at),
                                       reasons[reason] if reason else None,
                                       None if invalidity is None
                                       else stored_moment(invalidity))

    def crl_publications(self, issuer: str) -> list[CrlPublication]:
        with translate_errors(), self._reader.connect() as c:
            rows = c.execute(sa.select(crl_publications)
                             .where(crl_publications.c.issuer == issuer)).all()
        return [_publication(r) for r in rows]

    def record_crl(self, publication: CrlPublication, event: AuditEvent, *, at: dt.datetime
                   ) -> None:
        p = crl_publications.c
        key = (p.issuer == publication.issuer, p.scope == publication.scope,
               p.kind == publication.kind)
        values = {
            "number": publication.number, "this_update": publication.this_update,
            "next_update": publication.next_update, "watermark": publication.watermark,
            "base_number": publication.base_number,
            "base_watermark": publication.base_watermark,
            "entries": publication.entries, "size": publication.size,
        }
        with translate_errors(), self._writer.begin() as c:
            if c.execute(crl_publications.update().where(*key).values(**values)).rowcount == 0:
                c.execute(crl_publications.insert().values(
                    issuer=publication.issuer, scope=publication.scope, kind=publication.kind,
                    **values))
            append_events(c, [event], at)

    def certificate_status(self, issuer: str, serial: int) -> RevocationStatus | None:
        with translate_errors():
            row = self._point_reads.one(_STATUS, (issuer, serial_hex(serial)))
        if row is None:
            return None
        not_after, revoked_at, reason, invalidity = row
        return RevocationStatus(
            serial=serial, not_after=stored_moment(not_after),
            revoked_at=stored_moment(revoked_at) if revoked_at is not None else None,
            reason=_REASONS[reason] if reason else None,
            invalidity_date=stored_moment(invalidity) if invalidity is not None else None)


def _next_seq(c: sa.Connection, issuer: str) -> int:
    """Take the issuer's next revocation sequence number inside the caller's transaction."""
    c.execute(cas.update().where(cas.c.name == issuer)
              .values(revocation_seq=cas.c.revocation_seq + 1))
    return int(c.execute(sa.select(cas.c.revocation_seq).where(cas.c.name == issuer))
               .scalar_one())


def _publication(row: Any) -> CrlPublication:
    return CrlPublication(
        issuer=row.issuer, scope=row.scope, kind=row.kind, number=row.number,
        this_update=utc(row.this_update), next_update=utc(row.next_update),
        watermark=row.watermark, entries=row.entries, size=row.size,
        base_number=row.base_number, base_watermark=row.base_watermark)
