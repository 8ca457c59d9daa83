"""The RA's enrollment decisions on a fake clock and a real store: who may enroll, into what,
how often; what a refusal leaves behind (an audit entry, nothing else)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleetpki.ca.ceremony import ca_name, create_root
from fleetpki.ca.signer import Signer
from fleetpki.core.clock import FakeClock
from fleetpki.core.errors import (
    BadInput,
    NotAuthenticated,
    NotAuthorized,
    NotFound,
    PolicyViolation,
    RateLimited,
)
from fleetpki.core.keys import KeySpec
from fleetpki.core.reasons import RevocationReason
from fleetpki.ra.api import (
    Authorization,
    BasicCredentials,
    Enrolled,
    EnrollmentKind,
    EnrollmentPending,
    EnrollmentRequest,
)
from fleetpki.ra.approvals import ApprovalDesk
from fleetpki.ra.credentials import CredentialAdmin, NewCredential
from fleetpki.ra.enrollment import EnrollmentLimits, EnrollmentService
from fleetpki.ra.manufacturers import ManufacturerAdmin
from fleetpki.ra.rate_limits import RateLimit
from fleetpki.ra.revocations import RevocationDesk
from fleetpki.ra.service import IssuanceService
from fleetpki.store.api import CertificateQuery
from fleetpki.store.sql.store import SqlStore
from support.csrs import make_csr, make_key
from support.enrollment_rig import HELD_PROFILE, enrollment_parts

START = dt.datetime(2030, 1, 15, 8, 0, tzinfo=dt.UTC)
OPERATOR = Authorization(actor="operator:test")
PROFILES = """
[profiles.sensor]
issuer = "issuing"
keys.allowed = ["ec-p256", "ec-p384"]
validity = { default = "90d", maximum = "90d" }
subject.attributes.CN = { required = true, pattern = "^sensor-[0-9]{4}$" }
extensions = { key_usage = ["digitalSignature"], extended_key_usage = ["clientAuth"] }
renewal = { window_fraction = 0.25, grace_after_expiry = "0s" }

