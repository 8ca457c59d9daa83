"""EstHandler driven in process with EstCall objects, over a real RA and store on a fake clock:
what a device would receive over HTTPS, without HTTP. The curl tests (tests/integration)
check that the HTTPS adapter gives the same answers on the wire."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import logging
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from fleetpki.ca.ceremony import ca_name, create_root
from fleetpki.core.clock import FakeClock
from fleetpki.core.keys import KeySpec
from fleetpki.core.profile import Profile
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.renewal_window import RenewalAdvisory, normal_window
from fleetpki.protocols.est import handler as handler_module
from fleetpki.protocols.est.codec import (
    MAX_BODY_BYTES,
    decode_base64_body,
    decode_serverkeygen,
    load_certs_only,
)
from fleetpki.protocols.est.handler import (
    OPERATIONS,
    EstCall,
    EstHandler,
    EstReply,
    not_found,
)
from fleetpki.protocols.est.renewal_info import RenewalInfo, decode_renewal_info
from fleetpki.ra.api import (
    Authorization,
    Enrolled,
    EnrollmentPending,
    EnrollmentRequest,
    RenewalAdvice,
)
from fleetpki.ra.credentials import CredentialAdmin
from fleetpki.ra.enrollment import EnrollmentService
from fleetpki.ra.manufacturers import ManufacturerAdmin
from fleetpki.ra.revocations import RevocationDesk
from fleetpki.store.api import AuditEvent
from fleetpki.store.sql.store import SqlStore
from support.csrs import make_csr, make_key
from support.enrollment_rig import HELD_PROFILE, enrollment_parts

START = dt.datetime(2030, 1, 15, 8, 0, tzinfo=dt.UTC)
EST = "/.well-known/est"
PROFILES = """
[profiles.sensor]
issuer = "issuing"
keys.allowed = ["ec-p256"]
validity = { default = "90d", maximum = "90d" }
subject.attributes.CN = { required = true }
extensions = { key_usage = ["digitalSignature"], extended_key_usage = ["clientAuth"] }
renewal = { window_fraction = 0.25, grace_after_expiry = "0s", info_interval = "6h" }
enrollment = { server_keygen = true }

