"""Discovered certificates behave the same on SQLite and PostgreSQL: one row per endpoint and
certificate, rescans move last_seen and never duplicate, lists come soonest to expire first,
and every scan is audited in the same transaction as its rows."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

import pytest
import sqlalchemy as sa

from fleetpki.core.discovery_records import DiscoveredCertificate
from fleetpki.core.errors import StoreError
from fleetpki.store.api import AuditEvent, DiscoveredCertificates
from fleetpki.store.sql.schema import discovered_certificates
from fleetpki.store.sql.store import SqlStore

NOW = dt.datetime(2031, 5, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def found(host: str = "10.0.0.1", port: int = 443, *, name: str = "leaf", position: int = 0,
          not_after: dt.datetime = NOW + 90 * DAY, serial: int = 0x1F2E3D,
          ours: str | None = None) -> DiscoveredCertificate:
    der = f"der of {name}".encode()
    return DiscoveredCertificate(
        host=host, port=port, fingerprint=hashlib.sha256(der).hexdigest(), position=position,
        subject=f"CN={name}", issuer_name="CN=Some CA,O=Example", serial=serial,
        not_before=not_after - 365 * DAY, not_after=not_after, key_spec="ec-p256",
        signature_algorithm="ecdsa-with-SHA256", issued_by_us=ours, der=der)


def scanned(**details: str) -> AuditEvent:
    return AuditEvent(actor="operator:test", action="discovery.scanned", subject="10.0.0.0/30",
                      details=details)


def test_the_store_offers_the_protocol(store: SqlStore) -> None:
    offered: DiscoveredCertificates = store
    assert offered.list_discovered() == []


def test_a_finding_round_trips_with_its_times(store: SqlStore) -> None:
    made = found(ours="issuing")
    store.record_discovered([made], scanned(), at=NOW)
    [stored] = store.list_discovered()
    assert stored == dataclasses.replace(made, first_seen=NOW, last_seen=NOW)
    assert stored.not_after.utcoffset() == dt.timedelta(0)
    assert stored.endpoint == "10.0.0.1:443"


def test_a_rescan_moves_last_seen_and_position_and_keeps_first_seen(store: SqlStore) -> None:
    leaf, chain = found(), found(name="issuing", position=1)
    store.record_discovered([leaf, chain], scanned(), at=NOW)
    store.record_discovered([dataclasses.replace(chain, position=2, issued_by_us="root"), leaf],
                            scanned(), at=NOW + DAY)
    rows = store.list_discovered()
    assert len(rows) == 2
    by_name = {r.subject: r for r in rows}
    assert {(r.first_seen, r.last_seen) for r in rows} == {(NOW, NOW + DAY)}
    assert by_name["CN=issuing"].position == 2
    assert by_name["CN=issuing"].issued_by_us == "root"


def test_one_certificate_at_two_endpoints_is_two_rows(store: SqlStore) -> None:
    store.record_discovered([found("10.0.0.1"), found("10.0.0.2"), found("10.0.0.1", 8443)],
                            scanned(), at=NOW)
    assert sorted(r.endpoint for r in store.list_discovered()) == [
        "10.0.0.1:443", "10.0.0.1:8443", "10.0.0.2:443"]


def test_a_certificate_repeated_in_one_chain_is_one_row_at_its_first_position(
        store: SqlStore) -> None:
    store.record_discovered([found(position=2), found(position=0), found(position=1)],
                            scanned(), at=NOW)
    [row] = store.list_discovered()
    assert row.position == 0


def test_listed_soonest_to_expire_first_filtered_and_paged(store: SqlStore) -> None:
    store.record_discovered([
        found("10.0.0.1", name="late", not_after=NOW + 300 * DAY),
        found("10.0.0.2", name="soon", not_after=NOW + 5 * DAY),
        found("::1", name="gone", not_after=NOW - DAY),
        found("10.0.0.1", name="mid", not_after=NOW + 40 * DAY, position=1),
    ], scanned(), at=NOW)
    assert [r.subject for r in store.list_discovered()] == [
        "CN=gone", "CN=soon", "CN=mid", "CN=late"]
    assert [r.subject for r in store.list_discovered(host="10.0.0.1")] == ["CN=mid", "CN=late"]
    assert [r.subject for r in store.list_discovered(expiring_before=NOW + 30 * DAY)] == [
        "CN=gone", "CN=soon"]
    assert [r.subject for r in store.list_discovered(limit=2, offset=1)] == [
        "CN=soon", "CN=mid"]
    assert store.list_discovered(host="10.9.9.9") == []
    assert store.list_discovered(host="::1")[0].endpoint == "[::1]:443"


def test_each_scan_is_audited_with_its_rows_even_an_empty_one(store: SqlStore) -> None:
    before = store.audit_head()[0]
    store.record_discovered([found()], scanned(answered="1", recorded="1"), at=NOW)
    store.record_discovered([], scanned(answered="0", recorded="0"), at=NOW + DAY)
    entries = list(store.audit_entries(since_seq=before + 1))
    assert [(e.action, e.subject, e.at) for e in entries] == [
        ("discovery.scanned", "10.0.0.0/30", NOW), ("discovery.scanned", "10.0.0.0/30", NOW + DAY)]
    assert entries[0].details == {"answered": "1", "recorded": "1"}


def test_a_refused_write_leaves_no_rows_and_no_audit_entry(store: SqlStore) -> None:
    """A finding the table cannot hold (no host) fails the whole scan's transaction."""
    head = store.audit_head()
    bad = dataclasses.replace(found(), host=None)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="database error"):
        store.record_discovered([found("10.0.0.5"), bad], scanned(), at=NOW)
    assert store.audit_head() == head
    assert store.list_discovered() == []


def test_a_serial_longer_than_20_octets_keeps_its_first_40_digits(store: SqlStore) -> None:
    long_serial = int("ab" * 25, 16)
    store.record_discovered([found(serial=long_serial)], scanned(), at=NOW)
    [row] = store.list_discovered()
    assert format(row.serial, "x") == "ab" * 20


def test_the_migrated_table_matches_the_query_definition(store: SqlStore) -> None:
    """Queries use schema.py's Table; the database has what the migration made."""
    engine = sa.create_engine(store.url)
    try:
        columns = sa.inspect(engine).get_columns("discovered_certificates")
        primary = sa.inspect(engine).get_pk_constraint("discovered_certificates")
    finally:
        engine.dispose()
    assert {c["name"]: c["nullable"] for c in columns} == {
        c.name: c.nullable for c in discovered_certificates.columns}
    assert sorted(primary["constrained_columns"]) == ["fingerprint", "host", "port"]
