"""Delegated OCSP responders: issued by their CA with the right extensions, kept while good,
rolled over before answers could outlive them, and picked up by a running responder."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from fleetpki.ca.signer import Signer
from fleetpki.core.clock import FakeClock
from fleetpki.core.serials import RandomSerials
from fleetpki.ocsp_identity import (
    LIFETIME,
    PROFILE_NAME,
    ResponderFiles,
    ensure_responder,
    load_responder,
    responder_profile,
)
from fleetpki.ra.service import IssuanceService
from fleetpki.revocation.ocsp_responder import OcspResponder, ResponderKey
from fleetpki.revocation_runtime import ResponderKeys
from fleetpki.store.sql.store import SqlStore
from support.ca_store import OneSigner, store_with_cas

START = dt.datetime(2030, 1, 15, 8, 0, tzinfo=dt.UTC)
PASSPHRASE = b"test passphrase"
ONE_DAY = dt.timedelta(days=1)


@dataclasses.dataclass
class Rig:
    store: SqlStore
    issuing: Signer
    clock: FakeClock
    directory: Path

    def ensure(self, answer_validity: dt.timedelta = ONE_DAY) -> ResponderFiles:
        issuance = IssuanceService(self.store, {PROFILE_NAME: responder_profile("issuing")},
                                   OneSigner(self.issuing), self.clock, RandomSerials())
        return ensure_responder(self.directory, "issuing", self.issuing.certificate, issuance,
                                PASSPHRASE, self.clock.now(), answer_validity=answer_validity)

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(
            ResponderFiles.of(self.directory, "issuing").certificate.read_bytes())


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    store, issuing = store_with_cas(tmp_path, START - dt.timedelta(days=10))
    return Rig(store, issuing, FakeClock(START), tmp_path / "ocsp")


def test_the_responder_is_delegated_by_its_ca_with_nocheck(rig: Rig) -> None:
    files = rig.ensure()
    cert = rig.certificate()
    cert.verify_directly_issued_by(rig.issuing.certificate)
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == (
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]))
    assert cert.extensions.get_extension_for_class(x509.OCSPNoCheck)
    for absent in (x509.CRLDistributionPoints, x509.AuthorityInformationAccess):
        with pytest.raises(x509.ExtensionNotFound):
            cert.extensions.get_extension_for_class(absent)
    assert cert.not_valid_after_utc == START + LIFETIME  # (notBefore is backdated 5 min)
    assert os.stat(files.key).st_mode & 0o077 == 0
    assert b"ENCRYPTED" in files.key.read_bytes()
    recorded = rig.store.get_certificate(cert.serial_number, "issuing")
    assert recorded is not None and recorded.profile == PROFILE_NAME


def test_a_good_responder_is_kept_and_one_near_its_end_replaced(rig: Rig) -> None:
    rig.ensure()
    first = rig.certificate()
    rig.clock.advance(dt.timedelta(days=15))
    rig.ensure()
    assert rig.certificate() == first
    rig.clock.advance(dt.timedelta(days=6))  # 21 days in: less than a third of 30 left
    rig.ensure()
    assert rig.certificate().serial_number != first.serial_number


def test_long_lived_answers_bring_the_rollover_forward(rig: Rig) -> None:
    rig.ensure()
    first = rig.certificate()
    rig.clock.advance(dt.timedelta(days=12))
    # Answers valid 10 days could outlive a responder with 18 days left less a margin of 20.
    rig.ensure(answer_validity=dt.timedelta(days=10))
    assert rig.certificate().serial_number != first.serial_number


def test_a_running_responder_picks_up_the_rolled_over_key(rig: Rig,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    files = rig.ensure()
    loaded: list[int] = []

    def load() -> list[ResponderKey]:
        key = load_responder(files, "issuing", rig.issuing.certificate, PASSPHRASE)
        loaded.append(key.certificate.serial_number)
        return [key]

    keys = ResponderKeys(lambda: [files.certificate, files.key], load)
    responder = OcspResponder(rig.store, keys.initial(), rig.clock)
    monkeypatch.setattr("fleetpki.revocation_runtime._RELOAD_EVERY", 0.0)
    keys.refresh(responder)
    assert len(loaded) == 1  # nothing changed on disk: nothing reloaded
    rig.clock.advance(dt.timedelta(days=21))
    rig.ensure()
    keys.refresh(responder)
    assert loaded == [loaded[0], rig.certificate().serial_number]
