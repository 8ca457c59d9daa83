"""ScepHandler driven in process with ScepCall objects, over a real RA and SQLite store on a
fake clock: what a router or an MDM agent receives, without HTTP. tests/integration checks
that the HTTP adapter and real clients (strongSwan, scepclient) see the same answers.

The RA identity is a test RSA key with a self-signed certificate: the handler only needs a
certificate to be encrypted to and to sign with.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import logging
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1_alt_modules import rfc5652

from fleetpki.core import der
from fleetpki.core.errors import StoreError
from fleetpki.protocols.scep import cms
from fleetpki.protocols.scep.cms import RsaRecipient, SignedMessage, open_envelope, open_signed
from fleetpki.protocols.scep.codec import CAPABILITIES, FailInfo, MessageType, PkiStatus
from fleetpki.protocols.scep.handler import (
    MAX_MESSAGE_BYTES,
    ScepCall,
    ScepHandler,
    ScepIdentity,
    ScepReply,
    ScepSettings,
    ScepTransactions,
)
from fleetpki.ra.api import (
    Authorization,
    Enrolled,
    EnrollmentPending,
    EnrollmentRequest,
    Transaction,
)
from fleetpki.ra.approvals import ApprovalDesk
from fleetpki.ra.certificate_retrieval import CertificateRetrieval
from fleetpki.ra.challenges import ChallengeAdmin
from fleetpki.ra.credentials import CredentialAdmin
from fleetpki.ra.transactions import TransactionalEnrollment
from fleetpki.store.api import CertificateQuery
from fleetpki.store.sql.store import SqlStore
from support import scep_messages as sm
from support.enrollment_rig import EnrollmentParts, enrollment_parts

START = dt.datetime(2030, 1, 15, 8, 0, tzinfo=dt.UTC)
CRL_PATH = "/crl/issuing.crl"
_RSA_PROFILE = f"""
issuer = "issuing"
keys = {{ allowed = ["rsa"], rsa_min_bits = 2048 }}
validity = {{ default = "90d", maximum = "90d" }}
subject.attributes.CN = {{ required = true }}
extensions.key_usage = ["digitalSignature", "keyEncipherment"]
extensions.extended_key_usage = ["clientAuth"]
renewal = {{ window_fraction = 0.25 }}
urls = {{ crl = ["http://pki.example{CRL_PATH}"] }}
"""
PROFILES = f"""
[profiles.router]{_RSA_PROFILE}enrollment = {{ scep = true }}

[profiles.held]{_RSA_PROFILE}enrollment = {{ scep = true, approval = "manual", retry_after = "5m" }}

[profiles.est-only]{_RSA_PROFILE}
"""

CT_PKI_MESSAGE = "application/x-pki-message"
TRANSACTION = "2.16.840.1.113733.1.9.7"
MESSAGE_TYPE = "2.16.840.1.113733.1.9.2"
SENDER_NONCE = "2.16.840.1.113733.1.9.5"
RECIPIENT_NONCE = "2.16.840.1.113733.1.9.6"
PKI_STATUS = "2.16.840.1.113733.1.9.3"
FAIL_INFO = "2.16.840.1.113733.1.9.4"
FAIL_INFO_TEXT = "1.3.6.1.5.5.7.24.1"
RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
SINGLE_DES = "1.3.14.3.2.7"
TRIPLE_DES = "1.2.840.113549.3.7"
AES256_CBC = "2.16.840.1.101.3.4.1.42"


# -- keys, made once: RSA 2048 generation is the slow part ---------------------------------------

@pytest.fixture(scope="module")
def keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(65537, 2048) for _ in range(4)]


@pytest.fixture(scope="module")
def ra_identity() -> ScepIdentity:
    key = rsa.generate_private_key(65537, 2048)
    return ScepIdentity(RsaRecipient(sm.self_signed(key, "Fleet SCEP RA", START), key))


# -- the rig -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CertRep:
    """A CertRep as the requester reads it, after checking the RA's signature."""

    message: SignedMessage

    def attribute(self, oid: str) -> bytes:
        [value] = self.message.attributes[oid]
        return value

    def text(self, oid: str) -> str:
        return der.content(self.attribute(oid)).decode()

    @property
    def status(self) -> PkiStatus:
        return PkiStatus(self.text(PKI_STATUS))

    @property
    def fail_info(self) -> FailInfo | None:
        return FailInfo(self.text(FAIL_INFO)) if FAIL_INFO in self.message.attributes else None

    @property
    def reason(self) -> str:
        return self.text(FAIL_INFO_TEXT) if FAIL_INFO_TEXT in self.message.attributes else ""

    def opened(self, who: sm.Requester) -> cms.Opened:
        assert self.message.content is not None, "not a SUCCESS"
        return open_envelope(self.message.content, [RsaRecipient(who.certificate, who.key)])

    def signed_data(self, who: sm.Requester) -> rfc5652.SignedData:
        info, rest = ber_decoder.decode(self.opened(who).content,
                                        asn1Spec=rfc5652.ContentInfo())
        assert not rest and str(info["contentType"]) == cms.ID_SIGNED_DATA
        signed, _ = ber_decoder.decode(bytes(info["content"]), asn1Spec=rfc5652.SignedData())
        assert len(signed["signerInfos"]) == 0  # certs-only
        return signed

    def certificates(self, who: sm.Requester) -> list[x509.Certificate]:
        return certificates_of(self.signed_data(who))

    def certificate(self, who: sm.Requester) -> x509.Certificate:
        assert self.status is PkiStatus.success, (self.fail_info, self.reason)
        return self.certificates(who)[0]


