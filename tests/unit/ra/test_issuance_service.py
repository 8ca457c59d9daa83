"""The issuance cycle on a fake clock: exact validity, one audit entry per outcome, a reserved
serial per certificate and none per refusal."""

from __future__ import annotations

import datetime as dt
from importlib import resources
from pathlib import Path

import pytest
from cryptography import x509

from fleetpki.core.audit_chain import verify_chain
from fleetpki.core.clock import FakeClock
from fleetpki.core.errors import NotAuthorized, PolicyViolation
from fleetpki.core.issuance_plan import Request
from fleetpki.core.serials import RandomSerials
from fleetpki.profiles_loader import load_profiles
from fleetpki.ra.api import Authorization
from fleetpki.ra.service import IssuanceService
from fleetpki.store.sql.store import SqlStore
from support.ca_store import OneSigner, store_with_cas
from support.csrs import make_csr

START = dt.datetime(2030, 1, 15, 8, 0, tzinfo=dt.UTC)
OPERATOR = Authorization(actor="operator:test")


@pytest.fixture
def setup(tmp_path: Path) -> tuple[IssuanceService, SqlStore, FakeClock]:
    clock = FakeClock(START)
    store, issuing = store_with_cas(tmp_path, START)
    profiles = load_profiles(Path(str(resources.files("fleetpki.defaults")
                                      .joinpath("profiles.toml"))), known_issuers={"issuing"})
    service = IssuanceService(store, profiles, OneSigner(issuing), clock, RandomSerials())
    return service, store, clock


def test_issue_uses_the_injected_clock_and_records_everything(setup) -> None:  # type: ignore[no-untyped-def]
    service, store, clock = setup
    clock.advance(dt.timedelta(hours=3))
    csr, _ = make_csr("sensor-0042")
    record = service.issue(Request.from_csr(csr), "sensor", OPERATOR)
    cert = x509.load_der_x509_certificate(record.der)
    assert cert.not_valid_before_utc == START + dt.timedelta(hours=3) - dt.timedelta(minutes=5)
    assert cert.not_valid_after_utc == START + dt.timedelta(hours=3, days=365)
    assert store.get_certificate(record.serial) == record
    entries = list(store.audit_entries())
    assert [e.action for e in entries][-1] == "certificate.issued"
    assert entries[-1].at == START + dt.timedelta(hours=3)
    assert entries[-1].details["device_id"] == "sensor-0042"
    verify_chain(entries)


def test_refusal_is_audited_and_draws_no_serial(setup) -> None:  # type: ignore[no-untyped-def]
    service, store, _ = setup
    csr, _ = make_csr("x")  # breaks the CN pattern
    with pytest.raises(PolicyViolation):
        service.issue(Request.from_csr(csr), "sensor", OPERATOR)
    assert store.count_reserved_serials() == 0
    assert list(store.audit_entries())[-1].action == "certificate.refused"


def test_authorization_limits_profiles_and_device(setup) -> None:  # type: ignore[no-untyped-def]
    service, store, _ = setup
    csr, _ = make_csr("sensor-0001")
    with pytest.raises(NotAuthorized, match="may not enroll in profile 'sensor'"):
        service.issue(Request.from_csr(csr), "sensor",
                      Authorization(actor="bootstrap:g1", profiles=frozenset({"gateway"})))
    with pytest.raises(NotAuthorized, match="credential is for 'sensor-0002'"):
        service.issue(Request.from_csr(csr), "sensor",
                      Authorization(actor="device:x", device_id="sensor-0002"))
    assert store.count_reserved_serials() == 0
    assert [e.action for e in store.audit_entries()][-2:] == ["certificate.refused"] * 2
