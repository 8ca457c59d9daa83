"""The CRL pipeline on a fake clock: what is due when, what each CRL says, and that every file
it writes is a valid CRL of the right scope (parsed back with cryptography)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtensionOID
from tests.support.ca_store import OneSigner, store_with_cas

from fleetpki.core.clock import FakeClock
from fleetpki.core.keys import KeyPolicy
from fleetpki.core.names import SanPolicy, SubjectPolicy
from fleetpki.core.profile import Profile, Urls, Validity
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import IssuedCertificate
from fleetpki.core.revocation_policy import CrlScope, RevocationPolicy
from fleetpki.revocation.crl_publisher import CrlPublisher, CrlTiming
from fleetpki.store.api import AuditEvent, SerialReservation
from fleetpki.store.sql.store import SqlStore

NOW = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
BASE = "http://pki.test/crl/issuing"
COMPLETE = CrlScope("issuing")
TIMING = CrlTiming(full_validity=7 * DAY, delta_validity=DAY)


def profile(name: str, **policy: object) -> Profile:
    revocation = RevocationPolicy(**policy)  # type: ignore[arg-type]
    sharded = revocation.sharded
    crl = f"{BASE}/{name}-{{shard}}.crl" if sharded else f"{BASE}.crl"
    delta = (f"{BASE}/{name}-{{shard}}-delta.crl" if sharded else f"{BASE}-delta.crl")
    return Profile(
        name=name, issuer="issuing", keys=KeyPolicy(allowed=frozenset({"ec-p256"})),
        validity=Validity(default=30 * DAY, maximum=30 * DAY), subject=SubjectPolicy(),
        san=SanPolicy(), key_usage=frozenset({"digitalSignature"}), extended_key_usage=(),
        urls=Urls(crl_distribution_points=(crl,),
                  freshest_crl=(delta,) if revocation.delta_crl else ()),
        revocation=revocation)


@dataclasses.dataclass
class Rig:
    store: SqlStore
    clock: FakeClock
    publisher: CrlPublisher
    directory: Path
    serial: int = 0

    def issue(self, profile: str = "plain", shard: int | None = None,
              not_after: dt.datetime | None = None) -> int:
        self.serial += 1
        serial = self.serial
        record = IssuedCertificate(
            serial=serial, issuer="issuing", device_id=f"d{serial}", profile=profile,
            subject=f"CN=d{serial}", sans=(), key_spec="ec-p256", key_fingerprint=f"{serial:064x}",
            not_before=NOW - DAY, not_after=not_after or NOW + 30 * DAY, issued_at=NOW,
            der=b"\x30\x00", crl_shard=shard)
        self.store.reserve_serials([SerialReservation("issuing", serial, record.device_id,
                                                      profile)], at=NOW)
        self.store.record_issued([record], [], [], at=NOW)
        return serial

    def revoke(self, serial: int, reason: RevocationReason = RevocationReason.superseded
               ) -> None:
        self.store.revoke("issuing", serial, reason, at=self.clock.now(),
                          event=AuditEvent("t", "certificate.revoked", str(serial)))

    def crl(self, scope: CrlScope = COMPLETE, *, delta: bool = False
            ) -> x509.CertificateRevocationList:
        return x509.load_der_x509_crl((self.directory / scope.file_name(delta=delta))
                                      .read_bytes())


def serials(crl: x509.CertificateRevocationList) -> set[int]:
    return {entry.serial_number for entry in crl}


def make_rig(directory: Path, *extra: Profile) -> Rig:
    store, signer = store_with_cas(directory, NOW - 10 * DAY)
    clock = FakeClock(NOW)
    profiles = {p.name: p for p in (profile("plain", delta_crl=True),
                                    profile("meter", crl_shards=4, delta_crl=True),
                                    profile("kept", keep_expired=True), *extra)}
    publisher = CrlPublisher(store, store, OneSigner(signer), profiles, directory / "crl", clock,
                             TIMING, actor="test")
    return Rig(store, clock, publisher, directory / "crl")


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return make_rig(tmp_path)


@pytest.fixture
def urgent_rig(tmp_path: Path) -> Rig:
    """One more profile of the same CA, which asks for CRLs re-signed at each revocation."""
    return make_rig(tmp_path, profile("urgent", publish_on_revoke=True))


def test_first_run_signs_every_series_and_a_second_run_signs_nothing(rig: Rig) -> None:
    first = rig.publisher.publish()
    # complete + its delta, and four shards each with its delta
    assert len(first) == 10
    assert {p.kind for p in first} == {"full", "delta"}
    assert rig.publisher.publish() == []
    numbers = [p.number for p in first]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


def test_complete_crl_lists_every_profile_and_points_at_its_delta(rig: Rig) -> None:
    plain, meter = rig.issue(), rig.issue("meter", shard=2)
    rig.issue()
    rig.revoke(plain, RevocationReason.key_compromise)
    rig.revoke(meter)
    rig.publisher.publish()

    crl = rig.crl()
    assert serials(crl) == {plain, meter}
    freshest = crl.extensions.get_extension_for_class(x509.FreshestCRL).value
    assert freshest[0].full_name == [x509.UniformResourceIdentifier(f"{BASE}-delta.crl")]
    with pytest.raises(x509.ExtensionNotFound):
        crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    reason = crl.get_revoked_certificate_by_serial_number(plain).extensions  # type: ignore[union-attr]
    assert reason.get_extension_for_class(x509.CRLReason).value.reason is (
        x509.ReasonFlags.key_compromise)


def test_a_shard_lists_only_its_own_and_names_its_url(rig: Rig) -> None:
    in_two, in_three = rig.issue("meter", shard=2), rig.issue("meter", shard=3)
    rig.revoke(in_two)
    rig.revoke(in_three)
    rig.publisher.publish()

    shard = rig.crl(CrlScope("issuing", "meter", 2))
    assert serials(shard) == {in_two}
    idp = shard.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical
    assert idp.value.full_name == [x509.UniformResourceIdentifier(f"{BASE}/meter-2.crl")]
    assert idp.value.only_contains_user_certs


def test_a_delta_lists_what_changed_since_its_base_and_removes_lifted_holds(rig: Rig) -> None:
    early, held, late = rig.issue(), rig.issue(), rig.issue()
    rig.revoke(early)
    rig.revoke(held, RevocationReason.certificate_hold)
    rig.publisher.publish()
    base = rig.crl()
    assert serials(rig.crl(delta=True)) == set()

    rig.clock.advance(dt.timedelta(minutes=5))
    rig.revoke(late)
    rig.store.release_hold("issuing", held, at=rig.clock.now(),
                           event=AuditEvent("t", "certificate.hold_released", "x"))
    written = rig.publisher.publish()

    assert [(p.scope.key, p.kind) for p in written] == [("", "delta")]
    delta = rig.crl(delta=True)
    indicator = delta.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
    base_number = base.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert indicator.critical and indicator.value.crl_number == base_number
    assert serials(delta) == {late, held}
    removed = delta.get_revoked_certificate_by_serial_number(held)
    assert removed is not None
    assert removed.extensions.get_extension_for_class(x509.CRLReason).value.reason is (
        x509.ReasonFlags.remove_from_crl)


def test_the_full_crl_is_resigned_after_half_its_validity(rig: Rig) -> None:
    rig.publisher.publish()
    rig.clock.advance(3 * DAY)
    assert {p.kind for p in rig.publisher.publish()} == {"delta"}  # deltas live one day
    rig.clock.advance(DAY)  # 4 days: past half of 7
    again = rig.publisher.publish()
    assert {p.scope.key for p in again if p.kind == "full"} == {
        "", "meter/0", "meter/1", "meter/2", "meter/3"}
    assert rig.crl().next_update_utc == rig.clock.now() + 7 * DAY


def test_a_missing_file_is_written_again(rig: Rig) -> None:
    rig.publisher.publish()
    (rig.directory / "issuing.crl").unlink()
    assert [(p.scope.key, p.kind) for p in rig.publisher.publish()] == [("", "full"),
                                                                       ("", "delta")]


def test_expired_entries_drop_off_unless_kept(rig: Rig) -> None:
    soon = NOW + DAY
    gone, kept = rig.issue(not_after=soon), rig.issue("kept", not_after=soon)
    rig.revoke(gone)
    rig.revoke(kept)
    rig.clock.advance(2 * DAY)
    rig.publisher.publish(force=True)
    # RFC 5280 §3.3: listed on (at least) one CRL issued after the certificate expired.
    assert serials(rig.crl()) == {gone, kept}

    rig.clock.advance(7 * DAY)
    rig.publisher.publish(force=True)
    crl = rig.crl()
    assert serials(crl) == {kept}
    # Not every profile of this CA keeps expired entries: the CRL must not claim it.
    with pytest.raises(x509.ExtensionNotFound):
        crl.extensions.get_extension_for_oid(x509.ObjectIdentifier("2.5.29.60"))


def test_publish_on_revoke_resigns_only_the_series_listing_the_certificate(urgent_rig: Rig
                                                                           ) -> None:
    rig = urgent_rig
    rig.publisher.publish()
    urgent = rig.issue("urgent")
    rig.revoke(urgent)
    record = rig.store.get_certificate(urgent)
    assert record is not None

    written = rig.publisher.publish_after_revocation(record)

    assert {(p.scope.key, p.kind) for p in written} == {("", "full"), ("", "delta")}
    assert urgent in serials(rig.crl())


def test_a_revocation_waits_for_the_schedule_unless_a_profile_asks(rig: Rig, tmp_path: Path
                                                                   ) -> None:
    rig.publisher.publish()
    rig.revoke(rig.issue("plain"))
    assert [p.kind for p in rig.publisher.publish()] == ["delta"]  # full waits for its time

    (tmp_path / "urgent").mkdir()
    urgent = make_rig(tmp_path / "urgent", profile("urgent", publish_on_revoke=True))
    urgent.publisher.publish()
    urgent.revoke(urgent.issue("urgent"))
    # The complete CRL covers the urgent profile too, so it is re-signed along with its delta.
    assert {p.kind for p in urgent.publisher.publish()} == {"full", "delta"}


def test_every_crl_records_its_series_state_and_an_audit_entry(rig: Rig) -> None:
    head = rig.store.audit_head()[0]
    written = rig.publisher.publish()
    state = {(p.scope, p.kind): p for p in rig.store.crl_publications("issuing")}
    for published in written:
        recorded = state[(published.scope.key, published.kind)]
        assert (recorded.number, recorded.size) == (published.number, published.size)
    actions = [e.action for e in rig.store.audit_entries(since_seq=head + 1)]
    assert sorted(set(actions)) == ["crl.delta_signed", "crl.full_signed"]
    assert len(actions) == len(written)


def test_the_delta_extension_oid_is_what_relying_parties_look_for(rig: Rig) -> None:
    rig.publisher.publish()
    delta = rig.crl(delta=True)
    assert delta.extensions.get_extension_for_oid(ExtensionOID.DELTA_CRL_INDICATOR).critical
