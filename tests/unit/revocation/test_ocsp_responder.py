"""The OCSP responder without the network: what it answers (RFC 6960, RFC 5019 profile), what
it refuses, and what it keeps pre-signed, on a fake clock and an in-memory status source."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleetpki.core import der
from fleetpki.core.clock import FakeClock
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import RevocationStatus
from fleetpki.revocation.ocsp_responder import (
    INTERNAL_ERROR,
    MALFORMED_REQUEST,
    UNAUTHORIZED,
    OcspAnswer,
    OcspResponder,
    ResponderKey,
)
from support.tiny_pki import NOW, Issued, issue

DAY = dt.timedelta(days=1)
# RFC 5019 §2.1.1: the CertID hash every client can send; an identifier here, not a signature.
SHA1 = hashes.SHA1()  # noqa: S303


def responder_certificate(ca: Issued, cn: str = "Fleet OCSP", *,
                          usages: tuple[x509.ObjectIdentifier, ...] = (
                              ExtendedKeyUsageOID.OCSP_SIGNING,)) -> Issued:
    """A delegated responder (RFC 6960 §4.2.2.2): OCSPSigning, id-pkix-ocsp-nocheck."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - DAY).not_valid_after(NOW + 30 * DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
            .add_extension(x509.OCSPNoCheck(), critical=False)
            .sign(ca.key, hashes.SHA256()))
    return Issued(cert, key)


class Statuses:
    """An in-memory StatusSource that counts its lookups."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, int], RevocationStatus] = {}
        self.lookups = 0

    def certificate_status(self, issuer: str, serial: int) -> RevocationStatus | None:
        self.lookups += 1
        return self.entries.get((issuer, serial))

    def add(self, issuer: str, cert: x509.Certificate, *, not_after: dt.datetime | None = None,
            revoked_at: dt.datetime | None = None,
            reason: RevocationReason | None = None) -> None:
        self.entries[(issuer, cert.serial_number)] = RevocationStatus(
            cert.serial_number, not_after or cert.not_valid_after_utc, revoked_at, reason)


@dataclasses.dataclass
class Pki:
    ca: Issued
    responder: Issued
    leaves: list[Issued]
    statuses: Statuses
    clock: FakeClock

    def key(self) -> ResponderKey:
        return ResponderKey("fleet-issuing", self.ca.cert, self.responder.cert,
                            self.responder.key)

    def ocsp(self, *, validity: dt.timedelta = DAY, max_cached: int = 200_000) -> OcspResponder:
        return OcspResponder(self.statuses, [self.key()], self.clock, validity=validity,
                             max_cached=max_cached)


@pytest.fixture
def pki() -> Pki:
    ca = issue("Fleet Issuing CA", ca=True)
    leaves = [issue(f"device-{n}", ca) for n in range(3)]
    statuses = Statuses()
    for leaf in leaves:
        statuses.add("fleet-issuing", leaf.cert)
    return Pki(ca, responder_certificate(ca), leaves, statuses, FakeClock(NOW))


def request_for(cert: x509.Certificate, issuer: x509.Certificate,
                algorithm: hashes.HashAlgorithm | None = None, *,
                nonce: bytes | None = None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm or SHA1)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(Encoding.DER)


def parsed(answer: OcspAnswer, responder: Issued) -> ocsp.OCSPResponse:
    """A successful response whose signature checks out with the responder's key."""
    response = ocsp.load_der_ocsp_response(answer.der)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    public_key = responder.cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert response.signature_hash_algorithm is not None
    public_key.verify(response.signature, response.tbs_response_bytes,
                      ec.ECDSA(response.signature_hash_algorithm))
    return response


def error_status(answer: OcspAnswer) -> ocsp.OCSPResponseStatus:
    assert not answer.cacheable and answer.this_update is None and answer.next_update is None
    return ocsp.load_der_ocsp_response(answer.der).response_status


# -- what it answers -----------------------------------------------------------------------


def test_good_answer_is_signed_by_the_delegated_responder_named_by_key_hash(pki: Pki) -> None:
    leaf = pki.leaves[0].cert
    answer = pki.ocsp().respond(request_for(leaf, pki.ca.cert))
    response = parsed(answer, pki.responder)
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.serial_number == leaf.serial_number
    assert response.hash_algorithm.name == "sha1"
    # RFC 5019 §2.2.3: byKeyHash, the SHA-1 of the responder's public key bits.
    assert response.responder_key_hash == x509.SubjectKeyIdentifier.from_public_key(
        pki.responder.cert.public_key()).digest
    assert response.responder_name is None
    assert response.certificates == [pki.responder.cert]
    assert response.this_update_utc == NOW.replace(microsecond=0)
    assert response.next_update_utc == NOW.replace(microsecond=0) + DAY
    assert (answer.this_update, answer.next_update) == (response.this_update_utc,
                                                         response.next_update_utc)
    assert answer.cacheable
    assert len(response.extensions) == 0


