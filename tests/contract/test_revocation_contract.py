"""The revocation half of the store contract: holds, change sequence for delta CRLs, streamed
CRL entries, CRL series state and OCSP status lookups, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from tests.contract.test_store_contract import (
    DAY,
    ISSUING,
    NOW,
    OTHER,
    cert,
    event,
    head_seq,
    inject_audit_row,
    issue,
    with_cas,
)

from fleetpki.core.errors import Conflict, NotFound, StoreError
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import RevocationStatus, RevokedEntry
from fleetpki.store.api import CrlPublication, RevokedQuery
from fleetpki.store.sql.store import SqlStore

HOLD = RevocationReason.certificate_hold


def revoke(store: SqlStore, serial: int, reason: RevocationReason = RevocationReason.superseded,
           *, issuer: str = ISSUING, at: dt.datetime = NOW,
           invalidity: dt.datetime | None = None) -> None:
    store.revoke(issuer, serial, reason, at=at, event=event("certificate.revoked"),
                 invalidity_date=invalidity)


def entries(store: SqlStore, **criteria: object) -> dict[int, RevokedEntry]:
    query = RevokedQuery(**{"issuer": ISSUING, "valid_at": NOW, "expired_cutoff": NOW,  # type: ignore[arg-type]
                            **criteria})
    return {e.serial: e for e in store.revoked_entries(query)}


def test_each_revocation_change_advances_the_issuers_sequence(store: SqlStore) -> None:
    with_cas(store, ISSUING, OTHER)
    issue(store, cert(1), cert(2), cert(3, issuer=OTHER))
    assert store.revocation_seq(ISSUING) == 0

    revoke(store, 1)
    revoke(store, 2, HOLD)
    store.release_hold(ISSUING, 2, at=NOW, event=event())

    assert store.revocation_seq(ISSUING) == 3
    assert store.revocation_seq(OTHER) == 0
    with pytest.raises(NotFound):
        store.revocation_seq("nope")


def test_full_entries_carry_reason_time_and_invalidity_date(store: SqlStore) -> None:
    with_cas(store)
    issue(store, cert(1), cert(2), cert(3))
    compromised = NOW - 3 * DAY
    revoke(store, 1, RevocationReason.key_compromise, invalidity=compromised)
    revoke(store, 2, RevocationReason.unspecified)

    found = entries(store)

    assert found == {
        1: RevokedEntry(1, NOW, RevocationReason.key_compromise, compromised),
        2: RevokedEntry(2, NOW, RevocationReason.unspecified),
    }
    assert store.get_certificate(1).invalidity_date == compromised  # type: ignore[union-attr]


def test_expired_entries_drop_off_unless_their_profile_keeps_them(store: SqlStore) -> None:
    with_cas(store)
    issue(store, cert(1, not_after=NOW - DAY), cert(2, not_after=NOW - DAY, profile="kept"),
          cert(3))
    for serial in (1, 2, 3):
        revoke(store, serial, at=NOW - 2 * DAY)

    assert set(entries(store)) == {3}
    assert set(entries(store, keep_expired=frozenset({"kept"}))) == {2, 3}
    # Still listed while they expired after the cutoff (one more CRL after expiry).
    assert set(entries(store, expired_cutoff=NOW - 2 * DAY)) == {1, 2, 3}


def test_a_partition_lists_only_its_profile_and_shard(store: SqlStore) -> None:
    with_cas(store)
    sharded = [dataclasses.replace(cert(n, profile="meter"), crl_shard=n % 2) for n in (1, 2, 3)]
    issue(store, *sharded, cert(4))
    for serial in (1, 2, 3, 4):
        revoke(store, serial)

    assert set(entries(store)) == {1, 2, 3, 4}
    assert set(entries(store, profile="meter", shard=1)) == {1, 3}
    assert set(entries(store, profile="meter", shard=0)) == {2}
    assert store.get_certificate(3).crl_shard == 1  # type: ignore[union-attr]


def test_a_delta_lists_changes_after_the_watermark_and_lifted_holds_as_removals(
        store: SqlStore) -> None:
    with_cas(store)
    issue(store, cert(1), cert(2), cert(3))
    revoke(store, 1)
    revoke(store, 2, HOLD)
    watermark = store.revocation_seq(ISSUING)
    revoke(store, 3, RevocationReason.key_compromise)
    store.release_hold(ISSUING, 2, at=NOW + DAY, event=event())

    delta = entries(store, changed_after=watermark, valid_at=NOW + DAY)

    assert set(delta) == {2, 3}
    assert delta[3].reason is RevocationReason.key_compromise and not delta[3].removed
    assert delta[2].removed and delta[2].reason is None
    assert set(entries(store)) == {1, 3}  # the hold is gone from the full list


def test_release_hold_restores_the_certificate_and_audits(store: SqlStore) -> None:
    with_cas(store)
    issue(store, cert(1))
    revoke(store, 1, HOLD)
    before = head_seq(store)

    released = store.release_hold(ISSUING, 1, at=NOW + DAY,
                                  event=event("certificate.hold_released"))

    assert released.revoked_at is None and released.revocation_reason is None
    assert [e.action for e in store.audit_entries(since_seq=before + 1)] == [
        "certificate.hold_released"]


def test_a_hold_can_become_a_revocation_for_good_with_a_new_change(store: SqlStore) -> None:
    with_cas(store)
    issue(store, cert(1))
    revoke(store, 1, HOLD)
    watermark = store.revocation_seq(ISSUING)

    revoke(store, 1, RevocationReason.key_compromise, at=NOW + DAY, invalidity=NOW)

    assert entries(store, changed_after=watermark)[1] == RevokedEntry(
        1, NOW + DAY, RevocationReason.key_compromise, NOW)
    with pytest.raises(Conflict, match="already revoked"):
        revoke(store, 1, HOLD)
    with pytest.raises(Conflict, match="already revoked"):
        revoke(store, 1, RevocationReason.superseded)


def test_a_hold_is_not_placed_twice(store: SqlStore) -> None:
    with_cas(store)
    issue(store, cert(1))
    revoke(store, 1, HOLD)
    with pytest.raises(Conflict, match="already revoked"):
        revoke(store, 1, HOLD)
    assert store.revocation_seq(ISSUING) == 1


def test_only_a_hold_can_be_released(store: SqlStore) -> None:
    with_cas(store)
    issue(store, cert(1), cert(2))
    revoke(store, 1, RevocationReason.key_compromise)
    head = store.audit_head()

    with pytest.raises(Conflict, match="not on hold"):
        store.release_hold(ISSUING, 1, at=NOW, event=event())
    with pytest.raises(Conflict, match="not on hold"):
        store.release_hold(ISSUING, 2, at=NOW, event=event())
    with pytest.raises(NotFound):
        store.release_hold(ISSUING, 9, at=NOW, event=event())

    assert store.audit_head() == head
    assert store.revocation_seq(ISSUING) == 1


def test_a_failed_audit_append_leaves_no_revocation_and_no_sequence_step(
        store: SqlStore) -> None:
    with_cas(store)
    issue(store, cert(1))
    inject_audit_row(store, head_seq(store) + 1)

    with pytest.raises(StoreError):
        revoke(store, 1)

    assert store.revocation_seq(ISSUING) == 0
    assert entries(store) == {}


def test_crl_series_state_is_replaced_per_scope_and_kind(store: SqlStore) -> None:
    with_cas(store)
    first = CrlPublication(issuer=ISSUING, scope="", kind="full", number=1, this_update=NOW,
                           next_update=NOW + 7 * DAY, watermark=0, entries=0, size=200)
    delta = CrlPublication(issuer=ISSUING, scope="", kind="delta", number=2, this_update=NOW,
                           next_update=NOW + DAY, watermark=1, entries=1, size=120,
                           base_number=1, base_watermark=0)
    shard = dataclasses.replace(first, scope="meter/3", number=3)
    for publication in (first, delta, shard):
        store.record_crl(publication, event("crl.signed"), at=NOW)
    second = dataclasses.replace(first, number=4, watermark=2, entries=2, size=260)
    store.record_crl(second, event("crl.signed"), at=NOW)

    found = {(p.scope, p.kind): p for p in store.crl_publications(ISSUING)}

    assert found == {("", "full"): second, ("", "delta"): delta, ("meter/3", "full"): shard}
    assert store.crl_publications(OTHER) == []


def test_certificate_status_answers_for_one_issuer_and_serial(store: SqlStore) -> None:
    with_cas(store, ISSUING, OTHER)
    issue(store, cert(1), cert(2))
    revoke(store, 2, RevocationReason.key_compromise, invalidity=NOW - DAY)

    assert store.certificate_status(ISSUING, 1) == RevocationStatus(1, cert(1).not_after)
    assert store.certificate_status(ISSUING, 2) == RevocationStatus(
        2, cert(2).not_after, NOW, RevocationReason.key_compromise, NOW - DAY)
    assert store.certificate_status(OTHER, 1) is None
    assert store.certificate_status(ISSUING, 3) is None