def certificates_of(signed: rfc5652.SignedData) -> list[x509.Certificate]:
    return [x509.load_der_x509_certificate(der_encoder.encode(choice["certificate"]))
            for choice in signed["certificates"]]


@dataclasses.dataclass
class Scep:
    parts: EnrollmentParts
    handler: ScepHandler
    identity: ScepIdentity
    keys: list[rsa.RSAPrivateKey]
    crls: dict[str, bytes]

    @property
    def ra(self) -> x509.Certificate:
        return self.identity.current.certificate

    @property
    def store(self) -> SqlStore:
        return self.parts.store

    def call(self, operation: str | None, label: str | None = "router", *,
             method: str = "GET", body: bytes = b"", **query: str) -> ScepReply:
        if operation is not None:
            query["operation"] = operation
        return self.handler.handle(ScepCall(method=method, label=label, query=query, body=body,
                                            client_address="192.0.2.9"))

    def post(self, message: bytes, label: str | None = "router") -> ScepReply:
        return self.call("PKIOperation", label, method="POST", body=message)

    def cert_rep(self, reply: ScepReply) -> CertRep:
        assert reply.status == 200, reply.body
        assert reply.header("content-type") == CT_PKI_MESSAGE
        message = open_signed(reply.body)
        cms.verify(message)
        assert message.signer == self.ra
        return CertRep(message)

    def send(self, message: bytes, label: str | None = "router") -> CertRep:
        return self.cert_rep(self.post(message, label))

    def requester(self, index: int, cn: str = "router-0001") -> sm.Requester:
        key = self.keys[index]
        return sm.Requester(key, sm.self_signed(key, cn, START))

    def challenge(self, profile: str = "router") -> str:
        return ChallengeAdmin(self.store, self.parts.profiles, self.parts.clock,
                              "operator:test").set(profile).secret

    def bootstrap(self, profile: str = "router") -> str:
        made = CredentialAdmin(self.store, self.parts.profiles, self.parts.clock, "op").create(
            profile, lifetime=dt.timedelta(days=7), max_uses=1)
        return f"{made.credential.id}:{made.secret}"

    def pkcs_req(self, who: sm.Requester, password: str | None, *, cn: str = "router-0001",
                 tid: str = "tx-1", nonce: bytes | None = None,
                 digest: hashes.HashAlgorithm | None = None, cipher: str = cms.AES128_CBC,
                 signing_time: dt.datetime | None = None) -> bytes:
        csr = sm.csr(who.key, cn, password)
        return sm.message(who, MessageType.pkcs_req, csr, self.ra, transaction_id=tid,
                          nonce=nonce, digest=digest, cipher=cipher, signing_time=signing_time)

    def enrolled(self, index: int = 0, cn: str = "router-0001", tid: str = "tx-1"
                 ) -> tuple[sm.Requester, x509.Certificate]:
        """A device enrolled with the static challenge; its key and issued certificate."""
        who = self.requester(index, cn)
        secret = self.challenge()
        rep = self.send(self.pkcs_req(who, secret, cn=cn, tid=tid))
        return who, rep.certificate(who)

    def poll(self, who: sm.Requester, tid: str, label: str = "router") -> CertRep:
        payload = sm.issuer_and_subject(self.issuing.subject, who.certificate.subject)
        return self.send(sm.message(who, MessageType.cert_poll, payload, self.ra,
                                    transaction_id=tid), label)

    @property
    def issuing(self) -> x509.Certificate:
        return self.parts.service.ca_certificates("router")[0]

    def certificate_count(self) -> int:
        return len(self.store.find_certificates(CertificateQuery(limit=1000),
                                                now=self.parts.clock.now()))

    def desk(self) -> ApprovalDesk:
        return ApprovalDesk(self.parts.issuance, self.store, self.parts.clock,
                            Authorization(actor="operator:test"))


def make_handler(parts: EnrollmentParts, identity: ScepIdentity, crls: dict[str, bytes],
                 settings: ScepSettings | None = None,
                 transactions: ScepTransactions | None = None) -> ScepHandler:
    def identities(issuer: str) -> ScepIdentity:
        assert issuer == "issuing"
        return identity

    return ScepHandler(
        parts.service,
        transactions or TransactionalEnrollment(parts.service, parts.store, parts.clock),
        CertificateRetrieval(parts.store, parts.service.identify, crls.get),
        identities, settings or ScepSettings("router", dt.timedelta(hours=1)), parts.clock.now)


@pytest.fixture
def scep(tmp_path: Path, keys: list[rsa.RSAPrivateKey], ra_identity: ScepIdentity) -> Scep:
    parts = enrollment_parts(tmp_path, PROFILES, START, default_profile="router")
    crls: dict[str, bytes] = {}
    return Scep(parts, make_handler(parts, ra_identity, crls), ra_identity, keys, crls)


def with_settings(scep: Scep, settings: ScepSettings) -> Scep:
    return dataclasses.replace(scep, handler=make_handler(scep.parts, scep.identity, scep.crls,
                                                          settings))


def text(reply: ScepReply) -> str:
    assert reply.header("content-type") == "text/plain; charset=utf-8"
    return reply.body.decode()


# -- GetCACaps, GetCACert, routing ------------------------------------------------------------

@pytest.mark.parametrize("label", [None, "router"])
def test_get_ca_caps_lists_the_capabilities(scep: Scep, label: str | None) -> None:
    reply = scep.call("GetCACaps", label)
    assert reply.status == 200
    assert text(reply).splitlines() == list(CAPABILITIES)