def test_revoked_answer_carries_time_and_reason(pki: Pki) -> None:
    leaf = pki.leaves[1].cert
    revoked_at = NOW - dt.timedelta(hours=3, microseconds=5)
    pki.statuses.add("fleet-issuing", leaf, revoked_at=revoked_at,
                     reason=RevocationReason.key_compromise)
    response = parsed(pki.ocsp().respond(request_for(leaf, pki.ca.cert)), pki.responder)
    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_time_utc == revoked_at.replace(microsecond=0)
    assert response.revocation_reason is x509.ReasonFlags.key_compromise


@pytest.mark.parametrize("reason", [None, RevocationReason.unspecified])
def test_revoked_without_a_reason_or_unspecified_has_no_reason_code(
        pki: Pki, reason: RevocationReason | None) -> None:
    leaf = pki.leaves[1].cert
    pki.statuses.add("fleet-issuing", leaf, revoked_at=NOW - DAY, reason=reason)
    response = parsed(pki.ocsp().respond(request_for(leaf, pki.ca.cert)), pki.responder)
    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_reason is None


def test_never_issued_serial_is_unknown(pki: Pki) -> None:
    stranger = issue("never-recorded", pki.ca)  # same CA, serial unknown to the store
    response = parsed(pki.ocsp().respond(request_for(stranger.cert, pki.ca.cert)),
                      pki.responder)
    assert response.certificate_status is ocsp.OCSPCertStatus.UNKNOWN


@pytest.mark.parametrize("revoked", [False, True])
def test_expired_certificate_keeps_its_true_status(pki: Pki, revoked: bool) -> None:
    leaf = pki.leaves[2].cert
    pki.statuses.add("fleet-issuing", leaf, not_after=NOW - 10 * DAY,
                     revoked_at=NOW - 20 * DAY if revoked else None)
    response = parsed(pki.ocsp().respond(request_for(leaf, pki.ca.cert)), pki.responder)
    expected = ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD
    assert response.certificate_status is expected


@pytest.mark.parametrize("algorithm", [hashes.SHA256(), hashes.SHA384(), hashes.SHA512()])
def test_sha2_cert_id_is_matched_and_echoed_in_the_same_hash(
        pki: Pki, algorithm: hashes.HashAlgorithm) -> None:
    leaf = pki.leaves[0].cert
    request = ocsp.load_der_ocsp_request(request_for(leaf, pki.ca.cert, algorithm))
    response = parsed(pki.ocsp().respond(request.public_bytes(Encoding.DER)), pki.responder)
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.hash_algorithm.name == algorithm.name
    assert response.issuer_name_hash == request.issuer_name_hash
    assert response.issuer_key_hash == request.issuer_key_hash


def test_signed_request_is_answered_and_its_signature_ignored(pki: Pki) -> None:
    """RFC 5019 §2.1.2: a responder may ignore the requestor's signature."""
    plain = request_for(pki.leaves[0].cert, pki.ca.cert)
    tbs = der.elements(plain)[0]
    signature = pki.leaves[0].key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    signed = der.sequence(tbs, der.tlv(0xA0, der.sequence(
        der.sequence(der.oid("1.2.840.10045.4.3.2")),
        der.tlv(der.BIT_STRING, b"\x00" + signature),
        der.tlv(0xA0, der.sequence(pki.leaves[0].cert.public_bytes(Encoding.DER))))))
    response = parsed(pki.ocsp().respond(signed), pki.responder)
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD


# -- what it refuses -----------------------------------------------------------------------


def test_foreign_issuer_is_unauthorized(pki: Pki) -> None:
    other_ca = issue("Someone Else's CA", ca=True)
    foreign = issue("device-0", other_ca)
    answer = pki.ocsp().respond(request_for(foreign.cert, other_ca.cert))
    assert answer is UNAUTHORIZED
    assert error_status(answer) is ocsp.OCSPResponseStatus.UNAUTHORIZED


def _two_cert_ids(request: bytes) -> bytes:
    tbs = der.elements(request)[0]
    single = der.elements(der.elements(tbs)[0])[0]
    return der.sequence(der.sequence(der.sequence(single, single)))


def _md5_cert_id(serial: int) -> bytes:
    cert_id = der.sequence(der.sequence(der.oid("1.2.840.113549.2.5"), b"\x05\x00"),
                           der.tlv(der.OCTET_STRING, bytes(16)),
                           der.tlv(der.OCTET_STRING, bytes(16)), der.integer(serial))
    return der.sequence(der.sequence(der.sequence(der.sequence(cert_id))))