[profiles.late]
issuer = "issuing"
keys.allowed = ["ec-p256"]
validity = { default = "90d", maximum = "90d" }
subject.attributes.CN = { required = true }
extensions = { key_usage = ["digitalSignature"], extended_key_usage = ["clientAuth"] }
renewal = { window_fraction = 0.25, grace_after_expiry = "30d" }
""" + HELD_PROFILE


@dataclasses.dataclass
class Fleet:
    handler: EstHandler
    service: EnrollmentService
    store: SqlStore
    clock: FakeClock
    profiles: dict[str, Profile]
    credentials: CredentialAdmin

    def call(self, method: str, path: str, *, body: bytes = b"",
             headers: dict[str, str] | None = None, cert: bytes | None = None) -> EstReply:
        return self.handler.handle(EstCall(
            method=method, path=f"{EST}/{path}", headers=headers or {}, body=body,
            client_address="192.0.2.7", client_certificate=cert))

    def basic(self, profile: str = "sensor") -> dict[str, str]:
        made = self.credentials.create(profile, lifetime=dt.timedelta(days=7), max_uses=1)
        token = base64.b64encode(f"{made.credential.id}:{made.secret}".encode()).decode()
        return {"authorization": f"Basic {token}"}

    def enroll(self, cn: str, profile: str = "sensor") -> bytes:
        """A device enrolled with a bootstrap secret; returns its certificate (DER)."""
        reply = self.call("POST", f"{profile}/simpleenroll", body=csr_body(cn),
                          headers={**self.basic(profile), "content-type": "application/pkcs10"})
        assert reply.status == 200, reply.body
        [cert] = load_certs_only(decode_base64_body(reply.body))
        return cert.public_bytes(serialization.Encoding.DER)

    def renewal_info(self, cert: bytes | None, path: str = "renewalinfo") -> RenewalInfo:
        reply = self.call("GET", path, cert=cert)
        assert reply.status == 200, reply.body
        return decode_renewal_info(reply.body)

    def advise(self, advisory_id: str, *, start: dt.datetime, issued_before: dt.datetime,
               end: dt.datetime | None = None) -> RenewalAdvisory:
        advisory = RenewalAdvisory(
            id=advisory_id, profile="sensor", issued_before=issued_before, start=start,
            end=end or start + dt.timedelta(days=7),
            explanation="key compromise at the integrator: renew now",
            created_at=self.clock.now(), created_by="operator:test")
        self.store.add_advisory(advisory, AuditEvent("operator:test", "renewal.advised",
                                                     advisory_id), at=self.clock.now())
        self.service.refresh_advisories()
        return advisory


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    parts = enrollment_parts(tmp_path, PROFILES, START)
    return Fleet(EstHandler(parts.service), parts.service, parts.store, parts.clock,
                 parts.profiles, CredentialAdmin(parts.store, parts.profiles, parts.clock, "op"))


def csr_body(cn: str) -> bytes:
    return base64.b64encode(make_csr(cn)[0].public_bytes(serialization.Encoding.DER))


def pkcs10(**headers: str) -> dict[str, str]:
    return {"content-type": "application/pkcs10", **headers}


def text(reply: EstReply) -> str:
    assert reply.header("content-type") == "text/plain; charset=utf-8"
    return reply.body.decode()


def whole(moment: dt.datetime) -> dt.datetime:
    return moment.replace(microsecond=0)


def serial_of(der: bytes) -> str:
    return f"{x509.load_der_x509_certificate(der).serial_number:x}"


def test_public_names_are_pinned() -> None:
    assert sorted(handler_module.__all__) == sorted([
        "OPERATIONS", "PREFIX", "EstAuthority", "EstCall", "EstHandler", "EstOperation",
        "EstReply", "error_reply", "not_found"])
    assert [(o.name, o.method) for o in OPERATIONS] == [
        ("cacerts", "GET"), ("csrattrs", "GET"), ("simpleenroll", "POST"),
        ("simplereenroll", "POST"), ("serverkeygen", "POST"), ("renewalinfo", "GET")]


# -- the existing EST operations ------------------------------------------------------------------

def test_cacerts_is_the_chain_as_single_line_base64_certs_only(fleet: Fleet) -> None:
    reply = fleet.call("GET", "cacerts")
    assert reply.status == 200
    assert reply.header("content-type") == "application/pkcs7-mime"
    assert reply.header("content-transfer-encoding") == "base64"
    assert b"\n" not in reply.body
    assert len(load_certs_only(decode_base64_body(reply.body))) == 2


def test_simpleenroll_with_a_bootstrap_secret_returns_the_certificate(fleet: Fleet) -> None:
    reply = fleet.call("POST", "simpleenroll", body=csr_body("sensor-0001"),
                       headers=pkcs10(**fleet.basic()))
    assert reply.status == 200
    assert reply.header("content-type") == "application/pkcs7-mime; smime-type=certs-only"
    [cert] = load_certs_only(decode_base64_body(reply.body))
    assert cert.subject.rfc4514_string() == "CN=sensor-0001"


def test_serverkeygen_answers_multipart_with_the_key_first(fleet: Fleet) -> None:
    reply = fleet.call("POST", "serverkeygen", body=csr_body("sensor-0002"),
                       headers=pkcs10(**fleet.basic()))
    assert reply.status == 200 and reply.header("cache-control") == "no-store"
    content_type = reply.header("content-type")
    assert content_type is not None and content_type.startswith("multipart/mixed; boundary=")
    key_der, [cert] = decode_serverkeygen(content_type, reply.body)
    key = serialization.load_der_private_key(key_der, password=None)
    assert key.public_key() == cert.public_key()


def test_held_enrollment_is_202_with_retry_after(fleet: Fleet) -> None:
    reply = fleet.call("POST", "held/simpleenroll", body=csr_body("held-0001"),
                       headers=pkcs10(**fleet.basic("held")))
    assert reply.status == 202 and reply.header("retry-after") == "120"
    assert "waiting for approval" in text(reply)


@pytest.mark.parametrize(("method", "path", "body", "headers", "status", "says"), [
    ("GET", "nothing-here", b"", {}, 404, "no EST operation"),
    ("GET", "a/b/cacerts", b"", {}, 404, "no EST operation"),
    ("POST", "nolabel/simpleenroll", b"MIIB", pkcs10(), 404, "no enrollment label"),
    ("GET", "NOT_A_LABEL/cacerts", b"", {}, 400, "not a valid label"),
    ("POST", "simpleenroll", b"MIIB", {"content-type": "text/plain"}, 415,
     "application/pkcs10"),
    ("POST", "simpleenroll", b"A" * (MAX_BODY_BYTES + 1), pkcs10(), 413, "larger than"),
    ("POST", "simpleenroll", b"", pkcs10(**{"content-length": "70000"}), 413, "larger than"),
    ("POST", "simpleenroll", b"MIIB", pkcs10(), 401, "authenticate"),
    ("POST", "simpleenroll", b"MIIB", pkcs10(authorization="Bearer x"), 401, "Basic"),
    ("POST", "simpleenroll", b"MIIB", pkcs10(authorization="Basic !!"), 401, "base64"),
    ("POST", "simpleenroll", b"MIIB", pkcs10(authorization="Basic s\u00e9cr\u20act"), 401,
     "not base64"),
    ("POST", "simpleenroll", b"MIIB", pkcs10(authorization="Basic " + base64.b64encode(
        "id:s\u00e9cret".encode("latin-1")).decode()), 401, "not of UTF-8 text"),
])
def test_refusals_have_the_right_status_and_say_why(
        fleet: Fleet, method: str, path: str, body: bytes, headers: dict[str, str],
        status: int, says: str) -> None:
    reply = fleet.call(method, path, body=body, headers=headers)
    assert reply.status == status and says in text(reply)
    if status == 401:
        assert (reply.header("www-authenticate") or "").startswith("Basic realm=")


def test_not_found_is_the_handlers_own_404(fleet: Fleet) -> None:
    """What a transport answers for a path it does not route (an encoded slash, server.py)
    is the reply the handler gives for a path with no operation."""
    reply = fleet.call("GET", "nothing-here")
    assert not_found("/.well-known/est/nothing-here") == reply
def test_an_unknown_user_name_is_audited_bounded_and_printable(fleet: Fleet) -> None:
    name = "u\x07" + "u" * 100_000
    token = base64.b64encode(f"{name}:secret".encode()).decode()
    reply = fleet.call("POST", "simpleenroll", body=csr_body("sensor-0001"),
                       headers=pkcs10(authorization=f"Basic {token}"))
    assert reply.status == 401
    [last] = list(fleet.store.audit_entries())[-1:]
    assert last.actor == "unauthenticated:u?" + "u" * 62 + "\u2026"


def test_wrong_method_is_405_with_allow(fleet: Fleet) -> None:
    reply = fleet.call("POST", "cacerts")
    assert reply.status == 405 and reply.header("allow") == "GET, HEAD"
    reply = fleet.call("GET", "sensor/simpleenroll")
    assert reply.status == 405 and reply.header("allow") == "POST"


class _Broken:
    """An authority whose every call fails in a way no domain error describes."""

    def profile_for(self, label: str | None) -> Profile:
        raise RuntimeError("secret detail /var/lib/fleetpki")

    def ca_certificates(self, label: str | None) -> list[x509.Certificate]:
        raise RuntimeError("secret detail /var/lib/fleetpki")

    def enroll(self, request: EnrollmentRequest) -> Enrolled | EnrollmentPending:
        raise RuntimeError("secret detail /var/lib/fleetpki")

    def renewal_advice(self, client_certificate: bytes, label: str | None = None
                       ) -> RenewalAdvice:
        raise RuntimeError("secret detail /var/lib/fleetpki")


def test_an_unexpected_failure_is_500_without_details_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    handler = EstHandler(_Broken())
    with caplog.at_level(logging.ERROR, logger="fleetpki.protocols.est.handler"):
        reply = handler.handle(EstCall("GET", f"{EST}/cacerts", {}, b"", "192.0.2.7", None))
    assert reply.status == 500
    assert b"secret detail" not in reply.body and b"Traceback" not in reply.body
    assert any(r.exc_info and "secret detail" in str(r.exc_info[1]) for r in caplog.records)


# -- renewalinfo ----------------------------------------------------------------------------------

def test_renewalinfo_of_a_valid_certificate_is_the_profiles_window(fleet: Fleet) -> None:
    cert = fleet.enroll("sensor-0010")
    reply = fleet.call("GET", "renewalinfo", cert=cert)
    assert reply.status == 200
    assert reply.header("content-type") == "application/json"
    assert reply.header("retry-after") == str(6 * 3600)  # the profile's info_interval
    assert reply.header("cache-control") == "private, no-cache"
    info = decode_renewal_info(reply.body)
    parsed = x509.load_der_x509_certificate(cert)
    expected = normal_window(parsed.not_valid_before_utc, parsed.not_valid_after_utc,
                             fleet.profiles["sensor"].renewal)
    # The document carries whole seconds (RFC 3339, renewal_info.py).
    assert (info.start, info.end) == (whole(expected.start), whole(expected.end))
    assert info.status == "valid" and info.explanation is None
    assert info.serial == serial_of(cert) and info.not_after == parsed.not_valid_after_utc
    assert json.loads(reply.body)["suggestedWindow"]["start"].endswith("Z")


def test_renewalinfo_default_retry_after_is_one_day(fleet: Fleet) -> None:
    reply = fleet.call("GET", "late/renewalinfo", cert=fleet.enroll("late-0001", "late"))
    assert reply.status == 200 and reply.header("retry-after") == "86400"


def test_an_advisory_moves_the_window_and_opens_reenrollment_early(fleet: Fleet) -> None:
    cert = fleet.enroll("sensor-0011")
    fleet.clock.advance(dt.timedelta(days=10))  # the profile's renewal opens at day 67.5

    def reenroll() -> EstReply:
        return fleet.call("POST", "simplereenroll", body=csr_body("sensor-0011"),
                          headers=pkcs10(), cert=cert)

    refused = reenroll()
    assert refused.status == 403 and "opens at" in text(refused)

    now = fleet.clock.now()
    advisory = fleet.advise("adv-1", start=now, issued_before=now)
    info = fleet.renewal_info(cert)
    assert (info.start, info.end) == (advisory.start, advisory.end)
    assert info.explanation == advisory.explanation and info.status == "valid"

    renewed = reenroll()
    assert renewed.status == 200, renewed.body
    issued = [e for e in fleet.store.audit_entries() if e.action == "certificate.issued"]
    assert issued[-1].details["renewal_advisory"] == "adv-1"
    assert "renewal_advisory" not in issued[0].details
    # The new certificate, issued at the advisory's cut-off with a notBefore backdated before
    # it, is not covered: it gets the profile's own window, not another "renew now".
    new = load_certs_only(decode_base64_body(renewed.body))[0]
    assert new.not_valid_before_utc < advisory.issued_before
    fresh = fleet.renewal_info(new.public_bytes(serialization.Encoding.DER))
    assert fresh.explanation is None and fresh.start > now + dt.timedelta(days=60)


def test_an_advisory_does_not_cover_certificates_issued_after_it(fleet: Fleet) -> None:
    fleet.advise("adv-2", start=START, issued_before=START - dt.timedelta(days=1))
    cert = fleet.enroll("sensor-0012")
    info = fleet.renewal_info(cert)
    assert info.explanation is None
    assert info.start > START + dt.timedelta(days=60)


def test_an_advisory_is_seen_after_the_cache_is_dropped(fleet: Fleet) -> None:
    cert = fleet.enroll("sensor-0013")
    before = fleet.renewal_info(cert)  # caches "no advisories"
    advisory = RenewalAdvisory(
        id="adv-3", profile="sensor", issued_before=START + dt.timedelta(days=1), start=START,
        end=START + dt.timedelta(days=2), explanation="spread the load",
        created_at=START, created_by="operator:test")
    fleet.store.add_advisory(advisory, AuditEvent("operator:test", "renewal.advised", "adv-3"),
                             at=START)
    assert fleet.renewal_info(cert) == before  # cached
    fleet.service.refresh_advisories()
    assert fleet.renewal_info(cert).explanation == "spread the load"


def test_a_withdrawn_advisory_no_longer_opens_reenrollment(fleet: Fleet) -> None:
    cert = fleet.enroll("sensor-0015")
    fleet.advise("adv-5", start=START, issued_before=START + dt.timedelta(days=1))
    fleet.store.withdraw_advisory("adv-5", AuditEvent("operator:test", "renewal.withdrawn",
                                                      "adv-5"), at=START)
    fleet.service.refresh_advisories()
    assert fleet.renewal_info(cert).explanation is None
    reply = fleet.call("POST", "simplereenroll", body=csr_body("sensor-0015"), headers=pkcs10(),
                       cert=cert)
    assert reply.status == 403 and "opens at" in text(reply)


def test_a_future_advisory_names_itself_when_refusing_a_renewal(fleet: Fleet) -> None:
    cert = fleet.enroll("sensor-0014")
    fleet.advise("adv-4", start=START + dt.timedelta(days=20),
                 issued_before=START + dt.timedelta(days=1))
    reply = fleet.call("POST", "simplereenroll", body=csr_body("sensor-0014"), headers=pkcs10(),
                       cert=cert)
    assert reply.status == 403
    assert "opens at 2030-02-04 08:00Z" in text(reply) and "adv-4" in text(reply)


def test_renewalinfo_of_a_revoked_certificate_says_now_and_enroll_again(fleet: Fleet) -> None:
    cert = fleet.enroll("sensor-0020")
    RevocationDesk(fleet.store, fleet.store, {}, fleet.clock,
                   Authorization(actor="operator:test")).revoke(
        x509.load_der_x509_certificate(cert).serial_number, RevocationReason.key_compromise)
    fleet.clock.advance(dt.timedelta(hours=1))
    info = fleet.renewal_info(cert)
    assert info.status == "revoked" and info.start == fleet.clock.now()
    assert info.explanation is not None and "enroll again" in info.explanation


def test_renewalinfo_of_an_expired_certificate_past_its_grace(fleet: Fleet) -> None:
    cert = fleet.enroll("sensor-0021")
    fleet.clock.advance(dt.timedelta(days=91))
    info = fleet.renewal_info(cert)
    assert info.status == "expired" and info.start == fleet.clock.now()
    assert info.explanation is not None
    assert "expired" in info.explanation and "factory identity" in info.explanation


def test_renewalinfo_of_an_expired_certificate_within_its_grace(fleet: Fleet) -> None:
    cert = fleet.enroll("late-0002", "late")
    fleet.clock.advance(dt.timedelta(days=91))
    info = fleet.renewal_info(cert, "late/renewalinfo")
    assert info.status == "expired" and info.start < fleet.clock.now()
    assert info.explanation is not None and "accepted until" in info.explanation
    renewed = fleet.call("POST", "late/simplereenroll", body=csr_body("late-0002"),
                         headers=pkcs10(), cert=cert)
    assert renewed.status == 200  # what the advice said


def test_renewalinfo_without_a_certificate_asks_for_the_current_one(fleet: Fleet) -> None:
    reply = fleet.call("GET", "renewalinfo")
    assert reply.status == 401 and "present the current certificate" in text(reply)


def test_renewalinfo_refuses_certificates_that_are_not_ours(fleet: Fleet) -> None:
    stranger = create_root("issuing", ca_name("Issuing", "T"), KeySpec.parse("ec-p256"),
                           now=START)
    forged = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sensor-0030")]))
              .issuer_name(stranger.certificate.subject).public_key(make_key().public_key())
              .serial_number(7).not_valid_before(START)
              .not_valid_after(START + dt.timedelta(days=9))
              .sign(stranger.private_key, hashes.SHA256()))
    reply = fleet.call("GET", "renewalinfo",
                       cert=forged.public_bytes(serialization.Encoding.DER))
    assert reply.status == 403 and "not issued by this CA" in text(reply)
    reply = fleet.call("GET", "renewalinfo", cert=b"\x30\x03junk")
    assert reply.status == 401 and "cannot be parsed" in text(reply)


def test_renewalinfo_refuses_a_factory_identity_with_what_to_do(fleet: Fleet) -> None:
    maker = create_root("acme-idevid", ca_name("Acme IDevID CA", "Acme"),
                        KeySpec.parse("ec-p256"), now=START - dt.timedelta(days=10))
    ManufacturerAdmin(fleet.store, fleet.profiles, fleet.clock, "op").add(
        "acme", maker.certificate.public_bytes(serialization.Encoding.PEM), "sensor")
    idevid = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "A-1")]))
              .issuer_name(maker.certificate.subject).public_key(make_key().public_key())
              .serial_number(9).not_valid_before(START - dt.timedelta(days=1))
              .not_valid_after(START + dt.timedelta(days=900))
              .sign(maker.private_key, hashes.SHA256()))
    reply = fleet.call("GET", "renewalinfo",
                       cert=idevid.public_bytes(serialization.Encoding.DER))
    assert reply.status == 403 and "factory identity" in text(reply)


def test_renewalinfo_label_must_be_the_certificates_profile(fleet: Fleet) -> None:
    cert = fleet.enroll("sensor-0031")
    assert fleet.call("GET", "sensor/renewalinfo", cert=cert).status == 200
    wrong = fleet.call("GET", "late/renewalinfo", cert=cert)
    assert wrong.status == 403 and "profile 'sensor'" in text(wrong)
    assert fleet.call("GET", "nolabel/renewalinfo", cert=cert).status == 404