@pytest.mark.parametrize("label", [None, "router", "held"])
def test_get_ca_cert_is_the_ra_certificate_then_the_chain(scep: Scep, label: str | None) -> None:
    reply = scep.call("GetCACert", label)
    assert reply.status == 200
    assert reply.header("content-type") == "application/x-x509-ca-ra-cert"
    info, rest = ber_decoder.decode(reply.body, asn1Spec=rfc5652.ContentInfo())
    assert not rest and str(info["contentType"]) == cms.ID_SIGNED_DATA
    signed, _ = ber_decoder.decode(bytes(info["content"]), asn1Spec=rfc5652.SignedData())
    assert len(signed["signerInfos"]) == 0
    certificates = certificates_of(signed)
    chain = scep.parts.service.ca_certificates("router")
    assert certificates == [scep.ra, *chain]
    assert len(chain) == 2 and chain[-1].subject == chain[-1].issuer  # the root is included


@pytest.mark.parametrize("operation", ["GetNextCACert", "getcacaps"])
def test_an_unknown_operation_is_400(scep: Scep, operation: str | None) -> None:
    reply = scep.call(operation)
    assert reply.status == 400 and "unknown SCEP operation" in text(reply)


@pytest.mark.parametrize("operation", ["", None])
def test_a_missing_operation_is_400_saying_so(scep: Scep, operation: str | None) -> None:
    reply = scep.call(operation)
    assert reply.status == 400 and "'operation' query parameter is missing" in text(reply)


@pytest.mark.parametrize("operation", ["GetCACaps", "GetCACert", "PKIOperation"])
@pytest.mark.parametrize("label", ["nothing", "NOT_A_LABEL", "a/b", "x" * 80])
def test_an_unknown_label_is_404(scep: Scep, operation: str, label: str) -> None:
    who = scep.requester(0)
    reply = scep.call(operation, label, method="POST" if operation == "PKIOperation" else "GET",
                      body=scep.pkcs_req(who, "pw"))
    assert reply.status == 404, reply.body
    assert b"Traceback" not in reply.body


@pytest.mark.parametrize("operation", ["GetCACaps", "GetCACert", "PKIOperation"])
def test_a_profile_without_scep_is_404(scep: Scep, operation: str) -> None:
    who = scep.requester(0)
    reply = scep.call(operation, "est-only",
                      method="POST" if operation == "PKIOperation" else "GET",
                      body=scep.pkcs_req(who, scep.challenge("est-only")))
    assert reply.status == 404 and "enrollment.scep = false" in text(reply)
    assert scep.certificate_count() == 0


def test_without_a_default_profile_the_bare_url_is_404(scep: Scep) -> None:
    bare = with_settings(scep, ScepSettings(None, None))
    reply = bare.call("GetCACaps", None)
    assert reply.status == 404 and "enrollment.scep = true" in text(reply)
    assert bare.call("GetCACaps", "router").status == 200


# -- PKIOperation transports ---------------------------------------------------------------------

def test_pkcs_req_over_post_is_issued(scep: Scep) -> None:
    who = scep.requester(0)
    nonce = os.urandom(16)
    rep = scep.send(scep.pkcs_req(who, scep.challenge(), tid="tx-post", nonce=nonce))
    assert rep.status is PkiStatus.success and rep.fail_info is None
    assert rep.text(MESSAGE_TYPE) == "3"
    assert rep.attribute(TRANSACTION) == der.tlv(0x13, b"tx-post")
    assert rep.attribute(RECIPIENT_NONCE) == der.octet_string(nonce)
    assert rep.attribute(SENDER_NONCE) != rep.attribute(RECIPIENT_NONCE)
    assert rep.message.signature_algorithm == RSA_ENCRYPTION
    certificate = rep.certificate(who)
    assert certificate.subject.rfc4514_string() == "CN=router-0001"
    assert certificate.public_key() == who.key.public_key()
    assert certificate.issuer == scep.issuing.subject
    assert scep.certificate_count() == 1
    stored = scep.store.get_transaction("scep", "tx-post")
    assert stored is not None and stored.serial == certificate.serial_number
    # Only the issued certificate: clients take the first one.
    assert rep.certificates(who) == [certificate]


@pytest.mark.parametrize("form", ["plain", "plus-as-space", "wrapped", "unpadded"])
def test_pkcs_req_over_get_is_issued(scep: Scep, form: str) -> None:
    who = scep.requester(0)
    message = scep.pkcs_req(who, scep.challenge())
    encoded = base64.b64encode(message).decode()
    assert "+" in encoded  # ~2 kB of base64: the form decoding case is exercised
    if form == "plus-as-space":
        encoded = encoded.replace("+", " ")
    elif form == "wrapped":
        encoded = "\n".join(encoded[i:i + 64] for i in range(0, len(encoded), 64))
    elif form == "unpadded":
        encoded = encoded.rstrip("=")
    rep = scep.cert_rep(scep.call("PKIOperation", message=encoded))
    assert rep.certificate(who).public_key() == who.key.public_key()


def test_a_message_that_is_not_base64_is_400(scep: Scep) -> None:
    reply = scep.call("PKIOperation", message="this is *not* base64!")
    assert reply.status == 400 and "not base64" in text(reply)


@pytest.mark.parametrize("message", [b"", b"garbage", b"\x30\x03\x02\x01\x00"])
def test_a_message_that_is_not_scep_is_400(scep: Scep, message: bytes) -> None:
    reply = scep.post(message)
    assert reply.status == 400 and "not a SCEP message" in text(reply)


