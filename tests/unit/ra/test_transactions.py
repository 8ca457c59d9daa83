"""TransactionalEnrollment (ra/transactions.py) on a real store and a fake clock: a
transaction name gets one outcome, only its requester collects it, a refusal leaves nothing
behind, and a reservation whose process died is taken over.

The requests authenticate with a profile's static SCEP challenge, as SCEP requests do; keys are
P-256 (the transaction logic does not care, and they are quick to make).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from fleetpki.core.enrollment_records import EnrollmentTransaction
from fleetpki.core.errors import BadInput, NotAuthenticated, NotAuthorized, NotFound
from fleetpki.ra.api import (
    Authorization,
    Enrolled,
    EnrollmentKind,
    EnrollmentPending,
    EnrollmentRequest,
    Transaction,
)
from fleetpki.ra.approvals import ApprovalDesk
from fleetpki.ra.challenges import ChallengeAdmin
from fleetpki.ra.transactions import (
    BUSY_RETRY_SECONDS,
    STALE_AFTER,
    TransactionalEnrollment,
    fingerprints,
)
from fleetpki.store.api import CertificateQuery
from fleetpki.store.sql.store import SqlStore
from support.csrs import PrivateKey, make_csr, make_key
from support.enrollment_rig import EnrollmentParts, enrollment_parts

START = dt.datetime(2030, 1, 15, 8, 0, tzinfo=dt.UTC)
ME = "a" * 64  # the requester fingerprint: SHA-256 of the SPKI that signed the SCEP message
SOMEONE_ELSE = "b" * 64
_PROFILE = """
issuer = "issuing"
keys.allowed = ["ec-p256"]
validity = { default = "90d", maximum = "90d" }
subject.attributes.CN = { required = true }
extensions = { key_usage = ["digitalSignature"], extended_key_usage = ["clientAuth"] }
"""
PROFILES = f"""
[profiles.router]{_PROFILE}enrollment = {{ scep = true }}