[profiles.late]
issuer = "issuing"
keys.allowed = ["ec-p256"]
validity = { default = "90d", maximum = "90d" }
subject.attributes.CN = { required = true }
extensions = { key_usage = ["digitalSignature"], extended_key_usage = ["clientAuth"] }
renewal = { window_fraction = 0.25, grace_after_expiry = "30d" }
enrollment = { server_keygen = true }
""" + HELD_PROFILE


@dataclasses.dataclass
class Rig:
    service: EnrollmentService
    issuance: IssuanceService
    store: SqlStore
    clock: FakeClock
    credentials: CredentialAdmin
    manufacturers: ManufacturerAdmin
    desk: ApprovalDesk

    def secret(self, profile: str = "sensor", *, max_uses: int = 1,
               device_id: str | None = None) -> NewCredential:
        return self.credentials.create(profile, lifetime=dt.timedelta(days=7),
                                       max_uses=max_uses, device_id=device_id)

    def actions(self) -> list[str]:
        return [e.action for e in self.store.audit_entries()]

    def certificate_count(self) -> int:
        query = CertificateQuery(limit=10000)
        return len(self.store.find_certificates(query, now=self.clock.now()))


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    limits = EnrollmentLimits(per_credential=RateLimit(5, dt.timedelta(minutes=1)),
                              per_address=None)
    parts = enrollment_parts(tmp_path, PROFILES, START, limits=limits)
    store, profiles, clock = parts.store, parts.profiles, parts.clock
    return Rig(parts.service, parts.issuance, store, clock,
               CredentialAdmin(store, profiles, clock, "op"),
               ManufacturerAdmin(store, profiles, clock, "op"),
               ApprovalDesk(parts.issuance, store, clock, OPERATOR))


def der(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.DER)


def enroll(rig: Rig, csr: x509.CertificateSigningRequest, *, basic: NewCredential | None = None,
           password: str | None = None, cert: bytes | None = None, label: str | None = None,
           kind: EnrollmentKind = EnrollmentKind.enroll) -> Enrolled | EnrollmentPending:
    credentials = None if basic is None else BasicCredentials(
        basic.credential.id, basic.secret if password is None else password)
    return rig.service.enroll(EnrollmentRequest(
        csr=der(csr), kind=kind, client_address="192.0.2.7", label=label, basic=credentials,
        client_certificate=cert))


def issued(outcome: Enrolled | EnrollmentPending) -> x509.Certificate:
    assert isinstance(outcome, Enrolled), outcome
    return x509.load_der_x509_certificate(outcome.certificate.der)


# -- bootstrap secrets --------------------------------------------------------------------------

def test_bootstrap_secret_enrolls_once_then_is_used_up(rig: Rig) -> None:
    secret = rig.secret()
    cert = issued(enroll(rig, make_csr("sensor-0001")[0], basic=secret))
    assert cert.subject.rfc4514_string() == "CN=sensor-0001"
    assert rig.store.get_credential(secret.credential.id).uses == 1  # type: ignore[union-attr]
    with pytest.raises(NotAuthorized, match="no uses left"):
        enroll(rig, make_csr("sensor-0002")[0], basic=secret)
    assert rig.certificate_count() == 1
    assert rig.actions()[-1] == "certificate.refused"


def test_secret_is_stored_only_as_a_hash(rig: Rig) -> None:
    secret = rig.secret()
    stored = rig.store.get_credential(secret.credential.id)
    assert stored is not None and secret.secret not in stored.secret_hash
    assert secret.secret not in repr(secret) and secret.secret not in repr(stored)


@pytest.mark.parametrize("password", ["wrong", ""])
def test_wrong_secret_is_unauthenticated_and_audited(rig: Rig, password: str) -> None:
    secret = rig.secret()
    with pytest.raises(NotAuthenticated):
        enroll(rig, make_csr("sensor-0001")[0], basic=secret, password=password)
    assert rig.certificate_count() == 0
    assert rig.store.get_credential(secret.credential.id).uses == 0  # type: ignore[union-attr]
    assert rig.actions()[-1] == "certificate.refused"


def test_unknown_id_gets_the_same_answer_as_a_wrong_secret(rig: Rig) -> None:
    with pytest.raises(NotAuthenticated) as unknown:
        rig.service.enroll(EnrollmentRequest(der(make_csr("sensor-0001")[0]),
                                             EnrollmentKind.enroll, "192.0.2.7",
                                             basic=BasicCredentials("nobody", "x")))
    secret = rig.secret()
    with pytest.raises(NotAuthenticated) as wrong:
        enroll(rig, make_csr("sensor-0001")[0], basic=secret, password="x")
    assert str(unknown.value) == str(wrong.value)


def test_no_credential_at_all_asks_to_authenticate(rig: Rig) -> None:
    with pytest.raises(NotAuthenticated, match="authenticate"):
        enroll(rig, make_csr("sensor-0001")[0])


def test_scep_request_without_a_challenge_is_told_to_include_one(rig: Rig) -> None:
    with pytest.raises(NotAuthenticated, match="carries no challengePassword"):
        rig.service.enroll(EnrollmentRequest(
            csr=der(make_csr("sensor-0001")[0]), kind=EnrollmentKind.enroll,
            client_address="192.0.2.7", label="sensor", protocol="scep"))


def test_expired_and_disabled_secrets_are_refused(rig: Rig) -> None:
    expired, disabled = rig.secret(), rig.secret()
    rig.credentials.disable(disabled.credential.id)
    with pytest.raises(NotAuthorized, match="disabled"):
        enroll(rig, make_csr("sensor-0001")[0], basic=disabled)
    rig.clock.advance(dt.timedelta(days=8))
    with pytest.raises(NotAuthorized, match="expired"):
        enroll(rig, make_csr("sensor-0001")[0], basic=expired)
    assert rig.certificate_count() == 0


def test_policy_refusal_does_not_spend_a_use(rig: Rig) -> None:
    secret = rig.secret()
    with pytest.raises(PolicyViolation):
        enroll(rig, make_csr("not-a-sensor")[0], basic=secret)
    with pytest.raises(BadInput):
        rig.service.enroll(EnrollmentRequest(b"garbage", EnrollmentKind.enroll, "192.0.2.7",
                                             basic=BasicCredentials(secret.credential.id,
                                                                    secret.secret)))
    assert rig.store.get_credential(secret.credential.id).uses == 0  # type: ignore[union-attr]
    issued(enroll(rig, make_csr("sensor-0001")[0], basic=secret))


def test_per_device_secret_enrolls_only_its_device(rig: Rig) -> None:
    secret = rig.secret(device_id="sensor-0007")
    with pytest.raises(NotAuthorized, match="sensor-0007"):
        enroll(rig, make_csr("sensor-0008")[0], basic=secret)
    assert issued(enroll(rig, make_csr("sensor-0007")[0], basic=secret))


def test_factory_batch_of_per_device_secrets_each_enrolls_only_its_device(rig: Rig) -> None:
    head = rig.store.audit_head()
    batch = rig.credentials.prepare_for_devices("sensor", ["sensor-0001", "sensor-0002"],
                                                lifetime=dt.timedelta(days=7))
    assert rig.store.get_credential(batch.credentials[0].credential.id) is None  # not yet
    rig.credentials.add(batch)
    first, second = batch.credentials
    with pytest.raises(NotAuthorized, match="sensor-0002"):
        enroll(rig, make_csr("sensor-0001")[0], basic=second)
    assert issued(enroll(rig, make_csr("sensor-0001")[0], basic=first))
    assert issued(enroll(rig, make_csr("sensor-0002")[0], basic=second))
    assert rig.actions()[head[0]:head[0] + 2] == ["bootstrap.created"] * 2


@pytest.mark.parametrize(("ids", "says"), [
    (["sensor-0001", "sensor-0001"], "listed twice"),
    (["sensor-0001", " sensor-0002"], "leading or trailing spaces"),
    (["bad\x07id"], "printable"),
    ([], "between 1 and"),
])
def test_factory_batch_refusals_store_nothing(rig: Rig, ids: list[str], says: str) -> None:
    head = rig.store.audit_head()
    with pytest.raises(BadInput, match=says):
        rig.credentials.prepare_for_devices("sensor", ids, lifetime=dt.timedelta(days=7))
    assert rig.store.list_credentials() == [] and rig.store.audit_head() == head


def test_label_must_match_the_credentials_profile(rig: Rig) -> None:
    secret = rig.secret()
    with pytest.raises(NotAuthorized, match="'sensor', not 'late'"):
        enroll(rig, make_csr("sensor-0001")[0], basic=secret, label="late")
    with pytest.raises(NotFound, match="no enrollment label 'nope'"):
        enroll(rig, make_csr("sensor-0001")[0], basic=secret, label="nope")
    issued(enroll(rig, make_csr("sensor-0001")[0], basic=secret, label="sensor"))


def test_group_secret_is_rate_limited(rig: Rig) -> None:
    secret = rig.secret(max_uses=100)
    for n in range(5):
        issued(enroll(rig, make_csr(f"sensor-{n:04d}")[0], basic=secret))
    with pytest.raises(RateLimited) as limited:
        enroll(rig, make_csr("sensor-0099")[0], basic=secret)
    assert limited.value.retry_after >= 1
    assert rig.store.get_credential(secret.credential.id).uses == 5  # type: ignore[union-attr]


# -- re-enrollment with the current certificate ---------------------------------------------------

def enrolled_device(rig: Rig, cn: str = "sensor-0001", profile: str = "sensor"
                    ) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    secret = rig.secret(profile)
    csr, key = make_csr(cn)
    outcome = enroll(rig, csr, basic=secret)
    assert isinstance(outcome, Enrolled) and isinstance(key, ec.EllipticCurvePrivateKey)
    return outcome.certificate.der, key


def test_reenroll_inside_the_window_keeps_the_names(rig: Rig) -> None:
    current, _ = enrolled_device(rig)
    rig.clock.advance(dt.timedelta(days=70))  # last quarter of 90 days
    renewed = issued(enroll(rig, make_csr("sensor-0001")[0], cert=current,
                            kind=EnrollmentKind.reenroll))
    assert renewed.subject.rfc4514_string() == "CN=sensor-0001"
    assert rig.actions()[-1] == "certificate.issued"


def test_reenroll_before_the_window_is_refused(rig: Rig) -> None:
    current, _ = enrolled_device(rig)
    rig.clock.advance(dt.timedelta(days=30))
    with pytest.raises(NotAuthorized, match=r"renewal of .* opens at"):
        enroll(rig, make_csr("sensor-0001")[0], cert=current, kind=EnrollmentKind.reenroll)


def test_reenroll_refused_when_subject_changes(rig: Rig) -> None:
    current, _ = enrolled_device(rig)
    rig.clock.advance(dt.timedelta(days=70))
    with pytest.raises(PolicyViolation, match="keep the subject"):
        enroll(rig, make_csr("sensor-0002")[0], cert=current, kind=EnrollmentKind.reenroll)
    assert rig.certificate_count() == 1


def test_reenroll_refused_when_revoked(rig: Rig) -> None:
    current, _ = enrolled_device(rig)
    serial = x509.load_der_x509_certificate(current).serial_number
    RevocationDesk(rig.store, rig.store, {}, rig.clock, OPERATOR).revoke(
        serial, RevocationReason.key_compromise)
    rig.clock.advance(dt.timedelta(days=70))
    with pytest.raises(NotAuthorized, match="revoked"):
        enroll(rig, make_csr("sensor-0001")[0], cert=current, kind=EnrollmentKind.reenroll)


def test_expired_certificate_renews_only_within_the_profiles_grace(rig: Rig) -> None:
    strict, _ = enrolled_device(rig, "sensor-0001", "sensor")
    lenient, _ = enrolled_device(rig, "late-0001", "late")
    rig.clock.advance(dt.timedelta(days=100))
    with pytest.raises(NotAuthorized, match="expired"):
        enroll(rig, make_csr("sensor-0001")[0], cert=strict, kind=EnrollmentKind.reenroll)
    issued(enroll(rig, make_csr("late-0001")[0], cert=lenient, kind=EnrollmentKind.reenroll))
    rig.clock.advance(dt.timedelta(days=30))
    with pytest.raises(NotAuthorized, match="grace ended"):
        enroll(rig, make_csr("late-0001")[0], cert=lenient, kind=EnrollmentKind.reenroll)


def test_reenroll_without_a_certificate_asks_for_one(rig: Rig) -> None:
    with pytest.raises(NotAuthenticated, match="current certificate"):
        enroll(rig, make_csr("sensor-0001")[0], basic=rig.secret(),
               kind=EnrollmentKind.reenroll)


def test_a_look_alike_certificate_is_not_ours(rig: Rig) -> None:
    """Same issuer name, different key: the signature check catches it."""
    fake_ca = create_root("issuing", ca_name("Issuing", "T"), KeySpec.parse("ec-p256"),
                          now=START)
    key = make_key()
    forged = (x509.CertificateBuilder().subject_name(x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "sensor-0001")]))
        .issuer_name(fake_ca.certificate.subject).public_key(key.public_key())
        .serial_number(1).not_valid_before(START).not_valid_after(START + dt.timedelta(days=9))
        .sign(fake_ca.private_key, hashes.SHA256()))
    with pytest.raises(NotAuthenticated):
        enroll(rig, make_csr("sensor-0001")[0], cert=forged.public_bytes(
            serialization.Encoding.DER), kind=EnrollmentKind.reenroll)


# -- factory identities (IDevID) ------------------------------------------------------------------

def factory(rig: Rig, *, allow: list[str] | None = None
            ) -> tuple[Signer, list[str] | None]:
    maker = create_root("acme-idevid", ca_name("Acme IDevID CA", "Acme"),
                        KeySpec.parse("ec-p256"), now=START - dt.timedelta(days=400))
    rig.manufacturers.add("acme", maker.certificate.public_bytes(serialization.Encoding.PEM),
                          "sensor", allow_list=allow is not None)
    if allow:
        rig.manufacturers.allow("acme", allow)
    return maker, allow


def idevid(maker: Signer, serial_number: str, *, days: int = 3650) -> bytes:
    key = make_key()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number)]))
            .issuer_name(maker.certificate.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(START - dt.timedelta(days=10))
            .not_valid_after(START + dt.timedelta(days=days))
            .sign(maker.private_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def test_factory_identity_enrolls_into_the_manufacturers_profile(rig: Rig) -> None:
    maker, _ = factory(rig)
    cert = issued(enroll(rig, make_csr("sensor-0042")[0], cert=idevid(maker, "sensor-0042")))
    assert cert.subject.rfc4514_string() == "CN=sensor-0042"
    entry = list(rig.store.audit_entries())[-1]
    assert entry.actor == "idevid:acme:sensor-0042"


def test_factory_identity_cannot_enroll_another_device(rig: Rig) -> None:
    maker, _ = factory(rig)
    with pytest.raises(NotAuthorized, match="sensor-0042"):
        enroll(rig, make_csr("sensor-0043")[0], cert=idevid(maker, "sensor-0042"))


def test_allow_list_refuses_unlisted_devices(rig: Rig) -> None:
    maker, _ = factory(rig, allow=["sensor-0001"])
    issued(enroll(rig, make_csr("sensor-0001")[0], cert=idevid(maker, "sensor-0001")))
    with pytest.raises(NotAuthorized, match="allow list"):
        enroll(rig, make_csr("sensor-0002")[0], cert=idevid(maker, "sensor-0002"))
    assert rig.certificate_count() == 1


def test_expired_factory_identity_is_refused(rig: Rig) -> None:
    maker, _ = factory(rig)
    with pytest.raises(NotAuthorized, match="outside its validity"):
        enroll(rig, make_csr("sensor-0001")[0], cert=idevid(maker, "sensor-0001", days=-1))


def test_factory_identity_on_reenroll_is_a_first_enrollment(rig: Rig) -> None:
    """strongSwan's pki sends certificate-authenticated requests to simplereenroll."""
    maker, _ = factory(rig)
    cert = issued(enroll(rig, make_csr("sensor-0001")[0], cert=idevid(maker, "sensor-0001"),
                         kind=EnrollmentKind.reenroll))
    assert cert.subject.rfc4514_string() == "CN=sensor-0001"