def test_a_message_with_an_unreadable_transaction_id_is_400(scep: Scep) -> None:
    who = scep.requester(0)
    attributes = [
        cms.attribute(MESSAGE_TYPE, der.tlv(0x13, MessageType.pkcs_req.value.encode())),
        cms.attribute(TRANSACTION, b"\x30\x03\x02\x05\x00"),
        cms.attribute(SENDER_NONCE, der.octet_string(os.urandom(16))),
    ]
    message = cms.sign(cms.seal_envelope(b"x", scep.ra), attributes, who.certificate, who.key,
                       hashes.SHA256(), [who.certificate])
    reply = scep.post(message)
    assert reply.status == 400, reply


def test_an_oversized_post_is_413(scep: Scep) -> None:
    reply = scep.post(b"\x30" * (MAX_MESSAGE_BYTES + 1))
    assert reply.status == 413 and str(MAX_MESSAGE_BYTES) in text(reply)


def test_an_oversized_get_is_413(scep: Scep) -> None:
    reply = scep.call("PKIOperation", message="A" * (MAX_MESSAGE_BYTES * 2))
    assert reply.status == 413


# -- PKCSReq: who may enroll ------------------------------------------------------------------

def test_a_bootstrap_credential_enrolls_once(scep: Scep) -> None:
    password = scep.bootstrap()
    first = scep.requester(0)
    assert scep.send(scep.pkcs_req(first, password, tid="tx-a")).status is PkiStatus.success
    second = scep.requester(1, "router-0002")
    rep = scep.send(scep.pkcs_req(second, password, cn="router-0002", tid="tx-b"))
    assert rep.status is PkiStatus.failure and rep.fail_info is FailInfo.bad_request
    assert "no uses left" in rep.reason
    assert rep.message.content is None
    assert scep.certificate_count() == 1
    assert scep.store.get_transaction("scep", "tx-b") is None


def test_a_bootstrap_credential_of_another_profile_is_refused(scep: Scep) -> None:
    who = scep.requester(0)
    rep = scep.send(scep.pkcs_req(who, scep.bootstrap("held")))
    assert rep.status is PkiStatus.failure and rep.fail_info is FailInfo.bad_request
    assert scep.certificate_count() == 0


@pytest.mark.parametrize("password", ["not-the-secret-Zq9x", None, "bt-nothing:secret-Zq9x",
                                      "x" * 300])
def test_a_wrong_or_missing_challenge_is_refused_and_nothing_stored(
        scep: Scep, password: str | None) -> None:
    scep.challenge()
    who = scep.requester(0)
    rep = scep.send(scep.pkcs_req(who, password, tid="tx-wrong"))
    assert rep.status is PkiStatus.failure and rep.fail_info is FailInfo.bad_request
    assert rep.attribute(TRANSACTION) == der.tlv(0x13, b"tx-wrong")
    assert scep.certificate_count() == 0
    assert scep.store.get_transaction("scep", "tx-wrong") is None
    refusals = [e for e in scep.store.audit_entries() if "refused" in e.action]
    assert refusals, "a refusal is audited"
    if password:
        assert all(password not in str(e.details) for e in scep.store.audit_entries())


def test_the_static_challenge_of_another_profile_is_refused(scep: Scep) -> None:
    who = scep.requester(0)
    rep = scep.send(scep.pkcs_req(who, scep.challenge("held")))
    assert rep.status is PkiStatus.failure and rep.fail_info is FailInfo.bad_request


def test_a_csr_the_profile_refuses_is_a_bad_request(scep: Scep) -> None:
    who = scep.requester(0)
    csr = sm.csr(who.key, "router-0001", scep.challenge(), sans=[x509.DNSName("evil.example")])
    rep = scep.send(sm.message(who, MessageType.pkcs_req, csr, scep.ra))  # no SANs allowed
    assert rep.status is PkiStatus.failure and rep.fail_info is FailInfo.bad_request
    assert scep.store.get_transaction("scep", "tx-1") is None
    assert scep.certificate_count() == 0


# -- transactions ------------------------------------------------------------------------------

def test_a_resent_pkcs_req_gets_the_same_certificate(scep: Scep) -> None:
    who = scep.requester(0)
    secret = scep.challenge()
    first = scep.send(scep.pkcs_req(who, secret)).certificate(who)
    nonce = os.urandom(16)
    again = scep.send(scep.pkcs_req(who, secret, nonce=nonce))
    assert again.certificate(who) == first
    assert again.attribute(RECIPIENT_NONCE) == der.octet_string(nonce)
    assert scep.certificate_count() == 1


def test_a_resent_pkcs_req_needs_no_second_use_of_a_bootstrap_credential(scep: Scep) -> None:
    who = scep.requester(0)
    password = scep.bootstrap()
    first = scep.send(scep.pkcs_req(who, password)).certificate(who)
    assert scep.send(scep.pkcs_req(who, password)).certificate(who) == first


def test_the_same_transaction_with_another_key_is_refused(scep: Scep) -> None:
    who = scep.requester(0)
    secret = scep.challenge()
    scep.send(scep.pkcs_req(who, secret)).certificate(who)
    other = scep.requester(1)
    rep = scep.send(scep.pkcs_req(other, secret))
    assert rep.status is PkiStatus.failure and rep.fail_info is FailInfo.bad_request
    assert "another public key" in rep.reason
    assert scep.certificate_count() == 1


