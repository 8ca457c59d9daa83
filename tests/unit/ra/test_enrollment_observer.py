"""What the enrollment service tells its observer: each outcome once, under a profile from
profiles.toml (never a label as a client wrote it), and nothing that changes the outcome."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from fleetpki.core.errors import NotAuthenticated, NotFound, PolicyViolation, RateLimited
from fleetpki.ra.api import (
    BasicCredentials,
    Enrolled,
    EnrollmentKind,
    EnrollmentPending,
    EnrollmentRequest,
)
from fleetpki.ra.credentials import CredentialAdmin, NewCredential
from fleetpki.ra.enrollment import EnrollmentLimits, EnrollmentService
from fleetpki.ra.rate_limits import RateLimit
from support.csrs import make_csr
from support.enrollment_rig import HELD_PROFILE, enrollment_parts

START = dt.datetime(2030, 1, 15, 8, 0, tzinfo=dt.UTC)
PROFILES = """
[profiles.sensor]
issuer = "issuing"
keys.allowed = ["ec-p256"]
validity = { default = "90d", maximum = "90d" }
subject.attributes.CN = { required = true, pattern = "^sensor-[0-9]{4}$" }
extensions = { key_usage = ["digitalSignature"], extended_key_usage = ["clientAuth"] }
""" + HELD_PROFILE


@dataclasses.dataclass
class Recorder:
    events: list[tuple[str, ...]] = dataclasses.field(default_factory=list)
    fail: bool = False

    def issued(self, profile: str, protocol: str) -> None:
        self._record("issued", profile, protocol)

    def held(self, profile: str, protocol: str) -> None:
        self._record("held", profile, protocol)

    def refused(self, profile: str, protocol: str, reason: str) -> None:
        self._record("refused", profile, protocol, reason)

    def _record(self, *event: str) -> None:
        self.events.append(event)
        if self.fail:
            raise RuntimeError("the metrics backend is broken")


@dataclasses.dataclass
class Rig:
    service: EnrollmentService
    credentials: CredentialAdmin
    observer: Recorder

    def secret(self, profile: str = "sensor", uses: int = 1) -> NewCredential:
        return self.credentials.create(profile, lifetime=dt.timedelta(days=1), max_uses=uses)

    def enroll(self, cn: str, secret: NewCredential | None, *, password: str | None = None,
               label: str | None = None, address: str = "192.0.2.7", csr: bytes | None = None
               ) -> Enrolled | EnrollmentPending:
        basic = None if secret is None else BasicCredentials(
            secret.credential.id, secret.secret if password is None else password)
        csr = csr or make_csr(cn)[0].public_bytes(serialization.Encoding.DER)
        return self.service.enroll(EnrollmentRequest(
            csr=csr, kind=EnrollmentKind.enroll, client_address=address, label=label,
            basic=basic))


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    parts = enrollment_parts(tmp_path, PROFILES, START)
    observer = Recorder()
    limits = EnrollmentLimits(per_address=RateLimit(4, dt.timedelta(minutes=1)))
    service = EnrollmentService(parts.issuance, parts.store, parts.profiles, parts.clock,
                                limits, "sensor", observer=observer)
    return Rig(service, CredentialAdmin(parts.store, parts.profiles, parts.clock, "op"),
               observer)


def test_an_issuance_is_told_once(rig: Rig) -> None:
    assert isinstance(rig.enroll("sensor-0001", rig.secret()), Enrolled)
    assert rig.observer.events == [("issued", "sensor", "est")]


def test_refusals_name_the_profile_once_it_is_known(rig: Rig) -> None:
    secret = rig.secret()
    with pytest.raises(NotAuthenticated):
        rig.enroll("sensor-0002", secret, password="wrong")
    with pytest.raises(NotAuthenticated):
        rig.enroll("sensor-0002", secret, password="wrong", label="sensor")
    with pytest.raises(PolicyViolation):
        rig.enroll("not-a-sensor-name", secret)
    assert rig.observer.events == [("refused", "-", "est", "NotAuthenticated"),
                                   ("refused", "sensor", "est", "NotAuthenticated"),
                                   ("refused", "sensor", "est", "PolicyViolation")]


def test_a_made_up_label_never_becomes_a_profile_label(rig: Rig) -> None:
    with pytest.raises(NotAuthenticated):
        rig.enroll("sensor-0003", None, label="device-12345-serial-abcdef")
    with pytest.raises(NotFound):
        rig.enroll("sensor-0003", rig.secret(), label="device-12345-serial-abcdef")
    assert [event[1] for event in rig.observer.events] == ["-", "sensor"]


def test_address_throttling_is_counted(rig: Rig) -> None:
    for _ in range(4):
        with pytest.raises(NotAuthenticated):
            rig.enroll("sensor-0004", None, address="198.51.100.9")
    with pytest.raises(RateLimited):
        rig.enroll("sensor-0004", None, address="198.51.100.9")
    assert rig.observer.events[-1] == ("refused", "-", "est", "RateLimited")


def test_a_hold_is_told_once_not_at_every_retry(rig: Rig) -> None:
    secret = rig.secret("held", uses=2)
    csr = make_csr("held-device-1")[0].public_bytes(serialization.Encoding.DER)
    assert isinstance(rig.enroll("", secret, csr=csr), EnrollmentPending)
    assert isinstance(rig.enroll("", secret, csr=csr), EnrollmentPending)  # the device retries
    assert rig.observer.events == [("held", "held", "est")]


def test_a_failing_observer_changes_no_outcome(rig: Rig) -> None:
    rig.observer.fail = True
    assert isinstance(rig.enroll("sensor-0005", rig.secret()), Enrolled)
    with pytest.raises(NotAuthenticated):
        rig.enroll("sensor-0006", rig.secret(), password="wrong")
    assert [event[0] for event in rig.observer.events] == ["issued", "refused"]