@pytest.mark.parametrize("case", ["empty", "garbage", "truncated", "two cert ids", "md5",
                                  "sha224", "long nonce", "empty nonce",
                                  "critical unknown extension"])
def test_malformed_requests(pki: Pki, case: str) -> None:
    leaf, ca = pki.leaves[0].cert, pki.ca.cert
    good = request_for(leaf, ca)
    cases: dict[str, Callable[[], bytes]] = {
        "empty": lambda: b"",
        "garbage": lambda: b"GET / HTTP/1.1\r\n\r\n",
        "truncated": lambda: good[:-3],
        "two cert ids": lambda: _two_cert_ids(good),
        "md5": lambda: _md5_cert_id(leaf.serial_number),
        "sha224": lambda: request_for(leaf, ca, hashes.SHA224()),
        "long nonce": lambda: request_for(leaf, ca, nonce=bytes(33)),  # RFC 8954 §2.1
        "empty nonce": lambda: request_for(leaf, ca, nonce=b""),
        "critical unknown extension": lambda: (
            ocsp.OCSPRequestBuilder().add_certificate(leaf, ca, SHA1)
            .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99"),
                                                      b"\x05\x00"), critical=True)
            .build().public_bytes(Encoding.DER)),
    }
    answer = pki.ocsp().respond(cases[case]())
    assert answer is MALFORMED_REQUEST
    assert error_status(answer) is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_unknown_non_critical_extension_is_ignored(pki: Pki) -> None:
    request = (ocsp.OCSPRequestBuilder()
               .add_certificate(pki.leaves[0].cert, pki.ca.cert, SHA1)
               .add_extension(x509.UnrecognizedExtension(
                   x509.ObjectIdentifier("1.3.6.1.4.1.99"), b"\x05\x00"), critical=False)
               .build().public_bytes(Encoding.DER))
    response = parsed(pki.ocsp().respond(request), pki.responder)
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD


def test_without_responder_keys_every_request_is_unauthorized(pki: Pki) -> None:
    responder = OcspResponder(pki.statuses, [], pki.clock)
    assert responder.respond(request_for(pki.leaves[0].cert, pki.ca.cert)) is UNAUTHORIZED
    responder.replace_responders([pki.key()])
    parsed(responder.respond(request_for(pki.leaves[0].cert, pki.ca.cert)), pki.responder)


