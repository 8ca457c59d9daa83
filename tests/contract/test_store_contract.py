"""The store contract (store/api.py), proven against SQLite and PostgreSQL alike.

Every test takes the ``store`` fixture (tests/contract/conftest.py), so it runs once per backend
on a fresh, empty database. Tests assert outcomes a caller can observe through the store's own
API; only the two fault-injection tests reach into the schema, to make a write fail half-way.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from fleetpki.core.audit_chain import GENESIS, canonical_details, entry_hash, verify_chain
from fleetpki.core.errors import Conflict, FleetPKIError, NotFound, StoreError
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import CARecord, CARole, CertificateStatus, IssuedCertificate
from fleetpki.store.api import AuditEvent, CertificateQuery, SerialCollision, SerialReservation
from fleetpki.store.sql import name_search, schema
from fleetpki.store.sql.store import _AUDIT_PAGE, SqlStore

# Microseconds on purpose: both backends must keep them.
T0 = dt.datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
NOW = T0 + dt.timedelta(days=30)
DAY = dt.timedelta(days=1)

ROOT = "root"
ISSUING = "issuing"
OTHER = "issuing-2"


# -- builders ---------------------------------------------------------------------------------


def ca_record(name: str, *, role: CARole = CARole.issuing, parent: str | None = ROOT,
              key_file: str | None = None, created_at: dt.datetime = T0,
              imported: bool = False) -> CARecord:
    return CARecord(
        name=name, role=role, certificate_der=b"\x30\x82\x00\x00" + name.encode() + b"\x00\xff",
        parent=parent, key_file=key_file if key_file is not None else f"/keys/{name}.pem",
        created_at=created_at, imported=imported,
    )


def event(action: str = "test.event", subject: str = "s", *, actor: str = "tester",
          details: dict[str, str] | None = None) -> AuditEvent:
    return AuditEvent(actor=actor, action=action, subject=subject, details=details or {})


def cert(serial: int, *, issuer: str = ISSUING, device_id: str = "dev-1",
         profile: str = "device", subject: str | None = None,
         sans: tuple[str, ...] | None = None, key_spec: str = "ec-p256",
         not_after: dt.datetime | None = None, issued_at: dt.datetime = T0) -> IssuedCertificate:
    return IssuedCertificate(
        serial=serial, issuer=issuer, device_id=device_id, profile=profile,
        subject=subject if subject is not None else f"CN={device_id},O=Fleet",
        sans=sans if sans is not None else (f"dns:{device_id}.fleet.example",),
        key_spec=key_spec, key_fingerprint=f"{serial:064x}"[-64:],
        not_before=issued_at - dt.timedelta(minutes=5),
        not_after=not_after if not_after is not None else NOW + 365 * DAY,
        issued_at=issued_at,
        der=b"\x30\x82" + serial.to_bytes(21, "big") + b"\x00\x01\xfe\xff",
    )


def reservation(c: IssuedCertificate) -> SerialReservation:
    return SerialReservation(issuer=c.issuer, serial=c.serial, device_id=c.device_id,
                             profile=c.profile)


def with_cas(store: SqlStore, *names: str) -> None:
    """A root plus the named issuing CAs (default: one issuing CA)."""
    store.add_ca(ca_record(ROOT, role=CARole.root, parent=None), event("ca.created", ROOT),
                 at=T0)
    for offset, name in enumerate(names or (ISSUING,), start=1):
        store.add_ca(ca_record(name, created_at=T0 + offset * DAY), event("ca.created", name),
                     at=T0)


def issue(store: SqlStore, *certs: IssuedCertificate,
          events: Sequence[AuditEvent] = ()) -> None:
    """Reserve then record, as the RA does."""
    store.reserve_serials([reservation(c) for c in certs], at=T0)
    store.record_issued(certs, [], events, at=T0)


def head_seq(store: SqlStore) -> int:
    return store.audit_head()[0]


def serials_of(found: Sequence[IssuedCertificate]) -> list[int]:
    return [c.serial for c in found]


def find(store: SqlStore, now: dt.datetime = NOW, **criteria: object) -> list[int]:
    return serials_of(store.find_certificates(CertificateQuery(**criteria),  # type: ignore[arg-type]
                                              now=now))


def inject_audit_row(store: SqlStore, seq: int) -> None:
    """Fault injection: occupy audit sequence number `seq` behind the store's back, so that
    the next append reaching it fails on the primary key half-way through its transaction."""
    engine = sa.create_engine(store.url)
    try:
        with engine.begin() as c:
            c.execute(schema.audit_log.insert().values(
                seq=seq, at=T0, actor="intruder", action="x", subject="x", details="{}",
                prev_hash=GENESIS, hash=GENESIS))
    finally:
        engine.dispose()


# -- CAs ----------------------------------------------------------------------------------------


def test_added_cas_round_trip_through_get_ca_and_list_cas(store: SqlStore) -> None:
    root = ca_record(ROOT, role=CARole.root, parent=None, created_at=T0)
    issuing = ca_record(ISSUING, parent=ROOT, created_at=T0 + DAY, imported=True,
                        key_file="/var/lib/fleetpki/keys/issuing ü.pem")
    offline = dataclasses.replace(ca_record(OTHER, created_at=T0 + 2 * DAY), key_file=None)
    for record in (root, issuing, offline):
        store.add_ca(record, event("ca.created", record.name), at=T0)

    assert store.get_ca(ROOT) == root
    assert store.get_ca(ISSUING) == issuing
    assert store.get_ca(OTHER) == offline
    assert store.list_cas() == [root, issuing, offline]  # ordered by creation
    got = store.get_ca(ISSUING)
    assert got is not None
    assert type(got.certificate_der) is bytes
    assert got.created_at.tzinfo is not None
    assert got.created_at.utcoffset() == dt.timedelta(0)
    assert got.created_at == T0 + DAY  # microseconds kept
    assert store.get_ca("nobody") is None


def test_adding_a_duplicate_ca_name_conflicts_and_audits_nothing(store: SqlStore) -> None:
    with_cas(store)
    head = store.audit_head()
    original = store.get_ca(ISSUING)

    with pytest.raises(Conflict):
        store.add_ca(ca_record(ISSUING, parent=None, role=CARole.root), event("ca.created"),
                     at=NOW)

    assert store.audit_head() == head
    assert len(list(store.audit_entries())) == head[0]
    assert store.get_ca(ISSUING) == original


def test_ca_key_file_can_be_taken_offline_and_restored(store: SqlStore) -> None:
    with_cas(store)
    before = head_seq(store)

    store.set_ca_key_file(ISSUING, None, event("ca.key_offline", ISSUING), at=NOW)
    offline = store.get_ca(ISSUING)
    assert offline is not None
    assert offline.key_file is None

    store.set_ca_key_file(ISSUING, "/keys/back.pem", event("ca.key_online", ISSUING), at=NOW)
    assert store.get_ca(ISSUING) == dataclasses.replace(offline, key_file="/keys/back.pem")

    actions = [e.action for e in store.audit_entries(since_seq=before + 1)]
    assert actions == ["ca.key_offline", "ca.key_online"]


def test_revoke_ca_sets_its_fields_and_a_second_revoke_conflicts(store: SqlStore) -> None:
    with_cas(store)
    at = NOW + dt.timedelta(microseconds=7)
    store.revoke_ca(ISSUING, RevocationReason.ca_compromise, at=at,
                    event=event("ca.revoked", ISSUING))

    revoked = store.get_ca(ISSUING)
    assert revoked is not None
    assert revoked.revoked_at == at
    assert revoked.revocation_reason is RevocationReason.ca_compromise
    root = store.get_ca(ROOT)
    assert root is not None
    assert root.revoked_at is None
    assert root.revocation_reason is None
    head = store.audit_head()
    assert list(store.audit_entries())[-1].action == "ca.revoked"

    with pytest.raises(Conflict):
        store.revoke_ca(ISSUING, RevocationReason.superseded, at=NOW + DAY,
                        event=event("ca.revoked", ISSUING))
    assert store.get_ca(ISSUING) == revoked
    assert store.audit_head() == head


def test_crl_numbers_increase_one_by_one_per_issuer(store: SqlStore) -> None:
    with_cas(store, ISSUING, OTHER)
    assert [store.next_crl_number(ISSUING) for _ in range(3)] == [1, 2, 3]
    assert store.next_crl_number(OTHER) == 1
    assert store.next_crl_number(ROOT) == 1
    assert store.next_crl_number(ISSUING) == 4
    assert store.next_crl_number(OTHER) == 2


def test_changing_an_unknown_ca_raises_not_found_and_audits_nothing(store: SqlStore) -> None:
    with_cas(store)
    head = store.audit_head()

    with pytest.raises(NotFound):
        store.set_ca_key_file("ghost", None, event(), at=NOW)
    with pytest.raises(NotFound):
        store.revoke_ca("ghost", RevocationReason.unspecified, at=NOW, event=event())
    with pytest.raises(NotFound):
        store.next_crl_number("ghost")

    assert store.audit_head() == head
    assert store.get_ca("ghost") is None


# -- serial ledger ------------------------------------------------------------------------------


def test_reserved_serials_are_recorded_as_issued_certificates(store: SqlStore) -> None:
    with_cas(store)
    a, b = cert(101, device_id="dev-a"), cert(102, device_id="dev-b")
    store.reserve_serials([reservation(a), reservation(b)], at=T0)
    assert store.count_reserved_serials() == 2
    assert store.get_certificate(101) is None  # reserved is not issued

    store.record_issued([a, b], [], [event("certificate.issued", "65")], at=T0)

    assert store.get_certificate(101) == a
    assert store.get_certificate(102, ISSUING) == b
    assert store.count_reserved_serials() == 0


def test_reserving_a_known_serial_raises_serial_collision(store: SqlStore) -> None:
    with_cas(store)
    first = SerialReservation(ISSUING, 0xABC, "dev-1", "device")
    store.reserve_serials([first], at=T0)

    with pytest.raises(SerialCollision):
        store.reserve_serials([SerialReservation(ISSUING, 0xABC, "dev-2", "device")], at=T0)
    assert store.count_reserved_serials() == 1


def test_a_batch_with_one_collision_reserves_nothing(store: SqlStore) -> None:
    with_cas(store)
    store.reserve_serials([SerialReservation(ISSUING, 5, "dev-1", "device")], at=T0)

    with pytest.raises(SerialCollision):
        store.reserve_serials([SerialReservation(ISSUING, 6, "dev-2", "device"),
                               SerialReservation(ISSUING, 5, "dev-3", "device")], at=T0)

    assert store.count_reserved_serials() == 1
    # 6 was not kept from the failed batch, so it is still free.
    store.reserve_serials([SerialReservation(ISSUING, 6, "dev-2", "device")], at=T0)
    assert store.count_reserved_serials() == 2


def test_an_issued_serial_cannot_be_reserved_again(store: SqlStore) -> None:
    with_cas(store)
    issue(store, cert(77))

    with pytest.raises(SerialCollision):
        store.reserve_serials([SerialReservation(ISSUING, 77, "dev-2", "device")], at=NOW)
    assert store.count_reserved_serials() == 0
    assert store.get_certificate(77) == cert(77)


def test_the_same_serial_may_be_reserved_under_different_issuers(store: SqlStore) -> None:
    with_cas(store, ISSUING, OTHER)
    store.reserve_serials([SerialReservation(ISSUING, 9, "dev-1", "device"),
                           SerialReservation(OTHER, 9, "dev-1", "device")], at=T0)
    assert store.count_reserved_serials() == 2


def test_reserving_under_an_unknown_issuer_is_an_error_not_a_collision(store: SqlStore) -> None:
    # A SerialCollision would make the RA redraw serials in vain; the issuer is the problem.
    with pytest.raises(FleetPKIError):
        store.reserve_serials([SerialReservation("ghost", 1, "dev-1", "device")], at=T0)
    assert store.count_reserved_serials() == 0


def test_released_reservations_are_deleted_and_the_serial_is_free_again(
        store: SqlStore) -> None:
    with_cas(store)
    kept, refused = cert(1, device_id="dev-ok"), cert(2, device_id="dev-refused")
    store.reserve_serials([reservation(kept), reservation(refused)], at=T0)
    assert store.count_reserved_serials() == 2

    store.record_issued([kept], [reservation(refused)], [event("certificate.issued")], at=T0)

    assert store.count_reserved_serials() == 0
    assert store.get_certificate(1) == kept
    assert store.get_certificate(2) is None
    # Nothing was ever signed with serial 2, so the ledger forgot it.
    store.reserve_serials([reservation(refused)], at=NOW)
    assert store.count_reserved_serials() == 1


def test_releasing_an_issued_serial_leaves_it_issued(store: SqlStore) -> None:
    with_cas(store)
    issued = cert(3)
    issue(store, issued)

    store.record_issued([], [reservation(issued)], [], at=NOW)

    assert store.get_certificate(3) == issued
    with pytest.raises(SerialCollision):
        store.reserve_serials([reservation(issued)], at=NOW)


def test_a_crashed_reservation_stays_reserved_and_blocks_its_serial(store: SqlStore) -> None:
    with_cas(store)
    crashed = SerialReservation(ISSUING, 0xDEAD, "dev-1", "device")
    store.reserve_serials([crashed], at=T0)
    # ... the process dies before record_issued; other issuance goes on.
    issue(store, cert(1))

    assert store.count_reserved_serials() == 1
    assert store.get_certificate(0xDEAD) is None
    with pytest.raises(SerialCollision):
        store.reserve_serials([SerialReservation(ISSUING, 0xDEAD, "dev-2", "device")], at=NOW)
    assert store.count_reserved_serials() == 1


def test_serials_of_up_to_twenty_octets_round_trip_exactly(store: SqlStore) -> None:
    with_cas(store)
    # Each serial next to a neighbour one apart, which must never be confused with it.
    pairs = [(1, 2), (2**64 + 1, 2**64), (2**127 - 1, 2**127), (2**159 - 1, 2**159 - 2),
             (2**160 - 1, 2**160 - 2)]
    certs = [cert(s, device_id=f"dev-{i}") for i, pair in enumerate(pairs) for s in pair]
    issue(store, *certs)

    for c in certs:
        assert store.get_certificate(c.serial) == c
        assert store.get_certificate(c.serial, ISSUING) == c
    assert sorted(find(store, issuer=ISSUING)) == sorted(c.serial for c in certs)
    revoked = store.revoke(ISSUING, 2**159 - 1, RevocationReason.superseded, at=NOW,
                           event=event("certificate.revoked"))
    assert revoked.serial == 2**159 - 1
    assert find(store, status=CertificateStatus.revoked) == [2**159 - 1]
    assert store.get_certificate(2**159 - 2) == cert(2**159 - 2, device_id="dev-3")
    biggest = store.get_certificate(2**160 - 1)
    assert biggest is not None
    assert biggest.serial == 2**160 - 1


def test_timestamps_given_in_another_zone_keep_their_instant(store: SqlStore) -> None:
    # Aware datetimes compare by instant: 14:00+02:00 == 12:00Z. The store must not keep the
    # wall-clock reading and relabel it as UTC.
    cest = dt.timezone(dt.timedelta(hours=2), "CEST")
    created = T0.astimezone(cest)
    store.add_ca(ca_record(ROOT, role=CARole.root, parent=None, created_at=created),
                 event("ca.created"), at=created)
    store.add_ca(ca_record(ISSUING, created_at=created), event("ca.created"), at=created)
    c = dataclasses.replace(cert(1, not_after=NOW + DAY, issued_at=T0),
                            not_before=T0.astimezone(cest),
                            not_after=(NOW + DAY).astimezone(cest),
                            issued_at=T0.astimezone(cest))
    issue(store, c)
    revoked_at = NOW.astimezone(cest)
    store.revoke(ISSUING, 1, RevocationReason.superseded, at=revoked_at, event=event())

    ca = store.get_ca(ROOT)
    assert ca is not None
    assert ca.created_at == T0
    stored = store.get_certificate(1)
    assert stored is not None
    assert (stored.not_before, stored.not_after, stored.issued_at, stored.revoked_at) == (
        T0, NOW + DAY, T0, NOW)
    # Queries with `now` in another zone judge the same instant.
    one_hour_before_expiry = (NOW + DAY - dt.timedelta(hours=1)).astimezone(cest)
    assert find(store, one_hour_before_expiry, expiring_before=one_hour_before_expiry) == []


# -- certificates: reading ----------------------------------------------------------------------


def test_get_certificate_finds_by_serial_with_or_without_issuer(store: SqlStore) -> None:
    with_cas(store, ISSUING, OTHER)
    c = cert(42)
    issue(store, c)

    assert store.get_certificate(42) == c
    assert store.get_certificate(42, ISSUING) == c
    assert store.get_certificate(42, OTHER) is None
    assert store.get_certificate(43) is None
    got = store.get_certificate(42)
    assert got is not None
    assert type(got.der) is bytes
    assert got.sans == c.sans
    for value in (got.not_before, got.not_after, got.issued_at):
        assert value.utcoffset() == dt.timedelta(0)


def test_a_serial_under_two_issuers_needs_the_issuer_named(store: SqlStore) -> None:
    with_cas(store, ISSUING, OTHER)
    mine, theirs = cert(7, device_id="dev-mine"), cert(7, issuer=OTHER, device_id="dev-theirs")
    issue(store, mine, theirs)

    with pytest.raises(Conflict):
        store.get_certificate(7)
    assert store.get_certificate(7, ISSUING) == mine
    assert store.get_certificate(7, OTHER) == theirs


def test_certificates_round_trip_multiple_and_empty_sans(store: SqlStore) -> None:
    with_cas(store)
    many = cert(1, sans=("dns:a.example", "ip:10.0.0.1", "uri:urn:dev:1"))
    none = cert(2, device_id="dev-2", sans=())
    issue(store, many, none)
    assert store.get_certificate(1) == many
    assert store.get_certificate(2) == none


def test_find_filters_by_device_profile_issuer_and_key_spec(store: SqlStore) -> None:
    with_cas(store, ISSUING, OTHER)
    issue(store,
          cert(1, device_id="dev-a", profile="device", key_spec="ec-p256"),
          cert(2, device_id="dev-a", profile="bootstrap", key_spec="rsa-2048"),
          cert(3, device_id="dev-b", profile="device", key_spec="ec-p384"),
          cert(4, issuer=OTHER, device_id="dev-b", profile="device", key_spec="ec-p256"))

    assert sorted(find(store, device_id="dev-a")) == [1, 2]
    assert sorted(find(store, profile="device")) == [1, 3, 4]
    assert sorted(find(store, issuer=OTHER)) == [4]
    assert sorted(find(store, key_spec="ec-p256")) == [1, 4]
    assert sorted(find(store, device_id="dev-b", issuer=ISSUING)) == [3]
    assert find(store, device_id="dev-a", profile="device", key_spec="ec-p256") == [1]
    assert find(store, device_id="nobody") == []
    assert sorted(find(store)) == [1, 2, 3, 4]


def test_find_status_is_judged_against_the_given_now(store: SqlStore) -> None:
    with_cas(store)
    issue(store,
          cert(1, not_after=NOW + DAY),             # valid
          cert(2, not_after=NOW - DAY),             # expired
          cert(3, not_after=NOW),                   # expires exactly now: expired
          cert(4, not_after=NOW + 2 * DAY),         # revoked below
          cert(5, not_after=NOW - 2 * DAY))         # expired and revoked: counts as revoked
    for serial in (4, 5):
        store.revoke(ISSUING, serial, RevocationReason.key_compromise, at=NOW,
                     event=event("certificate.revoked"))

    assert sorted(find(store, status=CertificateStatus.valid)) == [1]
    assert sorted(find(store, status=CertificateStatus.expired)) == [2, 3]
    assert sorted(find(store, status=CertificateStatus.revoked)) == [4, 5]
    # The same store judged a week earlier: nothing had expired yet.
    earlier = NOW - 7 * DAY
    assert sorted(find(store, earlier, status=CertificateStatus.valid)) == [1, 2, 3]
    assert find(store, earlier, status=CertificateStatus.expired) == []


def test_find_expiring_before_is_exclusive(store: SqlStore) -> None:
    with_cas(store)
    issue(store, cert(1, not_after=NOW + DAY), cert(2, not_after=NOW + 2 * DAY),
          cert(3, not_after=NOW + 3 * DAY))

    assert find(store, expiring_before=NOW + 2 * DAY) == [1]
    assert find(store, expiring_before=NOW + 2 * DAY + dt.timedelta(microseconds=1)) == [1, 2]
    assert find(store, expiring_before=NOW) == []


def test_find_by_subject_and_san_substring(store: SqlStore) -> None:
    with_cas(store)
    issue(store,
          cert(1, subject="CN=meter-0001,O=Acme", sans=("dns:meter-0001.acme.example",)),
          cert(2, subject="CN=meter-0002,O=Acme",
               sans=("dns:meter-0002.acme.example", "ip:10.1.2.3")),
          cert(3, subject="CN=pump-7,O=Other", sans=("uri:urn:pump:7",)))

    assert sorted(find(store, subject_contains="meter-")) == [1, 2]
    assert find(store, subject_contains="O=Other") == [3]
    assert find(store, subject_contains="nothing") == []
    assert find(store, san_contains="10.1.2") == [2]  # matches a second SAN, not only the first
    assert sorted(find(store, san_contains="acme.example")) == [1, 2]
    assert find(store, san_contains="urn:pump") == [3]


def meters(*numbers: int) -> list[IssuedCertificate]:
    return [cert(n, subject=f"CN=Meter-{n:04d},O=Acme", sans=(f"dns:meter-{n:04d}.acme.example",),
                 not_after=NOW + n * DAY) for n in numbers]


def index_names(store: SqlStore) -> int:
    total = 0
    while added := store.index_certificate_names(limit=2):  # small chunks: the loop is tested
        total += added
    return total


@pytest.mark.parametrize("probe_limit", [1, 2000])
@pytest.mark.parametrize("indexed", [False, True])
def test_substring_search_finds_the_same_by_index_or_by_walk(
        store: SqlStore, probe_limit: int, indexed: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A rare term is looked up in the trigram index (where the store has one), a common one
    (PROBE_LIMIT matches or more) found by walking the expiry index: the same rows, in the
    same order, either way, and whether or not the index has caught up."""
    monkeypatch.setattr(name_search, "PROBE_LIMIT", probe_limit)
    with_cas(store)
    issue(store, *meters(1, 2, 3, 4, 5))
    if indexed:
        index_names(store)
    assert find(store, subject_contains="meter-") == [1, 2, 3, 4, 5]  # case ignored
    assert find(store, subject_contains="Meter-0003") == [3]
    assert find(store, san_contains="0004.ACME") == [4]
    assert find(store, subject_contains="meter-", san_contains="0002") == [2]
    assert find(store, subject_contains='"') == []  # no FTS syntax leaks through
    assert find(store, subject_contains='r-0" OR "x') == []
    for term in ("meter-0003\x00", "\x00", "\x00meter"):  # no stored name holds a NUL
        assert find(store, subject_contains=term) == []
        assert find(store, san_contains=term) == []
    assert find(store, subject_contains="meter-", status=CertificateStatus.valid,
                expiring_before=NOW + 3 * DAY + dt.timedelta(hours=1)) == [1, 2, 3]


