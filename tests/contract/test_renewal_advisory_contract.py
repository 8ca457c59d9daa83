"""Renewal advisories behave the same on SQLite and PostgreSQL: listed oldest first, withdrawn
once, and every change audited in its own transaction, a refused one not at all."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
import sqlalchemy as sa

from fleetpki.core.errors import Conflict, NotFound
from fleetpki.core.renewal_window import RenewalAdvisory
from fleetpki.store.api import AuditEvent
from fleetpki.store.sql.schema import renewal_advisories
from fleetpki.store.sql.store import SqlStore

NOW = dt.datetime(2031, 5, 1, 12, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def advisory(advisory_id: str = "ra-1", profile: str = "sensor",
             created_at: dt.datetime = NOW) -> RenewalAdvisory:
    return RenewalAdvisory(id=advisory_id, profile=profile, issued_before=created_at,
                           start=created_at, end=created_at + 72 * HOUR,
                           explanation="issuing key moved to the HSM", created_at=created_at,
                           created_by="operator:test")


def event(action: str = "renewal.advised", subject: str = "ra-1") -> AuditEvent:
    return AuditEvent(actor="operator:test", action=action, subject=subject)


def test_an_advisory_round_trips_with_aware_utc_times(store: SqlStore) -> None:
    local = dt.timezone(dt.timedelta(hours=2))
    made = dataclasses.replace(advisory(), start=NOW.astimezone(local))
    store.add_advisory(made, event(), at=NOW)
    [stored] = store.list_advisories()
    assert stored == made
    assert stored.start.utcoffset() == dt.timedelta(0)


def test_listed_oldest_first_and_filtered_by_profile(store: SqlStore) -> None:
    store.add_advisory(advisory("ra-b", "sensor", NOW + HOUR), event(), at=NOW)
    store.add_advisory(advisory("ra-a", "gateway", NOW + 2 * HOUR), event(), at=NOW)
    store.add_advisory(advisory("ra-c", "sensor", NOW), event(), at=NOW)
    assert [a.id for a in store.list_advisories()] == ["ra-c", "ra-b", "ra-a"]
    assert [a.id for a in store.list_advisories(profile="sensor")] == ["ra-c", "ra-b"]
    assert store.list_advisories(profile="camera") == []


def test_a_duplicate_id_is_a_conflict_that_writes_nothing(store: SqlStore) -> None:
    store.add_advisory(advisory(), event(), at=NOW)
    head = store.audit_head()
    with pytest.raises(Conflict, match="already exists"):
        store.add_advisory(advisory(profile="gateway"), event(), at=NOW)
    assert store.audit_head() == head
    assert [a.profile for a in store.list_advisories()] == ["sensor"]


def test_withdraw_sets_the_time_audits_and_hides_it_by_default(store: SqlStore) -> None:
    store.add_advisory(advisory(), event(), at=NOW)
    head = store.audit_head()[0]
    withdrawn = store.withdraw_advisory("ra-1", event("renewal.withdrawn"), at=NOW + HOUR)
    assert withdrawn == dataclasses.replace(advisory(), withdrawn_at=NOW + HOUR)
    assert store.list_advisories() == []
    assert store.list_advisories(include_withdrawn=True) == [withdrawn]
    [entry] = list(store.audit_entries(since_seq=head + 1))
    assert (entry.action, entry.subject, entry.at) == ("renewal.withdrawn", "ra-1", NOW + HOUR)


def test_withdrawing_twice_is_a_conflict_that_writes_nothing(store: SqlStore) -> None:
    store.add_advisory(advisory(), event(), at=NOW)
    store.withdraw_advisory("ra-1", event("renewal.withdrawn"), at=NOW + HOUR)
    head = store.audit_head()
    with pytest.raises(Conflict, match="already withdrawn"):
        store.withdraw_advisory("ra-1", event("renewal.withdrawn"), at=NOW + 2 * HOUR)
    assert store.audit_head() == head
    [kept] = store.list_advisories(include_withdrawn=True)
    assert kept.withdrawn_at == NOW + HOUR


def test_withdrawing_an_unknown_id_is_not_found_and_writes_nothing(store: SqlStore) -> None:
    head = store.audit_head()
    with pytest.raises(NotFound, match="ra-none"):
        store.withdraw_advisory("ra-none", event("renewal.withdrawn", "ra-none"), at=NOW)
    assert store.audit_head() == head


def test_every_change_is_audited_with_its_event(store: SqlStore) -> None:
    before = store.audit_head()[0]
    store.add_advisory(advisory(), event(), at=NOW)
    store.withdraw_advisory("ra-1", event("renewal.withdrawn"), at=NOW + HOUR)
    assert [e.action for e in store.audit_entries(since_seq=before + 1)] == [
        "renewal.advised", "renewal.withdrawn"]


def test_the_migrated_table_matches_the_query_definition(store: SqlStore) -> None:
    """Queries use schema.py's Table; the database has what the migration made."""
    engine = sa.create_engine(store.url)
    try:
        columns = sa.inspect(engine).get_columns("renewal_advisories")
    finally:
        engine.dispose()
    migrated = {c["name"]: c["nullable"] for c in columns}
    assert migrated == {c.name: c.nullable for c in renewal_advisories.columns}