def test_cert_poll_for_an_unknown_transaction_is_refused(scep: Scep) -> None:
    rep = scep.poll(scep.requester(0), "tx-never")
    assert rep.status is PkiStatus.failure and rep.fail_info is FailInfo.bad_request
    assert "send the PKCSReq again" in rep.reason


def test_cert_poll_of_an_issued_transaction_returns_the_certificate(scep: Scep) -> None:
    who, certificate = scep.enrolled()
    assert scep.poll(who, "tx-1").certificate(who) == certificate


def test_cert_poll_by_another_requester_is_refused(scep: Scep) -> None:
    scep.enrolled()
    rep = scep.poll(scep.requester(1), "tx-1")
    assert rep.status is PkiStatus.failure and rep.fail_info is FailInfo.bad_request
    assert "another requester" in rep.reason


# -- manual approval ----------------------------------------------------------------------------

def held(scep: Scep, who: sm.Requester, tid: str = "tx-held") -> str:
    """Send a PKCSReq to the held profile; returns the pending enrollment's id."""
    rep = scep.send(scep.pkcs_req(who, scep.challenge("held"), tid=tid), "held")
    assert rep.status is PkiStatus.pending, (rep.fail_info, rep.reason)
    assert rep.fail_info is None and rep.message.content is None
    assert rep.attribute(TRANSACTION) == der.tlv(0x13, tid.encode())
    transaction = scep.store.get_transaction("scep", tid)
    assert transaction is not None and transaction.pending_id is not None
    return transaction.pending_id


def test_held_then_polled_then_approved_then_issued(scep: Scep) -> None:
    who = scep.requester(0)
    pending_id = held(scep, who)
    assert scep.certificate_count() == 0
    assert scep.poll(who, "tx-held", "held").status is PkiStatus.pending
    record = scep.desk().approve(pending_id)
    certificate = scep.poll(who, "tx-held", "held").certificate(who)
    assert certificate.serial_number == record.serial
    assert certificate.public_key() == who.key.public_key()
    # The PKCSReq sent again gets the same certificate, not a second one.
    again = scep.send(scep.pkcs_req(who, scep.challenge("held"), tid="tx-held"), "held")
    assert again.certificate(who) == certificate
    assert scep.certificate_count() == 1


def test_held_then_rejected_is_a_failure(scep: Scep) -> None:
    who = scep.requester(0)
    scep.desk().reject(held(scep, who), "not one of ours")
    rep = scep.poll(who, "tx-held", "held")
    assert rep.status is PkiStatus.failure and rep.fail_info is FailInfo.bad_request
    assert "not one of ours" in rep.reason
    assert scep.certificate_count() == 0


def test_a_held_csr_is_stored_without_its_challenge_password(scep: Scep) -> None:
    who = scep.requester(0)
    secret = scep.challenge("held")
    rep = scep.send(scep.pkcs_req(who, secret, tid="tx-held"), "held")
    assert rep.status is PkiStatus.pending
    transaction = scep.store.get_transaction("scep", "tx-held")
    assert transaction is not None and transaction.pending_id is not None
    pending = scep.store.get_pending(transaction.pending_id)
    assert pending is not None
    assert secret.encode() not in pending.csr_der
    stored = x509.load_der_x509_csr(pending.csr_der)
    assert stored.public_key() == who.key.public_key()
    with pytest.raises(x509.AttributeNotFound):
        stored.attributes.get_attribute_for_oid(x509.oid.AttributeOID.CHALLENGE_PASSWORD)
    assert pending.csr_altered is True
    # Its signature no longer verifies; the approval issues all the same.
    assert not stored.is_signature_valid
    scep.desk().approve(pending.id)
    assert scep.poll(who, "tx-held", "held").certificate(who).public_key() == \
        who.key.public_key()


# -- strongSwan's CSRs (attributes out of DER order) ---------------------------------------------

# Long enough that extensionRequest sorts after a 32-character challengePassword.
LONG_DNS = "router-0001.gateways.fleet-test.example"


def strongswan_csr(key: rsa.RSAPrivateKey, password: str, cn: str = "router-0001") -> bytes:
    """extensionRequest before challengePassword, as strongSwan's pki writes them, signed over
    those bytes: cryptography refuses to load it (core/csr.py canonical_csr repairs it)."""
    san = x509.SubjectAlternativeName([x509.DNSName(LONG_DNS)]).public_bytes()
    extensions = der.sequence(der.oid("1.2.840.113549.1.9.14"), der.tlv(der.SET, der.sequence(
        der.sequence(der.oid("2.5.29.17"), der.octet_string(san)))))
    challenge = der.sequence(der.oid("1.2.840.113549.1.9.7"),
                             der.tlv(der.SET, der.tlv(0x13, password.encode())))
    assert [extensions, challenge] != sorted([extensions, challenge])
    info = der.sequence(
        der.integer(0),
        x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, cn)]).public_bytes(),
        key.public_key().public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.SubjectPublicKeyInfo),
        der.context(0, extensions + challenge))
    signature = key.sign(info, rsa_padding.PKCS1v15(), hashes.SHA256())
    csr = der.sequence(info, der.sequence(der.oid("1.2.840.113549.1.1.11"),
                                          der.tlv(der.NULL, b"")),
                       der.tlv(der.BIT_STRING, b"\x00" + signature))
    with pytest.raises(ValueError):
        x509.load_der_x509_csr(csr)
    return csr


