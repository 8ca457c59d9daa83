"""Static challenges and protocol transactions behave the same on SQLite and PostgreSQL: a
challenge change is audited with it, a transaction name is reserved once even under races,
and only an undecided reservation whose process died is ever replaced."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import fleetpki.store.migrations as migrations
from fleetpki.core.enrollment_records import (
    EnrollmentChallenge,
    EnrollmentTransaction,
    PendingEnrollment,
)
from fleetpki.core.errors import NotFound
from fleetpki.store.api import AuditEvent, AuditQuery
from fleetpki.store.sql.schema import pending_enrollments
from fleetpki.store.sql.store import SqlStore

NOW = dt.datetime(2031, 5, 1, 12, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)
SERIAL = (1 << 126) | 0xABCDEF  # a full-size serial: 127 bits, as RandomSerials draws them


def challenge(profile: str = "sensor", secret_hash: str = "ab" * 32,
              at: dt.datetime = NOW) -> EnrollmentChallenge:
    return EnrollmentChallenge(profile=profile, secret_hash=secret_hash, created_at=at,
                               created_by="op")


def transaction(tid: str = "tx-1", key: str = "k" * 64, at: dt.datetime = NOW
                ) -> EnrollmentTransaction:
    return EnrollmentTransaction(protocol="scep", transaction_id=tid, profile="sensor",
                                 key_fingerprint=key, requester_fingerprint="r" * 64,
                                 request_fingerprint="q" * 64,
                                 created_at=at)


def event(action: str) -> AuditEvent:
    return AuditEvent(actor="op", action=action, subject="sensor")


# -- static challenges ------------------------------------------------------------------------

def test_challenge_is_set_replaced_listed_and_cleared(store: SqlStore) -> None:
    assert store.get_challenge("sensor") is None and store.list_challenges() == []
    store.set_challenge(challenge(), event("challenge.set"), at=NOW)
    store.set_challenge(challenge("camera"), event("challenge.set"), at=NOW)
    assert store.get_challenge("sensor") == challenge()
    replaced = challenge(secret_hash="cd" * 32, at=NOW + MINUTE)
    store.set_challenge(replaced, event("challenge.set"), at=NOW + MINUTE)
    assert store.get_challenge("sensor") == replaced
    assert store.list_challenges() == [challenge("camera"), replaced]  # by profile name
    store.clear_challenge("sensor", event("challenge.cleared"), at=NOW)
    assert store.get_challenge("sensor") is None
    assert store.list_challenges() == [challenge("camera")]


def test_clearing_a_missing_challenge_is_not_found_and_not_audited(store: SqlStore) -> None:
    before = store.audit_head()[0]
    with pytest.raises(NotFound, match="'sensor' has no static challenge"):
        store.clear_challenge("sensor", event("challenge.cleared"), at=NOW)
    assert store.audit_head()[0] == before


def test_challenge_changes_are_audited_with_them(store: SqlStore) -> None:
    store.set_challenge(challenge(), event("challenge.set"), at=NOW)
    store.set_challenge(challenge(), event("challenge.set"), at=NOW)
    store.clear_challenge("sensor", event("challenge.cleared"), at=NOW)
    actions = [e.action for e in store.audit_page(AuditQuery(subject="sensor"))]
    assert actions == ["challenge.cleared", "challenge.set", "challenge.set"]  # newest first


# -- protocol transactions --------------------------------------------------------------------

def test_reserve_records_a_new_transaction_and_returns_the_stored_one_after(
        store: SqlStore) -> None:
    assert store.reserve_transaction(transaction(), stale_before=NOW - MINUTE) is None
    assert store.get_transaction("scep", "tx-1") == transaction()
    again = transaction(key="x" * 64, at=NOW + MINUTE)
    assert store.reserve_transaction(again, stale_before=NOW - MINUTE) == transaction()
    assert store.get_transaction("scep", "tx-1") == transaction()  # left as it was
    assert store.get_transaction("scep", "tx-2") is None
    assert store.get_transaction("est", "tx-1") is None


def test_settle_records_held_then_issued(store: SqlStore) -> None:
    store.reserve_transaction(transaction(), stale_before=NOW)
    store.settle_transaction("scep", "tx-1", pending_id="p1")
    assert store.get_transaction("scep", "tx-1") == dataclasses.replace(
        transaction(), pending_id="p1")
    store.settle_transaction("scep", "tx-1", serial=SERIAL, issuer="issuing")
    assert store.get_transaction("scep", "tx-1") == dataclasses.replace(
        transaction(), pending_id="p1", serial=SERIAL, issuer="issuing")


def test_release_forgets_the_transaction(store: SqlStore) -> None:
    store.reserve_transaction(transaction(), stale_before=NOW)
    store.release_transaction("scep", "tx-1")
    assert store.get_transaction("scep", "tx-1") is None
    assert store.reserve_transaction(transaction(key="y" * 64), stale_before=NOW) is None


def test_stale_undecided_reservation_is_replaced(store: SqlStore) -> None:
    store.reserve_transaction(transaction(), stale_before=NOW - MINUTE)
    later = transaction(key="n" * 64, at=NOW + 10 * MINUTE)
    assert store.reserve_transaction(later, stale_before=NOW + 5 * MINUTE) is None
    assert store.get_transaction("scep", "tx-1") == later


def test_fresh_undecided_reservation_is_not_replaced(store: SqlStore) -> None:
    store.reserve_transaction(transaction(), stale_before=NOW - MINUTE)
    later = transaction(key="n" * 64, at=NOW + MINUTE)
    assert store.reserve_transaction(later, stale_before=NOW - MINUTE) == transaction()


@pytest.mark.parametrize("outcome", [{"pending_id": "p1"},
                                     {"serial": SERIAL, "issuer": "issuing"}])
def test_stale_settled_reservation_is_kept(store: SqlStore, outcome: dict[str, Any]) -> None:
    store.reserve_transaction(transaction(), stale_before=NOW - MINUTE)
    store.settle_transaction("scep", "tx-1", **outcome)
    settled = dataclasses.replace(transaction(), **outcome)
    later = transaction(key="n" * 64, at=NOW + 10 * MINUTE)
    assert store.reserve_transaction(later, stale_before=NOW + 5 * MINUTE) == settled
    assert store.get_transaction("scep", "tx-1") == settled


def test_prune_deletes_only_transactions_created_before(store: SqlStore) -> None:
    for n in range(3):
        store.reserve_transaction(transaction(f"old-{n}", at=NOW - 60 * MINUTE),
                                  stale_before=NOW - 120 * MINUTE)
    store.reserve_transaction(transaction("new"), stale_before=NOW - 120 * MINUTE)
    assert store.prune_transactions(NOW - MINUTE) == 3
    assert store.get_transaction("scep", "old-0") is None
    assert store.get_transaction("scep", "new") == transaction("new")
    assert store.prune_transactions(NOW - MINUTE) == 0


def _race(workers: int, attempt: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)


def test_racing_reservations_of_one_name_have_one_winner(store: SqlStore) -> None:
    results: list[EnrollmentTransaction | None] = []
    lock = threading.Lock()

    def reserve(n: int) -> None:
        got = store.reserve_transaction(transaction(key=f"{n:064x}"), stale_before=NOW - MINUTE)
        with lock:
            results.append(got)

    _race(8, reserve)
    assert len(results) == 8 and results.count(None) == 1
    stored = store.get_transaction("scep", "tx-1")
    assert stored is not None and all(r == stored for r in results if r is not None)


def test_racing_replacements_of_a_stale_reservation_have_one_winner(store: SqlStore) -> None:
    store.reserve_transaction(transaction(), stale_before=NOW - MINUTE)
    results: list[EnrollmentTransaction | None] = []
    lock = threading.Lock()

    def replace(n: int) -> None:
        fresh = transaction(key=f"{n:064x}", at=NOW + 10 * MINUTE)
        got = store.reserve_transaction(fresh, stale_before=NOW + 5 * MINUTE)
        with lock:
            results.append(got)

    _race(8, replace)
    assert len(results) == 8 and results.count(None) == 1
    stored = store.get_transaction("scep", "tx-1")
    assert stored is not None and stored.key_fingerprint != "k" * 64
    assert all(r == stored for r in results if r is not None)


def test_transactions_are_not_audited_on_their_own(store: SqlStore) -> None:
    before = store.audit_head()[0]
    store.reserve_transaction(transaction(), stale_before=NOW)
    store.settle_transaction("scep", "tx-1", pending_id="p1")
    store.release_transaction("scep", "tx-1")
    store.prune_transactions(NOW)
    assert store.audit_head()[0] == before


# -- enrollments on hold ----------------------------------------------------------------------

def pending(altered: bool) -> PendingEnrollment:
    return PendingEnrollment(id="p1", profile="held", device_id="gw-1", actor="challenge:held",
                             key_fingerprint="f" * 64, csr_der=b"csr", requested_at=NOW,
                             csr_altered=altered)


@pytest.mark.parametrize("altered", [True, False])
def test_pending_keeps_whether_its_csr_was_altered(store: SqlStore, altered: bool) -> None:
    store.add_pending(pending(altered), event("enrollment.held"), at=NOW)
    assert store.get_pending("p1") == pending(altered)
    assert store.find_pending("held", "f" * 64) == pending(altered)


def test_pending_held_before_the_migration_counts_as_unaltered(store_url: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    engine = sa.create_engine(store_url)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0006")
            # Every column but csr_altered, which revision 0006 does not have.
            connection.execute(pending_enrollments.insert().values(
                id="p1", profile="held", device_id="gw-1", actor="challenge:held",
                key_fingerprint="f" * 64, csr_der=b"csr", requested_at=NOW, state="pending",
                reason=""))
    finally:
        engine.dispose()
    migrated = SqlStore(store_url)
    try:
        held = migrated.get_pending("p1")
        assert held is not None and held.csr_altered is False
    finally:
        migrated.close()