def test_unknown_client_certificate_without_secret_is_refused(rig: Rig) -> None:
    stranger = create_root("x", ca_name("Stranger", "X"), KeySpec.parse("ec-p256"), now=START)
    with pytest.raises(NotAuthorized, match="neither by this CA"):
        enroll(rig, make_csr("sensor-0001")[0], cert=idevid(stranger, "sensor-0001"))


def test_manufacturer_must_be_a_ca(rig: Rig) -> None:
    leaf = x509.load_der_x509_certificate(enrolled_device(rig)[0])
    with pytest.raises(BadInput, match="not a CA"):
        rig.manufacturers.add("x", leaf.public_bytes(serialization.Encoding.PEM), "sensor")


# -- manual approval (RFC 7030 §4.2.3) ------------------------------------------------------------

def test_held_enrollment_is_issued_after_approval_on_retry(rig: Rig) -> None:
    secret = rig.secret("held")
    csr, _ = make_csr("gw-0001")
    pending = enroll(rig, csr, basic=secret)
    assert isinstance(pending, EnrollmentPending) and pending.retry_after == 120
    assert rig.certificate_count() == 0
    again = enroll(rig, csr, basic=secret)  # a retry does not spend another use
    assert isinstance(again, EnrollmentPending) and again.request_id == pending.request_id
    record = rig.desk.approve(pending.request_id)
    cert = issued(enroll(rig, csr, basic=secret))
    assert cert.serial_number == record.serial
    assert rig.store.get_credential(secret.credential.id).uses == 1  # type: ignore[union-attr]
    assert "enrollment.held" in rig.actions() and "enrollment.approved" in rig.actions()