PERMISSIVE = f"""
[profiles.router]
issuer = "issuing"
keys = {{ allowed = ["rsa"], rsa_min_bits = 2048 }}
validity = {{ default = "90d", maximum = "90d" }}
subject.attributes.CN = {{ required = true }}
san = {{ max_count = 1, rules = [{{ type = "dns", under = "example" }}] }}
extensions.key_usage = ["digitalSignature", "keyEncipherment"]
urls = {{ crl = ["http://pki.example{CRL_PATH}"] }}
enrollment = {{ scep = true }}

[profiles.held]
issuer = "issuing"
keys = {{ allowed = ["rsa"], rsa_min_bits = 2048 }}
validity = {{ default = "90d", maximum = "90d" }}
subject.attributes.CN = {{ required = true }}
san = {{ max_count = 1, rules = [{{ type = "dns", under = "example" }}] }}
extensions.key_usage = ["digitalSignature", "keyEncipherment"]
enrollment = {{ scep = true, approval = "manual" }}
"""


@pytest.fixture
def sans_allowed(tmp_path: Path, keys: list[rsa.RSAPrivateKey],
                 ra_identity: ScepIdentity) -> Scep:
    parts = enrollment_parts(tmp_path, PERMISSIVE, START, default_profile="router")
    crls: dict[str, bytes] = {}
    return Scep(parts, make_handler(parts, ra_identity, crls), ra_identity, keys, crls)


def test_a_strongswan_csr_is_issued(sans_allowed: Scep) -> None:
    scep = sans_allowed
    who = scep.requester(0)
    csr = strongswan_csr(who.key, scep.challenge())
    rep = scep.send(sm.message(who, MessageType.pkcs_req, csr, scep.ra))
    certificate = rep.certificate(who)
    assert certificate.public_key() == who.key.public_key()
    assert certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
        == x509.SubjectAlternativeName([x509.DNSName(LONG_DNS)])
    # Resent: the transaction knows the key of a CSR cryptography cannot read as sent.
    again = scep.send(sm.message(who, MessageType.pkcs_req, csr, scep.ra))
    assert again.certificate(who) == certificate


def test_a_tampered_strongswan_csr_is_refused(sans_allowed: Scep) -> None:
    scep = sans_allowed
    who = scep.requester(0)
    csr = bytearray(strongswan_csr(who.key, scep.challenge()))
    at = csr.find(b"router-0001")
    csr[at + 10] = ord("2")
    rep = scep.send(sm.message(who, MessageType.pkcs_req, bytes(csr), scep.ra))
    assert rep.status is PkiStatus.failure and rep.fail_info is FailInfo.bad_request
    assert scep.certificate_count() == 0


def test_a_held_strongswan_csr_is_stored_sorted_without_its_password(sans_allowed: Scep) -> None:
    scep = sans_allowed
    who = scep.requester(0)
    secret = scep.challenge("held")
    rep = scep.send(sm.message(who, MessageType.pkcs_req, strongswan_csr(who.key, secret),
                               scep.ra, transaction_id="tx-held"), "held")
    assert rep.status is PkiStatus.pending, (rep.fail_info, rep.reason)
    transaction = scep.store.get_transaction("scep", "tx-held")
    assert transaction is not None and transaction.pending_id is not None
    pending = scep.store.get_pending(transaction.pending_id)
    assert pending is not None and pending.csr_altered is True
    assert secret.encode() not in pending.csr_der
    assert x509.load_der_x509_csr(pending.csr_der).public_key() == who.key.public_key()
    record = scep.desk().approve(pending.id)
    assert scep.poll(who, "tx-held", "held").certificate(who).serial_number == record.serial


# -- RenewalReq --------------------------------------------------------------------------------

def renewal(scep: Scep, signer: sm.Requester, key: rsa.RSAPrivateKey, tid: str = "tx-renew"
            ) -> bytes:
    csr = sm.csr(key, "router-0001")
    return sm.message(signer, MessageType.renewal_req, csr, scep.ra, transaction_id=tid)


def test_renewal_signed_with_the_current_certificate_is_issued(scep: Scep) -> None:
    who, current = scep.enrolled()
    scep.parts.clock.advance(dt.timedelta(days=70))  # the last quarter of 90 days
    holder = sm.Requester(who.key, current)
    new_key = scep.keys[1]
    rep = scep.send(renewal(scep, holder, new_key))
    # Enveloped to the certificate that signed the request: the current one.
    renewed = rep.certificate(holder)
    assert renewed.public_key() == new_key.public_key()
    assert renewed.subject == current.subject
    assert renewed.serial_number != current.serial_number
    assert scep.certificate_count() == 2


def test_renewal_before_the_window_opens_is_refused(scep: Scep) -> None:
    who, current = scep.enrolled()
    rep = scep.send(renewal(scep, sm.Requester(who.key, current), scep.keys[1]))
    assert rep.status is PkiStatus.failure and rep.fail_info is FailInfo.bad_request
    assert "opens at" in rep.reason
    assert scep.store.get_transaction("scep", "tx-renew") is None


def test_renewal_signed_by_a_self_signed_certificate_is_refused(scep: Scep) -> None:
    scep.enrolled()
    scep.parts.clock.advance(dt.timedelta(days=70))
    stranger = scep.requester(1)
    rep = scep.send(renewal(scep, stranger, stranger.key))
    assert rep.status is PkiStatus.failure and rep.fail_info is FailInfo.bad_request
    assert scep.certificate_count() == 1