def test_substring_search_reads_past_the_index_watermark(store: SqlStore) -> None:
    """Certificates issued since the last indexing round are found too: the index is an
    accelerator, never the only source."""
    with_cas(store)
    issue(store, *meters(1, 2, 3))
    indexed = index_names(store)
    issue(store, *meters(4, 5))
    assert find(store, subject_contains="meter-00") == [1, 2, 3, 4, 5]
    assert find(store, subject_contains="meter-0005") == [5]
    assert find(store, san_contains="0002.acme") == [2]
    if store.url.startswith("sqlite"):
        assert indexed == 3
        assert index_names(store) == 2  # only the new ones
        assert index_names(store) == 0
    else:
        assert indexed == 0  # PostgreSQL's trigram indexes follow every insert
    assert find(store, subject_contains="meter-00") == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("store_url", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_substring_search_on_postgresql_goes_through_the_trigram_indexes(
        store: SqlStore) -> None:
    """PostgreSQL keeps its pg_trgm indexes itself; the planner uses them for the ILIKE the
    store writes (sequential scans off, so that a small table does not hide the choice)."""
    with_cas(store)
    issue(store, *meters(1, 2, 3))
    engine = sa.create_engine(store.url)
    try:
        with engine.connect() as c:
            indexes = set(c.execute(sa.text(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'certificates'")).scalars())
            assert {"ix_certificates_subject_trgm", "ix_certificates_sans_trgm"} <= indexes
            c.execute(sa.text("SET enable_seqscan = off"))
            for column in ("subject", "sans"):
                query = sa.select(schema.certificates.c.serial).where(
                    schema.certificates.c[column].icontains("0002", autoescape=True))
                plan = "\n".join(c.execute(sa.text("EXPLAIN " + str(query.compile(
                    c, compile_kwargs={"literal_binds": True})))).scalars())
                assert f"ix_certificates_{column}_trgm" in plan, plan
    finally:
        engine.dispose()
    assert find(store, subject_contains="meter-0002") == [2]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_substring_index_is_rebuilt_when_rowids_move(store: SqlStore) -> None:
    """SQLite may renumber rowids (VACUUM); a watermark that no longer names the same
    certificate is not trusted by searches, and the next round rebuilds the index."""
    with_cas(store)
    issue(store, *meters(1, 2, 3))
    index_names(store)
    engine = sa.create_engine(store.url)
    try:
        with engine.begin() as c:  # what a renumbering looks like from the watermark
            c.execute(schema.name_index.update().values(last_serial="ff"))
            c.execute(sa.text("DELETE FROM certificate_names WHERE rowid = 2"))
    finally:
        engine.dispose()
    assert find(store, subject_contains="meter-0002") == [2]  # not from the broken index
    assert index_names(store) == 3
    assert find(store, subject_contains="meter-0002") == [2]


def test_find_treats_like_wildcards_in_search_text_literally(store: SqlStore) -> None:
    with_cas(store)
    issue(store,
          cert(1, subject="CN=100% sure", sans=("dns:a_b.example",)),
          cert(2, subject="CN=1000 sure", sans=("dns:axb.example",)),
          cert(3, subject="CN=back\\slash", sans=("dns:c/d.example",)))

    assert find(store, subject_contains="0% s") == [1]
    assert find(store, subject_contains="%") == [1]
    assert find(store, san_contains="a_b") == [1]
    assert find(store, san_contains="_") == [1]
    assert find(store, subject_contains="\\") == [3]
    assert find(store, san_contains="c/d") == [3]


def test_find_orders_by_not_after_and_pages_with_limit_and_offset(store: SqlStore) -> None:
    with_cas(store)
    # Serials deliberately out of expiry order; 30 and 31 share an expiry (ordered by serial).
    expiries = {50: 5, 10: 1, 40: 4, 31: 3, 30: 3, 20: 2}
    issue(store, *[cert(s, not_after=NOW + d * DAY) for s, d in expiries.items()])

    assert find(store) == [10, 20, 30, 31, 40, 50]
    assert find(store, limit=2) == [10, 20]
    assert find(store, limit=2, offset=2) == [30, 31]
    assert find(store, limit=2, offset=4) == [40, 50]
    assert find(store, limit=2, offset=6) == []
    pages = [find(store, limit=4, offset=o) for o in (0, 4)]
    assert pages == [[10, 20, 30, 31], [40, 50]]
    assert find(store, limit=3, offset=1, expiring_before=NOW + 4 * DAY) == [20, 30, 31]


def test_find_defaults_to_one_hundred_results(store: SqlStore) -> None:
    with_cas(store)
    issue(store, *[cert(s, device_id=f"dev-{s}") for s in range(1, 106)])
    assert len(find(store)) == 100
    assert len(find(store, offset=100)) == 5


def test_current_certificate_is_the_newest_valid_one(store: SqlStore) -> None:
    with_cas(store)
    old = cert(1, issued_at=T0)
    current = cert(2, issued_at=T0 + DAY)
    revoked = cert(3, issued_at=T0 + 2 * DAY)
    expired = cert(4, issued_at=T0 + 3 * DAY, not_after=NOW - dt.timedelta(seconds=1))
    other_profile = cert(5, profile="bootstrap", issued_at=T0 + 4 * DAY)
    other_device = cert(6, device_id="dev-2", issued_at=T0 + 5 * DAY)
    issue(store, old, current, revoked, expired, other_profile, other_device)
    store.revoke(ISSUING, 3, RevocationReason.superseded, at=NOW,
                 event=event("certificate.revoked"))

    assert store.current_certificate("dev-1", "device", now=NOW) == current
    assert store.current_certificate("dev-1", "bootstrap", now=NOW) == other_profile
    assert store.current_certificate("dev-1", "other", now=NOW) is None
    assert store.current_certificate("nobody", "device", now=NOW) is None
    # Before cert 4 expired it was the newest valid one.
    assert store.current_certificate("dev-1", "device", now=NOW - DAY) == expired

    store.revoke(ISSUING, 2, RevocationReason.superseded, at=NOW,
                 event=event("certificate.revoked"))
    store.revoke(ISSUING, 1, RevocationReason.superseded, at=NOW,
                 event=event("certificate.revoked"))
    assert store.current_certificate("dev-1", "device", now=NOW) is None


def test_issued_device_ids_are_those_with_a_valid_certificate_in_the_profile(
        store: SqlStore) -> None:
    with_cas(store)
    count = 1200  # crosses the 500-id chunks of the IN list twice
    ids = [f"dev-{i:05d}" for i in range(count)]
    holders = ids[:700]
    certs = [cert(i + 1, device_id=d) for i, d in enumerate(holders)]
    certs[3] = dataclasses.replace(certs[3], not_after=NOW - DAY)         # expired
    certs[510] = dataclasses.replace(certs[510], not_after=NOW)           # expires right now
    certs[650] = dataclasses.replace(certs[650], profile="bootstrap")     # other profile
    certs.append(cert(5000, device_id="outsider"))                        # not asked about
    issue(store, *certs)
    store.revoke(ISSUING, certs[600].serial, RevocationReason.superseded, at=NOW,
                 event=event("certificate.revoked"))

    found = store.issued_device_ids("device", ids, now=NOW)

    not_valid = {ids[3], ids[510], ids[600], ids[650]}
    assert found == set(holders) - not_valid
    assert store.issued_device_ids("bootstrap", ids, now=NOW) == {ids[650]}
    assert store.issued_device_ids("device", [], now=NOW) == set()
    assert store.issued_device_ids("device", ids, now=NOW - 2 * DAY) == set(holders) - {
        ids[600], ids[650]}


# -- revocation ---------------------------------------------------------------------------------


def test_revoke_sets_its_fields_returns_the_record_and_audits(store: SqlStore) -> None:
    with_cas(store)
    c = cert(11)
    issue(store, c)
    before = head_seq(store)
    at = NOW + dt.timedelta(microseconds=5)

    revoked = store.revoke(ISSUING, 11, RevocationReason.key_compromise, at=at,
                           event=event("certificate.revoked", "b", details={"why": "lost"}))

    expected = dataclasses.replace(c, revoked_at=at,
                                   revocation_reason=RevocationReason.key_compromise)
    assert revoked == expected
    assert store.get_certificate(11) == expected
    assert revoked.status(NOW + DAY) is CertificateStatus.revoked
    [entry] = list(store.audit_entries(since_seq=before + 1))
    assert (entry.action, entry.subject, entry.details, entry.at) == (
        "certificate.revoked", "b", {"why": "lost"}, at)


def test_a_second_revoke_conflicts_and_audits_nothing(store: SqlStore) -> None:
    with_cas(store)
    issue(store, cert(11))
    first = store.revoke(ISSUING, 11, RevocationReason.superseded, at=NOW,
                         event=event("certificate.revoked"))
    head = store.audit_head()

    with pytest.raises(Conflict):
        store.revoke(ISSUING, 11, RevocationReason.key_compromise, at=NOW + DAY,
                     event=event("certificate.revoked"))

    assert store.get_certificate(11) == first
    assert store.audit_head() == head


def test_revoking_an_unknown_certificate_raises_not_found_and_audits_nothing(
        store: SqlStore) -> None:
    with_cas(store, ISSUING, OTHER)
    issue(store, cert(11))
    head = store.audit_head()

    with pytest.raises(NotFound):
        store.revoke(ISSUING, 12, RevocationReason.superseded, at=NOW, event=event())
    with pytest.raises(NotFound):  # right serial, wrong issuer
        store.revoke(OTHER, 11, RevocationReason.superseded, at=NOW, event=event())

    assert store.audit_head() == head
    assert store.get_certificate(11) == cert(11)


def test_a_revocation_is_undone_when_its_audit_event_cannot_be_written(
        store: SqlStore) -> None:
    with_cas(store)
    issue(store, cert(11))
    head = store.audit_head()
    inject_audit_row(store, head[0] + 1)

    with pytest.raises(StoreError):
        store.revoke(ISSUING, 11, RevocationReason.superseded, at=NOW,
                     event=event("certificate.revoked"))

    assert store.get_certificate(11) == cert(11)  # not revoked
    assert store.audit_head() == head


# -- audit log ----------------------------------------------------------------------------------


def test_an_empty_store_has_the_genesis_head_and_no_entries(store: SqlStore) -> None:
    assert store.audit_head() == (0, GENESIS)
    assert list(store.audit_entries()) == []
    assert verify_chain(store.audit_entries()).entries == 0


def test_events_from_every_writer_form_one_verifying_chain(store: SqlStore) -> None:
    with_cas(store)                                                        # 2 events
    store.set_ca_key_file(ISSUING, None, event("ca.key_offline"), at=T0)   # 1
    issue(store, cert(1), cert(2),
          events=[event("certificate.issued", "1"), event("certificate.issued", "2")])  # 2
    store.record_issued([], [], [event("noop")], at=T0)                    # 1
    store.revoke(ISSUING, 1, RevocationReason.superseded, at=NOW,
                 event=event("certificate.revoked", "1"))                  # 1
    store.revoke_ca(ISSUING, RevocationReason.cessation_of_operation, at=NOW,
                    event=event("ca.revoked"))                             # 1
    store.audit([event("request.refused", "dev-9", details={"reason": "policy"}),
                 event("crl.published", ISSUING)], at=NOW)                 # 2
    store.audit([], at=NOW)                                                # 0

    entries = list(store.audit_entries())
    report = verify_chain(entries, expected_head=store.audit_head())

    assert report.entries == 10
    assert [e.seq for e in entries] == list(range(1, 11))
    assert [e.action for e in entries] == [
        "ca.created", "ca.created", "ca.key_offline", "certificate.issued",
        "certificate.issued", "noop", "certificate.revoked", "ca.revoked", "request.refused",
        "crl.published"]
    assert store.audit_head() == (entries[-1].seq, entries[-1].hash)
    assert (report.head_seq, report.head_hash) == store.audit_head()
    assert entries[8].details == {"reason": "policy"}
    assert entries[8].at == NOW
    assert entries[8].at.utcoffset() == dt.timedelta(0)


def test_audit_entries_stream_in_order_across_pages(store: SqlStore) -> None:
    total = _AUDIT_PAGE + 1234
    batch = 2500
    for start in range(0, total, batch):
        store.audit([event("bulk", str(i)) for i in range(start, min(start + batch, total))],
                    at=T0 + start * dt.timedelta(seconds=1))

    entries = list(store.audit_entries())
    assert [e.seq for e in entries] == list(range(1, total + 1))
    assert [e.subject for e in entries] == [str(i) for i in range(total)]
    assert verify_chain(entries, expected_head=store.audit_head()).entries == total
    assert store.audit_head() == (total, entries[-1].hash)

    tail = list(store.audit_entries(since_seq=_AUDIT_PAGE - 1))
    assert [e.seq for e in tail] == list(range(_AUDIT_PAGE - 1, total + 1))
    assert tail == entries[_AUDIT_PAGE - 2:]
    assert list(store.audit_entries(since_seq=total + 1)) == []


def test_unicode_details_round_trip_and_still_verify(store: SqlStore) -> None:
    details = {
        "site": "Zürich Süd — Halle 3",
        "note": "日本語のメモ ☃ 🔐",
        "quote\"key": "back\\slash\nnew line\ttab",
        "empty": "",
        "Ωmega": "\u00e9 vs e\u0301",  # different normalisations stay distinct
    }
    store.audit([event("note", "Gerät-7", actor="opérateur ü", details=details)], at=T0)

    [entry] = list(store.audit_entries())
    assert entry.details == details
    assert entry.actor == "opérateur ü"
    assert entry.subject == "Gerät-7"
    assert entry.hash == entry_hash(GENESIS, 1, T0, "opérateur ü", "note", "Gerät-7",
                                    canonical_details(details))
    assert verify_chain([entry], expected_head=store.audit_head()).entries == 1


# -- atomicity ----------------------------------------------------------------------------------


def test_a_failed_record_issued_stores_nothing(store: SqlStore) -> None:
    with_cas(store)
    good, stranger = cert(1), cert(2, device_id="dev-2")   # 2 was never reserved
    refused = SerialReservation(ISSUING, 3, "dev-3", "device")
    store.reserve_serials([reservation(good), refused], at=T0)
    head = store.audit_head()

    with pytest.raises(FleetPKIError) as raised:
        store.record_issued([good, stranger], [refused], [event("certificate.issued")], at=T0)

    assert isinstance(raised.value, StoreError), repr(raised.value)
    assert store.get_certificate(1) is None
    assert store.get_certificate(2) is None
    assert store.count_reserved_serials() == 2   # good not marked issued, refused not released
    assert store.audit_head() == head
    assert len(list(store.audit_entries())) == head[0]
    # The reservations are intact: recording without the stranger now succeeds.
    store.record_issued([good], [refused], [event("certificate.issued")], at=T0)
    assert store.get_certificate(1) == good
    assert store.count_reserved_serials() == 0


def test_record_issued_is_undone_when_the_audit_append_fails_half_way(store: SqlStore) -> None:
    with_cas(store)
    a, b = cert(1), cert(2, device_id="dev-2")
    refused = SerialReservation(ISSUING, 3, "dev-3", "device")
    store.reserve_serials([reservation(a), reservation(b), refused], at=T0)
    head = store.audit_head()
    # The second of the two events will collide: certificates are already inserted, serials
    # marked issued and the refused one deleted inside the transaction when that happens.
    inject_audit_row(store, head[0] + 2)

    with pytest.raises(StoreError):
        store.record_issued([a, b], [refused], [event("certificate.issued", "1"),
                                                event("certificate.issued", "2")], at=T0)

    assert store.get_certificate(1) is None
    assert store.get_certificate(2) is None
    assert store.count_reserved_serials() == 3
    assert store.audit_head() == head
    assert [e.seq for e in store.audit_entries()][:head[0]] == list(range(1, head[0] + 1))


# -- concurrency --------------------------------------------------------------------------------


def test_concurrent_appenders_through_separate_stores_serialise(store: SqlStore) -> None:
    per_thread = 200
    other = SqlStore(store.url)
    start = threading.Barrier(2)

    def append(target: SqlStore, name: str) -> None:
        start.wait(timeout=30)
        for i in range(per_thread):
            target.audit([event("concurrent", f"{name}-{i}", actor=name)], at=T0)

    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(append, store, "a"), pool.submit(append, other, "b")]
            for future in futures:
                future.result(timeout=120)
    finally:
        other.close()

    entries = list(store.audit_entries())
    report = verify_chain(entries, expected_head=store.audit_head())
    assert report.entries == 2 * per_thread
    assert store.audit_head() == (2 * per_thread, entries[-1].hash)
    for name in ("a", "b"):  # each thread's own events are all there, in its order
        mine = [e.subject for e in entries if e.actor == name]
        assert mine == [f"{name}-{i}" for i in range(per_thread)]


# -- migrations ---------------------------------------------------------------------------------


def test_reopening_a_migrated_database_is_a_no_op(store: SqlStore) -> None:
    with_cas(store)
    issue(store, cert(1), events=[event("certificate.issued")])
    store.reserve_serials([SerialReservation(ISSUING, 2, "dev-2", "device")], at=T0)
    head = store.audit_head()
    cas = store.list_cas()

    for _ in range(2):
        again = SqlStore(store.url)
        try:
            assert again.list_cas() == cas
            assert again.get_certificate(1) == cert(1)
            assert again.count_reserved_serials() == 1
            assert again.audit_head() == head
            verify_chain(again.audit_entries(), expected_head=head)
        finally:
            again.close()

    # The first store still works after the others opened the same database.
    store.audit([event("after-reopen")], at=NOW)
    assert head_seq(store) == head[0] + 1