def test_rejected_enrollment_tells_the_device_why(rig: Rig) -> None:
    secret = rig.secret("held")
    csr, _ = make_csr("gw-0001")
    pending = enroll(rig, csr, basic=secret)
    assert isinstance(pending, EnrollmentPending)
    rig.desk.reject(pending.request_id, "unknown device")
    with pytest.raises(NotAuthorized, match="rejected by operator:test: unknown device"):
        enroll(rig, csr, basic=secret)
    assert rig.certificate_count() == 0


# -- server-side key generation (RFC 7030 §4.4) ----------------------------------------------

def test_server_keygen_returns_the_key_of_the_certificate(rig: Rig) -> None:
    secret = rig.secret("late")
    outcome = enroll(rig, make_csr("late-0001")[0], basic=secret,
                     kind=EnrollmentKind.server_keygen)
    assert isinstance(outcome, Enrolled) and outcome.private_key_pkcs8 is not None
    key = serialization.load_der_private_key(outcome.private_key_pkcs8, None)
    cert = x509.load_der_x509_certificate(outcome.certificate.der)
    assert cert.public_key() == key.public_key()
    assert "PRIVATE" not in repr(outcome) and outcome.private_key_pkcs8.hex() not in repr(outcome)


def test_server_keygen_needs_the_profiles_consent(rig: Rig) -> None:
    with pytest.raises(NotAuthorized, match="server_keygen"):
        enroll(rig, make_csr("sensor-0001")[0], basic=rig.secret(),
               kind=EnrollmentKind.server_keygen)