def test_renewal_ignores_a_challenge_password(scep: Scep) -> None:
    """A RenewalReq is authorised by its signer, never by a challenge: a stranger's valid
    challenge does not turn it into a first enrollment."""
    stranger = scep.requester(1)
    csr = sm.csr(stranger.key, "router-0009", scep.challenge())
    rep = scep.send(sm.message(stranger, MessageType.renewal_req, csr, scep.ra))
    assert rep.status is PkiStatus.failure
    assert scep.certificate_count() == 0


# -- GetCert, GetCRL ---------------------------------------------------------------------------

def get_cert(scep: Scep, signer: sm.Requester, certificate: x509.Certificate,
             serial: int | None = None) -> CertRep:
    issuer_and_serial = der.sequence(
        certificate.issuer.public_bytes(),
        der.integer(certificate.serial_number if serial is None else serial))
    return scep.send(sm.message(signer, MessageType.get_cert, issuer_and_serial, scep.ra,
                                transaction_id="tx-get"))


def test_get_cert_by_the_device_itself(scep: Scep) -> None:
    who, certificate = scep.enrolled()
    holder = sm.Requester(who.key, certificate)
    assert get_cert(scep, holder, certificate).certificate(holder) == certificate


def test_get_cert_by_another_device_is_refused(scep: Scep) -> None:
    _, certificate = scep.enrolled()
    other, theirs = scep.enrolled(1, "router-0002", "tx-2")
    rep = get_cert(scep, sm.Requester(other.key, theirs), certificate)
    assert rep.status is PkiStatus.failure and rep.fail_info is FailInfo.bad_request
    assert "another device" in rep.reason


def test_get_cert_signed_by_a_self_signed_certificate_is_refused(scep: Scep) -> None:
    who, certificate = scep.enrolled()
    rep = get_cert(scep, who, certificate)  # the same key, but not a certificate of ours
    assert rep.status is PkiStatus.failure and rep.fail_info is FailInfo.bad_request


def test_get_cert_of_an_unknown_serial_is_bad_cert_id(scep: Scep) -> None:
    who, certificate = scep.enrolled()
    rep = get_cert(scep, sm.Requester(who.key, certificate), certificate, serial=0xDEADBEEF)
    assert rep.status is PkiStatus.failure and rep.fail_info is FailInfo.bad_cert_id


def get_crl(scep: Scep, who: sm.Requester, certificate: x509.Certificate) -> CertRep:
    return scep.send(sm.message(who, MessageType.get_crl, sm.issuer_and_serial(certificate),
                                scep.ra, transaction_id="tx-crl"))


def test_get_crl_returns_the_published_crl(scep: Scep) -> None:
    who, certificate = scep.enrolled()
    crl = (x509.CertificateRevocationListBuilder().issuer_name(scep.issuing.subject)
           .last_update(START).next_update(START + dt.timedelta(days=1))
           .sign(scep.identity.current.key, hashes.SHA256())
           .public_bytes(serialization.Encoding.DER))
    scep.crls[CRL_PATH] = crl
    rep = get_crl(scep, who, certificate)
    assert rep.status is PkiStatus.success
    signed = rep.signed_data(who)
    [choice] = list(signed["crls"])
    assert der_encoder.encode(choice["crl"]) == crl
    assert not signed["certificates"].isValue


def test_get_crl_before_one_is_published_is_bad_cert_id(scep: Scep) -> None:
    who, certificate = scep.enrolled()
    rep = get_crl(scep, who, certificate)
    assert rep.status is PkiStatus.failure and rep.fail_info is FailInfo.bad_cert_id
    assert "not published" in rep.reason


# -- what the request is wrapped in --------------------------------------------------------------

def test_a_tampered_request_is_bad_message_check(scep: Scep) -> None:
    who = scep.requester(0)
    rep = scep.send(sm.tamper_signature(scep.pkcs_req(who, scep.challenge())))
    assert rep.status is PkiStatus.failure and rep.fail_info is FailInfo.bad_message_check
    assert scep.certificate_count() == 0


def test_a_request_encrypted_to_another_ra_is_refused(scep: Scep) -> None:
    who = scep.requester(0)
    other = scep.requester(1, "other RA")
    csr = sm.csr(who.key, "router-0001", scep.challenge())
    rep = scep.send(sm.message(who, MessageType.pkcs_req, csr, other.certificate))
    assert rep.status is PkiStatus.failure and rep.fail_info is FailInfo.bad_request
    assert "GetCACert" in rep.reason


def test_a_request_encrypted_to_the_previous_ra_certificate_is_read(
        scep: Scep, keys: list[rsa.RSAPrivateKey]) -> None:
    previous = RsaRecipient(sm.self_signed(keys[3], "Fleet SCEP RA (old)", START), keys[3])
    identity = ScepIdentity(scep.identity.current, (previous,))
    rig = dataclasses.replace(scep, identity=identity,
                              handler=make_handler(scep.parts, identity, scep.crls))
    who = scep.requester(0)
    csr = sm.csr(who.key, "router-0001", rig.challenge())
    rep = rig.send(sm.message(who, MessageType.pkcs_req, csr, previous.certificate))
    assert rep.certificate(who).public_key() == who.key.public_key()  # signed by the current


def test_a_signing_time_off_the_clock_is_bad_time(scep: Scep) -> None:
    who = scep.requester(0)
    rep = scep.send(scep.pkcs_req(who, scep.challenge(),
                                  signing_time=START - dt.timedelta(hours=2)))
    assert rep.status is PkiStatus.failure and rep.fail_info is FailInfo.bad_time
    ok = scep.send(scep.pkcs_req(who, scep.challenge(), signing_time=START))
    assert ok.status is PkiStatus.success