[profiles.held]{_PROFILE}enrollment = {{ scep = true, approval = "manual", retry_after = "2m" }}
"""


@dataclasses.dataclass
class Rig:
    parts: EnrollmentParts
    transactions: TransactionalEnrollment
    secrets: dict[str, str]

    @property
    def store(self) -> SqlStore:
        return self.parts.store

    def enroll(self, key: PrivateKey, *, tid: str = "tx-1", requester: str = ME,
               profile: str = "router", password: str | None = None, cn: str = "router-0001",
               csr: bytes | None = None) -> Enrolled | EnrollmentPending:
        if csr is None:
            csr = make_csr(cn, key=key)[0].public_bytes(serialization.Encoding.DER)
        request = EnrollmentRequest(
            csr=csr, kind=EnrollmentKind.enroll, client_address="192.0.2.9", label=profile,
            challenge_password=self.secrets[profile] if password is None else password,
            protocol="scep")
        return self.transactions.enroll(request, Transaction("scep", tid, requester))

    def poll(self, tid: str = "tx-1", requester: str = ME) -> Enrolled | EnrollmentPending:
        return self.transactions.poll(Transaction("scep", tid, requester))

    def certificate_count(self) -> int:
        return len(self.store.find_certificates(CertificateQuery(limit=1000),
                                                now=self.parts.clock.now()))

    def issued_events(self) -> int:
        return sum(e.action == "certificate.issued" for e in self.store.audit_entries())

    def desk(self) -> ApprovalDesk:
        return ApprovalDesk(self.parts.issuance, self.store, self.parts.clock,
                            Authorization(actor="operator:test"))


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    parts = enrollment_parts(tmp_path, PROFILES, START, default_profile="router")
    admin = ChallengeAdmin(parts.store, parts.profiles, parts.clock, "operator:test")
    secrets = {name: admin.set(name).secret for name in ("router", "held")}
    return Rig(parts, TransactionalEnrollment(parts.service, parts.store, parts.clock), secrets)


def serial(outcome: Enrolled | EnrollmentPending) -> int:
    assert isinstance(outcome, Enrolled), outcome
    return outcome.certificate.serial


def fingerprint_of(key: PrivateKey) -> str:
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def reservation(tid: str, key: str, created_at: dt.datetime, requester: str = ME
                ) -> EnrollmentTransaction:
    return EnrollmentTransaction(protocol="scep", transaction_id=tid, profile="router",
                                 key_fingerprint=key, requester_fingerprint=requester,
                                 request_fingerprint="q" * 64,
                                 created_at=created_at)


# -- one outcome per transaction ------------------------------------------------------------

def test_an_enrollment_is_recorded_under_its_transaction(rig: Rig) -> None:
    key = make_key()
    outcome = rig.enroll(key)
    stored = rig.store.get_transaction("scep", "tx-1")
    assert stored == EnrollmentTransaction(
        protocol="scep", transaction_id="tx-1", profile="router",
        key_fingerprint=fingerprint_of(key), requester_fingerprint=ME,
        request_fingerprint=stored.request_fingerprint if stored else "", created_at=START,
        serial=serial(outcome), issuer="issuing")


def test_a_retry_gets_the_same_certificate_and_issues_nothing(rig: Rig) -> None:
    key = make_key()
    first = rig.enroll(key)
    assert isinstance(first, Enrolled)
    again = rig.enroll(key)
    assert isinstance(again, Enrolled) and again.certificate == first.certificate
    assert rig.certificate_count() == 1 and rig.issued_events() == 1


def test_the_same_transaction_with_another_key_is_refused(rig: Rig) -> None:
    first = serial(rig.enroll(make_key()))
    with pytest.raises(BadInput, match="another public key"):
        rig.enroll(make_key())
    stored = rig.store.get_transaction("scep", "tx-1")
    assert stored is not None and stored.serial == first
    assert rig.certificate_count() == 1


def test_other_transaction_names_are_separate(rig: Rig) -> None:
    key = make_key()
    assert serial(rig.enroll(key, tid="tx-1")) != serial(rig.enroll(key, tid="tx-2"))


# -- only the requester collects ---------------------------------------------------------------

def test_a_retry_by_another_requester_is_refused(rig: Rig) -> None:
    key = make_key()
    rig.enroll(key)
    with pytest.raises(NotAuthorized, match="another requester"):
        rig.enroll(key, requester=SOMEONE_ELSE)
    with pytest.raises(NotAuthorized, match="another requester"):
        rig.poll(requester=SOMEONE_ELSE)


def test_the_holder_of_the_requested_key_may_collect(rig: Rig) -> None:
    """A requester that signs with the key it asked a certificate for (a CertPoll signed with
    the new key after a renewal signed with the old one) is the same requester."""
    key = make_key()
    issued = serial(rig.enroll(key))
    assert serial(rig.poll(requester=fingerprint_of(key))) == issued


# -- polling -----------------------------------------------------------------------------------

def test_polling_an_unknown_transaction_is_not_found(rig: Rig) -> None:
    with pytest.raises(NotFound, match="send the PKCSReq again"):
        rig.poll("tx-never")


def test_polling_an_issued_transaction_returns_the_certificate(rig: Rig) -> None:
    issued = serial(rig.enroll(make_key()))
    assert serial(rig.poll()) == issued


def test_a_held_transaction_is_pending_until_approved(rig: Rig) -> None:
    key = make_key()
    held = rig.enroll(key, profile="held")
    assert isinstance(held, EnrollmentPending) and held.retry_after == 120
    stored = rig.store.get_transaction("scep", "tx-1")
    assert stored is not None and stored.pending_id == held.request_id and stored.serial is None
    assert rig.poll() == EnrollmentPending(held.request_id, 120)
    assert rig.enroll(key, profile="held") == EnrollmentPending(held.request_id, 120)
    record = rig.desk().approve(held.request_id)
    assert serial(rig.poll()) == record.serial
    assert serial(rig.enroll(key, profile="held")) == record.serial
    assert rig.certificate_count() == 1


def test_a_rejected_transaction_says_who_rejected_it_and_why(rig: Rig) -> None:
    held = rig.enroll(make_key(), profile="held")
    assert isinstance(held, EnrollmentPending)
    rig.desk().reject(held.request_id, "unknown router")
    with pytest.raises(NotAuthorized, match="rejected by operator:test: unknown router"):
        rig.poll()


# -- refusals leave nothing behind ------------------------------------------------------------

def test_a_refused_enrollment_releases_its_transaction(rig: Rig) -> None:
    key = make_key()
    with pytest.raises(NotAuthenticated):
        rig.enroll(key, password="not-the-challenge")
    assert rig.store.get_transaction("scep", "tx-1") is None
    assert rig.certificate_count() == 0
    # The name is free again: the same transaction succeeds with the right challenge.
    assert isinstance(rig.enroll(key), Enrolled)


def test_an_unreadable_csr_is_refused_without_a_reservation(rig: Rig) -> None:
    with pytest.raises(NotAuthenticated):  # no password in the CSR was read, nor any given
        rig.transactions.enroll(EnrollmentRequest(
            csr=b"not a csr", kind=EnrollmentKind.enroll, client_address="192.0.2.9",
            label="router", protocol="scep"), Transaction("scep", "tx-1", ME))
    with pytest.raises(BadInput):  # authenticated, then refused for what it sent
        rig.enroll(make_key(), csr=b"not a csr")
    assert rig.store.get_transaction("scep", "tx-1") is None


def test_an_unknown_profile_is_not_found_without_a_reservation(rig: Rig) -> None:
    with pytest.raises(NotFound):
        rig.enroll(make_key(), profile="nothing", password="x")
    assert rig.store.get_transaction("scep", "tx-1") is None


# -- reservations left by a process that died ------------------------------------------------

def test_a_stale_reservation_is_taken_over(rig: Rig) -> None:
    died = reservation("tx-1", "f" * 64, START - STALE_AFTER - dt.timedelta(seconds=1))
    assert rig.store.reserve_transaction(died, stale_before=died.created_at) is None
    key = make_key()
    issued = serial(rig.enroll(key))  # another key even: nothing was issued under the name
    stored = rig.store.get_transaction("scep", "tx-1")
    assert stored is not None
    assert stored.key_fingerprint == fingerprint_of(key) and stored.serial == issued
    assert stored.created_at == START


def test_a_fresh_reservation_is_being_decided_and_the_client_told_to_wait(rig: Rig) -> None:
    key = make_key()
    deciding = dataclasses.replace(reservation("tx-1", fingerprint_of(key), START),
                                   request_fingerprint=fingerprints(make_csr(
                                       "router-0001", key=key)[0].public_bytes(
                                       serialization.Encoding.DER))[1])
    assert rig.store.reserve_transaction(deciding, stale_before=START) is None
    assert rig.enroll(key) == EnrollmentPending("tx-1", BUSY_RETRY_SECONDS)
    assert rig.poll() == EnrollmentPending("tx-1", BUSY_RETRY_SECONDS)
    with pytest.raises(BadInput, match="another public key"):
        rig.enroll(make_key())
    with pytest.raises(NotAuthorized):
        rig.enroll(key, requester=SOMEONE_ELSE)
    assert rig.certificate_count() == 0
    # Once it is stale, a retry takes it over and is decided.
    rig.parts.clock.advance(STALE_AFTER + dt.timedelta(seconds=1))
    assert isinstance(rig.enroll(key), Enrolled)


def test_a_settled_transaction_is_never_taken_over(rig: Rig) -> None:
    key = make_key()
    issued = serial(rig.enroll(key))
    rig.parts.clock.advance(dt.timedelta(days=1))
    assert serial(rig.enroll(key)) == issued
    with pytest.raises(BadInput):
        rig.enroll(make_key())


# -- fingerprints ------------------------------------------------------------------------------

def test_the_key_fingerprint_is_the_sha256_of_the_requested_spki() -> None:
    key = make_key()
    csr = make_csr(key=key)[0]
    assert fingerprints(csr.public_bytes(serialization.Encoding.DER))[0] == fingerprint_of(key)
    assert fingerprints(csr.public_bytes(serialization.Encoding.PEM)) == \
        fingerprints(csr.public_bytes(serialization.Encoding.DER))
    with pytest.raises(BadInput):
        fingerprints(b"not a csr")



def test_another_csr_under_an_issued_transaction_is_a_new_request(rig: Rig) -> None:
    """strongSwan derives the transactionID from the key alone: asking for another name with
    the same key is authorized afresh, not answered with the first certificate."""
    key = make_key()
    first = rig.enroll(key, cn="router-0001")
    second = rig.enroll(key, cn="router-0002")
    assert isinstance(second, Enrolled) and second.certificate.serial != serial(first)
    assert "router-0002" in second.certificate.subject
    with pytest.raises(NotAuthenticated):
        rig.enroll(key, cn="router-0003", password="wrong")
    assert rig.certificate_count() == 2


def test_another_csr_under_a_held_transaction_is_refused(rig: Rig) -> None:
    key = make_key()
    assert isinstance(rig.enroll(key, profile="held", cn="router-0001"), EnrollmentPending)
    with pytest.raises(BadInput, match="waiting for approval"):
        rig.enroll(key, profile="held", cn="router-0002")
