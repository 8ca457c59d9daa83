"""SqlStore: every store.api Protocol over one database, SQLite or PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

import sqlalchemy as sa

from fleetpki.core.errors import AuditChainBroken, Conflict, NotFound
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import AuditEntry, CARecord, CertificateStatus, IssuedCertificate
from fleetpki.core.serials import serial_hex
from fleetpki.store.api import AuditEvent, CertificateQuery, SerialCollision, SerialReservation
from fleetpki.store.sql.acme_accounts import AcmeAccountTables
from fleetpki.store.sql.acme_orders import AcmeOrderTables
from fleetpki.store.sql.audit_append import append_events
from fleetpki.store.sql.bulk import (
    PointReads,
    execute_driver,
    insert_many,
    timestamp_converter,
)
from fleetpki.store.sql.discovery import DiscoveryTables
from fleetpki.store.sql.engine import create_engines, migrate, translate_errors
from fleetpki.store.sql.enrollment import EnrollmentTables
from fleetpki.store.sql.group_commit import GroupCommitter
from fleetpki.store.sql.inventory import InventoryTables
from fleetpki.store.sql.name_search import NameIndexTables, contains
from fleetpki.store.sql.renewal_advisories import RenewalAdvisoryTables
from fleetpki.store.sql.revocation import RevocationTables
from fleetpki.store.sql.rows import (
    CERTIFICATE_FIELDS,
    audit_record,
    ca_record,
    certificate_record,
    certificate_row,
    certificate_values,
)
from fleetpki.store.sql.schema import audit_head, audit_log, cas, certificates, serials
from fleetpki.store.sql.transactions import TransactionTables

_AUDIT_PAGE = 5000
_SERIAL_COLUMNS = ("issuer", "serial", "device_id", "profile", "reserved_at", "state")
_CERTIFICATE_COLUMNS = tuple(c.name for c in certificates.columns)
# A constant column list, no user input: S608 does not apply.
_ONE_CERTIFICATE = (f"SELECT {CERTIFICATE_FIELDS} FROM certificates "  # noqa: S608
                    "WHERE issuer = ? AND serial = ?")
# Only a serial still reserved: one marked issued stays in the ledger for ever.
_RELEASE = "DELETE FROM serials WHERE issuer = ? AND serial = ? AND state = 'reserved'"
# A serial reserved ahead (ra/serial_pool.py) learns its device when it is used.
_MARK_ISSUED = ("UPDATE serials SET state = 'issued', device_id = ?, profile = ? "
                "WHERE issuer = ? AND serial = ?")


class SqlStore(EnrollmentTables, RevocationTables, RenewalAdvisoryTables, InventoryTables,
               DiscoveryTables, TransactionTables, AcmeAccountTables, AcmeOrderTables,
               NameIndexTables):
    def __init__(self, url: str, *, durable: bool = True) -> None:
        self.url = url
        self._writer, self._reader = create_engines(url, durable=durable)
        migrate(self._writer)
        self._commits = GroupCommitter(self._writer)
        self._point_reads = PointReads(self._reader)
        self._known_issuers: set[str] = set()

    def close(self) -> None:
        self._commits.close()
        self._point_reads.close()
        self._writer.dispose()
        self._reader.dispose()

    # -- CAs -------------------------------------------------------------------------------

    def list_cas(self) -> list[CARecord]:
        with translate_errors(), self._reader.connect() as c:
            return [ca_record(r) for r in c.execute(sa.select(cas).order_by(cas.c.created_at))]

    def get_ca(self, name: str) -> CARecord | None:
        with translate_errors(), self._reader.connect() as c:
            row = c.execute(sa.select(cas).where(cas.c.name == name)).first()
        return ca_record(row) if row else None

    def add_ca(self, record: CARecord, event: AuditEvent, *, at: dt.datetime) -> None:
        with translate_errors(), self._writer.begin() as c:
            if c.execute(sa.select(cas.c.name).where(cas.c.name == record.name)).first():
                raise Conflict(f"a CA named '{record.name}' already exists")
            c.execute(cas.insert().values(
                name=record.name, role=record.role.value, parent=record.parent,
                certificate_der=record.certificate_der, key_file=record.key_file,
                imported=record.imported, created_at=record.created_at, crl_number=0,
                revocation_seq=0))
            append_events(c, [event], at)

    def set_ca_key_file(self, name: str, key_file: str | None, event: AuditEvent, *,
                        at: dt.datetime) -> None:
        with translate_errors(), self._writer.begin() as c:
            done = c.execute(cas.update().where(cas.c.name == name).values(key_file=key_file))
            if done.rowcount != 1:
                raise NotFound(f"no CA named '{name}'")
            append_events(c, [event], at)

    def revoke_ca(self, name: str, reason: RevocationReason, *, at: dt.datetime,
                  event: AuditEvent) -> None:
        with translate_errors(), self._writer.begin() as c:
            row = c.execute(sa.select(cas.c.revoked_at).where(cas.c.name == name)).first()
            if row is None:
                raise NotFound(f"no CA named '{name}'")
            if row.revoked_at is not None:
                raise Conflict(f"CA '{name}' is already revoked")
            c.execute(cas.update().where(cas.c.name == name)
                      .values(revoked_at=at, revocation_reason=reason.value))
            append_events(c, [event], at)

    def next_crl_number(self, issuer: str) -> int:
        """CRL numbers increase monotonically per issuer (RFC 5280 §5.2.3)."""
        with translate_errors(), self._writer.begin() as c:
            done = c.execute(cas.update().where(cas.c.name == issuer)
                             .values(crl_number=cas.c.crl_number + 1))
            if done.rowcount != 1:
                raise NotFound(f"no CA named '{issuer}'")
            return int(c.execute(sa.select(cas.c.crl_number).where(cas.c.name == issuer))
                       .scalar_one())

    # -- certificates: reading -------------------------------------------------------------

    def get_certificate(self, serial: int, issuer: str | None = None
                        ) -> IssuedCertificate | None:
        if issuer is not None:
            # The per-request lookup of device authentication: a raw indexed read.
            with translate_errors():
                row = self._point_reads.one(_ONE_CERTIFICATE, (issuer, serial_hex(serial)))
            return certificate_values(row) if row is not None else None
        query = sa.select(certificates).where(certificates.c.serial == serial_hex(serial))
        with translate_errors(), self._reader.connect() as c:
            rows = c.execute(query.limit(2)).all()
        if len(rows) > 1:
            raise Conflict(f"serial {serial_hex(serial)} exists under several issuers; "
                           "name the issuer")
        return certificate_record(rows[0]) if rows else None

    def find_certificates(self, query: CertificateQuery, *, now: dt.datetime
                          ) -> list[IssuedCertificate]:
        t = certificates.c
        select = sa.select(certificates)
        if query.device_id is not None:
            select = select.where(t.device_id == query.device_id)
        if query.profile is not None:
            select = select.where(t.profile == query.profile)
        if query.issuer is not None:
            select = select.where(t.issuer == query.issuer)
        if query.key_spec is not None:
            select = select.where(t.key_spec == query.key_spec)
        # Expiry is bounded from several sides at once: the range asked for, the status
        # (valid: after now; expired: up to now) and the page cursor. Only the tightest bound
        # of each side goes into the query: given `not_after > :now AND not_after >= :cursor`
        # SQLite starts the index range at either, not the larger, and a deep page of valid
        # certificates walked every index entry before its cursor (with a million, the last
        # page took 160 ms; 8 ms now: docs/benchmarks.md, "Inventory").
        lower: list[tuple[dt.datetime, bool]] = []  # (moment, strict)
        upper: list[tuple[dt.datetime, bool]] = []
        if query.expiring_before is not None:
            upper.append((query.expiring_before, True))
        if query.expiring_after is not None:
            lower.append((query.expiring_after, False))
        if query.issued_after is not None:
            select = select.where(t.issued_at >= query.issued_after)
        if query.serial_prefix:
            # A range on the serial index (LIKE would not use it); serials are lower-case hex.
            select = select.where(t.serial >= query.serial_prefix,
                                  t.serial < query.serial_prefix + "g")
        if query.after is not None:
            after_time, after_serial = query.after
            lower.append((after_time, False))
            select = select.where(sa.or_(
                t.not_after > after_time,
                sa.and_(t.not_after == after_time, t.serial > after_serial)))
        if query.status is CertificateStatus.revoked:
            select = select.where(t.revoked_at.is_not(None))
        elif query.status is CertificateStatus.expired:
            select = select.where(t.revoked_at.is_(None))
            upper.append((now, False))
        elif query.status is CertificateStatus.valid:
            select = select.where(t.revoked_at.is_(None))
            lower.append((now, True))
        if lower:  # the latest; at the same moment, the strict bound
            moment, strict = max(lower)
            select = select.where(t.not_after > moment if strict else t.not_after >= moment)
        if upper:  # the earliest; at the same moment, the strict bound
            moment, strict = min(upper, key=lambda bound: (bound[0], not bound[1]))
            select = select.where(t.not_after < moment if strict else t.not_after <= moment)
        select = select.order_by(t.not_after, t.serial).limit(query.limit).offset(query.offset)
        with translate_errors(), self._reader.connect() as c:
            for column, term in (("subject", query.subject_contains),
                                 ("sans", query.san_contains)):
                if term:
                    select = select.where(contains(c, column, term))
            return [certificate_record(r) for r in c.execute(select)]

    def current_certificate(self, device_id: str, profile: str, *, now: dt.datetime
                            ) -> IssuedCertificate | None:
        t = certificates.c
        # Validity is filtered here, not in SQL: with `not_after > ?` in the WHERE clause SQLite
        # prefers the (profile, not_after) index and scans a whole profile per device.
        select = sa.select(certificates).where(t.device_id == device_id, t.profile == profile)
        with translate_errors(), self._reader.connect() as c:
            rows = [certificate_record(r) for r in c.execute(select)]
        valid = [r for r in rows if r.revoked_at is None and r.not_after > now]
        return max(valid, key=lambda r: r.issued_at, default=None)

    def issued_device_ids(self, profile: str, device_ids: Sequence[str], *, now: dt.datetime
                          ) -> set[str]:
        """Which of these devices already hold a valid certificate in the profile (batch reruns)."""
        t = certificates.c
        found: set[str] = set()
        with translate_errors(), self._reader.connect() as c:
            for start in range(0, len(device_ids), 500):
                chunk = list(device_ids[start:start + 500])
                # Validity filtered in Python for the index's sake (see current_certificate).
                rows = c.execute(sa.select(t.device_id, t.revoked_at, t.not_after)
                                 .where(t.device_id.in_(chunk), t.profile == profile))
                found.update(r.device_id for r in rows
                             if r.revoked_at is None and r.not_after > now)
        return found

    def count_reserved_serials(self) -> int:
        with translate_errors(), self._reader.connect() as c:
            return int(c.execute(sa.select(sa.func.count()).select_from(serials)
                                 .where(serials.c.state == "reserved")).scalar_one())

    # -- certificates: writing -------------------------------------------------------------

    def reserve_serials(self, reservations: Sequence[SerialReservation], *, at: dt.datetime
                        ) -> None:
        if not reservations:
            return
        issuers = {r.issuer for r in reservations}

        def reserve(c: sa.Connection) -> None:
            # CAs are never deleted, so a name seen once needs no second look.
            if not issuers <= self._known_issuers:
                known = set(c.execute(sa.select(cas.c.name).where(cas.c.name.in_(issuers)))
                            .scalars())
                if known != issuers:
                    raise NotFound(f"no CA named '{sorted(issuers - known)[0]}'")
                self._known_issuers |= known
            stored_at = timestamp_converter(c.dialect)(at)
            insert_many(c, serials, _SERIAL_COLUMNS, [
                (r.issuer, serial_hex(r.serial), r.device_id, r.profile, stored_at,
                 "reserved") for r in reservations])

        with translate_errors():
            try:
                self._commits.run(reserve)
            except sa.exc.IntegrityError:
                # The issuer exists (checked above), so the only constraint left is the
                # (issuer, serial) primary key.
                raise SerialCollision("serial already used for this issuer") from None

    def record_issued(self, certificates_: Sequence[IssuedCertificate],
                      released: Sequence[SerialReservation], events: Sequence[AuditEvent], *,
                      at: dt.datetime) -> None:
        def record(c: sa.Connection) -> None:
            if certificates_:
                stamp = timestamp_converter(c.dialect)
                insert_many(c, certificates, _CERTIFICATE_COLUMNS,
                            [certificate_row(x, stamp) for x in certificates_])
                execute_driver(c, _MARK_ISSUED, [(x.device_id, x.profile, x.issuer,
                                                  serial_hex(x.serial)) for x in certificates_])
            if released:
                execute_driver(c, _RELEASE, [(r.issuer, serial_hex(r.serial)) for r in released])
            append_events(c, events, at)

        with translate_errors():
            self._commits.run(record)

    def audit(self, events: Sequence[AuditEvent], *, at: dt.datetime) -> None:
        with translate_errors():
            self._commits.run(lambda c: append_events(c, events, at))

    # -- audit -----------------------------------------------------------------------------

    def audit_entries(self, *, since_seq: int = 1) -> Iterator[AuditEntry]:
        """Streams in pages so that verifying millions of entries keeps memory flat."""
        next_seq = since_seq
        while True:
            with translate_errors(), self._reader.connect() as c:
                try:
                    rows = c.execute(sa.select(audit_log).where(audit_log.c.seq >= next_seq)
                                     .order_by(audit_log.c.seq).limit(_AUDIT_PAGE)).all()
                except (ValueError, TypeError) as exc:  # a timestamp that no longer parses
                    raise AuditChainBroken(
                        f"an audit entry from entry {next_seq} on cannot be read, so it was "
                        f"modified after it was written ({exc})") from None
            if not rows:
                return
            for row in rows:
                yield audit_record(row)
            next_seq = rows[-1].seq + 1

    def audit_head(self) -> tuple[int, str]:
        with translate_errors(), self._reader.connect() as c:
            row = c.execute(sa.select(audit_head.c.seq, audit_head.c.hash)).one()
        return int(row.seq), str(row.hash)