# Legacy firmware still signs with SHA-1 (cms.py accepts it for them).
@pytest.mark.parametrize("digest", [hashes.SHA1(), hashes.SHA512()])  # noqa: S303
def test_the_reply_is_signed_with_the_requests_digest(scep: Scep,
                                                      digest: hashes.HashAlgorithm) -> None:
    who = scep.requester(0)
    rep = scep.send(scep.pkcs_req(who, scep.challenge(), digest=digest))
    assert rep.status is PkiStatus.success
    assert rep.message.digest.name == digest.name


@pytest.mark.parametrize("cipher", [TRIPLE_DES, AES256_CBC, cms.AES128_CBC])
def test_the_reply_is_encrypted_with_the_requests_cipher(scep: Scep, cipher: str) -> None:
    who = scep.requester(0)
    rep = scep.send(scep.pkcs_req(who, scep.challenge(), cipher=cipher))
    assert rep.opened(who).cipher == cipher
    assert rep.certificate(who).public_key() == who.key.public_key()


# -- single DES (legacy scepclient) -------------------------------------------------------------

def single_des_request(scep: Scep, who: sm.Requester, password: str) -> bytes:
    """A PKCSReq whose envelope is DES-CBC (1.3.14.3.2.7); triple DES with one key thrice
    is single DES."""
    content = sm.csr(who.key, "router-0001", password)
    key, iv = os.urandom(8), os.urandom(8)
    padder = padding.PKCS7(64).padder()
    encryptor = Cipher(TripleDES(key * 3), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(content) + padder.finalize()) + \
        encryptor.finalize()
    public_key = scep.ra.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    recipient = der.sequence(
        der.integer(0), cms.issuer_and_serial(scep.ra),
        der.sequence(der.oid(RSA_ENCRYPTION), der.tlv(der.NULL, b"")),
        der.octet_string(public_key.encrypt(key, rsa_padding.PKCS1v15())))
    encrypted = der.sequence(der.oid(cms.ID_DATA),
                             der.sequence(der.oid(SINGLE_DES), der.octet_string(iv)),
                             der.context(0, ciphertext, constructed=False))
    envelope = der.sequence(der.oid(cms.ID_ENVELOPED_DATA), der.context(0, der.sequence(
        der.integer(0), der.set_of(recipient), encrypted)))
    attributes = [
        cms.attribute(MESSAGE_TYPE, der.tlv(0x13, MessageType.pkcs_req.value.encode())),
        cms.attribute(TRANSACTION, der.tlv(0x13, b"tx-des")),
        cms.attribute(SENDER_NONCE, der.octet_string(os.urandom(16))),
    ]
    return cms.sign(envelope, attributes, who.certificate, who.key, hashes.SHA256(),
                    [who.certificate])


def test_single_des_is_refused_with_bad_alg(scep: Scep) -> None:
    who = scep.requester(0)
    rep = scep.send(single_des_request(scep, who, scep.challenge()))
    assert rep.status is PkiStatus.failure and rep.fail_info is FailInfo.bad_alg
    assert scep.certificate_count() == 0


def test_single_des_is_accepted_when_configured_and_answered_with_triple_des(
        scep: Scep) -> None:
    legacy = with_settings(scep, ScepSettings("router", dt.timedelta(hours=1),
                                              accept_single_des=True))
    who = scep.requester(0)
    rep = legacy.send(single_des_request(legacy, who, legacy.challenge()))
    assert rep.status is PkiStatus.success, (rep.fail_info, rep.reason)
    assert rep.opened(who).cipher == TRIPLE_DES
    assert rep.certificate(who).public_key() == who.key.public_key()


# -- our side failing --------------------------------------------------------------------------

class FailingTransactions:
    def __init__(self, error: Exception) -> None:
        self._error = error

    def enroll(self, request: EnrollmentRequest, transaction: Transaction
               ) -> Enrolled | EnrollmentPending:
        raise self._error

    def poll(self, transaction: Transaction) -> Enrolled | EnrollmentPending:
        raise self._error


@pytest.mark.parametrize("error", [
    StoreError("database is locked: /var/lib/fleetpki/secret-path"),
    RuntimeError("unexpected /var/lib/fleetpki/secret-path"),
])
def test_a_failure_on_our_side_is_503_with_retry_after_and_no_details(
        scep: Scep, error: Exception, caplog: pytest.LogCaptureFixture) -> None:
    broken = dataclasses.replace(scep, handler=make_handler(
        scep.parts, scep.identity, scep.crls, transactions=FailingTransactions(error)))
    who = scep.requester(0)
    message = scep.pkcs_req(who, scep.challenge())
    with caplog.at_level(logging.ERROR, logger="fleetpki.protocols.scep.handler"):
        for reply in (broken.post(message),
                      broken.call("PKIOperation", message=base64.b64encode(message).decode())):
            assert reply.status == 503
            assert reply.header("retry-after") == "60"
            assert b"secret-path" not in reply.body and b"Traceback" not in reply.body
            assert b"try again later" in reply.body
    assert any("secret-path" in r.getMessage() or (r.exc_info and "secret-path" in
               str(r.exc_info[1])) for r in caplog.records), "the cause is logged"


def test_the_reply_header_lookup_ignores_case() -> None:
    reply = ScepReply(200, b"", (("content-type", "text/plain"),))
    assert reply.header("Content-Type") == "text/plain" and reply.header("x-none") is None

