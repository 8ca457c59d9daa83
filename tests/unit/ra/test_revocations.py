"""The RA's revocation desk: by serial, by device, holds, and when CRLs are re-signed at once."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from tests.support.ca_store import store_with_cas
from tests.unit.revocation.test_crl_publisher import profile

from fleetpki.core.clock import FakeClock
from fleetpki.core.errors import BadInput, Conflict, NotFound
from fleetpki.core.profile import Profile
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import IssuedCertificate
from fleetpki.core.revocation_policy import RevocationPolicy
from fleetpki.ra.api import Authorization
from fleetpki.ra.revocations import RevocationDesk
from fleetpki.store.api import SerialReservation
from fleetpki.store.sql.store import SqlStore

NOW = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
OPERATOR = Authorization(actor="operator:test")


@dataclasses.dataclass
class Desk:
    desk: RevocationDesk
    store: SqlStore
    published: list[IssuedCertificate]

    def issue(self, serial: int, device: str, profile_name: str = "plain",
              not_after: dt.datetime = NOW + 30 * DAY,
              not_before: dt.datetime = NOW - DAY) -> None:
        record = IssuedCertificate(
            serial=serial, issuer="issuing", device_id=device, profile=profile_name,
            subject=f"CN={device}", sans=(), key_spec="ec-p256", key_fingerprint=f"{serial:064x}",
            not_before=not_before, not_after=not_after, issued_at=NOW, der=b"\x30\x00")
        self.store.reserve_serials([SerialReservation("issuing", serial, device, profile_name)],
                                   at=NOW)
        self.store.record_issued([record], [], [], at=NOW)


@pytest.fixture
def desk(tmp_path: Path) -> Desk:
    store, _ = store_with_cas(tmp_path, NOW - 10 * DAY)
    profiles: dict[str, Profile] = {"plain": profile("plain"),
                                    "urgent": profile("urgent", publish_on_revoke=True)}
    assert profiles["urgent"].revocation == RevocationPolicy(publish_on_revoke=True)
    published: list[IssuedCertificate] = []
    return Desk(RevocationDesk(store, store, profiles, FakeClock(NOW), OPERATOR,
                               published.append), store, published)


def test_revoke_records_reason_and_invalidity_date(desk: Desk) -> None:
    desk.issue(1, "d1")
    revoked = desk.desk.revoke(1, RevocationReason.key_compromise,
                               invalidity_date=NOW - DAY)
    assert (revoked.revoked_at, revoked.revocation_reason, revoked.invalidity_date) == (
        NOW, RevocationReason.key_compromise, NOW - DAY)


def test_an_invalidity_date_before_a_certificate_existed_becomes_its_not_before(
        desk: Desk) -> None:
    desk.issue(1, "d1")  # valid from NOW - DAY
    revoked = desk.desk.revoke(1, RevocationReason.key_compromise,
                               invalidity_date=dt.datetime(1, 1, 1, tzinfo=dt.UTC))
    assert revoked.invalidity_date == NOW - DAY
    entry = list(desk.store.audit_entries())[-1]
    assert entry.details["invalidity_date"] == (NOW - DAY).isoformat()
    assert entry.details["invalidity_date_given"].startswith("0001-01-01")


def test_a_device_wide_invalidity_date_is_kept_where_it_falls_inside_a_certificate(
        desk: Desk) -> None:
    desk.issue(1, "d1", not_before=NOW - 9 * DAY)
    desk.issue(2, "d1", not_before=NOW - DAY, not_after=NOW + 60 * DAY)  # its renewal
    revoked = desk.desk.revoke_device("d1", RevocationReason.key_compromise,
                                      invalidity_date=NOW - 3 * DAY)
    assert {r.serial: r.invalidity_date for r in revoked} == {1: NOW - 3 * DAY, 2: NOW - DAY}


def test_an_invalidity_date_in_the_future_is_refused_and_nothing_changes(desk: Desk) -> None:
    desk.issue(1, "d1")
    with pytest.raises(BadInput, match="future"):
        desk.desk.revoke(1, RevocationReason.key_compromise, invalidity_date=NOW + DAY)
    assert desk.store.revocation_seq("issuing") == 0


def test_revoking_twice_is_a_conflict_that_changes_nothing(desk: Desk) -> None:
    desk.issue(1, "d1")
    desk.desk.revoke(1, RevocationReason.superseded)
    with pytest.raises(Conflict, match="already revoked"):
        desk.desk.revoke(1, RevocationReason.key_compromise)
    assert desk.store.get_certificate(1).revocation_reason is (  # type: ignore[union-attr]
        RevocationReason.superseded)


def test_revoke_device_takes_every_valid_certificate_of_the_device(desk: Desk) -> None:
    desk.issue(1, "d1")
    desk.issue(2, "d1", "urgent")
    desk.issue(3, "d1", not_after=NOW - DAY)  # expired: nothing to revoke
    desk.issue(4, "d2")

    revoked = desk.desk.revoke_device("d1", RevocationReason.cessation_of_operation)

    assert sorted(r.serial for r in revoked) == [1, 2]
    assert desk.store.get_certificate(4).revoked_at is None  # type: ignore[union-attr]
    with pytest.raises(NotFound, match="no valid certificate"):
        desk.desk.revoke_device("d1", RevocationReason.superseded)


def test_only_profiles_that_ask_trigger_an_immediate_publication(desk: Desk) -> None:
    desk.issue(1, "d1")
    desk.issue(2, "d2", "urgent")
    desk.desk.revoke(1, RevocationReason.superseded)
    desk.desk.revoke(2, RevocationReason.certificate_hold)
    desk.desk.release_hold(2)
    assert [r.serial for r in desk.published] == [2, 2]


def test_a_crl_that_cannot_be_signed_leaves_no_device_half_revoked(tmp_path: Path) -> None:
    store, _ = store_with_cas(tmp_path, NOW - 10 * DAY)
    attempts: list[int] = []

    def failing(record: IssuedCertificate) -> None:
        attempts.append(record.serial)
        raise BadInput("cannot decrypt the key: wrong passphrase")

    desk = Desk(RevocationDesk(store, store, {"urgent": profile("urgent",
                                                              publish_on_revoke=True)},
                               FakeClock(NOW), OPERATOR, failing), store, [])
    for serial in (1, 2, 3):
        desk.issue(serial, "d1", "urgent")

    revoked = desk.desk.revoke_device("d1", RevocationReason.key_compromise)

    assert sorted(r.serial for r in revoked) == [1, 2, 3]
    assert all(store.get_certificate(s).revoked_at == NOW  # type: ignore[union-attr]
               for s in (1, 2, 3))
    assert len(attempts) == 1  # one CRL scope, tried once
    [failure] = desk.desk.publish_failures
    assert "is revoked" in failure and "wrong passphrase" in failure
    assert "fleetpki crl publish" in failure


def test_unknown_serials_are_not_found(desk: Desk) -> None:
    with pytest.raises(NotFound):
        desk.desk.revoke(99, RevocationReason.superseded)
    with pytest.raises(NotFound):
        desk.desk.release_hold(99)