def test_a_failing_source_is_internal_error_logged_without_the_request(
        pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def certificate_status(self, issuer: str, serial: int) -> RevocationStatus | None:
            raise RuntimeError("database is gone")

    request = request_for(pki.leaves[0].cert, pki.ca.cert)
    responder = OcspResponder(Broken(), [pki.key()], pki.clock)
    with caplog.at_level(logging.ERROR):
        answer = responder.respond(request)
    assert answer is INTERNAL_ERROR
    assert error_status(answer) is ocsp.OCSPResponseStatus.INTERNAL_ERROR
    assert "database is gone" in caplog.text
    logged = caplog.text + repr([vars(record) for record in caplog.records])
    assert request.hex() not in logged and repr(request) not in logged


# -- nonces and the pre-signed cache -------------------------------------------------------


def test_nonce_is_echoed_in_a_fresh_answer_never_cached(pki: Pki) -> None:
    responder = pki.ocsp()
    leaf = pki.leaves[0].cert
    nonces = [bytes([n]) * 16 for n in (1, 2)] + [bytes(32)]
    answers = [responder.respond(request_for(leaf, pki.ca.cert, nonce=n)) for n in nonces]
    for nonce, answer in zip(nonces, answers, strict=True):
        response = parsed(answer, pki.responder)
        assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
        assert not answer.cacheable
    plain = responder.respond(request_for(leaf, pki.ca.cert))
    assert plain.cacheable and plain not in answers
    assert len(parsed(plain, pki.responder).extensions) == 0
    again = responder.respond(request_for(leaf, pki.ca.cert, nonce=nonces[0]))
    assert again.der != answers[0].der  # signed again (ECDSA signatures are randomised)


def test_cache_hit_returns_the_same_bytes_after_a_status_lookup(pki: Pki) -> None:
    responder = pki.ocsp()
    request = request_for(pki.leaves[0].cert, pki.ca.cert)
    first = responder.respond(request)
    pki.clock.advance(dt.timedelta(hours=11))
    lookups = pki.statuses.lookups
    second = responder.respond(request)
    assert second is first
    assert pki.statuses.lookups == lookups + 1  # the status is read on every request


def test_cache_is_per_cert_id_hash(pki: Pki) -> None:
    responder = pki.ocsp()
    leaf = pki.leaves[0].cert
    sha1 = responder.respond(request_for(leaf, pki.ca.cert))
    sha256 = responder.respond(request_for(leaf, pki.ca.cert, hashes.SHA256()))
    assert parsed(sha256, pki.responder).hash_algorithm.name == "sha256"
    assert sha1.der != sha256.der


def test_revocation_after_a_cached_good_answer_is_served_at_once(pki: Pki) -> None:
    responder = pki.ocsp()
    leaf = pki.leaves[0].cert
    request = request_for(leaf, pki.ca.cert)
    good = responder.respond(request)
    assert parsed(good, pki.responder).certificate_status is ocsp.OCSPCertStatus.GOOD
    pki.clock.advance(dt.timedelta(minutes=1))
    pki.statuses.add("fleet-issuing", leaf, revoked_at=pki.clock.now(),
                     reason=RevocationReason.superseded)
    lookups = pki.statuses.lookups
    revoked = parsed(responder.respond(request), pki.responder)
    assert pki.statuses.lookups == lookups + 1  # the status that invalidated it is signed
    assert revoked.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert revoked.revocation_reason is x509.ReasonFlags.superseded
    # A changed reason (a hold made permanent, say) is a different answer too.
    pki.statuses.add("fleet-issuing", leaf, revoked_at=pki.clock.now(),
                     reason=RevocationReason.key_compromise)
    assert parsed(responder.respond(request), pki.responder).revocation_reason is (
        x509.ReasonFlags.key_compromise)


def test_answer_is_signed_again_once_half_its_validity_has_passed(pki: Pki) -> None:
    responder = pki.ocsp(validity=dt.timedelta(hours=4))
    request = request_for(pki.leaves[0].cert, pki.ca.cert)
    first = responder.respond(request)
    pki.clock.advance(dt.timedelta(hours=2) - dt.timedelta(seconds=1))
    assert responder.respond(request) is first
    pki.clock.advance(dt.timedelta(seconds=2))
    fresh = responder.respond(request)
    assert fresh is not first
    assert fresh.this_update == pki.clock.now().replace(microsecond=0)
    assert fresh.next_update == fresh.this_update + dt.timedelta(hours=4)
    assert parsed(fresh, pki.responder).this_update_utc == fresh.this_update
    assert responder.respond(request) is fresh


def test_cache_is_bounded_and_evicts_the_oldest(pki: Pki) -> None:
    responder = pki.ocsp(max_cached=2)
    requests = [request_for(leaf.cert, pki.ca.cert) for leaf in pki.leaves]
    answers = [responder.respond(r) for r in requests]
    assert responder.respond(requests[2]) is answers[2]
    assert responder.respond(requests[1]) is answers[1]
    assert responder.respond(requests[0]) is not answers[0]  # evicted by the third


def test_replaced_responder_signs_from_the_next_request_on(pki: Pki) -> None:
    responder = pki.ocsp()
    request = request_for(pki.leaves[0].cert, pki.ca.cert)
    old = responder.respond(request)
    successor = responder_certificate(pki.ca, "Fleet OCSP 2")
    responder.replace_responders([ResponderKey("fleet-issuing", pki.ca.cert, successor.cert,
                                               successor.key)])
    new = responder.respond(request)
    assert new is not old
    assert parsed(new, successor).certificates == [successor.cert]


# -- responder keys clients would reject are refused up front ------------------------------


def test_responder_key_checks(pki: Pki) -> None:
    other_ca = issue("Other CA", ca=True)
    cases = {
        "lacks the OCSPSigning": responder_certificate(
            pki.ca, usages=(ExtendedKeyUsageOID.CLIENT_AUTH,)),
        "not issued by that CA": responder_certificate(other_ca),
    }
    for message, bad in cases.items():
        with pytest.raises(ValueError, match=message):
            OcspResponder(pki.statuses, [ResponderKey("fleet-issuing", pki.ca.cert, bad.cert,
                                                      bad.key)], pki.clock)
    with pytest.raises(ValueError, match="does not match its private key"):
        OcspResponder(pki.statuses, [ResponderKey("fleet-issuing", pki.ca.cert,
                                                  pki.responder.cert, pki.ca.key)], pki.clock)
    with pytest.raises(ValueError, match="not valid now"):
        OcspResponder(pki.statuses, [pki.key()], FakeClock(NOW + 31 * DAY))
    with pytest.raises(ValueError, match="two OCSP responder keys"):
        OcspResponder(pki.statuses, [pki.key(), pki.key()], pki.clock)
    responder = pki.ocsp()
    with pytest.raises(ValueError, match="lacks the OCSPSigning"):
        bad = cases["lacks the OCSPSigning"]
        responder.replace_responders([ResponderKey("fleet-issuing", pki.ca.cert, bad.cert,
                                                   bad.key)])
    good = responder.respond(request_for(pki.leaves[0].cert, pki.ca.cert))
    parsed(good, pki.responder)  # a refused replacement leaves the old responder serving