def test_server_keygen_takes_the_key_type_asked_for_only_within_the_profile(rig: Rig) -> None:
    secret = rig.secret("late", max_uses=2)
    request = EnrollmentRequest(csr=der(make_csr("late-0002")[0]),
                                kind=EnrollmentKind.server_keygen, client_address="192.0.2.7",
                                basic=BasicCredentials(secret.credential.id, secret.secret),
                                server_key_type="ec-p384")
    with pytest.raises(PolicyViolation, match="ec-p384 keys are not allowed"):
        rig.service.enroll(request)
    assert rig.certificate_count() == 0
    outcome = rig.service.enroll(dataclasses.replace(request, server_key_type="ec-p256"))
    assert isinstance(outcome, Enrolled) and outcome.private_key_pkcs8 is not None
    key = serialization.load_der_private_key(outcome.private_key_pkcs8, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"


def test_disabling_stops_a_credential_at_once_even_while_cached(rig: Rig) -> None:
    secret = rig.secret(max_uses=10)
    issued(enroll(rig, make_csr("sensor-0001")[0], basic=secret))  # now in the lookup cache
    rig.credentials.disable(secret.credential.id)
    with pytest.raises(NotAuthorized, match="disabled"):
        enroll(rig, make_csr("sensor-0002")[0], basic=secret)
    assert rig.certificate_count() == 1


def test_expired_certificate_falls_back_to_a_bootstrap_secret_on_first_enrollment(
        rig: Rig) -> None:
    current, _ = enrolled_device(rig)
    rig.clock.advance(dt.timedelta(days=100))
    with pytest.raises(NotAuthorized, match="expired"):
        enroll(rig, make_csr("sensor-0001")[0], cert=current)
    fresh = rig.secret()
    cert = issued(enroll(rig, make_csr("sensor-0001")[0], cert=current, basic=fresh))
    assert cert.not_valid_after_utc > rig.clock.now()
