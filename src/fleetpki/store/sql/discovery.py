"""The discovered certificates table: what discovery scans found at TLS endpoints.

A mixin of SqlStore, so that one store object serves every Protocol of store/api.py. A scan's
findings are written in one transaction with its audit entry. Rows are keyed by (host, port,
fingerprint): a rescan that finds the same certificate moves its `last_seen` forward and keeps
its `first_seen`, so the table answers "since when has this endpoint served this".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from fleetpki.core.discovery_records import DiscoveredCertificate
from fleetpki.core.serials import serial_hex
from fleetpki.store.api import AuditEvent
from fleetpki.store.sql.audit_append import append_events
from fleetpki.store.sql.engine import translate_errors
from fleetpki.store.sql.schema import discovered_certificates

# The column holds RFC 5280's 20 octets (§4.1.2.2). An endpoint may serve a certificate with a
# longer serial: the column then keeps its first 40 hex digits, and `der` the exact value.
_SERIAL_DIGITS = 40
# What a rescan changes. The other columns are functions of the DER, which the key fixes;
# attribution can change when a CA is imported after the first scan.
_UPDATED_ON_RESCAN = ("position", "issued_by_us", "last_seen")


class DiscoveryTables:
    _writer: sa.Engine
    _reader: sa.Engine

    def record_discovered(self, findings: Sequence[DiscoveredCertificate], event: AuditEvent,
                          *, at: dt.datetime) -> None:
        rows = _unique_rows(findings, at)
        with translate_errors(), self._writer.begin() as c:
            if rows:
                # One statement per batch, not a read then a write per row: a /16 scan records
                # tens of thousands. Both dialects spell the upsert the same way.
                insert = sqlite.insert if c.dialect.name == "sqlite" else postgresql.insert
                statement = insert(discovered_certificates)
                statement = statement.on_conflict_do_update(
                    index_elements=["host", "port", "fingerprint"],
                    set_={name: statement.excluded[name] for name in _UPDATED_ON_RESCAN})
                c.execute(statement, rows)
            append_events(c, [event], at)

    def list_discovered(self, *, host: str | None = None,
                        expiring_before: dt.datetime | None = None, limit: int = 100,
                        offset: int = 0) -> list[DiscoveredCertificate]:
        t = discovered_certificates
        query = sa.select(t)
        if host is not None:
            query = query.where(t.c.host == host)
        if expiring_before is not None:
            query = query.where(t.c.not_after < expiring_before)
        query = (query.order_by(t.c.not_after, t.c.host, t.c.port, t.c.position,
                                t.c.fingerprint)
                 .limit(limit).offset(offset))
        with translate_errors(), self._reader.connect() as c:
            return [_discovered(r) for r in c.execute(query)]


def _unique_rows(findings: Sequence[DiscoveredCertificate], at: dt.datetime
                 ) -> list[dict[str, Any]]:
    """One row per key, at its first position: an endpoint may send the same certificate
    twice in its chain, and PostgreSQL refuses an upsert that touches a row twice."""
    rows: dict[tuple[str, int, str], dict[str, Any]] = {}
    for f in findings:
        key = (f.host, f.port, f.fingerprint)
        if key in rows and rows[key]["position"] <= f.position:
            continue
        rows[key] = {
            "host": f.host, "port": f.port, "fingerprint": f.fingerprint,
            "position": f.position, "subject": f.subject, "issuer_name": f.issuer_name,
            "serial": serial_hex(f.serial)[:_SERIAL_DIGITS], "not_before": f.not_before,
            "not_after": f.not_after, "key_spec": f.key_spec,
            "signature_algorithm": f.signature_algorithm, "issued_by_us": f.issued_by_us,
            "first_seen": at, "last_seen": at, "der": f.der,
        }
    return list(rows.values())


def _discovered(row: Any) -> DiscoveredCertificate:
    return DiscoveredCertificate(
        host=row.host, port=row.port, fingerprint=row.fingerprint, position=row.position,
        subject=row.subject, issuer_name=row.issuer_name, serial=int(row.serial, 16),
        not_before=row.not_before, not_after=row.not_after, key_spec=row.key_spec,
        signature_algorithm=row.signature_algorithm, issued_by_us=row.issued_by_us,
        der=bytes(row.der), first_seen=row.first_seen, last_seen=row.last_seen)
